"""Promises to pay and repayment plans: kept or broken by what the ledger shows by their dates. Pure functions.

The ledger is the loan's (`LoanRow.repayments`): the lender's repayments and
every payment it confirmed. A commitment counts the entries dated from the
day it was made (`since`) on; the dates are the borrower's local calendar
dates, as every date of the loan is. Whose hands the money went through does
not matter to the borrower's commitment (an agency's promise is kept by a
payment the lender took directly too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from ..model import Repayment
from .ledger import ZERO, money

KEPT, BROKEN, PENDING, ACTIVE = "kept", "broken", "pending", "active"


def paid_between(ledger: Sequence[Repayment], first: date, last: date | None = None) -> Decimal:
    """The ledger's entries dated `first` .. `last` (inclusive; no end: to date), summed."""
    low, high = first.isoformat(), last.isoformat() if last else "9999-12-31"
    return sum((money(r.amount) or ZERO for r in ledger if low <= r.on <= high), ZERO)


def promise_state(amount: str, on: date, since: date, ledger: Sequence[Repayment], today: date) -> str:
    """Kept when `amount` was paid from `since` through `on` (a payment on the day counts); broken the day after
    if it was not; pending until then."""
    if paid_between(ledger, since, on) >= (money(amount) or ZERO):
        return KEPT
    return BROKEN if today > on else PENDING


@dataclass(frozen=True)
class InstalmentState:
    on: str
    amount: str
    state: str  # kept | broken | pending


@dataclass(frozen=True)
class PlanState:
    state: str                            # active | kept | broken
    instalments: tuple[InstalmentState, ...]
    # What the plan asks now, while it is active: arrears and the next instalment, less paid. None once kept or
    # broken: a kept plan asks nothing more, and a broken one no longer stands for the loan's own figures.
    amount_due: Decimal | None
    paid: Decimal                         # entries since the plan began


def plan_state(instalments: Sequence[Repayment], since: date, ledger: Sequence[Repayment], today: date,
               grace_days: int) -> PlanState:
    """An accepted plan's state today. Payments fill the instalments in date order; instalment i is kept when what
    was paid by its date plus the grace period covers it and every one before it, broken when that day has passed
    without, pending before. One broken instalment breaks the plan; all kept keeps it."""
    ordered = sorted(instalments, key=lambda i: i.on)
    grace = timedelta(days=grace_days)
    states: list[InstalmentState] = []
    owed = ZERO
    for inst in ordered:
        owed += money(inst.amount) or ZERO
        deadline = date.fromisoformat(inst.on) + grace
        if paid_between(ledger, since, deadline) >= owed:
            state = KEPT
        elif today > deadline:
            state = BROKEN
        else:
            state = PENDING
        states.append(InstalmentState(inst.on, inst.amount, state))
    paid = paid_between(ledger, since)
    overall = BROKEN if any(s.state == BROKEN for s in states) else (
        KEPT if states and all(s.state == KEPT for s in states) else ACTIVE)
    # Due now: every instalment up to the next one not yet due (arrears and the current one), less what was paid.
    upto = ZERO
    for inst in ordered:
        upto += money(inst.amount) or ZERO
        if date.fromisoformat(inst.on) >= today:
            break
    return PlanState(overall, tuple(states), max(upto - paid, ZERO) if overall == ACTIVE else None, paid)
