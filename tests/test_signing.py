"""Whatever ``ePay-Signature`` header a caller sends, the receiver refuses it cleanly.

``domain.signing.verify`` answers a reason (``signature_malformed`` and the rest) for every
header, never an exception: the sandbox departments (sandbox/departments.py,
sandbox/webhooks.py) turn the reason into a 401, and an exception would be a 500 that tells a
prober where the parser gave up. The well-formed cases stay in tests/test_signed_calls.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from domain import signing
from sandbox.app import create_app

NOW = 1_764_633_600
TARGET = "/departments/DM/confirmations"
BODY = b'{"payment_id":"pay_1"}'
SECRET = "whsec_test"
GOOD = signing.sign(SECRET, NOW, "POST", TARGET, BODY)


def _verify(header: str) -> str | None:
    return signing.verify(header, [SECRET], "POST", TARGET, BODY, NOW)


ARABIC_NOW = str(NOW).translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))

MALFORMED = [
    # Today each of these raises (ValueError from int(), TypeError from compare_digest).
    pytest.param(f"t=\u00b2,v1={GOOD}", id="superscript-digit"),
    pytest.param(f"t=1\u00b9\u00b2,v1={GOOD}", id="superscript-digits"),
    pytest.param(f"t={'9' * 5000},v1={GOOD}", id="timestamp-past-int-digit-limit"),
    pytest.param(f"t={NOW},v1={'é' * 64}", id="non-ascii-signature"),
    pytest.param(f"t={NOW},v1=\u00ff{GOOD[1:]}", id="latin-1-signature"),
    # Today each of these is taken for a good signature.
    pytest.param(f"t={ARABIC_NOW},v1={GOOD}", id="arabic-indic-timestamp"),
    pytest.param(f"t={NOW - 3600},t={NOW},v1={GOOD}", id="duplicate-timestamp"),
    pytest.param(f"t={NOW},v1={GOOD}," + "x=1," * 2000 + "y=2", id="very-long-header"),
    pytest.param(
        f"t={NOW}," + f"v1={'0' * 64}," * 60 + f"v1={GOOD}", id="signatures-past-the-length"
    ),
    pytest.param(f"t={NOW},junk,v1={GOOD}", id="part-without-equals"),
    pytest.param(f"t={NOW},=1,v1={GOOD}", id="part-without-name"),
    pytest.param(f"t={NOW},v1={GOOD},", id="trailing-comma"),
    pytest.param(f"t={'0' * 12}{NOW},v1={GOOD}", id="timestamp-past-twelve-digits"),
    # Today these are "signature_invalid": they are not signatures at all.
    pytest.param(f"t={NOW},v1=zz{GOOD[2:]}", id="non-hex-signature"),
    pytest.param(f"t={NOW},v1={GOOD.upper()}", id="upper-case-hex"),
    pytest.param(f"t={NOW},v1={GOOD[:-1]}", id="short-signature"),
    pytest.param(f"t={NOW},v1={GOOD}0", id="long-signature"),
]


@pytest.mark.parametrize("header", MALFORMED)
def test_a_malformed_header_is_refused_as_malformed_without_raising(header: str) -> None:
    assert signing.parse_header(header) is None
    assert _verify(header) == "signature_malformed"


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("t=", id="empty-timestamp"),
        pytest.param(f"t=,v1={GOOD}", id="empty-timestamp-with-signature"),
        pytest.param(f"v1={GOOD}", id="no-timestamp"),
        pytest.param(f"t={NOW}", id="no-signature"),
        pytest.param(f"t={NOW},v1=", id="empty-signature"),
        pytest.param(f"t=-{NOW},v1={GOOD}", id="negative-timestamp"),
        pytest.param(",", id="comma"),
        pytest.param(" ", id="space"),
    ],
)
def test_headers_refused_as_malformed_before_stay_so(header: str) -> None:
    assert _verify(header) == "signature_malformed"


def test_a_well_formed_header_still_verifies_and_ignores_other_schemes() -> None:
    assert _verify(f"t={NOW},v1={GOOD}") is None
    many = signing.signature_header(
        [f"s{n}" for n in range(40)] + [SECRET], NOW, "POST", TARGET, BODY
    )
    assert _verify(many) is None  # a department holding many active secrets
    assert _verify(f" t={NOW} , v1={GOOD} ") is None
    assert _verify(f"t={NOW},v0=whatever,v1={'0' * 64},v1={GOOD}") is None
    assert signing.parse_header(f"t={NOW},v1={GOOD}") == signing.Signed(NOW, (GOOD,))
    assert _verify(f"t={NOW},v1={'0' * 64}") == "signature_invalid"
    assert _verify(f"t={NOW - 3600},v1={GOOD}") == "signature_expired"
    assert _verify(f"t={'9' * 12},v1={GOOD}") == "signature_expired"


REASONS = ("signature_malformed", "signature_expired", "signature_invalid")


def test_no_header_of_odd_characters_raises() -> None:
    """Every character a header can carry (Starlette decodes header bytes as Latin-1), and
    a sample beyond, in each place of the header."""
    for code in [*range(0x100), 0x0660, 0x0664, 0x2070, 0x2079, 0xFF14, 0xD800, 0x10FFFF]:
        ch = chr(code)
        for header in (
            f"t={ch}",
            f"t={NOW}{ch},v1={GOOD}",
            f"t={NOW},v1={GOOD[:-1]}{ch}",
            f"t={NOW},v1{ch}={GOOD}",
            f"{ch}t={NOW},v1={GOOD}",
        ):
            assert _verify(header) in (None, *REASONS), header


# --- through the sandbox department's endpoints ----------------------------------------------


def _post(path: str, header: bytes, body: bytes) -> httpx.Response:
    async def call() -> httpx.Response:
        app = create_app(lost_answer_delay=0, slow_seconds=0)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
            put = await client.put(
                "/departments/DM/_admin/signing-secrets", json={"secrets": [SECRET]}
            )
            assert put.status_code == 200, put.text
            return await client.post(
                path,
                content=body,
                headers=[
                    (b"content-type", b"application/json"),
                    (b"idempotency-key", b"pay_1"),
                    (signing.HEADER.encode(), header),
                ],
            )

    return asyncio.run(call())


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(b"t=\xb2,v1=" + GOOD.encode(), id="superscript-two"),
        pytest.param(b"t=" + b"9" * 5000 + b",v1=" + GOOD.encode(), id="huge-timestamp"),
        pytest.param(  # timely, so that it reaches the comparison
            b"t=%d,v1=" % int(time.time()) + b"\xe9" * 64, id="latin-1-signature"
        ),
    ],
)
@pytest.mark.parametrize(
    "path", ["/departments/DM/confirmations", "/departments/DM/webhooks"], ids=["call", "event"]
)
def test_the_sandbox_department_answers_401_to_a_malformed_header(path: str, header: bytes) -> None:
    body = json.dumps(
        {"payment_id": "pay_1", "reference": "INV-1", "service_code": "X", "amount": 1}
    )
    response = _post(path, header, body.encode())
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "signature_malformed"


def _departments_sample() -> Any:
    """``is_from_epay`` as docs/departments.md gives it to departments to copy."""
    text = (Path(__file__).parent.parent / "docs" / "departments.md").read_text()
    code = text.split("## Verifying, in Python", 1)[1].split("```python\n", 1)[1]
    namespace: dict[str, Any] = {}
    exec(code.split("```", 1)[0], namespace)  # the documentation's own code
    return namespace["is_from_epay"]


def test_the_departments_sample_verifies_what_epay_signs_and_refuses_what_epay_refuses() -> None:
    is_from_epay = _departments_sample()
    now = int(time.time())
    body = b'{"payment_id":"pay_1"}'
    target = "/departments/DM/confirmations"
    good = signing.signature_header(["whsec_a", "whsec_b"], now, "POST", target, body)
    assert is_from_epay(good, ["whsec_b"], "POST", target, body)
    assert not is_from_epay(good, ["whsec_c"], "POST", target, body)
    signature = signing.sign("whsec_a", now, "POST", target, body)
    for header in (f"t=²,v1={signature}", f"t={now},t={now},v1={signature}", f"t={now},v1=zz"):
        assert signing.parse_header(header) is None, header
        assert not is_from_epay(header, ["whsec_a"], "POST", target, body), header
