"""The report's period: whole business days in Dubai, both ends included."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from domain.calendar import day_start

USAGE = 2  # the exit code of a bad date or period, as argparse gives for its own errors


class ReportError(Exception):
    """A request the report cannot answer (bad date, unknown department): one line, exit 2."""


# Dubai has kept UTC+4, with no daylight saving, since 1920: a fixed offset needs no tz database.
@dataclass(frozen=True)
class Period:
    """Business days in Dubai, both ends included."""

    first: date
    last: date

    @property
    def start(self) -> datetime:
        """The first instant of the period (Dubai midnight of ``first``)."""
        return day_start(self.first)

    @property
    def end(self) -> datetime:
        """The first instant after the period (Dubai midnight after ``last``)."""
        return day_start(self.last + timedelta(days=1))

    def describe(self) -> str:
        days = (self.last - self.first).days + 1
        start, end = (t.astimezone(UTC).strftime("%Y-%m-%d %H:%M") for t in (self.start, self.end))
        utc = f"{start} to {end} UTC"
        span = f"{self.first}" if days == 1 else f"{self.first} to {self.last}"
        return f"{span} ({days} day{'s' if days > 1 else ''}, Asia/Dubai; {utc})"


def parse_period(first: str, last: str) -> Period:
    period = Period(_parse_date("--from", first), _parse_date("--to", last))
    if period.first > period.last:
        raise ReportError(f"--from {period.first} is after --to {period.last}")
    return period


def _parse_date(option: str, value: str) -> date:
    try:
        if len(value) != 10:  # fromisoformat also takes 20261201 and 2026-W49-2
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise ReportError(f"{option} {value!r} is not a date (YYYY-MM-DD)") from None
