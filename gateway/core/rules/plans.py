"""Promises to pay and repayment plans: what a valid one is, and how they read today. Pure functions.

Dates are the borrower's local calendar dates (as every date of a loan is);
amounts are money strings (`ledger.money`). The bounds (how far ahead a
promise may fall, the grace of an instalment) are the jurisdiction's conduct
rules (`[plans]`, `conduct.PlanRules`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from ..errors import Code
from ..model import ContactRow, PlanRow, Repayment, parse_date
from .commitments import ACTIVE, plan_state, promise_state
from .ledger import positive, text

MAX_INSTALMENTS = 60


def promise_terms(result: str, amount: str, on: str) -> Code | None:
    """The terms' shape for this result (the date's range needs the case: `promise_date`); None: well formed."""
    if result != "promise_to_pay":
        return Code.PROMISE_TERMS_NOT_ALLOWED if (amount or on) else None
    if not amount or not on:
        return Code.PROMISE_TERMS_REQUIRED
    if positive(amount) is None:
        return Code.INVALID_AMOUNT
    if parse_date(on) is None:
        return Code.INVALID_DATE
    return None


def promise_date(on: date, today: date, max_days: int) -> Code | None:
    """A promise falls from the borrower's today up to `max_days` ahead."""
    return None if today <= on <= today + timedelta(days=max_days) else Code.PROMISE_DATE_OUT_OF_RANGE


def plan_instalments(raw: Sequence[tuple[str, str]]) -> tuple[Code, tuple[Repayment, ...]]:
    """(on, amount) pairs as instalments, or the code that refuses them (the first date's range: `plan_start`)."""
    if not 1 <= len(raw) <= MAX_INSTALMENTS:
        return Code.PLAN_INVALID, ()
    out: list[Repayment] = []
    for on, amount in raw:
        day = parse_date(on)
        if day is None:
            return Code.INVALID_DATE, ()
        if positive(amount) is None:
            return Code.INVALID_AMOUNT, ()
        if out and on <= out[-1].on:
            return Code.PLAN_INVALID, ()
        out.append(Repayment(day.isoformat(), amount))
    return Code.OK, tuple(out)


def plan_start(instalments: Sequence[Repayment], today: date) -> Code | None:
    return Code.PLAN_INVALID if instalments[0].on < today.isoformat() else None


def local_day(timestamp: str, zone: Any) -> date:
    """An RFC 3339 time's date in the borrower's zone (a ZoneInfo)."""
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).astimezone(zone).date()


def promise_of(row: ContactRow, ledger: Sequence[Repayment], zone: Any, today: date) -> str | None:
    """A contact's promise judged by the ledger as of today (kept, broken, pending), counted from the borrower's
    day the outcome was recorded; None for a contact with no promise terms."""
    if row.promise_amount is None or not row.promise_on or not row.result_at:
        return None
    return promise_state(row.promise_amount, date.fromisoformat(row.promise_on), local_day(row.result_at, zone),
                         ledger, today)


def history_entry(row: ContactRow, ledger: Sequence[Repayment], zone: Any, today: date) -> dict[str, str | None]:
    """A contact as the history releases it; a promise with its state as of today (`promise_of`)."""
    entry = row.history_entry()
    state = promise_of(row, ledger, zone, today)
    if state is not None:
        entry["promise_state"] = state
    return entry


def plan_view(plan: PlanRow, active: bool, ledger: Sequence[Repayment], currency: str, today: date,
              grace_days: int, since: date | None) -> dict[str, Any]:
    """A plan as `plan show` releases it: an accepted plan (the case's active one) with its state from the ledger
    (active, kept or broken), what was paid toward it and, while active, what it asks now."""
    out: dict[str, Any] = {"plan_id": plan.plan_id, "case_id": plan.case_id, "org": plan.org_id,
                           "status": plan.status, "proposed_at": plan.proposed_at,
                           "decided_at": plan.decided_at or "",
                           "instalments": [{"on": i.on, "amount": i.amount, "state": ""} for i in plan.instalments]}
    if plan.status == "accepted" and active and since is not None:
        state = plan_state(plan.instalments, since, ledger, today, grace_days)
        out["status"] = state.state
        out["instalments"] = [{"on": i.on, "amount": i.amount, "state": i.state} for i in state.instalments]
        out["paid"] = text(state.paid, currency)
        if state.state == ACTIVE and state.amount_due is not None:
            out["amount_due"] = text(state.amount_due, currency)
    return out

