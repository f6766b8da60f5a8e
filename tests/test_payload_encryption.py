"""Payer data, 3-D Secure codes, vault tokens and failure messages are ciphertext in Temporal;
operators decode them through the codec server, and keys rotate without stranding a payment.

The codec's own behaviour (round trip, plaintext passing through, unknown keys, settings)
is checked first, without a stack; the rest runs on the session's stack (docs/design.md,
"Encrypted payloads").
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.failure.v1 import Failure
from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.exceptions import ApplicationError

from commands.codec_server import SESSION_SECONDS, Operators
from epay.codec import ENCODING, KEY_ID, EncryptionCodec, PayloadKeyError, PayloadKeys
from epay.config import Settings
from epay.crypto import hash_operator_token, new_operator_token
from epay.temporal import data_converter
from tests.conftest import Stack, card, e_dirham, new_reference
from tests.support import (
    decode_history_payloads,
    decoded_history_text,
    free_port,
    http_ok,
    wait_until,
)

KEY_1, KEY_2 = os.urandom(32), os.urandom(32)
PAYER = {
    "name": "Fatima Al Mansouri",
    "email": "fatima.mansouri@example.ae",
    "phone": "+971 50 123 4567",
}
DESCRIPTION = "Health certificate for Qasr Al Sarab bakery"
METADATA = {"case_file": "CF-ZQX-88123"}
OTP = "123456"
CARD_DATA = ["4000000000000119", "4000000000003220", '"card_number"', '"cvv"', '"pin"']


def _b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def _json_payload(value: Any) -> Payload:
    payload: Payload = DataConverter.default.payload_converter.to_payloads([value])[0]
    return payload


# --- the codec ------------------------------------------------------------------------


def test_the_codec_round_trips_and_names_the_key() -> None:
    codec = EncryptionCodec(PayloadKeys.single("k1", KEY_1))
    original = [_json_payload({"payer": PAYER}), _json_payload("second")]
    encoded = asyncio.run(codec.encode(original))
    assert [p.metadata["encoding"] for p in encoded] == [ENCODING, ENCODING]
    assert [p.metadata[KEY_ID] for p in encoded] == [b"k1", b"k1"]
    assert all(PAYER["name"].encode() not in p.SerializeToString() for p in encoded)
    assert encoded[0].data != encoded[1].data  # a fresh nonce each time
    assert asyncio.run(codec.decode(encoded)) == original


def test_plain_payloads_pass_through_decode() -> None:
    codec = EncryptionCodec(PayloadKeys.single("k1", KEY_1))
    plain = [_json_payload({"recorded": "before the codec"}), Payload()]
    assert asyncio.run(codec.decode(plain)) == plain


def test_an_unknown_key_id_is_a_clear_error() -> None:
    encoded = asyncio.run(EncryptionCodec(PayloadKeys.single("k0", KEY_1)).encode([Payload()]))
    with pytest.raises(PayloadKeyError, match="key 'k0', which is not among EPAY_PAYLOAD_KEYS"):
        asyncio.run(EncryptionCodec(PayloadKeys.single("k1", KEY_1)).decode(encoded))
    with pytest.raises(PayloadKeyError, match="does not decrypt"):
        asyncio.run(EncryptionCodec(PayloadKeys.single("k0", KEY_2)).decode(encoded))


def test_after_rotation_the_new_key_encrypts_and_the_old_one_still_decrypts() -> None:
    old = asyncio.run(EncryptionCodec(PayloadKeys.single("k1", KEY_1)).encode([_json_payload(1)]))
    rotated = EncryptionCodec(PayloadKeys.parse(f"k1:{_b64(KEY_1)},k2:{_b64(KEY_2)}"))
    assert asyncio.run(rotated.decode(old)) == [_json_payload(1)]
    new = asyncio.run(rotated.encode([_json_payload(2)]))
    assert new[0].metadata[KEY_ID] == b"k2"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"EPAY_PAYLOAD_KEYS": "k1"}, "EPAY_PAYLOAD_KEYS: entry 1 is not of the form"),
        ({"EPAY_PAYLOAD_KEYS": "k1:not base64!"}, "EPAY_PAYLOAD_KEYS: key 'k1' is not base64"),
        ({"EPAY_PAYLOAD_KEYS": f"k1:{_b64(b'short')}"}, "EPAY_PAYLOAD_KEYS: key 'k1' must be 32"),
        ({"EPAY_PAYLOAD_KEYS": f"k1:{_b64(KEY_1)},k1:{_b64(KEY_2)}"}, "listed twice"),
        (
            {"EPAY_PAYLOAD_KEYS": f"k1:{_b64(KEY_1)}", "EPAY_PAYLOAD_ACTIVE_KEY": "k2"},
            "EPAY_PAYLOAD_ACTIVE_KEY: is not among the ids of EPAY_PAYLOAD_KEYS",
        ),
        (
            {"EPAY_OPERATOR_TOKENS": "alice:abc"},
            r"EPAY_OPERATOR_TOKENS: entry 1 \(operator 'alice'\) is not a SHA-256",
        ),
    ],
)
def test_bad_key_settings_name_the_variable(
    environ: dict[str, str], message: str, tmp_path: Any
) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.from_env_mapping({"EPAY_STATE_DIR": str(tmp_path), **environ})


def test_the_active_key_defaults_to_the_last_listed_and_the_local_stack_gets_its_own(
    tmp_path: Any,
) -> None:
    both = f"k1:{_b64(KEY_1)},k2:{_b64(KEY_2)}"
    assert Settings.from_env_mapping({"EPAY_PAYLOAD_KEYS": both}).payload_keys.active == "k2"
    local = Settings.from_env_mapping({"EPAY_STATE_DIR": str(tmp_path)}).payload_keys
    again = Settings.from_env_mapping({"EPAY_STATE_DIR": str(tmp_path)}).payload_keys
    assert local.active == "local"
    assert local == again
    assert (tmp_path / "secrets.json").stat().st_mode & 0o077 == 0


def test_failure_messages_and_stack_traces_are_encrypted_too() -> None:
    converter = data_converter(PayloadKeys.single("k1", KEY_1))
    failure = Failure()
    asyncio.run(
        converter.encode_failure(ApplicationError("department DM answered 503 for Fatima"), failure)
    )
    assert failure.message == "Encoded failure"
    assert failure.encoded_attributes.metadata["encoding"] == ENCODING
    assert b"Fatima" not in failure.SerializeToString()
    decoded = asyncio.run(converter.decode_failure(failure))
    assert str(decoded) == "department DM answered 503 for Fatima"


def test_an_operator_session_expires_and_ends_with_its_token(tmp_path: Any) -> None:
    token = new_operator_token()

    def operators(entry: str) -> Operators:
        env = {"EPAY_STATE_DIR": str(tmp_path), "EPAY_OPERATOR_TOKENS": entry}
        return Operators(Settings.from_env_mapping(env))

    alice = operators(f"alice:{hash_operator_token(token).hex()}")
    assert alice.by_token(token) == "alice"
    assert alice.by_token(token + "x") is None
    session = alice.new_session("alice", now=1000)
    assert alice.by_session(session, now=1000 + SESSION_SECONDS - 1) == "alice"
    assert alice.by_session(session, now=1000 + SESSION_SECONDS + 1) is None
    subject, _ = session.split(".")
    assert alice.by_session(f"{subject}.{'A' * 43}", now=1000) is None
    assert alice.by_session("not a session", now=1000) is None
    replaced = operators(f"alice:{hash_operator_token(new_operator_token()).hex()}")
    assert replaced.by_session(session, now=1000) is None


# --- on the stack -----------------------------------------------------------------------


def _raw_history(stack: Stack, workflow_id: str) -> str:
    """The history as Temporal stores it, fetched by a client without the codec."""

    async def fetch() -> str:
        client = await Client.connect(stack.temporal_address)
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        return history.to_json()

    text: str = asyncio.run(fetch())
    return text


def _decrypted(raw_history: str, keys: PayloadKeys) -> str:
    """The same history JSON with its payloads decrypted."""
    plain: str = asyncio.run(decode_history_payloads(raw_history, EncryptionCodec(keys)))
    return plain


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _failure_messages(history_json: str) -> list[str]:
    """Every failure's message in a decrypted history (encoded attributes, decoded)."""
    return [
        json.loads(base64.b64decode(node["encodedAttributes"]["data"]))["message"]
        for node in _walk(json.loads(history_json))
        if "encodedAttributes" in node
    ]


def _key_ids(history_json: str) -> set[str]:
    return {
        base64.b64decode(node["metadata"][KEY_ID]).decode()
        for node in _walk(json.loads(history_json))
        if KEY_ID in (node.get("metadata") or {})
    }


def _created_with_payer(stack: Stack, reference: str) -> dict[str, Any]:
    with stack.client() as c:
        response = c.post(
            "/v1/payments",
            json={
                "service_code": "HEALTH_CERT",
                "reference": reference,
                "description": DESCRIPTION,
                "payer": PAYER,
                "metadata": METADATA,
            },
        )
    assert response.status_code == 201, response.text
    payment: dict[str, Any] = response.json()
    return payment


@pytest.fixture(scope="module")
def paid(stack: Stack) -> dict[str, dict[str, Any]]:
    """Two succeeded payments: one carrying payer data, whose acquirer and department fail
    before they answer (failures in its history), and a 3-D Secure card payment."""
    with_payer = _created_with_payer(stack, new_reference("FLAKY-"))
    assert stack.authorise(with_payer, card("4000000000000119")).status_code in (200, 202)
    challenged = stack.created()
    assert stack.authorise(challenged, card("4000000000003220")).status_code in (200, 202)
    stack.wait_for(challenged["id"], {"requires_action"})
    assert stack.three_d_secure(challenged, OTP).status_code in (200, 202)
    for payment in (with_payer, challenged):
        assert stack.wait_for(payment["id"])["state"] == "succeeded"
    return {"with_payer": with_payer, "challenged": challenged}


def test_payer_data_otp_vault_token_and_failures_are_ciphertext_in_history(
    stack: Stack, paid: dict[str, dict[str, Any]]
) -> None:
    keys = stack.settings().payload_keys
    raw = {name: _raw_history(stack, p["workflow_id"]) for name, p in paid.items()}
    plain = {name: _decrypted(history, keys) for name, history in raw.items()}
    raw_text = "\n".join(decoded_history_text(h) for h in raw.values())
    plain_text = "\n".join(decoded_history_text(h) for h in plain.values())

    private = [*PAYER.values(), DESCRIPTION, *METADATA.values(), f'"{OTP}"', '"vt_']
    assert [s for s in private if s not in plain_text] == []  # the search finds them...
    assert [s for s in private if s in raw_text] == []  # ...where Temporal keeps none
    failures = _failure_messages(plain["with_payer"])
    assert any("answered 503" in m for m in failures), failures
    assert [m for m in failures if m in raw_text] == []
    assert "Encoded failure" in raw_text
    assert all(_key_ids(h) == {"k1"} for h in raw.values())
    # Card data stays out of history altogether, encrypted or not.
    assert [c for c in CARD_DATA if c in raw_text or c in plain_text] == []


def _started_input(raw_history: str) -> dict[str, Any]:
    event = json.loads(raw_history)["events"][0]
    payloads: dict[str, Any] = event["workflowExecutionStartedEventAttributes"]["input"]
    return payloads


def test_the_codec_server_decodes_for_operators_only(
    stack: Stack, paid: dict[str, dict[str, Any]]
) -> None:
    codec_url = stack.codec_server()
    encrypted = _started_input(_raw_history(stack, paid["with_payer"]["workflow_id"]))
    operator = {"Authorization": f"Bearer {stack.operator_token}"}
    with httpx.Client(base_url=codec_url, timeout=10) as http:
        answer = http.post("/decode", json=encrypted, headers=operator | {"X-Namespace": "default"})
        assert answer.status_code == 200, answer.text
        decoded = json_format.Parse(answer.content, Payloads())
        request = json.loads(decoded.payloads[0].data)
        assert request["payer"] == PAYER
        assert request["metadata"] == METADATA
        assert http.post("/default/decode", json=encrypted, headers=operator).status_code == 200

        assert http.post("/decode", json=encrypted).status_code == 401
        wrong = {"Authorization": "Bearer eop_not-a-real-token"}
        assert http.post("/decode", json=encrypted, headers=wrong).status_code == 403
        assert http.post("/encode", json=encrypted, headers=wrong).status_code == 403

        # The UI's way: a session cookie from /login, sent with cross-origin credentials.
        assert http.post("/login", data={"token": "eop_wrong"}).status_code == 403
        assert http.post("/decode", json=encrypted).status_code == 401  # no cookie was set
        assert http.post("/login", data={"token": stack.operator_token}).status_code == 200
        assert http.post("/decode", json=encrypted).status_code == 200
        http.cookies.clear()
        subject = base64.urlsafe_b64encode(b"test-operator|9999999999").decode().rstrip("=")
        forged = {"Cookie": f"epay_operator_session={subject}.forged-signature"}
        assert http.post("/decode", json=encrypted, headers=forged).status_code == 403

        reencoded = http.post("/encode", json=json_format.MessageToDict(decoded), headers=operator)
        assert reencoded.status_code == 200
        again = http.post("/decode", content=reencoded.content, headers=operator)
        assert json_format.Parse(again.content, Payloads()) == decoded


def test_the_codec_server_allows_the_temporal_ui_origin_only(stack: Stack) -> None:
    codec_url = stack.codec_server()
    ui_origin = stack.settings().temporal_ui_origins[0]
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-namespace",
    }
    with httpx.Client(base_url=codec_url, timeout=10) as http:
        allowed = http.options("/decode", headers=preflight | {"Origin": ui_origin})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == ui_origin
        assert allowed.headers["access-control-allow-credentials"] == "true"
        refused = http.options("/decode", headers=preflight | {"Origin": "http://evil.example"})
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers
        # Even a call that skips the preflight is refused, with a valid credential.
        operator = {"Authorization": f"Bearer {stack.operator_token}"}
        foreign = http.post(
            "/decode",
            json={"payloads": []},
            headers=operator | {"Origin": "http://evil.example"},
        )
        assert foreign.status_code == 403
        from_ui = http.post(
            "/decode", json={"payloads": []}, headers=operator | {"Origin": ui_origin}
        )
        assert from_ui.status_code == 200
        assert from_ui.headers["access-control-allow-origin"] == ui_origin


def _sibling(stack: Stack, **env: str) -> Stack:
    """A second API and worker on the session's Temporal, database and sandbox, with a task
    queue and API port of their own and ``env`` on top."""
    sibling = Stack(stack.env | env, stack.dsn, stack.log_dir)
    sibling.keys = stack.keys
    return sibling


def _start(sibling: Stack) -> None:
    sibling.start_worker()
    api = sibling.start_api()
    wait_until(http_ok(f"{sibling.api_url}/readyz"), timeout=60, what="API", proc=api)


def _stop(sibling: Stack) -> None:
    for proc in reversed(sibling.processes):
        proc.stop()
    sibling.processes.clear()


def test_a_payment_started_under_key_1_finishes_after_key_2_becomes_active(stack: Stack) -> None:
    """Keys ``r1`` and ``r2`` (not the session's ``k1``): an API and a worker knowing only r1
    start a payment; then both restart with ``r1,r2``, r2 active, and the payment finishes."""
    common = {
        "EPAY_TASK_QUEUE": f"rotation-{os.urandom(3).hex()}",
        "EPAY_PUBLIC_URL": f"http://127.0.0.1:{free_port()}",
    }
    before = _sibling(stack, EPAY_PAYLOAD_KEYS=f"r1:{_b64(KEY_1)}", **common)
    after = _sibling(
        stack,
        EPAY_PAYLOAD_KEYS=f"r1:{_b64(KEY_1)},r2:{_b64(KEY_2)}",
        EPAY_PAYLOAD_ACTIVE_KEY="r2",
        **common,
    )
    try:
        _start(before)
        payment = _created_with_payer(before, new_reference())  # its input sealed with r1
        _stop(before)
        _start(after)
        assert after.authorise(payment, e_dirham("7840000000000017")).status_code in (200, 202)
        assert after.wait_for(payment["id"])["state"] == "succeeded"
    finally:
        _stop(before)
        _stop(after)

    raw = _raw_history(stack, payment["workflow_id"])
    assert _key_ids(json.dumps(json.loads(raw)["events"][0])) == {"r1"}
    assert _key_ids(raw) == {"r1", "r2"}
    plain = _decrypted(raw, after.settings().payload_keys)
    assert _key_ids(plain) == set()
    assert PAYER["name"] in decoded_history_text(plain)
    assert PAYER["name"] not in decoded_history_text(raw)
    with pytest.raises(PayloadKeyError, match="'r1', which is not among EPAY_PAYLOAD_KEYS"):
        _decrypted(raw, PayloadKeys.single("r2", KEY_2))
