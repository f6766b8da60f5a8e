"""Run the sandbox: `python -m sandbox --host 127.0.0.1 --port 8100`."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

import uvicorn

from sandbox.app import create_app


def serve(
    host: str = "127.0.0.1",
    port: int = 8100,
    *,
    lost_answer_delay: float | None = None,
    slow_seconds: float | None = None,
    state_file: str | None = None,
) -> None:
    """Serve the sandbox with uvicorn until interrupted (never beside a production ePay)."""
    if os.environ.get("EPAY_ENV", "").strip().lower() == "production":
        raise SystemExit("the sandbox is refused where EPAY_ENV=production")
    app = create_app(
        lost_answer_delay=lost_answer_delay, slow_seconds=slow_seconds, state_file=state_file
    )
    uvicorn.run(app, host=host, port=port)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument(
        "--lost-answer-delay",
        type=float,
        default=None,
        help="seconds the first 4000000000000259 answer is held (env SANDBOX_LOST_ANSWER_DELAY)",
    )
    parser.add_argument(
        "--slow-seconds",
        type=float,
        default=None,
        help="seconds a SLOW- department confirmation takes (env SANDBOX_SLOW_SECONDS)",
    )
    parser.add_argument(
        "--state-file",
        default=None,
        help="SQLite file keeping the sandbox's state across restarts; unset: in memory "
        "(env SANDBOX_STATE_FILE)",
    )
    args = parser.parse_args(argv)
    serve(
        args.host,
        args.port,
        lost_answer_delay=args.lost_answer_delay,
        slow_seconds=args.slow_seconds,
        state_file=args.state_file,
    )


if __name__ == "__main__":
    main()
