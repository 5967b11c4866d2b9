"""gateway/core/rules/admission.py: token buckets, the rate limiter's table, and the per-org shares of workers."""

from __future__ import annotations

import pytest

from gateway.core.rules.admission import IDLE_BUCKET_S, RateLimiter, Shares, TokenBucket
from gateway.core.rules.limits import CallLimits, RateSpec


class FakeMonotonic:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_spends_its_burst_then_refills_at_its_rate() -> None:
    spec = RateSpec(per_second=2.0, burst=3.0)
    bucket = TokenBucket(spec.burst, 0.0)
    assert [bucket.take(spec, 0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(spec, 0.5)        # half a second at 2/s: one token back
    assert not bucket.take(spec, 0.5)
    # A long pause refills to the burst, never beyond it.
    assert [bucket.take(spec, 100.0) for _ in range(4)] == [True, True, True, False]


def test_a_clock_going_backwards_refills_nothing() -> None:
    spec = RateSpec(per_second=1.0, burst=1.0)
    bucket = TokenBucket(1.0, 10.0)
    assert bucket.take(spec, 10.0)
    assert not bucket.take(spec, 5.0)    # elapsed is clamped at zero
    assert bucket.stamp == 5.0 and bucket.tokens == 0.0


def test_the_limiter_keeps_one_bucket_per_key() -> None:
    clock = FakeMonotonic()
    limiter = RateLimiter(clock)
    spec = RateSpec(per_second=1.0, burst=2.0)
    assert [limiter.allow("org-a", spec) for _ in range(3)] == [True, True, False]
    assert limiter.allow("org-b", spec)  # another key has its own bucket
    clock.now += 1.0
    assert limiter.allow("org-a", spec) and not limiter.allow("org-a", spec)


def test_idle_buckets_are_swept_so_the_table_stays_bounded() -> None:
    clock = FakeMonotonic()
    limiter = RateLimiter(clock)
    spec = RateSpec(per_second=1.0, burst=1.0)
    for i in range(50):
        limiter.allow(f"idle-{i}", spec)
    clock.now += IDLE_BUCKET_S + 1
    assert limiter.allow("fresh", spec)
    assert set(limiter._buckets) == {"fresh"}


def test_shares_refuse_beyond_the_calls_and_streams_of_one_org() -> None:
    limits = CallLimits(max_calls_per_org=3, max_streams_per_org=1)
    shares = Shares()
    assert shares.enter("org-a", True, limits) == ""
    assert shares.enter("org-a", True, limits) == "share:streams<=1"
    assert shares.enter("org-a", False, limits) == ""
    assert shares.enter("org-a", False, limits) == ""
    assert shares.enter("org-a", False, limits) == "share:calls<=3"
    assert shares.enter("org-b", True, limits) == ""  # another org is untouched
    shares.leave("org-a", True)
    assert shares.enter("org-a", True, limits) == ""


@pytest.mark.parametrize("streaming", [False, True])
def test_leaving_empties_the_tables(streaming: bool) -> None:
    shares = Shares()
    limits = CallLimits()
    assert shares.enter("org-a", streaming, limits) == ""
    shares.leave("org-a", streaming)
    assert shares._calls == {} and shares._streams == {}
    shares.leave("org-a", streaming)  # a stray leave never goes negative
    assert shares._calls == {} and shares._streams == {}
