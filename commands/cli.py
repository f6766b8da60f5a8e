"""``epay``: the console script for everything but ``make run`` and ``make test``."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, NoReturn

import httpx

from domain.queues import Role
from epay import crypto
from epay.config import Settings, SettingsError
from epay.db import create_pool, migrate


def _settings(process: str | None = None) -> Settings:
    """The process's settings; a missing or unsafe one stops the command with one line.

    ``process`` names what runs (``api``, ``worker:<role>``, ``codec-server``, ``migrate``...):
    it reads, and in production requires, only the secrets that process uses
    (``epay.config.PROCESS_SECRETS``); a command that names none reads them all."""
    try:
        return Settings.from_env(process)
    except SettingsError as err:
        raise SystemExit(f"epay: configuration: {err}") from None


def _refuse_in_production(what: str, settings: Settings | None = None) -> None:
    if (settings or _settings()).production:
        raise SystemExit(f"epay: configuration: EPAY_ENV: {what} is refused in production")


async def _migrate() -> None:
    applied = await migrate(_settings("migrate").require_database_url())
    print("applied: " + ", ".join(applied) if applied else "database is up to date")


async def _seed(with_cards: bool) -> None:
    from commands.seed import (
        ensure_signing_secrets,
        seed_catalogue,
        seed_e_dirham_cards,
        share_signing_secrets_with_sandbox,
    )

    settings = _settings("seed")
    if with_cards:
        _refuse_in_production("seeding the sandbox's e-Dirham cards (use --no-cards)", settings)
    pool = await create_pool(settings.require_database_url())
    try:
        await seed_catalogue(pool, settings)
        print("catalogue seeded")
        made = await ensure_signing_secrets(pool, settings)
        if made:
            print("signing secrets created for " + ", ".join(made))
        if not settings.production:
            try:
                await share_signing_secrets_with_sandbox(pool, settings)
                print("signing secrets handed to the sandbox's departments")
            except httpx.HTTPError as exc:
                print(
                    f"signing secrets not handed to the sandbox: it is not reachable ({exc}); "
                    "run 'epay seed' again once it is",
                    file=sys.stderr,
                )
    finally:
        await pool.close()
    if with_cards:
        try:
            await seed_e_dirham_cards(settings)
            print(f"e-Dirham sandbox cards created at {settings.issuer_url}")
        except httpx.HTTPError as exc:
            print(
                f"e-Dirham cards not created: the issuer is not reachable ({exc})", file=sys.stderr
            )
            raise SystemExit(1) from None


async def create_key(department: str, label: str) -> str:
    from store import keys

    settings = _settings()
    pool = await create_pool(settings.require_database_url())
    try:
        return await keys.create_api_key(pool, department, label)
    except LookupError:
        raise SystemExit(f"no department {department!r}: run 'epay seed' first") from None
    finally:
        await pool.close()


async def _departments(args: argparse.Namespace) -> None:
    from store import department_secrets, keys

    if args.action == "create-key":
        key = await create_key(args.department, args.label)
        print(key)
        return
    settings = _settings("departments")
    pool = await create_pool(settings.require_database_url())
    try:
        if args.action == "revoke-key":
            if not await keys.revoke_api_key(pool, args.key_id):
                raise SystemExit(f"no live key {args.key_id!r}")
            print(f"revoked {args.key_id}")
        elif args.action == "create-signing-secret":
            await _create_signing_secret(pool, settings, args.department)
        elif args.action == "retire-signing-secret":
            if not await department_secrets.retire(pool, args.department, args.secret_id):
                raise SystemExit(
                    f"no active signing secret {args.secret_id} of {args.department}, or it is "
                    "the department's last (create its successor first)"
                )
            print(f"retired signing secret {args.secret_id}: ePay no longer signs with it")
        elif args.action == "signing-secrets":
            for s in await department_secrets.active(pool, settings.token_secret, args.department):
                print(f"{s.id}  created {s.created_at:%Y-%m-%d %H:%M}  active")
        elif args.action == "keys":
            for api_key in await keys.list_api_keys(pool, args.department):
                state = f"revoked {api_key.revoked_at:%Y-%m-%d}" if api_key.revoked_at else "live"
                created = f"{api_key.created_at:%Y-%m-%d %H:%M}"
                print(f"{api_key.id}  {api_key.label or '-':20}  {created}  {state}")
    finally:
        await pool.close()


async def _create_signing_secret(pool: Any, settings: Settings, department: str) -> None:
    from commands.seed import share_signing_secrets_with_sandbox
    from store import catalogue, department_secrets

    if not await catalogue.department_exists(pool, department):
        raise SystemExit(f"no department {department!r}: run 'epay seed' first")
    made = await department_secrets.create(pool, settings.token_secret, department)
    print(made.secret)
    print(
        f"signing secret {made.id} for {department}: shown once; ePay signs with it and with "
        "the department's other active secrets until they are retired",
        file=sys.stderr,
    )
    if not settings.production:
        try:
            await share_signing_secrets_with_sandbox(pool, settings)
        except httpx.HTTPError:
            print("(the sandbox is not reachable: run 'epay seed' once it is)", file=sys.stderr)


async def _webhooks_redeliver(event_id: str) -> None:
    """Send an event again: at once if its delivery is still waiting to retry, else as a new
    delivery to every endpoint that takes it (receivers dedupe by the event's id)."""
    import time

    from temporalio.client import WorkflowExecutionStatus

    from domain.webhooks import Delivery
    from epay.temporal import connect
    from store import webhooks
    from workers.webhook_relay import delivery_workflow_id
    from workflows.webhook import WebhookDeliveryWorkflow

    settings = _settings()
    pool = await create_pool(settings.require_database_url(), max_size=2)
    try:
        event = await webhooks.event(pool, event_id)
        if event is None:
            raise SystemExit(f"no event {event_id!r}")
        client = await connect(settings)
        handle = client.get_workflow_handle(delivery_workflow_id(event_id))
        try:
            running = (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        except Exception:  # noqa: BLE001 - not started yet, or gone from Temporal's retention
            running = False
        if running:
            await handle.signal(WebhookDeliveryWorkflow.deliver_now)
            print(f"{event_id}: its delivery was waiting to retry; it tries again now")
            return
        redelivery = f"{delivery_workflow_id(event_id)}-redelivery-{int(time.time())}"
        await client.start_workflow(
            WebhookDeliveryWorkflow.run,
            Delivery(
                event_id, settings.webhook_retries, await webhooks.last_delivery(pool, event_id)
            ),
            id=redelivery,
            task_queue=settings.task_queue,
        )
        await webhooks.mark_dispatched(pool, event_id)
        print(f"{event_id} ({event.type}): delivered again by workflow {redelivery}")
    finally:
        await pool.close()


async def _ledger_verify() -> int:
    from commands import ledger

    settings = _settings()
    pool = await create_pool(settings.require_database_url(), max_size=2)
    try:
        report = await ledger.verify(pool)
    finally:
        await pool.close()
    print(ledger.render(report))
    return 0 if report.ok else 1


def _sandbox_switch(args: argparse.Namespace) -> None:
    """Bring a sandbox system up or down through its admin endpoint."""
    _refuse_in_production("the sandbox")
    settings = _settings()
    if args.action == "department":
        name = f"department {args.department}"
        base = f"{settings.department_base_url.rstrip('/')}/{args.department}"
    else:
        name = args.action
        base = settings.acquirer_url if args.action == "acquirer" else settings.issuer_url
    response = httpx.post(f"{base}/_admin/{args.state}", timeout=settings.http_timeout_seconds)
    response.raise_for_status()
    print(f"sandbox {name} is {args.state}")


async def _sweeper(args: argparse.Namespace) -> None:
    from commands.schedules import SWEEPER_SCHEDULE_ID, ensure_sweeper_schedule, sweep_now
    from epay.temporal import connect

    settings = _settings()
    client = await connect(settings)
    if args.action == "schedule":
        if args.every <= 0:
            raise SystemExit("--every must be a positive number of minutes")
        every = timedelta(minutes=args.every)
        done = await ensure_sweeper_schedule(client, settings, every)
        print(
            f"schedule {SWEEPER_SCHEDULE_ID} {done}: a sweep every {every} "
            f"on task queue {settings.task_queue}"
        )
    else:
        summary = await sweep_now(client, settings)
        print(json.dumps(dataclasses.asdict(summary), indent=2))


async def _settlement(args: argparse.Namespace) -> int:
    """``epay settlement schedule|run|show``: 0 when the day balanced (or was scheduled)."""
    from datetime import date as date_

    from commands import settlement as printed
    from commands.schedules import (
        SETTLEMENT_SCHEDULE_ID,
        ensure_settlement_schedule,
        settle_day,
    )
    from domain import calendar
    from epay.temporal import connect
    from store import settlement

    settings = _settings()
    if args.action == "schedule":
        done = await ensure_settlement_schedule(await connect(settings), settings)
        print(f"schedule {SETTLEMENT_SCHEDULE_ID} {done}: daily at 02:00 Asia/Dubai")
        return 0
    day = getattr(args, "day", None)
    try:
        day = date_.fromisoformat(day).isoformat() if day else None
    except ValueError:
        raise SystemExit(f"epay: --day {args.day!r} is not a date (YYYY-MM-DD)") from None
    if args.action == "run":
        from datetime import UTC, datetime

        day = day or calendar.previous_business_day(datetime.now(UTC)).isoformat()
        await settle_day(await connect(settings), settings, day)
    pool = await create_pool(settings.require_database_url(), max_size=2)
    try:
        found = await settlement.stored(pool, date_.fromisoformat(day or "1970-01-01"))
    finally:
        await pool.close()
    if found is None:
        raise SystemExit(f"no settlement of {day} yet: epay settlement run --day {day}")
    if getattr(args, "json", False):
        print(json.dumps(printed.as_json(found), indent=2))
    else:
        print(printed.render(found))
    return 0 if found.balanced else 1


async def _register_search_attributes() -> None:
    """Register the payment workflows' search attributes on the namespace (on a real
    cluster; ``make run`` and the tests pass them to the dev server). Safe to repeat."""
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import (
        AddSearchAttributesRequest,
        ListSearchAttributesRequest,
    )

    from domain.search import SEARCH_ATTRIBUTES
    from epay.temporal import connect

    settings = _settings()
    client = await connect(settings)
    namespace = settings.temporal_namespace
    known = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    missing = {
        key.name: IndexedValueType.ValueType(int(key.indexed_value_type))
        for key in SEARCH_ATTRIBUTES
        if key.name not in known.custom_attributes
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
    names = ", ".join(sorted(missing)) or "none (all were registered)"
    print(f"search attributes added on namespace {namespace}: {names}")


def _create_operator_token(name: str) -> None:
    if not name or any(c in name for c in ",: "):
        raise SystemExit("an operator name has no commas, colons or spaces")
    token = crypto.new_operator_token()
    print(f"token (give it to {name}; it is not stored anywhere): {token}")
    print(f"EPAY_OPERATOR_TOKENS entry: {name}:{crypto.hash_operator_token(token).hex()}")


def _exit_without_teardown(run: Callable[[], int | None]) -> NoReturn:
    """Run a command that makes a Temporal client, then exit with its code at once, skipping the
    interpreter's teardown, which such a short-lived process may abort in (the client's threads
    outlive it: temporalio/sdk-python#300, seen as ``PyGILState_Release`` and exit -6). A
    ``SystemExit`` the command raises keeps its meaning: a message goes to stderr with exit 1."""
    try:
        code = run() or 0
    except SystemExit as stop:
        if isinstance(stop.code, str):
            print(stop.code, file=sys.stderr)
            code = 1
        else:
            code = stop.code or 0
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # noqa: BLE001 - reported as Python would, then the same fast exit
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# Commands whose modules are imported only to run them (their parsers too), so that the
# other commands, the API's and the workers' above all, do not load them: name, then the
# module (which gives ``add_parser`` and ``run``, ``parse`` and ``main`` for ``bench``) and
# the line ``epay --help`` shows (the same as the module's own; tests/test_cli_imports.py).
LOADED_TO_RUN = {
    "ops": ("commands.ops", "operators: find, explain and steer stuck payments"),
    "bench": (
        "tools.bench",
        "drive payments end to end and the Temporal floor; print both and their ratios "
        "(epay bench --help)",
    ),
    "report": (
        "commands.report",
        "what was collected, per department and service, by method, and how payments ended",
    ),
}


def build_parser(full: str | None = None) -> argparse.ArgumentParser:
    """The ``epay`` parser, with the arguments of ``full`` if it is one of the commands
    loaded to run (``LOADED_TO_RUN``); the others of those are only listed."""
    parser = argparse.ArgumentParser(prog="epay", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    api = sub.add_parser("api", help="serve the HTTP API")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)

    worker = sub.add_parser("worker", help="run a worker: the task queues of its role")
    worker.add_argument(
        "--role",
        choices=[role.value for role in Role],
        default=None,
        help="the queues to poll (default: EPAY_WORKER_ROLE, else all); see docs/design.md, "
        "'Worker roles and task queues'",
    )
    sub.add_parser("migrate", help="apply database migrations (safe to repeat)")
    seed = sub.add_parser("seed", help="seed departments, services and sandbox e-Dirham cards")
    seed.add_argument("--no-cards", action="store_true", help="skip the sandbox issuer's cards")

    dept = sub.add_parser("departments", help="department API keys and signing secrets")
    dsub = dept.add_subparsers(dest="action", required=True)
    ck = dsub.add_parser("create-key", help="create an API key (printed once)")
    ck.add_argument("department")
    ck.add_argument("--label", default="")
    rk = dsub.add_parser("revoke-key", help="revoke an API key by its id")
    rk.add_argument("key_id")
    lk = dsub.add_parser("keys", help="list a department's keys (ids, never the keys)")
    lk.add_argument("department")
    cs = dsub.add_parser(
        "create-signing-secret",
        help="a new secret ePay signs the department's calls with (printed once; the old ones "
        "keep signing until retired)",
    )
    cs.add_argument("department")
    rs = dsub.add_parser(
        "retire-signing-secret", help="stop signing with a secret (ends a rotation's overlap)"
    )
    rs.add_argument("department")
    rs.add_argument("secret_id", type=int)
    ls = dsub.add_parser("signing-secrets", help="a department's active signing secrets (ids)")
    ls.add_argument("department")

    settle = sub.add_parser("settlement", help="the daily settlement and reconciliation")
    stsub = settle.add_subparsers(dest="action", required=True)
    stsub.add_parser("schedule", help="create or update the daily schedule (02:00 Asia/Dubai)")
    for name, text in (
        ("run", "settle and reconcile a day now (default: yesterday); again replaces it"),
        ("show", "a day's settlement as last run"),
    ):
        one = stsub.add_parser(name, help=text + "; exit 1 if it did not balance")
        one.add_argument(
            "--day", help="YYYY-MM-DD, a business day in Asia/Dubai", required=name == "show"
        )
        one.add_argument("--json", action="store_true", help="the result as JSON")

    hooks = sub.add_parser("webhooks", help="the departments' webhook events")
    hsub = hooks.add_subparsers(dest="action", required=True)
    rd = hsub.add_parser("redeliver", help="send an event again (GET /v1/webhooks/deliveries)")
    rd.add_argument("event_id")

    ledger = sub.add_parser("ledger", help="the double-entry ledger")
    lsub = ledger.add_subparsers(dest="action", required=True)
    lsub.add_parser(
        "verify",
        help="every journal balances and the books match the payments and refunds "
        "(exit 1 on any difference, each listed)",
    )

    sandbox = sub.add_parser("sandbox", help="the sandbox acquirer, issuer and departments")
    ssub = sandbox.add_subparsers(dest="action", required=True)
    serve = ssub.add_parser("serve", help="serve the sandbox")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8100)
    serve.add_argument(
        "--state-file",
        default=None,
        help="SQLite file keeping the sandbox's state across restarts (default: in memory)",
    )
    sd = ssub.add_parser(
        "department", help="bring a sandbox department's DOWN- references up or down"
    )
    sd.add_argument("state", choices=["up", "down"])
    sd.add_argument("department")
    for system in ("acquirer", "issuer"):
        sw = ssub.add_parser(system, help=f"take the sandbox {system} down (every call 503) or up")
        sw.add_argument("state", choices=["up", "down"])

    temporal = sub.add_parser("temporal", help="prepare a Temporal namespace for ePay")
    tsub = temporal.add_subparsers(dest="action", required=True)
    tsub.add_parser(
        "search-attributes", help="register the payments' search attributes (safe to repeat)"
    )

    codec = sub.add_parser(
        "codec-server",
        help="decode payloads for the Temporal UI and CLI, for operators only (docs/design.md)",
    )
    codec.add_argument("--host", default="127.0.0.1")
    codec.add_argument("--port", type=int, default=8081)
    operators = sub.add_parser("operators", help="operator tokens for the codec server")
    osub = operators.add_subparsers(dest="action", required=True)
    ot = osub.add_parser(
        "create-token", help="a new operator token (printed once), its EPAY_OPERATOR_TOKENS entry"
    )
    ot.add_argument("name")

    sweeper = sub.add_parser(
        "sweeper", help="end payments whose workflow closed without them (a Temporal Schedule)"
    )
    swsub = sweeper.add_subparsers(dest="action", required=True)
    sch = swsub.add_parser("schedule", help="create or update the sweeper's schedule")
    sch.add_argument("--every", type=float, default=5, metavar="MINUTES")
    swsub.add_parser("run", help="run one sweep now and print what it did")
    for name, (module, text) in LOADED_TO_RUN.items():
        if name == full and name != "bench":
            importlib.import_module(module).add_parser(sub)
        else:
            # Listed only: ``main`` builds the command's parser when it runs it (``bench``
            # parses its options itself).
            sub.add_parser(name, help=text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        from tools import bench  # a developer's tool: loaded only when it is run

        logging.basicConfig(level=logging.WARNING)
        _exit_without_teardown(lambda: bench.main(bench.parse(argv[1:])))
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "api":
        import uvicorn

        from api.app import create_app

        settings = _settings("api")
        proxies = settings.forwarded_allow_ips
        # The app configures logging itself (epay.telemetry): JSON lines from the first one.
        # The client's address (the per-client payer limit) is taken from X-Forwarded-For only
        # when the peer is a proxy EPAY_FORWARDED_ALLOW_IPS names; unset, from nobody (uvicorn
        # alone would trust 127.0.0.1, so that any local caller could name its own address).
        uvicorn.run(
            create_app(settings),
            host=args.host,
            port=args.port,
            log_config=None,
            access_log=False,
            proxy_headers=proxies is not None,
            forwarded_allow_ips=proxies,
        )
    elif args.command == "worker":
        from workers.main import run_worker

        process = f"worker:{args.role}" if args.role else "worker"  # else EPAY_WORKER_ROLE
        asyncio.run(run_worker(_settings(process), role=args.role))
    elif args.command == "migrate":
        asyncio.run(_migrate())
    elif args.command == "seed":
        asyncio.run(_seed(with_cards=not args.no_cards))
    elif args.command == "departments":
        asyncio.run(_departments(args))
    elif args.command == "settlement":
        _exit_without_teardown(lambda: asyncio.run(_settlement(args)))
    elif args.command == "webhooks":
        _exit_without_teardown(lambda: asyncio.run(_webhooks_redeliver(args.event_id)))
    elif args.command == "ledger":
        raise SystemExit(asyncio.run(_ledger_verify()))
    elif args.command == "codec-server":
        from commands.codec_server import serve as serve_codec

        serve_codec(_settings("codec-server"), args.host, args.port)
    elif args.command == "operators":
        _create_operator_token(args.name)
    elif args.command == "sweeper":
        _exit_without_teardown(lambda: asyncio.run(_sweeper(args)))
    elif args.command == "temporal":
        _exit_without_teardown(lambda: asyncio.run(_register_search_attributes()))
    elif args.command == "ops":
        from commands import ops

        _exit_without_teardown(lambda: asyncio.run(ops.run(args, _settings())))
    elif args.command == "report":
        from commands import report

        raise SystemExit(report.run(args, lambda: _settings().require_database_url()))
    elif args.command == "sandbox":
        if args.action == "serve":
            from sandbox.__main__ import serve as serve_sandbox

            _refuse_in_production("the sandbox")
            serve_sandbox(args.host, args.port, state_file=args.state_file)
        else:
            _sandbox_switch(args)


if __name__ == "__main__":
    main()
