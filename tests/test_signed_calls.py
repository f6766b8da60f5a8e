"""Every request ePay sends to a department is signed, and the sandbox's departments refuse
one that is not: unsigned, forged, tampered with, too old, or signed with a retired secret.
The signing itself (domain/signing.py) is pure logic and tested on its own first."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid

import httpx
import pytest

from domain import signing
from epay.db import create_pool
from store import department_secrets
from tests.conftest import Stack, card, new_reference

NOW = 1_764_633_600
BODY = b'{"payment_id":"pay_1","amount":24000}'
TARGET = "/departments/DM/confirmations"


def _header(*secrets: str, at: int = NOW, method: str = "POST", body: bytes = BODY) -> str:
    return signing.signature_header(secrets, at, method, TARGET, body)


def test_a_signed_request_verifies_under_its_secret() -> None:
    assert signing.verify(_header("s1"), ["s1"], "POST", TARGET, BODY, NOW) is None


@pytest.mark.parametrize(
    ("header", "secrets", "method", "target", "body", "now", "why"),
    [
        (None, ["s1"], "POST", TARGET, BODY, NOW, "signature_missing"),
        ("", ["s1"], "POST", TARGET, BODY, NOW, "signature_missing"),
        ("v1=abc", ["s1"], "POST", TARGET, BODY, NOW, "signature_malformed"),
        (f"t={NOW}", ["s1"], "POST", TARGET, BODY, NOW, "signature_malformed"),
        ("t=x,v1=abc", ["s1"], "POST", TARGET, BODY, NOW, "signature_malformed"),
        (_header("s2"), ["s1"], "POST", TARGET, BODY, NOW, "signature_invalid"),
        (_header("s1"), ["s1"], "DELETE", TARGET, BODY, NOW, "signature_invalid"),
        (_header("s1"), ["s1"], "POST", TARGET + "?x=1", BODY, NOW, "signature_invalid"),
        (_header("s1"), ["s1"], "POST", TARGET, BODY + b" ", NOW, "signature_invalid"),
        (_header("s1"), [], "POST", TARGET, BODY, NOW, "signature_invalid"),
        (_header("s1"), ["s1"], "POST", TARGET, BODY, NOW + 301, "signature_expired"),
        (_header("s1"), ["s1"], "POST", TARGET, BODY, NOW - 301, "signature_expired"),
    ],
)
def test_what_is_not_epays_is_refused_with_its_reason(
    header: str | None,
    secrets: list[str],
    method: str,
    target: str,
    body: bytes,
    now: int,
    why: str,
) -> None:
    assert signing.verify(header, secrets, method, target, body, now) == why


def test_during_a_rotation_either_secret_verifies() -> None:
    both = _header("new", "old")
    assert signing.verify(both, ["old"], "POST", TARGET, BODY, NOW) is None
    assert signing.verify(both, ["new"], "POST", TARGET, BODY, NOW) is None
    assert signing.verify(both, ["other"], "POST", TARGET, BODY, NOW) == "signature_invalid"


# --- against the stack's sandbox departments -----------------------------------------------


def _secrets(stack: Stack, department: str) -> list[str]:
    async def read() -> list[str]:
        pool = await create_pool(stack.env["DATABASE_URL"], max_size=1)
        try:
            held = await department_secrets.active(pool, stack.settings().token_secret, department)
            return [s.secret for s in held]
        finally:
            await pool.close()

    return asyncio.run(read())


def _confirm(stack: Stack, header: str | None, body: bytes | None = None) -> httpx.Response:
    payment_id = f"pay_{uuid.uuid4().hex}"
    body = (
        body
        or json.dumps(
            {
                "payment_id": payment_id,
                "reference": new_reference(),
                "service_code": "X",
                "amount": 1,
            }
        ).encode()
    )
    headers = {"Content-Type": "application/json", "Idempotency-Key": payment_id}
    if header is not None:
        headers[signing.HEADER] = header
    return httpx.post(f"{stack.sandbox_url}{TARGET}", content=body, headers=headers, timeout=10)


def test_the_sandbox_department_refuses_unsigned_forged_and_old_calls(stack: Stack) -> None:
    real = _secrets(stack, "DM")
    assert real, "epay seed gives every department a signing secret"
    body = json.dumps(
        {
            "payment_id": f"pay_{uuid.uuid4().hex}",
            "reference": new_reference(),
            "service_code": "X",
            "amount": 1,
        }
    ).encode()
    now = int(time.time())
    refused = {
        "unsigned": _confirm(stack, None, body),
        "forged": _confirm(stack, signing.signature_header(["guess"], now, "POST", TARGET, body)),
        "old": _confirm(
            stack, signing.signature_header(real, now - 600, "POST", TARGET, body), body
        ),
        "tampered": _confirm(
            stack,
            signing.signature_header(real, now, "POST", TARGET, body),
            body.replace(b'"amount": 1', b'"amount": 2'),
        ),
    }
    codes = {name: (r.status_code, r.json()["error"]["code"]) for name, r in refused.items()}
    assert codes == {
        "unsigned": (401, "signature_missing"),
        "forged": (401, "signature_invalid"),
        "old": (401, "signature_expired"),
        "tampered": (401, "signature_invalid"),
    }
    signed = _confirm(stack, signing.signature_header(real, now, "POST", TARGET, body), body)
    assert signed.status_code == 201, signed.text


def test_a_rotation_overlaps_and_a_retired_secret_no_longer_signs(stack: Stack) -> None:
    """RTA's secret is rotated: while both are active a department that already switched to
    the new one takes ePay's calls; once the old is retired, a department still on it
    refuses them (the payment cannot be confirmed), and one on the new takes them."""
    department = "RTA"
    [old] = _secrets(stack, department)
    created = stack.epay("departments", "create-signing-secret", department)
    new = next(w for w in created.split() if w.startswith(signing.SECRET_PREFIX))
    assert new.startswith(signing.SECRET_PREFIX)
    assert new != old

    def hand_sandbox(*secrets: str) -> None:
        httpx.put(
            f"{stack.sandbox_url}/departments/{department}/_admin/signing-secrets",
            json={"secrets": list(secrets)},
            timeout=10,
        ).raise_for_status()

    def pay() -> dict[str, object]:
        return stack.pay(
            card("4242424242424242"), service_code="VEHICLE_RENEWAL", department=department
        )

    try:
        hand_sandbox(new)  # the department switched as soon as it was given the new one
        assert pay()["state"] == "succeeded"
        listed = stack.epay("departments", "signing-secrets", department)
        ids = re.findall(r"^(\d+)  created", listed, re.MULTILINE)
        assert len(ids) == 2
        old_id = ids[-1]  # newest first: the old one is last
        stack.epay("departments", "retire-signing-secret", department, old_id)
        assert _secrets(stack, department) == [new]
        hand_sandbox(old)  # a department that never switched
        stuck = pay()
        assert stuck["state"] == "failed", stuck
        hand_sandbox(new)
        assert pay()["state"] == "succeeded"
    finally:
        hand_sandbox(*_secrets(stack, department))
