"""A loan's figures as money: one way to read, add, subtract and round them, shared by every living-account use case.

Money is a decimal string at every boundary (import, update, payment, plan,
statement) and a `Decimal` only inside a computation, never a float. The
one rounding rule (`cents`): half up to the currency's minor unit, applied
once per figure that is stated (a statement's fee per line; totals are the
sums of the stated lines, so they add up to the cent).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from ..importer import MONEY_RE  # the spelling the import accepts: up to 15 digits and 4 decimals, no sign
from ..model import LoanRow, Repayment

# Currencies whose minor unit is not the cent (ISO 4217 exponent); every other currency rounds to 2 places.
MINOR_UNITS = {"JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "BHD": 3, "KWD": 3, "OMR": 3, "JOD": 3, "TND": 3}
ZERO = Decimal(0)


def money(text: str | None) -> Decimal | None:
    """A stored or given money string as a Decimal; None when absent or not a money string."""
    if not text or not isinstance(text, str) or not MONEY_RE.fullmatch(text):
        return None
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
        return None


def positive(text: str | None) -> Decimal | None:
    """An amount a party gives (a payment, an instalment, a promise): money's spelling and more than zero."""
    value = money(text)
    return value if value is not None and value > ZERO else None


def cents(value: Decimal, currency: str) -> Decimal:
    """The one rounding rule: half up to the currency's minor unit."""
    places = MINOR_UNITS.get(currency, 2)
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def text(value: Decimal, currency: str) -> str:
    """A computed figure as stored and released: rounded to the minor unit, never negative, plain notation."""
    return f"{cents(max(value, ZERO), currency):f}"


def total(amounts: Iterable[str]) -> Decimal:
    return sum((money(a) or ZERO for a in amounts), ZERO)


@dataclass(frozen=True)
class Applied:
    """A loan's figures after a payment: what `update_loan` is given, and whether the loan is now paid in full."""

    values: dict[str, object]
    paid_in_full: bool


def apply_payment(loan: LoanRow, entry: Repayment) -> Applied:
    """A repayment or confirmed payment: appended to the ledger, taken off `outstanding` and `amount_due`
    (neither below zero), and `last_payment_on` moved to its date if later. Paid in full: nothing outstanding."""
    amount = money(entry.amount) or ZERO
    values: dict[str, object] = {"repayments": (*loan.repayments, entry)}
    outstanding = money(loan.outstanding)
    if outstanding is not None:
        values["outstanding"] = text(outstanding - amount, loan.currency)
    due = money(loan.amount_due)
    if due is not None:
        values["amount_due"] = text(due - amount, loan.currency)
    if not loan.last_payment_on or entry.on > loan.last_payment_on:
        values["last_payment_on"] = entry.on
    left = money(str(values.get("outstanding", loan.outstanding)))
    return Applied(values, left is not None and left == ZERO)


@dataclass(frozen=True)
class Reconciliation:
    """Whether principal + interest + fees - repaid equals outstanding; the difference shown, never hidden."""

    principal: str | None
    interest: str | None
    fees: str | None
    repaid: str
    outstanding: str | None
    expected: str | None       # principal + interest + fees - repaid, when principal and outstanding are known
    difference: str | None     # outstanding - expected (signed); "0.00" when it reconciles
    reconciles: bool | None    # None when the figures needed are missing


def reconcile(loan: LoanRow) -> Reconciliation:
    """The ledger from the recorded figures and payments (never a residual that makes it add up)."""
    cur = loan.currency
    repaid = total(r.amount for r in loan.repayments)
    principal, outstanding = money(loan.principal), money(loan.outstanding)
    interest, fees = money(loan.interest) or ZERO, money(loan.fees) or ZERO
    if principal is None or outstanding is None:
        return Reconciliation(loan.principal, loan.interest, loan.fees, text(repaid, cur), loan.outstanding,
                              None, None, None)
    expected = principal + interest + fees - repaid
    diff = cents(outstanding - expected, cur)
    return Reconciliation(loan.principal, loan.interest, loan.fees, text(repaid, cur), loan.outstanding,
                          f"{cents(expected, cur):f}", f"{diff:f}", diff == ZERO)
