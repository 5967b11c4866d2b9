"""Commissions and statements (issue 24): a month's confirmed payments, each once, with its rate and fee.

The period is the UTC calendar month of the confirmation. A fee is amount x rate rounded half up to the
currency's minor unit, once per line; the totals are the sums of the stated lines, so they add up to the cent
(rounding the sum instead would give another figure: the cases below are chosen so that it does).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from custos_client import CustosClientError

from gateway import synth
from tests.conftest import Env
from tests.test_cli import Run, assert_error, conn


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    return Run(capsys)


def refused(fn: Any) -> str:
    with pytest.raises(CustosClientError) as info:
        fn()
    return info.value.code


def paid(env: Env, org: str, case: str, amount: str, ref: str, on: str = "2026-11-29") -> str:
    """A payment reported by `org` and confirmed by lender-a a minute later (lines are in confirmation order)."""
    env.clock.advance(minutes=1)
    pid = env.client(org).report_payment(case, amount, on, ref).payment_id
    env.client("lender-a").confirm_payment(pid)
    return str(pid)


@pytest.fixture
def book(seeded: Env) -> dict[str, Any]:
    """November: agency-1 (rate 0.05) recovers 10.50 and 0.30 CNY on C-1; agency-2 (rate 0.1) 1.25 USD on C-4.
    Not in November's statement: one payment only reported, one rejected, and one confirmed on 1 December (UTC)."""
    lender = seeded.client("lender-a")
    lender.assign("C-1", "agency-1", "collection", "2026-12-31", commission="0.05")
    lender.assign("C-4", "agency-2", "collection", "2026-12-31", commission="0.1")  # C-4: US, USD
    ids = {"a1": paid(seeded, "agency-1", "C-1", "10.50", "A1-1"),   # fee 0.525 -> 0.53 (half up, not to even)
           "a2": paid(seeded, "agency-1", "C-1", "0.30", "A1-2"),    # fee 0.015 -> 0.02
           "b1": paid(seeded, "agency-2", "C-4", "1.25", "A2-1")}    # fee 0.125 -> 0.13
    seeded.client("agency-1").report_payment("C-1", "5.00", "2026-11-29", "A1-PENDING")
    rejected = seeded.client("agency-1").report_payment("C-1", "6.00", "2026-11-29", "A1-REJECTED")
    lender.reject_payment(rejected.payment_id, "not received")
    # Confirmed at 23:59 UTC on 30 November, already 1 December in Shanghai: the period is the UTC month.
    seeded.clock.current = datetime(2026, 11, 30, 23, 58, tzinfo=UTC)
    ids["late"] = paid(seeded, "agency-1", "C-1", "1.00", "A1-3", on="2026-11-30")
    seeded.clock.current = datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC)  # confirmed a minute later: December
    ids["dec"] = paid(seeded, "agency-1", "C-1", "2.00", "A1-4", on="2026-12-01")
    return {"env": seeded, "ids": ids}


def test_the_lender_gets_every_confirmed_payment_of_the_period_once(book: dict[str, Any]) -> None:
    env, ids = book["env"], book["ids"]
    doc = env.client("lender-a").statement("2026-11")
    assert doc.period == "2026-11"
    assert [line.payment_id for line in doc.lines] == [ids["a1"], ids["a2"], ids["b1"], ids["late"]]
    first = doc.lines[0]
    assert first.to_dict() == {"payment_id": ids["a1"], "case_id": "C-1", "lender": "lender-a", "org": "agency-1",
                     "on": "2026-11-29", "confirmed_at": first.confirmed_at, "amount": "10.50", "currency": "CNY",
                     "rate": "0.05", "fee": "0.53"}
    assert first.confirmed_at == "2026-11-30T02:01:00.000000Z"
    # Two currencies: no sum across them; each currency's totals are the sums of its lines.
    assert (doc.recovered, doc.fees, doc.currency) == ("", "", "")
    assert doc.to_dict()["totals"] == {"CNY": {"recovered": "11.80", "fees": "0.60"},
                                       "USD": {"recovered": "1.25", "fees": "0.13"}}
    december = env.client("lender-a").statement("2026-12")
    assert [line.payment_id for line in december.lines] == [ids["dec"]]
    assert (december.recovered, december.fees, december.currency) == ("2.00", "0.10", "CNY")
    assert env.client("lender-a").statement("2026-10").lines == []
    assert env.client("lender-a").statement("2026-10").recovered == "0.00"
    assert env.client("lender-b").statement("2026-11").lines == []  # another lender's book is not its own


def test_one_agencys_statement_has_none_of_another_agencys_and_adds_up_to_the_cent(book: dict[str, Any]) -> None:
    env, ids = book["env"], book["ids"]
    for doc in (env.client("lender-a").statement("2026-11", "agency-1"), env.client("agency-1").statement("2026-11"),
                env.client("agency-1").statement("2026-11", "agency-1")):
        assert [line.payment_id for line in doc.lines] == [ids["a1"], ids["a2"], ids["late"]]
        assert {line.org for line in doc.lines} == {"agency-1"}
        # 10.50 x 0.05 = 0.525 -> 0.53, 0.30 x 0.05 = 0.015 -> 0.02, 1.00 x 0.05 = 0.05: fees 0.60, where the
        # rounded sum (11.80 x 0.05 = 0.59) would be a cent short.
        assert [line.fee for line in doc.lines] == ["0.53", "0.02", "0.05"]
        assert (doc.recovered, doc.fees, doc.currency) == ("11.80", "0.60", "CNY")
    agency2 = env.client("agency-2").statement("2026-11")
    assert [(line.payment_id, line.fee) for line in agency2.lines] == [(ids["b1"], "0.13")]
    assert (agency2.recovered, agency2.fees) == ("1.25", "0.13")


def test_an_agency_cannot_read_another_agencys_statement(book: dict[str, Any]) -> None:
    env = book["env"]
    assert refused(lambda: env.client("agency-1").statement("2026-11", "agency-2")) == "NOT_YOUR_STATEMENT"
    assert refused(lambda: env.client("lawfirm-1").statement("2026-11", "agency-1")) == "NOT_YOUR_STATEMENT"
    assert refused(lambda: env.client("bureau-1").statement("2026-11")) == "WRONG_ORG_KIND"
    denied = [(e.org, e.code) for e in env.events() if e.method == "GetStatement" and e.decision == "deny"]
    assert denied == [("agency-1", "NOT_YOUR_STATEMENT"), ("lawfirm-1", "NOT_YOUR_STATEMENT"),
                      ("bureau-1", "WRONG_ORG_KIND")]


@pytest.mark.parametrize("period", ["2026-13", "2026-00", "2026-1", "26-11", "2026-11-01", "", "2026/11"])
def test_a_period_is_a_month(seeded: Env, period: str) -> None:
    assert refused(lambda: seeded.client("lender-a").statement(period)) == "INVALID_PERIOD"


def test_commission_in_placement_lines_and_its_spelling(seeded: Env) -> None:
    lender = seeded.client("lender-a")
    lines = [{"case_id": "C-5", "to": "agency-2", "purpose": "collection", "until": "2026-12-31",
              "commission": "0.125"},
             {"case_id": "C-6", "to": "agency-2", "purpose": "collection", "until": "2026-12-31", "commission": "1.5"},
             {"case_id": "C-6", "to": "agency-2", "purpose": "collection", "until": "2026-12-31", "commission": 0.1}]
    result = lender.assign_lines(synth.jsonl(lines).splitlines())
    assert result.assigned == 1
    assert [(r.line, r.code) for r in result.rejected] == [(2, "INVALID_COMMISSION"),
                                                                     (3, "IMPORT_INVALID_FIELD")]
    for bad in ("1.00001", "-0.1", "0.1e1", ".5", "2"):
        assert refused(lambda bad=bad: lender.assign("C-6", "agency-2", "collection", "2026-12-31",
                                                     commission=bad)) == "INVALID_COMMISSION"
    pid = paid(seeded, "agency-2", "C-5", "100.10", "P5-1")  # 100.10 x 0.125 = 12.5125 -> 12.51
    [line] = seeded.client("agency-2").statement("2026-11").lines
    assert (line.payment_id, line.rate, line.fee) == (pid, "0.125", "12.51")


def test_statement_on_the_command_line(book: dict[str, Any], run: Run) -> None:
    env, ids = book["env"], book["ids"]
    rc, doc, _ = run.json("statement", "--period", "2026-11", "--agency", "agency-1", *conn(env, "lender-a"))
    assert rc == 0 and {"period", "lines", "recovered", "fees"} <= set(doc)
    assert (doc["recovered"], doc["fees"]) == ("11.80", "0.60")
    assert set(doc["lines"][0]) == {"payment_id", "case_id", "lender", "org", "on", "confirmed_at", "amount",
                                    "currency", "rate", "fee"}
    rc, doc, err = run.json("statement", "--period", "2026-11", "--agency", "agency-2", *conn(env, "agency-1"))
    assert_error(rc, doc, err, "NOT_YOUR_STATEMENT")
    rc, out, _ = run("statement", "--period", "2026-12", *conn(env, "agency-1"))
    assert rc == 0 and ids["dec"] in out and "recovered 2.00, fees 0.10" in out
