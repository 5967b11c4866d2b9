"""Promises and plans kept or broken by the ledger, at their date boundaries (gateway/core/rules/commitments.py)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from gateway.core.model import Repayment
from gateway.core.rules.commitments import plan_state, promise_state

MADE = date(2026, 11, 1)
DUE = date(2026, 11, 10)


def test_a_promise_is_kept_by_a_payment_on_its_day_and_broken_the_day_after() -> None:
    on_the_day = [Repayment("2026-11-10", "50.00"), Repayment("2026-11-05", "50.00")]
    assert promise_state("100.00", DUE, MADE, on_the_day, date(2026, 11, 10)) == "kept"
    late = [Repayment("2026-11-11", "100.00")]
    assert promise_state("100.00", DUE, MADE, late, date(2026, 11, 10)) == "pending"
    assert promise_state("100.00", DUE, MADE, late, date(2026, 11, 11)) == "broken"
    before_it_was_made = [Repayment("2026-10-31", "100.00")]
    assert promise_state("100.00", DUE, MADE, before_it_was_made, date(2026, 11, 12)) == "broken"
    short = [Repayment("2026-11-09", "99.99")]
    assert promise_state("100.00", DUE, MADE, short, date(2026, 11, 11)) == "broken"


PLAN = [Repayment("2026-12-01", "100.00"), Repayment("2027-01-01", "100.00")]


def test_a_plan_sets_what_is_due_instalment_by_instalment_and_is_kept_when_all_are_paid() -> None:
    start = plan_state(PLAN, MADE, [], date(2026, 11, 20), grace_days=5)
    assert start.state == "active" and start.amount_due == Decimal("100.00")
    paid_first = [Repayment("2026-12-01", "100.00")]
    mid = plan_state(PLAN, MADE, paid_first, date(2026, 12, 2), grace_days=5)
    assert [i.state for i in mid.instalments] == ["kept", "pending"] and mid.amount_due == Decimal("100.00")
    done = plan_state(PLAN, MADE, [*paid_first, Repayment("2026-12-20", "100.00")], date(2026, 12, 21), 5)
    assert done.state == "kept" and done.amount_due is None


def test_a_missed_instalment_breaks_the_plan_only_past_the_grace_period() -> None:
    within = plan_state(PLAN, MADE, [], date(2026, 12, 6), grace_days=5)
    assert within.state == "active" and within.amount_due == Decimal("200.00")  # arrears and the next one
    late_but_in_grace = plan_state(PLAN, MADE, [Repayment("2026-12-06", "100.00")], date(2026, 12, 7), 5)
    assert late_but_in_grace.instalments[0].state == "kept"
    past = plan_state(PLAN, MADE, [], date(2026, 12, 7), grace_days=5)
    assert past.state == "broken" and past.instalments[0].state == "broken" and past.amount_due is None
