"""Business days are Dubai's, midnight to midnight at UTC+4 all year."""

from __future__ import annotations

from datetime import UTC, date, datetime

from domain.calendar import DUBAI, business_day, day_start, previous_business_day


def test_a_moment_falls_on_its_day_in_dubai() -> None:
    assert business_day(datetime(2026, 3, 1, 19, 59, 59, tzinfo=UTC)) == date(2026, 3, 1)
    assert business_day(datetime(2026, 3, 1, 20, 0, 1, tzinfo=UTC)) == date(2026, 3, 2)
    assert business_day(datetime(2026, 7, 1, 20, 0, 1, tzinfo=UTC)) == date(2026, 7, 2)


def test_a_day_starts_at_midnight_in_dubai() -> None:
    start = day_start(date(2026, 3, 2))
    assert start == datetime(2026, 3, 1, 20, 0, tzinfo=UTC)
    assert start.tzinfo == DUBAI
    assert str(DUBAI) == "Asia/Dubai"


def test_the_night_run_settles_the_day_before() -> None:
    assert previous_business_day(datetime(2026, 3, 1, 22, 0, tzinfo=UTC)) == date(2026, 3, 1)
    assert previous_business_day(datetime(2026, 3, 1, 19, 0, tzinfo=UTC)) == date(2026, 2, 28)
