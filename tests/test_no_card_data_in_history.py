"""No sandbox card number, CVV or PIN reaches Temporal history (not even inside its
encrypted payloads), the database or the logs."""

from __future__ import annotations

import asyncio
import re

from tests.conftest import Stack, card, e_dirham, new_reference
from tests.support import decode_history_payloads, decoded_history_text

CARD_NUMBERS = [
    "4242424242424242",
    "4000000000000002",
    "4000000000000069",
    "4000000000000119",
    "4000000000003220",
    "4000000000000259",
    "7840000000000017",
    "7840000000000025",
    "7840000000000033",
]
CVV = "931"
PIN = "1234"


def _make_payments_with_every_card(stack: Stack) -> None:
    for number in CARD_NUMBERS:
        method = e_dirham(number, PIN) if number.startswith("784") else card(number, cvv=CVV)
        payment = stack.created(reference=new_reference())
        stack.authorise(payment, method)
        if number == "4000000000003220":
            stack.wait_for(payment["id"], {"requires_action"})
            stack.three_d_secure(payment, "123456")
        stack.wait_for(payment["id"])
    stack.pay(e_dirham("7840000000000017", "9999"))  # a wrong PIN goes through the issuer too


async def _all_histories(stack: Stack) -> list[str]:
    """Every history, its payloads decrypted: card data must be absent even there."""
    client = await stack.temporal_client()
    codec = client.data_converter.payload_codec
    assert codec is not None
    texts = []
    async for wf in client.list_workflows(f"TaskQueue = '{stack.env['EPAY_TASK_QUEUE']}'"):
        history = await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()
        plain = await decode_history_payloads(history.to_json(), codec)
        texts.append(decoded_history_text(plain))
    return texts


def _leaks(text: str) -> list[str]:
    found = [n for n in CARD_NUMBERS if n in text]
    found += [f"cvv {CVV}" for _ in re.findall(rf'"{CVV}"|cvv\W+{CVV}', text)]
    found += [f"pin {PIN}" for _ in re.findall(rf'"pin"\W+"?{PIN}', text)]
    return found


def test_no_card_data_in_any_workflow_history(stack: Stack) -> None:
    _make_payments_with_every_card(stack)
    histories = asyncio.run(_all_histories(stack))
    assert len(histories) >= len(CARD_NUMBERS)
    # the search can find what it looks for: the histories do carry the last four digits
    assert any("4242" in h for h in histories)
    leaks = [leak for h in histories for leak in _leaks(h)]
    assert leaks == []


def test_no_card_data_in_the_database_or_the_logs(stack: Stack) -> None:
    _make_payments_with_every_card(stack)
    dump = "\n".join(
        str(row)
        for table in ("payments", "payment_events", "card_vault", "fee_reservations", "receipts")
        for row in stack.fetch(f"SELECT * FROM {table}")
    )
    assert [n for n in CARD_NUMBERS if n in dump] == []
    for proc in stack.processes:
        log = proc.log()
        assert [n for n in CARD_NUMBERS if n in log] == [], proc.name
        assert _leaks(log) == [], proc.name
