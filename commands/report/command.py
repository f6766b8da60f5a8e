"""``epay report``'s arguments and its run: read the figures, write them in the format asked."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

import asyncpg

from commands.report.chart import render_chart
from commands.report.figures import Report, build
from commands.report.period import USAGE, Period, ReportError, parse_period
from commands.report.spreadsheet import render_csv
from commands.report.table import render_table

FORMATS = ("table", "csv", "chart")
DEFAULT_CHART = "report.svg"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``epay report`` under the ``epay`` parser's subcommands."""
    report = sub.add_parser(
        "report",
        help="what was collected, per department and service, by method, and how payments ended",
        description="Payments created from --from to --to (Asia/Dubai business days, both "
        "included): collected amounts and fee lines, e-Dirham against card, outcomes by "
        "failure code, refunds, time to complete. See docs/reports.md.",
    )
    report.add_argument("--from", dest="first", required=True, metavar="YYYY-MM-DD")
    report.add_argument("--to", dest="last", required=True, metavar="YYYY-MM-DD")
    report.add_argument("--department", metavar="D", help="one department's payments only")
    report.add_argument("--format", choices=FORMATS, default="table")
    report.add_argument(
        "--output",
        metavar="PATH",
        help=f"write here instead of standard output (chart: default {DEFAULT_CHART})",
    )


def run(args: argparse.Namespace, database_url: Callable[[], str]) -> int:
    """``epay report``: the exit code (2 on a bad date, period or department; 1 when the
    database cannot be read or the output written)."""
    try:
        period = parse_period(args.first, args.last)
        report = asyncio.run(_read(database_url(), period, args.department))
    except ReportError as err:
        print(f"epay report: {err}", file=sys.stderr)
        return USAGE
    except (OSError, asyncpg.PostgresError) as err:
        print(f"epay report: the database cannot be read: {err}", file=sys.stderr)
        return 1
    if args.format == "chart":
        rendered, output, encoding = render_chart(report), args.output or DEFAULT_CHART, "utf-8"
    else:
        rendered = render_csv(report) if args.format == "csv" else render_table(report)
        output = args.output
        # A CSV file starts with a byte-order mark, without which Excel reads the Arabic names
        # as another code page; standard output has none, for the next command in a pipe.
        encoding = "utf-8-sig" if args.format == "csv" else "utf-8"
    if not output:
        sys.stdout.write(rendered)
        return 0
    try:
        Path(output).write_text(rendered, encoding=encoding, newline="")
    except OSError as err:
        print(f"epay report: cannot write {output}: {err.strerror or err}", file=sys.stderr)
        return 1
    print(f"{args.format} written to {output}")
    return 0


async def _read(database_url: str, period: Period, department: str | None) -> Report:
    from epay.db import create_pool

    pool = await create_pool(database_url, max_size=1)
    try:
        return await build(pool, period, department)
    finally:
        await pool.close()
