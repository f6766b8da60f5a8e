"""Driving payments at a concurrency, with a progress bar on a terminal."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

from tools.bench.common import T


class Progress:
    """A progress bar on stderr, when stderr is a terminal."""

    WIDTH = 30

    def __init__(self, label: str, count: int) -> None:
        self.label, self.count, self.done = label, count, 0
        self.shown = sys.stderr.isatty()

    def advance(self) -> None:
        self.done += 1
        if self.shown:
            filled = self.WIDTH * self.done // self.count
            bar = "#" * filled + "." * (self.WIDTH - filled)
            print(f"\r{self.label:<6} [{bar}] {self.done}/{self.count}", end="", file=sys.stderr)
            if self.done == self.count:
                print(file=sys.stderr)


async def drive(
    count: int, concurrency: int, pay: Callable[[int], Awaitable[T]], label: str = ""
) -> list[T]:
    """``pay(0) .. pay(count - 1)``, ``concurrency`` at a time, each lane starting the next
    payment as soon as its last one ended."""
    progress = Progress(label, count) if label else None
    results: dict[int, T] = {}
    indices = iter(range(count))

    async def lane() -> None:
        for i in indices:
            results[i] = await pay(i)
            if progress:
                progress.advance()

    await asyncio.gather(*(lane() for _ in range(min(concurrency, count))))
    return [results[i] for i in range(count)]


def note(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
