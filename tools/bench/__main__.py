"""The floor's worker process: ``python -m tools.bench``, started by ``run_floor``."""

from __future__ import annotations

import asyncio
import os

from tools.bench.floor import serve_floor

if __name__ == "__main__":  # the floor's worker, started by run_floor()
    asyncio.run(serve_floor())
    os._exit(0)  # at once: the SDK's threads may abort a normal teardown (sdk-python#300)
