"""``commands.text``: the tables, times and figures ``epay ops``, ``epay report`` and
``epay bench`` print, cell for cell."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from commands import text


def test_aligned_pads_each_column_to_its_widest_cell_and_trims_the_line() -> None:
    rows = [("PAYMENT", "STATE", "AMOUNT"), ("pay_1", "confirming", "-"), ("pay_22", "x", "")]
    assert text.aligned(rows) == [
        "PAYMENT  STATE       AMOUNT",
        "pay_1    confirming  -",
        "pay_22   x",
    ]


def test_aligned_puts_the_figures_to_the_right() -> None:
    assert text.aligned([("a", "1"), ("bbb", "1,000.00")], left=1) == [
        "a           1",
        "bbb  1,000.00",
    ]


def test_aligned_with_no_rows_is_no_lines() -> None:
    assert text.aligned([]) == []


def test_table_rules_the_header_the_groups_and_the_total() -> None:
    rows = [
        ["DM", "Health certificate", "3"],
        ["DM", "Food permit", "12"],
        ["RTA", "Parking fine", "1"],
        ["All", "all departments", "16"],
    ]
    assert text.table(["Dept", "Service", "Paid"], rows) == "\n".join(
        [
            "Dept  Service             Paid",
            "----  ------------------  ----",
            "DM    Health certificate     3",
            "DM    Food permit           12",
            "----  ------------------  ----",
            "RTA   Parking fine           1",
            "----  ------------------  ----",
            "All   all departments       16",
        ]
    )


def test_a_table_of_one_label_column_rules_only_above_the_total() -> None:
    rows = [["succeeded", "5"], ["card_declined", "1"], ["All", "6"]]
    assert text.table(["Outcome", "Payments"], rows, 1) == "\n".join(
        [
            "Outcome        Payments",
            "-------------  --------",
            "succeeded             5",
            "card_declined         1",
            "-------------  --------",
            "All                   6",
        ]
    )


def test_times_are_printed_in_utc() -> None:
    dubai = "2026-12-07T10:15:30+04:00"
    assert text.stamp(dubai) == "2026-12-07 06:15:30"
    assert text.utc(dubai) == "2026-12-07 06:15:30 UTC"
    assert text.clock(dubai) == "06:15:30"
    assert (text.stamp(None), text.utc(None), text.clock(None)) == ("-", "-", "?")


def test_age_is_compact() -> None:
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    ago = [timedelta(seconds=42), timedelta(minutes=17, seconds=59), timedelta(minutes=185)]
    assert [text.age(now, (now - a).isoformat()) for a in ago] == ["42s", "17m", "3h05m"]
    assert text.age(now, None) == "-"


def test_durations_read_as_people_say_them() -> None:
    assert [text.duration(s) for s in (None, 4.24, 187.4, 7500)] == [
        "-",
        "4.2 s",
        "3 min 07 s",
        "2 h 05 min",
    ]


def test_figures_keep_two_decimals_below_ten() -> None:
    assert [text.figure(v) for v in (None, 3.14159, -2.5, 12.34, 12345.67)] == [
        "-",
        "3.14",
        "-2.50",
        "12.3",
        "12,345.7",
    ]
