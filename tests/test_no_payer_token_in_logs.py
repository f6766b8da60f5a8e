"""No payer token in any log line of the run.

The check runs after every other test of the session (its ``last`` marker, which
tests/conftest.py orders after the rest whatever the files' names), so that in a whole run
every other module's requests have been made (and logged) by the time it reads the logs of
the session's stack: every file its processes write their stdout and stderr to
(``stack.log_dir``). The tokens looked for are
those of every payment in the stack's database, which is every ``next_url`` token the API
can have handed out, to the tests or to anyone else; and no ``token=`` value may be in clear
in a line (the access log masks it: epay.telemetry.scrub).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import httpx
import pytest

from epay.crypto import payer_token
from epay.telemetry import masked
from tests.conftest import Stack, card, token_of

# A payer token is 43 characters of URL-safe base64 (an HMAC-SHA256, unpadded); a run of such
# characters is searched at every offset, so that a token inside a longer one is found too.
TOKEN_LENGTH = 43
BASE64_RUN = re.compile(rf"[A-Za-z0-9_-]{{{TOKEN_LENGTH},}}")
TOKEN_IN_CLEAR = re.compile(r"(?i)\btoken=(?!\*\*\*)[^&\s\"'>]+")


def leaks(log_dir: Path, tokens: Iterable[str]) -> list[str]:
    """``file:line`` of every line under ``log_dir`` that holds one of ``tokens``, or any
    ``token=`` value that is not masked. (Never the line itself: it holds a token.)"""
    wanted = set(tokens)
    found = []
    for path in sorted(log_dir.rglob("*.log")):
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            runs = (m.group() for m in BASE64_RUN.finditer(line))
            held = any(
                run[i : i + TOKEN_LENGTH] in wanted
                for run in runs
                for i in range(len(run) - TOKEN_LENGTH + 1)
            )
            if held or TOKEN_IN_CLEAR.search(line):
                found.append(f"{path.relative_to(log_dir)}:{number}")
    return found


TOKEN = payer_token(b"k" * 32, "pay_" + "0" * 32)


def test_leaks_finds_a_token_anywhere_in_a_line(tmp_path: Path) -> None:
    (tmp_path / "api-1.log").write_text(
        "started\n"
        f"payer sent {TOKEN}\n"
        f'{{"msg": "x", "token": "{TOKEN}"}}\n'
        f"glued:abc{TOKEN}def\n"
        "POST /v1/payments/pay_1/3ds?otp=1&token=not-one-of-ours 200\n"
        "POST /v1/payments/pay_1/3ds?token=*** 200\n"
        "vault_token=vt_abc and a token of another length: " + "A" * 42 + "\n"
    )
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "worker-2.log").write_text(f"X-Payment-Token: {TOKEN}\n")
    (tmp_path / "not-a-log.txt").write_text(TOKEN)
    assert leaks(tmp_path, [TOKEN]) == [
        "api-1.log:2",
        "api-1.log:3",
        "api-1.log:4",
        "api-1.log:5",
        "sub/worker-2.log:1",
    ]
    assert leaks(tmp_path, []) == ["api-1.log:5"]


def test_the_log_masking_masks_a_token(tmp_path: Path) -> None:
    line = f"POST /v1/payments/pay_1/authorise?token={TOKEN}&x=1 from /pay/pay_1?TOKEN={TOKEN}"
    (tmp_path / "api.log").write_text(masked(line) + "\n")
    assert TOKEN not in masked(line)
    assert leaks(tmp_path, [TOKEN]) == []
    (tmp_path / "api.log").write_text(line + "\n")
    assert leaks(tmp_path, [TOKEN]) == ["api.log:1"]


@pytest.mark.last
def test_no_payer_token_in_any_log_line_of_the_run(stack: Stack) -> None:
    # Tokens of this module's own, in the query string where a careless log would keep them,
    # so that the check has something to find when run alone.
    payment = stack.created()
    url = f"{stack.api_url}/v1/payments/{payment['id']}"
    for suffix, body in (("/authorise", card("4242424242424241")), ("/3ds", {"otp": "1"})):
        response = httpx.post(f"{url}{suffix}?token={token_of(payment)}", json=body, timeout=30)
        assert response.status_code in (409, 422), response.text
    httpx.get(f"{stack.api_url}/pay/{payment['id']}?token={token_of(payment)}", timeout=30)

    secret = stack.settings().token_secret
    ids = [row["id"] for row in stack.fetch("SELECT id FROM payments")]
    tokens = {payer_token(secret, payment_id) for payment_id in ids}
    assert token_of(payment) in tokens
    logs = list(stack.log_dir.rglob("*.log"))
    api_logs = "".join(p.read_text(errors="replace") for p in logs if p.name.startswith("api-"))
    assert "/v1/payments/{payment_id}/authorise" in api_logs  # the requests above were logged
    assert leaks(stack.log_dir, tokens) == [], f"payer tokens in the logs of {stack.log_dir}"
