"""The money rules every living-account figure goes through (gateway/core/rules/ledger.py)."""

from __future__ import annotations

from decimal import Decimal

from gateway.core.model import LoanRow, Repayment
from gateway.core.rules import ledger


def loan(**kw: object) -> LoanRow:
    base: dict[str, object] = dict(loan_id="L-1", product=None, currency="CNY", principal="1000.00",
                                   outstanding="600.00", amount_due="300.00", originated_on=None, due_on=None,
                                   first_delinquency_on=None, last_payment_on="2026-09-10",
                                   repayments=(Repayment("2026-09-10", "400.00"),), limitation_date=None,
                                   negative_notice_on=None)
    return LoanRow(**{**base, **kw})  # type: ignore[arg-type]


def test_money_is_read_only_in_the_import_spelling() -> None:
    assert ledger.money("12.5") == Decimal("12.5")
    for bad in ("", None, "-1", "1e3", "1.23456", "1,00", " 1", "NaN", "１２"):
        assert ledger.money(bad) is None, bad


def test_rounding_is_half_up_to_the_minor_unit() -> None:
    assert ledger.cents(Decimal("0.125"), "CNY") == Decimal("0.13")
    assert ledger.cents(Decimal("0.124"), "USD") == Decimal("0.12")
    assert ledger.cents(Decimal("10.5"), "JPY") == Decimal("11")
    assert ledger.text(Decimal("-3"), "CNY") == "0.00"


def test_a_payment_is_appended_and_taken_off_the_figures_never_below_zero() -> None:
    applied = ledger.apply_payment(loan(), Repayment("2026-11-02", "350.00", "agency-1", "P-1"))
    assert applied.values["outstanding"] == "250.00" and applied.values["amount_due"] == "0.00"
    assert applied.values["last_payment_on"] == "2026-11-02" and not applied.paid_in_full
    assert applied.values["repayments"][-1] == Repayment("2026-11-02", "350.00", "agency-1", "P-1")  # type: ignore[index]
    earlier = ledger.apply_payment(loan(), Repayment("2026-01-01", "600.00"))
    assert "last_payment_on" not in earlier.values and earlier.paid_in_full


def test_a_ledger_that_does_not_add_up_is_shown_with_its_difference() -> None:
    ok = ledger.reconcile(loan())
    assert ok.reconciles and ok.difference == "0.00" and ok.repaid == "400.00"
    off = ledger.reconcile(loan(interest="50.00"))
    assert off.reconciles is False and off.expected == "650.00" and off.difference == "-50.00"
    assert ledger.reconcile(loan(principal=None)).reconciles is None
