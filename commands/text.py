"""How the commands print for a terminal: aligned text tables, times, durations, figures.

One place for the layout ``epay ops``, ``epay report`` and ``epay bench`` share, so that a
column, a time or a figure reads the same in each. Times are printed in UTC, as the
operators' consoles and Temporal show them; money is ``domain.money``'s to format.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

GAP = "  "  # between two columns


def widths(rows: Sequence[Sequence[str]]) -> list[int]:
    """Each column's width: that of its widest cell (every row has every column)."""
    return [max(len(cell) for cell in column) for column in zip(*rows, strict=True)]


def aligned(rows: Sequence[Sequence[str]], left: int | None = None) -> list[str]:
    """Rows of cells as lines, each column as wide as its widest cell: the first ``left``
    columns to the left and the others (figures) to the right; all to the left when
    ``left`` is None. No line ends in spaces."""
    return [_line(row, widths(rows), left) for row in rows]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 2) -> str:
    """A table with a header and a rule under it, columns aligned as ``aligned`` does. With
    two label columns or more the first is a group (a department): a rule between groups. A
    rule above the total, whose first cell is "All"."""
    sizes = widths([headers, *rows])
    rule = GAP.join("-" * w for w in sizes)
    out = [_line(headers, sizes, left), rule]
    for before, row in zip([None, *rows], rows, strict=False):
        if before is not None and before[0] != row[0] and (left > 1 or row[0] == "All"):
            out.append(rule)
        out.append(_line(row, sizes, left))
    return "\n".join(out)


def _line(cells: Sequence[str], sizes: Sequence[int], left: int | None) -> str:
    return GAP.join(
        cell.ljust(width) if left is None or i < left else cell.rjust(width)
        for i, (cell, width) in enumerate(zip(cells, sizes, strict=True))
    ).rstrip()


def stamp(iso: str | None) -> str:
    """An ISO time as ``YYYY-MM-DD HH:MM:SS`` in UTC; ``-`` when there is none."""
    if not iso:
        return "-"
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def utc(iso: str | None) -> str:
    """``stamp`` that says it is UTC: ``YYYY-MM-DD HH:MM:SS UTC``; ``-`` when there is none."""
    return f"{stamp(iso)} UTC" if iso else "-"


def clock(iso: str | None) -> str:
    """The time of day of an ISO time, ``HH:MM:SS`` in UTC; ``?`` when it is not known."""
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%H:%M:%S") if iso else "?"


def age(now: datetime, iso: str | None) -> str:
    """How long ago ``iso`` was, in a column's few characters: ``42s``, ``17m``, ``3h05m``."""
    if not iso:
        return "-"
    seconds = int((now - datetime.fromisoformat(iso)).total_seconds())
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    return f"{minutes}m" if minutes < 120 else f"{minutes // 60}h{minutes % 60:02d}m"


def duration(seconds: float | None) -> str:
    """A duration for people: ``4.2 s``, ``3 min 07 s``, ``2 h 05 min``; ``-`` for none."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def figure(value: float | None) -> str:
    """A measured figure: two decimals below 10, one above, thousands separated; ``-`` for
    none."""
    if value is None:
        return "-"
    return f"{value:,.2f}" if abs(value) < 10 else f"{value:,.1f}"
