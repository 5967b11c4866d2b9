"""Admission: per-organisation rate limits and shares of the workers, decided before any work.

Rates are token buckets on a monotonic clock (a caller's clock or the
policy's fake clock in tests must not move them). Shares count the workers an
organisation holds: every call of its in the gateway, and separately its
streams, which hold a worker for long. Both are per gateway process. No
transport here: the transport asks, and enforces what it is told.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .limits import CallLimits, RateSpec

if TYPE_CHECKING:
    from ..model import Caller

# Buckets of callers not seen for this long are dropped, so the table stays bounded.
IDLE_BUCKET_S = 600.0


@dataclass
class TokenBucket:
    tokens: float
    stamp: float

    def take(self, spec: RateSpec, now: float) -> bool:
        """Refill for the time since the last call, then spend one token if there is one."""
        elapsed = max(now - self.stamp, 0.0)
        self.stamp = now
        self.tokens = min(spec.burst, self.tokens + elapsed * spec.per_second)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class RateLimiter:
    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._now = monotonic
        self._lock = threading.Lock()
        self._buckets: dict[str, TokenBucket] = {}
        self._swept = monotonic()

    def allow(self, key: str, spec: RateSpec) -> bool:
        now = self._now()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(spec.burst, now)
            ok = bucket.take(spec, now)
            if now - self._swept > IDLE_BUCKET_S:
                # A full bucket untouched that long is the same as a new one: forget it.
                self._buckets = {k: b for k, b in self._buckets.items() if now - b.stamp < IDLE_BUCKET_S}
                self._swept = now
            return ok


class Shares:
    """How many workers each organisation holds: all its calls, and its streams among them.

    A call beyond either share is refused at once, before it waits for anything,
    so that one organisation, however many connections it opens and however
    it holds its calls open, leaves the other workers to everyone else.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, int] = {}
        self._streams: dict[str, int] = {}

    def enter(self, org: str, streaming: bool, limits: CallLimits) -> str:
        """"" if the call may go on (then `leave` must follow), else which share it would exceed."""
        with self._lock:
            calls = self._calls.get(org, 0)
            if calls >= limits.max_calls_per_org:
                return f"share:calls<={limits.max_calls_per_org}"
            if streaming:
                streams = self._streams.get(org, 0)
                if streams >= limits.max_streams_per_org:
                    return f"share:streams<={limits.max_streams_per_org}"
                self._streams[org] = streams + 1
            self._calls[org] = calls + 1
            return ""

    def leave(self, org: str, streaming: bool) -> None:
        with self._lock:
            _decrement(self._calls, org)
            if streaming:
                _decrement(self._streams, org)


def _decrement(table: dict[str, int], key: str) -> None:
    held = table.get(key, 0) - 1
    if held > 0:
        table[key] = held
    else:
        table.pop(key, None)


# Rate refusals of one (org, method) after the first in this window are written as one count.
RATE_EVENT_WINDOW_S = 1.0


@dataclass
class _Suppressed:
    since: float
    count: int
    caller: Caller
    kind: str
