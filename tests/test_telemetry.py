"""What SREs see: every process's Prometheus endpoint (the SDK's metrics and ePay's), one
trace per payment from the department's POST through the workflow and its activities to the
partners' HTTP calls and the SQL statements, JSON log lines that name the payment, and not
one card number, PIN, CVV, OTP, payer token or piece of the payer's personal data (name,
email, phone, cardholder name) in a span or a log line.

The stack's processes export their spans to the session's OTLP receiver
(``tests/otlp_receiver.py``); the in-process checks use the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import secrets
import string
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.common import MetricMeter

from domain.cards import with_check_digit
from epay import telemetry
from sandbox import acquirer, issuer
from tests.conftest import Stack, card, e_dirham, new_reference, token_of
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.support import Process, wait_until
from tests.support.sweeps import quiet, sweep, swept, terminate

WORKER_SERVICE = telemetry.worker_service("all")
SANDBOX_CARDS = [v for k, v in vars(acquirer).items() if k.startswith("CARD_")] + [
    number for number, *_ in issuer.SEED_CARDS
]

# --- reading Prometheus -------------------------------------------------------------------

SAMPLE = re.compile(r"^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    found = []
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and not line.startswith("#"):
            labels = dict(LABEL.findall(match.group(2) or ""))
            found.append((match.group(1), labels, float(match.group(3))))
    return found


def total(text: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(
        value
        for sample, have, value in samples(text)
        if sample == name and labels.items() <= have.items()
    )


# --- the payments of this module ----------------------------------------------------------


@dataclass
class Paid:
    """Three payments and every secret they used: an e-Dirham payment with a card and PIN
    of its own, a 3-D Secure card payment (CVV of its own, OTP through ``?token=``), and a
    card payment the department rejects (so that it compensates). Each names the same made-up
    payer, and both card forms the same made-up cardholder: ``personal`` holds the parts
    that appear nowhere else in the run."""

    e_dirham: dict[str, Any]
    three_ds: dict[str, Any]
    rejected: dict[str, Any]
    card_number: str
    pin: str
    cvv: str
    tokens: list[str]
    personal: list[str]
    api_before: str
    worker_before: str


def api_process(stack: Stack) -> Process:
    return next(p for p in stack.processes if p.name == "api" and p.alive())


def worker_process(stack: Stack) -> Process:
    return next(p for p in stack.workers if p.alive())


def made_up_word() -> str:
    """Ten random letters: a name part no other text of the run holds."""
    return "".join(secrets.choice(string.ascii_lowercase) for _ in range(10)).capitalize()


def created_for(stack: Stack, payer: dict[str, str], **body: str) -> dict[str, Any]:
    """``POST /v1/payments`` for a health certificate, naming ``payer``."""
    with stack.client() as c:
        response = c.post(
            "/v1/payments",
            json={"service_code": "HEALTH_CERT", "reference": new_reference(), **body}
            | {"payer": payer},
        )
    assert response.status_code == 201, response.text
    payment: dict[str, Any] = response.json()
    return payment


@pytest.fixture(scope="module")
def paid(stack: Stack) -> Paid:
    api_before = stack.metrics(api_process(stack))
    worker_before = stack.metrics(worker_process(stack))
    pin = str(secrets.randbelow(900_000) + 100_000)
    # A three-digit CVV (four are American Express's alone) that no HTTP status of the run
    # shares, nor the other tests' 737.
    cvv = str(secrets.randbelow(200) + 800)
    number = with_check_digit("7849" + "".join(str(secrets.randbelow(10)) for _ in range(11)))
    created = httpx.post(
        f"{stack.sandbox_url}/issuer/_admin/cards",
        json={"card_number": number, "pin": pin, "balance": 1_000_000},
        timeout=10,
    )
    assert created.status_code == 200, created.text
    surname, mailbox, holder_surname = made_up_word(), made_up_word().lower(), made_up_word()
    phone = "9715" + "".join(str(secrets.randbelow(10)) for _ in range(8))
    payer = {
        "name": f"Ysolde {surname}",
        "email": f"ysolde.{mailbox}@example.org",
        "phone": f"+{phone}",
    }
    holder = f"Tamsin {holder_surname}"

    def card_of(number: str) -> dict[str, Any]:
        return card(number, cvv=cvv) | {"cardholder_name": holder}

    by_e_dirham = created_for(stack, payer)
    assert stack.authorise(by_e_dirham, e_dirham(number, pin)).status_code in (200, 202)
    three_ds = created_for(stack, payer)
    assert stack.authorise(three_ds, card_of(acquirer.CARD_3DS)).status_code in (200, 202)
    stack.wait_for(three_ds["id"], {"requires_action"})
    assert stack.three_d_secure(three_ds, acquirer.OTP_OK).status_code in (200, 202)
    rejected = created_for(stack, payer, reference=new_reference("REJECT-"))
    assert stack.authorise(rejected, card_of(acquirer.CARD_APPROVED)).status_code in (200, 202)
    assert stack.wait_for(by_e_dirham["id"])["state"] == "succeeded"
    assert stack.wait_for(three_ds["id"])["state"] == "succeeded"
    assert stack.wait_for(rejected["id"])["failure"]["code"] == "department_rejected"
    return Paid(
        e_dirham=by_e_dirham,
        three_ds=three_ds,
        rejected=rejected,
        card_number=number,
        pin=pin,
        cvv=cvv,
        tokens=[token_of(p) for p in (by_e_dirham, three_ds, rejected)],
        personal=[*payer.values(), holder, surname, mailbox, phone, holder_surname],
        api_before=api_before,
        worker_before=worker_before,
    )


def receiver(stack: Stack) -> OtlpReceiver:
    assert stack.traces is not None, "the session stack exports its spans to a receiver"
    return stack.traces


def api_span(stack: Stack, payment_id: str, name: str) -> ReceivedSpan:
    """The API's server span ``name`` of a request about ``payment_id``, once exported."""
    found: list[ReceivedSpan] = []

    def exported() -> bool:
        found[:] = [
            s
            for s in receiver(stack).received()
            if s.service == telemetry.SERVICE_API
            and s.name == name
            and s.attributes.get("epay.payment_id") == payment_id
        ]
        return bool(found)

    wait_until(exported, timeout=30, what=f"the API's span {name} for {payment_id}")
    return found[0]


# --- metrics ------------------------------------------------------------------------------


def test_the_api_serves_the_sdks_metrics_and_its_requests(stack: Stack, paid: Paid) -> None:
    after = stack.metrics(api_process(stack))
    assert any(name.startswith("temporal_") for name, _, _ in samples(after)), after[:2000]
    created = {"route": "POST /v1/payments", "status": "201"}
    assert total(after, "epay_http_requests_total", **created) >= (
        total(paid.api_before, "epay_http_requests_total", **created) + 3
    )
    assert total(after, "epay_http_request_seconds_count", route="POST /v1/payments") >= 3


def test_the_worker_serves_the_sdks_metrics_and_the_payments(stack: Stack, paid: Paid) -> None:
    after = stack.metrics(worker_process(stack))
    assert total(after, "temporal_workflow_completed_total") > 0, after[:2000]
    assert total(after, "temporal_activity_execution_latency_count") > 0

    def grew(name: str, by: float = 1, **labels: str) -> bool:
        return total(after, name, **labels) >= total(paid.worker_before, name, **labels) + by

    assert grew("epay_payments_started_total", 3, department="DM")
    assert grew("epay_payments_ended_total", 2, state="succeeded", failure_code="none")
    assert grew("epay_payments_ended_total", state="succeeded", method="e_dirham")
    assert grew(
        "epay_payments_ended_total",
        state="failed",
        failure_code="department_rejected",
        method="card",
    )
    assert grew("epay_payment_step_seconds_count", 3, step="confirming", department="DM")
    assert grew("epay_payment_step_seconds_count", step="requires_action")
    assert grew("epay_department_confirmation_attempts_total", 2, outcome="confirmed")
    assert grew("epay_department_confirmation_attempts_total", outcome="rejected")
    assert grew("epay_compensations_total", compensation="void_authorisation", method="card")
    assert grew(
        "epay_compensations_total", compensation="revoke_department_confirmation", department="DM"
    )


def test_the_worker_counts_stuck_payments_by_step(stack: Stack) -> None:
    """A payment still waiting for its payer after its payment window has closed (its
    workflow should have expired it) is stuck in ``reserved``."""
    payment = stack.created()
    stack.fetch(
        "UPDATE payments SET expires_at = now() - interval '1 hour' WHERE id = $1 RETURNING id",
        payment["id"],
    )
    stuck: list[float] = []

    def counted() -> bool:
        text = stack.metrics(worker_process(stack))
        stuck[:] = [total(text, "epay_payments_stuck", step="reserved", department="DM")]
        return stuck[0] >= 1

    try:
        wait_until(counted, timeout=60, what="epay_payments_stuck to count the payment")
        reported = {
            (labels["department"], labels["step"])
            for name, labels, _ in samples(stack.metrics(worker_process(stack)))
            if name == "epay_payments_stuck"
        }  # every open step of every department, stuck or not
        assert reported >= {(d, step) for d in ("DM", "RTA") for step in telemetry.OPEN_STEPS}
    finally:
        with stack.client() as c:
            c.post(f"/v1/payments/{payment['id']}/cancel")


def test_the_worker_counts_the_payments_the_sweeper_ends(stack: Stack) -> None:
    payment = stack.created()
    before = stack.metrics(worker_process(stack))
    terminate(stack, payment)
    quiet(stack, payment["id"])
    assert swept(sweep(stack), payment["id"]) is not None
    after = stack.metrics(worker_process(stack))
    cancelled = {"department": "DM", "outcome": "cancelled"}
    assert total(after, "epay_payments_swept_total", **cancelled) >= (
        total(before, "epay_payments_swept_total", **cancelled) + 1
    )


def test_the_codec_server_serves_its_metrics(stack: Stack) -> None:
    codec_url = stack.codec_server()
    assert stack.codec_process is not None
    payload = {"metadata": {"encoding": "anNvbi9wbGFpbg=="}, "data": "eyJhIjogMX0="}
    answer = httpx.post(
        f"{codec_url}/decode",
        json={"payloads": [payload]},
        headers={"Authorization": f"Bearer {stack.operator_token}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    text = stack.metrics(stack.codec_process)
    assert total(text, "epay_codec_payloads_total", direction="decoded") >= 1
    assert total(text, "epay_http_requests_total", route="POST /decode", status="200") >= 1


# --- traces -------------------------------------------------------------------------------


def test_one_trace_follows_a_payment_from_the_api_to_the_sql(stack: Stack, paid: Paid) -> None:
    payment_id = paid.e_dirham["id"]
    start = api_span(stack, payment_id, "POST /v1/payments")
    wanted = {
        (telemetry.SERVICE_API, "StartUpdateWithStartWorkflow:PaymentWorkflow"),
        (WORKER_SERVICE, "RunWorkflow:PaymentWorkflow"),
        *(
            (WORKER_SERVICE, f"RunActivity:{activity}")
            for activity in (
                "reserve_fee",
                "record_transition",
                "authorise",
                "confirm_with_department",
                "capture",
                "settle",
            )
        ),
    }
    trace: list[ReceivedSpan] = []

    def whole() -> bool:
        trace[:] = receiver(stack).trace(start.trace_id)
        return wanted <= {(s.service, s.name) for s in trace} and bool(partner_calls(trace))

    def partner_calls(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
        return [
            s
            for s in spans
            if s.service == WORKER_SERVICE
            and str(s.attributes.get("http.url") or s.attributes.get("url.full") or "").startswith(
                stack.sandbox_url
            )
        ]

    wait_until(whole, timeout=30, what="the payment's whole trace")
    sql = [
        s
        for s in trace
        if s.service == WORKER_SERVICE
        and "postgresql" in (s.attributes.get("db.system"), s.attributes.get("db.system.name"))
    ]
    assert sql
    assert all(s.attributes.get("db.statement") or s.name for s in sql)
    assert {s.service for s in trace} == {telemetry.SERVICE_API, WORKER_SERVICE}
    # One tree: every span but the API's own hangs off another span of the trace.
    ids = {s.span_id for s in trace}
    assert [s for s in trace if s.parent_span_id not in ids] == [start]


# --- no secrets ---------------------------------------------------------------------------


UUID = re.compile(r"\b[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}\b", re.IGNORECASE)


def whole_tokens(values: list[str]) -> list[re.Pattern[str]]:
    """Each value as a whole token: no letter, digit or ``_`` next to it, no ``.``, ``,``,
    ``:`` or ``-`` that joins it to more digits (a decimal, a date, a time and its
    milliseconds, an address and its port), nor a traceback frame's ``line`` before it.
    ``pin:123456``, ``card-4242...`` and ``otp 123456.`` are found."""
    return [
        re.compile(rf"(?<!\w)(?<!\d[.,:-])(?<!line ){re.escape(v)}(?!\w)(?![.,:-]\d)")
        for v in values
    ]


def holds(text: str, patterns: list[re.Pattern[str]], personal: list[str]) -> bool:
    """Whether ``text`` holds a secret (a short number: a whole token, UUIDs' groups aside)
    or a made-up part of the payer's personal data (anywhere, in any case: in a URL-encoded
    or a longer text too)."""
    folded = text.casefold()
    return any(p.search(UUID.sub("<uuid>", text)) for p in patterns) or any(
        value.casefold() in folded for value in personal
    )


def leaked(paid: Paid) -> tuple[list[re.Pattern[str]], list[str]]:
    secret_values = [
        *SANDBOX_CARDS,
        paid.card_number,
        paid.pin,
        paid.cvv,
        acquirer.OTP_OK,
        *paid.tokens,
    ]
    return whole_tokens(secret_values), paid.personal


def test_the_secret_patterns_find_a_secret_after_punctuation() -> None:
    patterns, personal = whole_tokens(["123456", "3456"]), ["Qzwkvrenlo"]
    for text in (
        "pin:123456",
        "otp=123456.",
        "cvv-3456",
        "(3456)",
        '"pin": "123456"',
        "card 3456, ok",
        "name=Ysolde%20qzwkvrenlo",
    ):
        assert holds(text, patterns, personal), text
    for text in (
        "2026-12-01T12:34:56.123456+00:00",
        "2026-12-07 03:50:35,345 INFO epay.db: applied",
        "took 0.3456 s",
        "127.0.0.1:3456",
        "run 0c1a2b3d-3456-abcd-8def-0123456789ab",
        '  File "x.py", line 3456, in f',
        "id 1234567 w3456 3456a",
    ):
        assert not holds(text, patterns, personal), text


def spans_of_the_run(stack: Stack, payment_ids: set[str]) -> list[ReceivedSpan]:
    """Every span received, once the traces of ``payment_ids`` have had no new span for a
    second (the stack's processes export theirs every fifth of a second): those of the
    payments, to the last. Only their traces are watched: the rest of the suite keeps the
    shared stack busy (retries, polls), which may never leave a whole second without a span."""
    seen = [-1.0, time.monotonic()]  # the count, and since when it has not changed

    def quiet() -> bool:
        spans = receiver(stack).received()
        traces = {
            s.trace_id
            for s in spans
            if any(payment_id in text for text in s.texts() for payment_id in payment_ids)
        }
        count, now = sum(1 for s in spans if s.trace_id in traces), time.monotonic()
        if count != seen[0]:
            seen[:] = [count, now]
        return bool(traces) and now - seen[1] >= 1.0

    wait_until(quiet, timeout=60, what="a second with no new span of the payments' traces")
    return receiver(stack).received()


def test_no_span_holds_card_data_a_pin_an_otp_a_token_or_personal_data(
    stack: Stack, paid: Paid
) -> None:
    api_span(stack, paid.three_ds["id"], "POST /v1/payments/{payment_id}/3ds")
    api_span(stack, paid.e_dirham["id"], "POST /v1/payments/{payment_id}/authorise")
    api_span(stack, paid.rejected["id"], "POST /v1/payments/{payment_id}/authorise")
    patterns, personal = leaked(paid)
    leaks = [
        (span.service, span.name, text)
        for span in spans_of_the_run(
            stack, {paid.e_dirham["id"], paid.three_ds["id"], paid.rejected["id"]}
        )
        for text in span.texts()
        if holds(text, patterns, personal)
    ]
    assert leaks == []


def log_lines(stack: Stack) -> Iterator[tuple[Path, str]]:
    for path in sorted(stack.log_dir.glob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            yield path, line


def test_no_log_line_holds_card_data_a_pin_an_otp_a_token_or_personal_data(
    stack: Stack, paid: Paid
) -> None:
    patterns, personal = leaked(paid)
    lines = list(log_lines(stack))
    assert any(paid.rejected["id"] in line for _, line in lines)  # the run's lines are read
    leaks = [(path.name, line) for path, line in lines if holds(line, patterns, personal)]
    assert leaks == []


def test_log_lines_are_json_and_name_the_payment(stack: Stack, paid: Paid) -> None:
    payment_id = paid.e_dirham["id"]
    by_process: dict[str, list[dict[str, Any]]] = {"api": [], "worker": []}
    for proc in (api_process(stack), worker_process(stack)):
        for line in proc.log().splitlines():
            if payment_id in line:
                entry = json.loads(line)
                assert entry["payment_id"] == payment_id, line
                by_process[proc.name].append(entry)
    api, worker = by_process["api"], by_process["worker"]
    assert {e["route"] for e in api} >= {
        "/v1/payments",
        "/v1/payments/{payment_id}/authorise",
    }
    assert all(e["request_id"] and e["service"] == telemetry.SERVICE_API for e in api)
    authorised = [e for e in worker if e.get("activity") == "authorise"]
    assert authorised, worker
    assert authorised[0]["workflow_id"] == f"payment-{payment_id}"
    assert authorised[0]["run_id"]
    # The request that started the payment (its trace) is named on the worker's lines too.
    started = next(e for e in api if e["route"] == "/v1/payments")
    assert authorised[0]["request_id"] == started["request_id"]


# --- in process ---------------------------------------------------------------------------


def test_spans_are_scrubbed_before_they_leave_the_process() -> None:
    exported = InMemorySpanExporter()
    provider = telemetry.tracer_provider("epay-test", None, exporter=exported)
    tracer = provider.get_tracer(__name__)
    with tracer.start_as_current_span("pay 4242 4242 4242 4242") as span:
        span.set_attributes(
            {
                "http.url": "http://api/v1/payments/pay_1/3ds?token=payer-secret",
                "http.target": "/v1/payments/pay_1/3ds?token=payer-secret",
                "url.query": "token=payer-secret",
                "db.statement.parameters": "('7840000000000017', '1234')",
                "http.request.header.x_payment_token": "payer-secret",
                "note": "card 4000-0000-0000-3220 for pay_1",
            }
        )
        span.record_exception(ValueError("PIN 1234 for card 7840000000000017"))
    provider.shutdown()
    (span_out,) = exported.get_finished_spans()
    assert span_out.name == "pay [card ...4242]"
    assert dict(span_out.attributes or {}) == {
        "http.url": "http://api/v1/payments/pay_1/3ds",
        "http.target": "/v1/payments/pay_1/3ds",
        "note": "card [card ...3220] for pay_1",
    }
    (event,) = span_out.events
    assert dict(event.attributes or {}) == {
        "exception.type": "ValueError",
        "exception.escaped": "False",
    }


def test_log_lines_carry_their_context_and_never_a_card_number_or_token() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(telemetry.JsonFormatter("epay-test"))
    handler.addFilter(telemetry.LogContext())
    log = logging.getLogger("epay.test.telemetry")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        log.info(
            "asked %s?token=payer-secret with 4242424242424242",
            "/v1/payments/pay_0123456789abcdef0123456789abcdef/3ds",
        )
        details = {
            "activity_type": "authorise",
            "workflow_id": "payment-pay_fedcba9876543210fedcba9876543210",
            "workflow_run_id": "run-1",
        }
        log.warning("authorisation failed", extra={"temporal_activity": details})
    finally:
        log.removeHandler(handler)
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["message"] == (
        "asked /v1/payments/pay_0123456789abcdef0123456789abcdef/3ds?token=*** with [card ...4242]"
    )
    assert first["payment_id"] == "pay_0123456789abcdef0123456789abcdef"
    assert {k: second[k] for k in ("payment_id", "workflow_id", "run_id", "activity")} == {
        "payment_id": "pay_fedcba9876543210fedcba9876543210",
        "workflow_id": "payment-pay_fedcba9876543210fedcba9876543210",
        "run_id": "run-1",
        "activity": "authorise",
    }


def test_a_500_is_logged_with_its_type_and_request_id_alone() -> None:
    exported = InMemorySpanExporter()
    provider = telemetry.tracer_provider("epay-test", None, exporter=exported)
    app = FastAPI()

    @app.post("/v1/payments/{payment_id}/3ds")
    async def three_ds(payment_id: str) -> dict[str, str]:
        raise RuntimeError("card 4242424242424242, OTP 123456")

    app.add_middleware(
        telemetry.RequestTelemetry, meter=MetricMeter.noop, internal_error=b'{"code": "x"}'
    )
    telemetry.instrument_app(app, provider)
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(telemetry.JsonFormatter("epay-test"))
    handler.addFilter(telemetry.LogContext())
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    payment_id = "pay_" + "ab" * 16
    try:

        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                return await client.post(
                    f"/v1/payments/{payment_id}/3ds?token=payer-secret",
                    json={"otp": "123456"},
                    headers={"X-Request-Id": "req-42", "X-Payment-Token": "payer-secret"},
                )

        response = asyncio.run(call())
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        provider.shutdown()
    assert response.status_code == 500
    assert response.json() == {"code": "x"}
    assert response.headers["x-request-id"] == "req-42"
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    ours = [e for e in lines if e.get("request_id") == "req-42"]
    assert [(e["level"], e["message"]) for e in ours] == [
        ("error", "unhandled RuntimeError on POST /v1/payments/{payment_id}/3ds"),
        ("info", "POST /v1/payments/{payment_id}/3ds 500"),
    ]
    assert all(e["payment_id"] == payment_id and "traceback" not in e for e in ours)
    everything = out.getvalue() + json.dumps(
        [dict(s.attributes or {}) for s in exported.get_finished_spans()]
    )
    for secret in ("payer-secret", "4242424242424242", "123456"):
        assert secret not in everything
    (server,) = [s for s in exported.get_finished_spans() if s.name.startswith("POST")]
    assert (server.attributes or {})["epay.request_id"] == "req-42"
