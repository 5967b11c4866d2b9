"""Payments reported by those who collect, commissions and statements: the checks and the arithmetic. Pure.

Money stays a decimal string at the boundary and a `Decimal` inside (rules/ledger.py). A fee is stated once per
statement line, rounded by the one rule (`ledger.cents`: half up to the currency's minor unit); a statement's
totals are the sums of its stated lines, so they add up to the cent.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from ..errors import Code
from ..model import ID_RE, LoanRow, PaymentRow
from .ledger import ZERO, cents, money

# A commission rate: 0 to 1, at most 4 decimals ("0.18", "1", "0.0125"); one spelling, as money has one.
RATE_RE = re.compile(r"^(0(\.[0-9]{1,4})?|1(\.0{1,4})?)\Z")
PERIOD_RE = re.compile(r"^([0-9]{4})-(0[1-9]|1[0-2])\Z")
# The purposes under which a mandated organisation collects, and so may report a payment.
PAYMENT_PURPOSES = ("collection", "litigation")


def rate(text: str) -> Decimal | None:
    """A commission rate as given to `lender assign --commission` or a placement line; else None."""
    return Decimal(text) if isinstance(text, str) and RATE_RE.fullmatch(text) else None


def reference_ok(text: str) -> bool:
    return bool(ID_RE.fullmatch(text))


def date_problem(on: date, loan: LoanRow | None, today: date) -> Code | None:
    """Why a payment cannot have been made on `on`: after the borrower's local today, or before the loan began."""
    originated = loan.originated_on if loan is not None else None
    if on > today or (originated and on.isoformat() < originated):
        return Code.PAYMENT_DATE_OUT_OF_RANGE
    return None


def same_payment(stored: PaymentRow, case_id: str, value: Decimal, on: str) -> bool:
    """A report that repeats a stored one (the same case, amount and date under the same reference)."""
    return stored.case_id == case_id and money(stored.amount) == value and stored.paid_on == on


def period_bounds(text: str) -> tuple[str, str] | None:
    """A statement's period YYYY-MM as [start, end) in the stored time spelling (RFC 3339, UTC); else None.

    The month is a UTC calendar month of the confirmation time (`decided_at`): every payment falls in exactly
    one period, whatever the time zones of the parties.
    """
    m = PERIOD_RE.fullmatch(text) if isinstance(text, str) else None
    if m is None or not 1900 <= int(m[1]) <= 8999:
        return None
    year, month = int(m[1]), int(m[2])
    nxt = (year + 1, 1) if month == 12 else (year, month + 1)
    return f"{year:04d}-{month:02d}-01T00:00:00.000000Z", f"{nxt[0]:04d}-{nxt[1]:02d}-01T00:00:00.000000Z"


def fee(value: Decimal, commission: Decimal, currency: str) -> Decimal:
    """The fee on one confirmed payment: amount x rate, rounded half up to the currency's minor unit."""
    return cents(value * commission, currency)


@dataclass(frozen=True)
class Line:
    payment_id: str
    case_id: str
    lender: str
    org: str
    on: str
    confirmed_at: str
    amount: str
    currency: str
    rate: str
    fee: str


def lines(payments: Sequence[PaymentRow]) -> list[Line]:
    """One statement line per confirmed payment, its fee stated once (rounded)."""
    out = []
    for p in payments:
        value, commission = money(p.amount) or ZERO, rate(p.commission or "0") or ZERO
        out.append(Line(p.id, p.case_id, p.lender_id, p.org_id, p.paid_on, p.decided_at or "",
                        f"{cents(value, p.currency):f}", p.currency, p.commission or "0",
                        f"{fee(value, commission, p.currency):f}"))
    return out


def statement(period: str, payments: Sequence[PaymentRow]) -> dict[str, Any]:
    """The statement document: its lines, and per currency the sums of the lines' amounts and fees.

    `recovered` and `fees` are those sums when the lines are in one currency ("0.00" with no lines); with
    several currencies they are "" (amounts of different currencies do not add up) and `totals` holds each.
    """
    stated = lines(payments)
    totals: dict[str, dict[str, Decimal]] = {}
    for line in stated:
        t = totals.setdefault(line.currency, {"recovered": ZERO, "fees": ZERO})
        t["recovered"] += Decimal(line.amount)
        t["fees"] += Decimal(line.fee)
    by_currency = {cur: {"recovered": f"{cents(t['recovered'], cur):f}", "fees": f"{cents(t['fees'], cur):f}"}
                   for cur, t in sorted(totals.items())}
    if len(by_currency) == 1:
        currency, single = next(iter(by_currency.items()))
        recovered, fees = single["recovered"], single["fees"]
    else:
        currency = ""
        recovered = fees = "0.00" if not by_currency else ""
    return {"period": period, "lines": [asdict(line) for line in stated], "recovered": recovered, "fees": fees,
            "currency": currency, "totals": by_currency}
