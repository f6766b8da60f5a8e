"""The department API's rate limit: a token bucket per API key.

Each department API key has a bucket of ``burst`` tokens that refills at ``per_second``
tokens a second (``EPAY_API_RATE_PER_SECOND``, ``EPAY_API_RATE_BURST``, a department's own
in ``EPAY_API_RATE_OVERRIDES``). Every authenticated call takes a token; a call that finds
none is refused with 429 ``rate_limited`` and ``Retry-After`` (whole seconds, at least 1:
when the next token is there). The check runs in the department dependency
(api/context.py) right after the key is authenticated and before any handler, so a refused
call creates nothing and reaches neither the database's tables nor Temporal.

The buckets live in the API process's memory: the limit holds per API replica (N replicas
take up to N times the rate from one key; docs/configuration.md says so). The map is bounded:
a bucket that has refilled is forgotten (a new one would be full too), and past ``max_keys``
the least recently used goes first. The buckets are keyed by the key's hash (never the key).
A call takes its token with no ``await`` in between, so calls on the event loop cannot
interleave inside a check; a lock keeps it so for a caller on another thread as well.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from api.errors import ApiError
from epay.config import Settings

MAX_KEYS = 10_000
"""Buckets kept at most; far above the keys ePay issues, so eviction is of idle keys only."""


def monotonic() -> float:
    """The limiter's clock; tests replace it (``api.ratelimit.monotonic``) to move time."""
    return time.monotonic()


@dataclass(frozen=True, slots=True)
class Rate:
    """How fast one key may call: ``burst`` at once, ``per_second`` on average."""

    per_second: float
    burst: int

    @property
    def off(self) -> bool:
        """0 turns the limit off (development only: production refuses it)."""
        return self.per_second <= 0 or self.burst <= 0


@dataclass(slots=True)
class TokenBucket:
    rate: Rate
    tokens: float
    updated: float

    def refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated)  # a clock that went back refills nothing
        self.tokens = min(float(self.rate.burst), self.tokens + elapsed * self.rate.per_second)
        self.updated = now

    def take(self, now: float) -> float:
        """Take a token: 0 if one was there, else the seconds until one is (none taken)."""
        self.refill(now)
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate.per_second

    def full(self, now: float) -> bool:
        return self.tokens + max(0.0, now - self.updated) * self.rate.per_second >= self.rate.burst


class RateLimited(ApiError):
    def __init__(self, wait_seconds: float) -> None:
        super().__init__(
            429,
            "rate_limited",
            "Too many requests with this API key; try again after Retry-After seconds.",
            title="Too many requests",
        )
        self.retry_after = max(1, math.ceil(wait_seconds))
        self.headers = {"Retry-After": str(self.retry_after)}


class RateLimiter:
    """The buckets of one API process, and the rate each department's keys get."""

    def __init__(
        self,
        default: Rate,
        overrides: Mapping[str, Rate] | None = None,
        *,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.default = default
        self.overrides = dict(overrides or {})
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def of(cls, settings: Settings) -> RateLimiter:
        return cls(
            Rate(settings.api_rate_per_second, settings.api_rate_burst),
            {dept: Rate(rate, burst) for dept, (rate, burst) in settings.api_rates.items()},
        )

    def rate_for(self, department: str) -> Rate:
        return self.overrides.get(department, self.default)

    def now(self) -> float:
        return self._clock() if self._clock is not None else monotonic()

    def __len__(self) -> int:
        return len(self._buckets)

    def wait(self, key: str, department: str) -> float:
        """Take a token from ``key``'s bucket: 0 if taken, else the seconds to wait."""
        rate = self.rate_for(department)
        if rate.off:
            return 0.0
        with self._lock:
            now = self.now()
            bucket = self._buckets.get(key)
            if bucket is None or bucket.rate != rate:  # new, or its department's rate changed
                bucket = TokenBucket(rate, float(rate.burst), now)
                self._buckets[key] = bucket
            self._buckets.move_to_end(key)
            waited = bucket.take(now)
            self._evict(now)
            return waited

    def check(self, key: str, department: str) -> None:
        """Take a token for ``key`` or raise ``RateLimited``."""
        waited = self.wait(key, department)
        if waited > 0:
            raise RateLimited(waited)

    def _evict(self, now: float) -> None:
        """Forget the least recently used buckets while they have refilled, and past
        ``max_keys`` whatever their state (the key just used is the most recent: kept)."""
        while len(self._buckets) > 1:
            oldest = next(iter(self._buckets.values()))
            if len(self._buckets) <= self.max_keys and not oldest.full(now):
                break
            self._buckets.popitem(last=False)
