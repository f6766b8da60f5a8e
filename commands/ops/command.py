"""``epay ops``: find, understand and steer stuck payments from a terminal.

``stuck`` asks Temporal's visibility store for running payment workflows whose current step
began more than a given time ago (the search attributes of ``domain.search``), longest stuck
first; then asks each payment its ``status`` and Temporal its pending activities (attempt,
last failure, next retry). ``show`` does the same for one payment and adds its audit trail
from the database. ``retry``, ``cancel`` and ``confirm`` send the payment workflow's
operator updates, which need the operator's identity and a reason, are written to the
payment's audit trail, and are refused, with their validator's message, when the payment's
state does not allow them. ``clear-pin-limit`` ends the wrong-PIN count of the e-Dirham
card(s) tried on a payment (api/abuse.py), so that a resident whose card ePay refuses can use
it again; it acts on the database alone, whether the payment has ended or not, and writes
itself to the payment's audit trail as the updates do. ``resolve`` ends what the sweeper
left to an operator (``needs_operator``, ``void_refused``), on the database and the partners
alone, since the payment's workflow has closed.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import traceback
from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from commands.ops.acting import ACTIONS, act
from commands.ops.common import EXIT_CODES, OK, UNREACHABLE, OpsError, StuckFilter
from commands.ops.output import describe_payment, print_json, stuck_table
from commands.ops.payer_limits import clear_pin_limit
from commands.ops.reading import find_stuck, show
from commands.ops.resolve import resolve
from domain.models import OperatorAction, OutOfBandConfirmation
from domain.states import WAITING_FOR, PaymentState
from epay.config import Settings
from epay.temporal import connect


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``epay ops`` and its commands, under the ``epay`` parser's subcommands."""
    raw = argparse.RawDescriptionHelpFormatter
    ops = sub.add_parser(
        "ops",
        help="operators: find, explain and steer stuck payments",
        description=__doc__,
        epilog=EXIT_CODES,
        formatter_class=raw,
    )
    osub = ops.add_subparsers(dest="action", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        parser = osub.add_parser(name, help=help, epilog=EXIT_CODES, formatter_class=raw)
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")
        return parser

    stuck = command("stuck", "running payments whose current step began a while ago")
    stuck.add_argument(
        "--older-than",
        type=_minutes,
        default=timedelta(minutes=10),
        metavar="MINUTES",
        help="whose current step began at least this long ago (default 10)",
    )
    stuck.add_argument("--department", metavar="D")
    stuck.add_argument("--state", choices=[s.value for s in PaymentState])
    stuck.add_argument("--waiting-for", choices=sorted(set(WAITING_FOR.values())))
    stuck.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="REF",
        help="the department's reference (normalised as the API does); may be repeated",
    )
    stuck.add_argument("--limit", type=_positive, default=50, metavar="N", help="default 50")

    shown = command("show", "one payment: status, pending calls, audit trail, UI link")
    shown.add_argument("payment", metavar="PAYMENT_ID")

    for name, help in (
        ("retry", "confirming: ask the department again now, instead of at the next backoff"),
        ("cancel", "before capture: undo what was done and end the payment cancelled"),
        ("confirm", "confirming: record a confirmation the department gave out of band"),
    ):
        parser = command(name, help)
        parser.add_argument("payment", metavar="PAYMENT_ID")
        if name == "confirm":
            parser.add_argument(
                "--reference", required=True, help="the department's confirmation reference"
            )
        parser.add_argument("--operator", required=True, help="who you are (recorded)")
        parser.add_argument("--reason", required=True, help="why (recorded)")

    clear = command(
        "clear-pin-limit",
        "end the wrong-PIN count of the e-Dirham card(s) tried on a payment, so that ePay "
        "takes the card again (database only)",
    )
    clear.add_argument(
        "payment", metavar="PAYMENT_ID", help="the payment the resident was refused on"
    )
    clear.add_argument("--operator", required=True, help="who you are (recorded)")
    clear.add_argument("--reason", required=True, help="why (recorded)")

    resolved = command(
        "resolve",
        "end what the sweeper left to an operator (needs_operator, void_refused): void or "
        "reverse at the partners, revoke, end the payment failed if open (database and "
        "partners, no workflow)",
    )
    resolved.add_argument("payment", metavar="PAYMENT_ID")
    resolved.add_argument("--operator", required=True, help="who you are (recorded)")
    resolved.add_argument("--reason", required=True, help="what you found (recorded)")


async def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run an ``epay ops`` command; returns its exit code."""
    try:
        if args.action in _DATABASE_COMMANDS:
            await _DATABASE_COMMANDS[args.action](settings, args)
            return OK
        try:
            client = await connect(settings)
        except RuntimeError as err:  # the SDK's "Failed client connect"
            raise OpsError(UNREACHABLE, "temporal_unreachable", str(err)) from None
        await _COMMANDS[args.action](client, settings, args)
        return OK
    except OpsError as err:
        _fail(args, err)
        return err.exit_code
    except RPCError as err:
        if err.status not in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            raise
        _fail(args, OpsError(UNREACHABLE, "temporal_unreachable", str(err)))
        return UNREACHABLE
    except Exception:  # noqa: BLE001 - reported, then exit 1 (the CLI skips teardown)
        traceback.print_exc()
        return 1


async def _stuck(client: Client, settings: Settings, args: argparse.Namespace) -> None:
    f = StuckFilter(
        older_than=args.older_than,
        department=args.department,
        state=args.state,
        waiting_for=args.waiting_for,
        references=tuple(args.reference),
    )
    views, total = await find_stuck(client, settings, f, args.limit)
    if args.json:
        print_json([dataclasses.asdict(v) for v in views])
        return
    age = f"{f.older_than.total_seconds() / 60:g} min"
    if not views:
        print(f"no running payment has been on its step for {age} or longer")
        return
    print(f"{total} on their step for {age} or longer; the {len(views)} longest:\n")
    print(stuck_table(views))


async def _show(client: Client, settings: Settings, args: argparse.Namespace) -> None:
    shown = await show(client, settings, args.payment)
    if args.json:
        print_json(shown)
    else:
        print(describe_payment(shown))


async def _act(client: Client, settings: Settings, args: argparse.Namespace) -> None:
    arg: object
    if args.action == "confirm":
        arg = OutOfBandConfirmation(args.operator, args.reason, args.reference)
    else:
        arg = OperatorAction(args.operator, args.reason)
    done = await act(client, settings, args.action, args.payment, arg)
    if args.json:
        print_json(done)
        return
    print(f"{args.operator} {ACTIONS[args.action].what} {done['payment_id']}")
    status = done["status"]
    print(f"now {status['state']}: {status['doing']}" if status else done["status_note"])
    print(done["ui_url"])


async def _clear_pin_limit(settings: Settings, args: argparse.Namespace) -> None:
    done = await clear_pin_limit(settings, args.payment, args.operator, args.reason)
    if args.json:
        print_json(done)
        return
    cards = f"{done['cards']} e-Dirham card{'s' if done['cards'] > 1 else ''}"
    print(
        f"{args.operator.strip()} cleared the wrong-PIN count of {cards} tried on "
        f"{done['payment_id']} ({done['state']}): ePay takes the card again"
    )
    print("the issuer's own count is not cleared: one more wrong PIN may lock the card there")


async def _resolve(settings: Settings, args: argparse.Namespace) -> None:
    done = await resolve(settings, args.payment, args.operator, args.reason)
    if args.json:
        print_json(done)
        return
    print(f"{args.operator.strip()} resolved {done['payment_id']} ({', '.join(done['resolved'])})")
    for step in done["done"]:
        print(f"  {step}")
    print(f"now {done['state']}")


_COMMANDS: dict[str, Callable[[Client, Settings, argparse.Namespace], Awaitable[None]]] = {
    "stuck": _stuck,
    "show": _show,
    "retry": _act,
    "cancel": _act,
    "confirm": _act,
}
# Those that need the database alone, not Temporal.
_DATABASE_COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], Awaitable[None]]] = {
    "clear-pin-limit": _clear_pin_limit,
    "resolve": _resolve,
}


def _fail(args: argparse.Namespace, err: OpsError) -> None:
    if args.json:
        print_json({"error": {"code": err.code, "message": str(err)}})
    print(f"epay ops {args.action}: {err}", file=sys.stderr)


def _minutes(text: str) -> timedelta:
    try:
        minutes = float(text)
    except ValueError:
        minutes = -1
    if minutes < 0:
        raise argparse.ArgumentTypeError(f"not a number of minutes: {text!r}")
    return timedelta(minutes=minutes)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {text!r}")
    return int(text)
