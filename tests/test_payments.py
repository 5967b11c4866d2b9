"""Payments reported by those who collect (issue 24): report, the lender's confirm or reject, and what follows.

A confirmed payment enters the loan's ledger in the unit of work that confirms it: the lender's and the
agency's views, the next pull and the ledger all move; a rejected one changes nothing but its status. A
reference reported twice is one payment; no live mandate, no report; paid in full, the case settles.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from custos_client import CustosClientError, PullRecord, PullRemoved

from tests.conftest import Env
from tests.test_cli import Run, assert_error, conn

TODAY = "2026-11-30"  # the FakeClock's day in Shanghai (C-1's time zone)


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    return Run(capsys)


def fields(env: Env, org: str, case: str, purpose: str) -> dict[str, str]:
    return dict(env.client(org).get_case(case, purpose).fields)


def pull(env: Env, org: str, since: str = "") -> tuple[dict[str, dict[str, Any]], str]:
    items = list(env.client(org).pull_cases("collection", since))
    return {i.record.case_id: i.record for i in items if isinstance(i, PullRecord)}, items[-1].cursor


def refused(fn: Any) -> str:
    with pytest.raises(CustosClientError) as info:
        fn()
    return info.value.code


def rules_of(env: Env, **filters: Any) -> list[tuple[str, str, str]]:
    return [(e.data["rule"], e.decision, e.code) for e in env.events(**filters)]


def test_report_then_confirm_moves_the_balances_the_ledger_and_the_next_pull(seeded: Env) -> None:
    lender, agency = seeded.client("lender-a"), seeded.client("agency-1")
    before = fields(seeded, "lender-a", "C-1", "servicing")
    _, cursor = pull(seeded, "agency-1")

    reported = agency.report_payment("C-1", "50.00", "2026-11-29", "RCPT-1")
    assert reported.status == "reported" and reported.payment_id.startswith("P-")
    assert (reported.case_id, reported.amount, reported.currency, reported.on) == \
        ("C-1", "50.00", "CNY", "2026-11-29")
    # Reported is not yet money: nothing moved, the work list has no change.
    assert fields(seeded, "lender-a", "C-1", "servicing") == before
    changed, cursor = pull(seeded, "agency-1", cursor)
    assert changed == {}
    [listed] = lender.payments()
    assert (listed.payment_id, listed.status, listed.org, listed.reference, listed.decided_at) == \
        (reported.payment_id, "reported", "agency-1", "RCPT-1", "")

    decision = lender.confirm_payment(reported.payment_id)
    outstanding = Decimal(before["outstanding"]) - Decimal("50.00")
    due = Decimal(before["amount_due"]) - Decimal("50.00")
    assert decision.status == "confirmed" and decision.case_status == "open"
    assert (Decimal(decision.outstanding), Decimal(decision.amount_due)) == (outstanding, due)

    after = fields(seeded, "lender-a", "C-1", "servicing")
    assert (Decimal(after["outstanding"]), Decimal(after["amount_due"])) == (outstanding, due)
    assert after["last_payment_on"] == "2026-11-29"
    ledger = json.loads(after["repayments"])
    assert ledger[:-1] == json.loads(before["repayments"])
    assert ledger[-1] == {"on": "2026-11-29", "amount": "50.00", "by": "agency-1",
                          "payment_id": reported.payment_id}
    # The agency's own collection view and its next pull carry the new figure.
    assert Decimal(fields(seeded, "agency-1", "C-1", "collection")["amount_due"]) == due
    changed, _ = pull(seeded, "agency-1", cursor)
    assert list(changed) == ["C-1"] and Decimal(changed["C-1"].fields["amount_due"]) == due
    assert [p.status for p in lender.payments(status="confirmed")] == ["confirmed"]
    assert lender.payments(status="reported") == []

    pid = reported.payment_id
    events = seeded.events(case_id="C-1")
    report = [e for e in events if e.data["rule"] == f"payment.report:{pid}"]
    confirm = [e for e in events if e.data["rule"] == f"payment.confirm:{pid}"]
    assert [(e.org, e.decision, e.data["borrower_id"], e.data["lender"]) for e in report] == \
        [("agency-1", "allow", "B-1", "lender-a")]
    assert [(e.org, e.decision, e.data["borrower_id"], e.data["lender"]) for e in confirm] == \
        [("lender-a", "allow", "B-1", "lender-a")]
    assert not [e for e in events if "50.00" in json.dumps(e.data)]  # never the amount


def test_a_rejected_payment_changes_nothing_and_its_reason_is_sealed(seeded: Env) -> None:
    lender, agency = seeded.client("lender-a"), seeded.client("agency-1")
    reported = agency.report_payment("C-1", "70.00", "2026-11-28", "RCPT-2")
    _, cursor = pull(seeded, "agency-1")
    before = fields(seeded, "lender-a", "C-1", "servicing")
    reason = "no such transfer reached our account; ask 张伟 at the branch"

    decision = lender.reject_payment(reported.payment_id, reason)
    assert decision.status == "rejected" and decision.decided_at
    assert fields(seeded, "lender-a", "C-1", "servicing") == before
    assert pull(seeded, "agency-1", cursor)[0] == {}
    [listed] = lender.payments(status="rejected")
    assert (listed.payment_id, listed.reason) == (reported.payment_id, reason)
    # Stored sealed: the row's bytes do not hold the text, and the store opens it for the lender.
    reader = seeded.gw.core.reader()
    reader.refresh()
    row = reader.get_payment(reported.payment_id)
    assert row is not None and row.reason is not None and reason.encode() not in row.reason
    assert "张伟".encode() not in row.reason and reader.payment_reason(row) == reason
    assert not [e for e in seeded.events() if "张伟" in json.dumps(e.data, ensure_ascii=False)]
    # Decided once: neither confirm nor reject again, each refusal audited.
    assert refused(lambda: lender.confirm_payment(reported.payment_id)) == "PAYMENT_ALREADY_DECIDED"
    assert refused(lambda: lender.reject_payment(reported.payment_id, "again")) == "PAYMENT_ALREADY_DECIDED"
    assert fields(seeded, "lender-a", "C-1", "servicing") == before
    assert [c for _, d, c in rules_of(seeded, case_id="C-1") if d == "deny"].count("PAYMENT_ALREADY_DECIDED") == 2


@pytest.mark.parametrize("reason", ["", "   ", "x" * 501])
def test_a_rejection_needs_a_reason(seeded: Env, reason: str) -> None:
    reported = seeded.client("agency-1").report_payment("C-1", "70.00", "2026-11-28", "RCPT-2")
    assert refused(lambda: seeded.client("lender-a").reject_payment(reported.payment_id, reason)) == \
        "INVALID_REASON"
    assert [p.status for p in seeded.client("lender-a").payments()] == ["reported"]


def test_a_reference_reported_twice_is_one_payment(seeded: Env) -> None:
    lender, agency = seeded.client("lender-a"), seeded.client("agency-1")
    first = agency.report_payment("C-1", "20.00", "2026-11-29", "RCPT-3")
    again = agency.report_payment("C-1", "20.0", "2026-11-29", "RCPT-3")  # the same amount, spelt otherwise
    assert again.payment_id == first.payment_id and again.status == "reported"
    assert [p.payment_id for p in lender.payments()] == [first.payment_id]
    lender.confirm_payment(first.payment_id)
    after = fields(seeded, "lender-a", "C-1", "servicing")
    # Reported again once confirmed: still the one payment, with its current status, and the ledger holds it once.
    assert agency.report_payment("C-1", "20.00", "2026-11-29", "RCPT-3").status == "confirmed"
    assert fields(seeded, "lender-a", "C-1", "servicing") == after
    assert [r for r in json.loads(after["repayments"]) if r.get("payment_id") == first.payment_id] != []
    assert len(lender.payments()) == 1
    rules = [r for r, _, _ in rules_of(seeded, case_id="C-1")]
    assert rules.count(f"payment.report:{first.payment_id}") == 1
    assert rules.count(f"payment.report.again:{first.payment_id}") == 2


@pytest.mark.parametrize(("case", "amount", "on"), [("C-1", "20.01", "2026-11-29"), ("C-1", "20.00", "2026-11-28"),
                                                     ("C-2", "20.00", "2026-11-29")])
def test_the_same_reference_for_another_payment_is_a_conflict(seeded: Env, case: str, amount: str, on: str) -> None:
    lender, agency = seeded.client("lender-a"), seeded.client("agency-1")
    lender.assign("C-2", "agency-1", "collection", "2026-12-31")
    first = agency.report_payment("C-1", "20.00", "2026-11-29", "RCPT-4")
    assert refused(lambda: agency.report_payment(case, amount, on, "RCPT-4")) == "PAYMENT_REFERENCE_CONFLICT"
    assert [p.payment_id for p in lender.payments()] == [first.payment_id]
    assert ("payment.reference", "deny", "PAYMENT_REFERENCE_CONFLICT") in rules_of(seeded, org="agency-1")
    # A reference is the reporting organisation's own: another agency's same reference is another payment.
    lender.assign("C-1", "agency-2", "collection", "2026-12-31")
    other = seeded.client("agency-2").report_payment("C-1", "20.00", "2026-11-29", "RCPT-4")
    assert other.payment_id != first.payment_id and len(lender.payments()) == 2


def test_no_live_mandate_no_report(seeded: Env) -> None:
    lender = seeded.client("lender-a")
    report = ("20.00", "2026-11-29", "RCPT-5")
    # Never mandated; another lender's case (by id and qualified): the answer of any unmandated access.
    assert refused(lambda: seeded.client("agency-2").report_payment("C-1", *report)) == "NO_MANDATE"
    assert refused(lambda: seeded.client("agency-1").report_payment("BC-1", *report)) == "NO_MANDATE"
    assert refused(lambda: seeded.client("agency-1").report_payment("lender-b/BC-1", *report)) == "NO_MANDATE"
    # Recalled: the same code a read gets.
    lender.recall("C-1", "agency-1")
    read = refused(lambda: seeded.client("agency-1").get_case("C-1", "collection"))
    assert read == "MANDATE_RECALLED"
    assert refused(lambda: seeded.client("agency-1").report_payment("C-1", *report)) == read
    # Kinds that do not collect.
    assert refused(lambda: seeded.client("bureau-1").report_payment("C-1", *report)) == "WRONG_ORG_KIND"
    assert refused(lambda: lender.report_payment("C-1", *report)) == "WRONG_ORG_KIND"
    assert lender.payments() == []
    denied = {(e.org, e.code) for e in seeded.events() if e.decision == "deny"
              and e.method == "ReportPayment"}
    assert denied == {("agency-2", "NO_MANDATE"), ("agency-1", "NO_MANDATE"), ("agency-1", "MANDATE_RECALLED"),
                      ("bureau-1", "WRONG_ORG_KIND"), ("lender-a", "WRONG_ORG_KIND")}


@pytest.mark.parametrize(("amount", "on", "reference", "code"), [
    ("0", "2026-11-29", "R-1", "INVALID_AMOUNT"),
    ("0.00", "2026-11-29", "R-1", "INVALID_AMOUNT"),
    ("-5", "2026-11-29", "R-1", "INVALID_AMOUNT"),
    ("1e3", "2026-11-29", "R-1", "INVALID_AMOUNT"),
    ("10.12345", "2026-11-29", "R-1", "INVALID_AMOUNT"),
    ("", "2026-11-29", "R-1", "INVALID_AMOUNT"),
    ("10.00", "2026-11-31", "R-1", "INVALID_DATE"),
    ("10.00", "29/11/2026", "R-1", "INVALID_DATE"),
    ("10.00", "2026-12-01", "R-1", "PAYMENT_DATE_OUT_OF_RANGE"),  # tomorrow in Shanghai
    ("10.00", "2024-01-01", "R-1", "PAYMENT_DATE_OUT_OF_RANGE"),  # before the loan began
    ("10.00", "2026-11-29", "bad ref!", "INVALID_REFERENCE"),
    ("10.00", "2026-11-29", "", "INVALID_REFERENCE"),
])
def test_bad_reports_get_a_stable_code_and_store_nothing(seeded: Env, amount: str, on: str, reference: str,
                                                         code: str) -> None:
    assert refused(lambda: seeded.client("agency-1").report_payment("C-1", amount, on, reference)) == code
    assert seeded.client("lender-a").payments() == []
    assert [(e.code, e.case_id) for e in seeded.events(org="agency-1") if e.method == "ReportPayment"] == \
        [(code, "C-1")]


def test_only_the_owning_lender_decides(seeded: Env) -> None:
    reported = seeded.client("agency-1").report_payment("C-1", "20.00", "2026-11-29", "RCPT-6")
    pid = reported.payment_id
    assert refused(lambda: seeded.client("lender-b").confirm_payment(pid)) == "PAYMENT_NOT_FOUND"
    assert refused(lambda: seeded.client("lender-b").reject_payment(pid, "not ours")) == "PAYMENT_NOT_FOUND"
    assert refused(lambda: seeded.client("lender-a").confirm_payment("P-0000")) == "PAYMENT_NOT_FOUND"
    assert refused(lambda: seeded.client("lender-a").confirm_payment("no such id!")) == "PAYMENT_NOT_FOUND"
    assert refused(lambda: seeded.client("agency-1").confirm_payment(pid)) == "WRONG_ORG_KIND"
    assert refused(lambda: seeded.client("lender-b").payments(status="paid")) == "UNKNOWN_PAYMENT_STATUS"
    assert seeded.client("lender-b").payments() == []
    assert [p.status for p in seeded.client("lender-a").payments()] == ["reported"]


def test_a_payment_in_full_settles_the_case_and_the_agency_then_gets_case_closed(seeded: Env) -> None:
    lender, agency = seeded.client("lender-a"), seeded.client("agency-1")
    outstanding = fields(seeded, "lender-a", "C-1", "servicing")["outstanding"]
    _, cursor = pull(seeded, "agency-1")
    reported = agency.report_payment("C-1", outstanding, TODAY, "RCPT-FULL")
    decision = lender.confirm_payment(reported.payment_id)
    assert (decision.case_status, decision.outstanding, decision.amount_due) == ("settled", "0.00", "0.00")
    case = next(c for c in lender.list_cases() if c.case_id == "C-1")
    assert case.status == "settled"
    assert refused(lambda: agency.get_case("C-1", "collection")) == "CASE_CLOSED"
    assert refused(lambda: agency.report_payment("C-1", "1.00", TODAY, "RCPT-LATE")) == "CASE_CLOSED"
    # Its mandates end, as today: the agency's next pull removes the case.
    items = list(agency.pull_cases("collection", cursor))
    assert [(i.case_id, i.code) for i in items if isinstance(i, PullRemoved)] == [("C-1", "CASE_CLOSED")]
    rules = [r for r, _, _ in rules_of(seeded, case_id="C-1")]
    assert f"flags:status=settled;paid_in_full:{reported.payment_id}" in rules


def test_a_law_firm_reports_on_its_litigation_case_and_the_recalled_agency_cannot(escalated: Env) -> None:
    firm = escalated.client("lawfirm-1")
    reported = firm.report_payment("C-1", "30.00", "2026-11-29", "TRUST-1")
    assert reported.status == "reported"
    assert refused(lambda: escalated.client("agency-1").report_payment("C-1", "30.00", "2026-11-29", "R")) == \
        "MANDATE_RECALLED"
    decision = escalated.client("lender-a").confirm_payment(reported.payment_id)
    assert decision.org == "lawfirm-1" and decision.commission == "0"  # escalation carries no fee term


def test_the_commission_applied_is_the_orgs_latest_mandate_on_the_case_even_ended(seeded: Env) -> None:
    lender, agency = seeded.client("lender-a"), seeded.client("agency-1")
    assert lender.assign("C-1", "agency-1", "collection", "2026-12-31", commission="0.18").commission == "0.18"
    reported = agency.report_payment("C-1", "100.00", "2026-11-29", "RCPT-7")
    lender.recall("C-1", "agency-1")  # the agency was terminated after it collected
    assert lender.confirm_payment(reported.payment_id).commission == "0.18"
    assert lender.payments()[0].commission == "0.18"


# ------------------------------------------------------------------ the command line


def test_payment_commands_print_their_documents(seeded: Env, run: Run) -> None:
    rc, doc, _ = run.json("lender", "assign", "C-1", "--to", "agency-1", "--purpose", "collection",
                          "--until", "2026-12-31", "--commission", "0.2", "--agreement", "AG-1", "--pia", "PIA-1",
                          *conn(seeded, "lender-a"))
    assert rc == 0 and doc["commission"] == "0.2"
    rc, doc, _ = run.json("payment", "report", "C-1", "--amount", "12.50", "--on", "2026-11-29",
                          "--reference", "CLI-1", *conn(seeded, "agency-1"))
    assert rc == 0 and doc["status"] == "reported" and doc["payment_id"].startswith("P-")
    pid = doc["payment_id"]
    rc, doc, _ = run.json("lender", "payments", "--status", "reported", "--agency", "agency-1",
                          *conn(seeded, "lender-a"))
    assert rc == 0 and set(doc) == {"payments"} and [p["payment_id"] for p in doc["payments"]] == [pid]
    assert {"payment_id", "case_id", "org", "amount", "currency", "on", "reference", "status", "reported_at",
            "decided_at", "commission"} <= set(doc["payments"][0])
    rc, doc, _ = run.json("lender", "payment", "confirm", pid, *conn(seeded, "lender-a"))
    assert rc == 0 and (doc["payment_id"], doc["status"], doc["commission"]) == (pid, "confirmed", "0.2")
    rc, doc, err = run.json("lender", "payment", "reject", pid, "--reason", "late", *conn(seeded, "lender-a"))
    assert_error(rc, doc, err, "PAYMENT_ALREADY_DECIDED")
    rc, doc, err = run.json("lender", "assign", "C-1", "--to", "agency-1", "--purpose", "collection",
                            "--until", "2026-12-31", "--commission", "1.5", *conn(seeded, "lender-a"))
    assert_error(rc, doc, err, "INVALID_COMMISSION")
    rc, out, _ = run("payment", "report", "C-1", "--amount", "1.00", "--on", "2026-11-29", "--reference", "CLI-2",
                     *conn(seeded, "agency-1"))
    assert rc == 0 and "reported" in out


def test_the_bureau_is_sent_the_new_balance_after_a_confirm_and_nothing_after_a_reject(seeded: Env) -> None:
    lender, agency, bureau = seeded.client("lender-a"), seeded.client("agency-1"), seeded.client("bureau-1")
    lender.assign("C-3", "bureau-1", "credit_reporting", "2027-06-30")
    lender.record_notice("C-3", "2026-11-29")
    lender.assign("C-3", "agency-1", "collection", "2026-12-31")
    feed = bureau.pull_feed("")
    [first] = feed.records
    rejected = agency.report_payment("C-3", "10.00", "2026-11-29", "RCPT-B1")
    lender.reject_payment(rejected.payment_id, "bounced")
    assert bureau.pull_feed(feed.cursor).records == []
    confirmed = agency.report_payment("C-3", "25.00", "2026-11-29", "RCPT-B2")
    lender.confirm_payment(confirmed.payment_id)
    [again] = bureau.pull_feed(feed.cursor).records
    assert again.case_id == "C-3" and Decimal(again.fields["outstanding"]) == Decimal(first.fields["outstanding"]) - 25


def test_payment_events_name_what_they_carry_never_a_value(seeded: Env) -> None:
    """Issue 25: the kind is the rule's, the fields name what the payment holds; no amount, date, reference or
    reason reaches a leaf (the log's bytes are searched, not only the decoded events)."""
    lender, agency = seeded.client("lender-a"), seeded.client("agency-1")
    first = agency.report_payment("C-1", "31.17", "2026-11-29", "RCPT-SHAPE-1")
    agency.report_payment("C-1", "31.17", "2026-11-29", "RCPT-SHAPE-1")  # the same payment again
    second = agency.report_payment("C-1", "42.58", "2026-11-27", "RCPT-SHAPE-2")
    lender.confirm_payment(first.payment_id)
    lender.reject_payment(second.payment_id, "unknown transfer 9931")
    shapes = [(e.data["rule"].split(":")[0], sorted(e.data["fields"])) for e in seeded.events(case_id="C-1")
              if e.data["rule"].startswith("payment.")]
    assert shapes == [("payment.report", ["payment.amount", "payment.on", "payment.reference"]),
                      ("payment.report.again", ["payment.amount", "payment.on", "payment.reference"]),
                      ("payment.report", ["payment.amount", "payment.on", "payment.reference"]),
                      ("payment.confirm", ["payment.amount", "payment.commission", "payment.on"]),
                      ("payment.reject", ["payment.reason"])]
    log = b"".join(leaf for _, leaf in seeded.client("regulator-1").audit_events())
    for value in ("31.17", "42.58", "2026-11-29", "2026-11-27", "RCPT-SHAPE", "9931"):
        assert value.encode() not in log, value
