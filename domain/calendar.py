"""ePay's business days are Dubai's: settlement, reconciliation and the reports count days
from midnight to midnight in Asia/Dubai, which keeps UTC+4 all year (no daylight saving), so
a fixed offset is exact and needs no time-zone database."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

DUBAI = timezone(timedelta(hours=4), "Asia/Dubai")


def business_day(at: datetime) -> date:
    """The day in Dubai that ``at`` (an aware moment) falls on."""
    return at.astimezone(DUBAI).date()


def day_start(day: date) -> datetime:
    """Midnight in Dubai at the start of ``day``."""
    return datetime.combine(day, time(0), DUBAI)


def previous_business_day(now: datetime) -> date:
    """The day before the one ``now`` falls on in Dubai: the day a nightly run settles."""
    return business_day(now) - timedelta(days=1)
