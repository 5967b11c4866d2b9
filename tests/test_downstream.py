"""Everything downstream is current (issue 24): the litigation packet and the bureau feed follow the loan's
latest figures and ledger; a ledger that does not reconcile is stated; paid in full is a zero balance."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from gateway import packets, synth
from gateway.core.model import Repayment
from gateway.core.ports import UnitOfWork
from gateway.formats import metro2
from tests.conftest import Env

NOW = "2026-11-30T12:00:00.000000Z"


def update_loan(env: Env, case_id: str, **values: Any) -> None:
    """Set a loan's figures through the ports, as `lender update` and a confirmed payment do."""
    vault = env.gw.vault
    reader = vault.reader()
    reader.refresh()
    case = reader.get_case("lender-a", case_id)
    assert case is not None

    def work(store: UnitOfWork) -> tuple[None, list[Any]]:
        store.update_loan(case, values, NOW)
        return None, []

    vault.audit.run(work)


def ledger_of(env: Env, case_id: str) -> tuple[dict[str, Any], str]:
    _, data = env.client("lawfirm-1").get_packet(case_id)
    result = packets.verify(data, (env.data / "packet.vkey").read_text())  # still signed and intact
    from pypdf import PdfReader

    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(result.items["summary.pdf"])).pages)
    return json.loads(result.items["ledger.json"]), " ".join(text.split())


def test_the_packet_ledger_is_the_recorded_figures_and_entries_and_a_ledger_that_does_not_add_up_says_so(
        escalated: Env) -> None:
    loan = synth.case_line(1, jurisdiction="CN", borrower=1)["loan"]
    principal, outstanding = Decimal(loan["principal"]), Decimal(loan["outstanding"])
    before, text = ledger_of(escalated, "C-1")
    summary = before["summary"]
    # The synthetic import's outstanding is not principal - repaid and it records no interest: no residual hides it.
    expected = principal - Decimal("100.00")
    assert summary == {"principal": loan["principal"], "interest": None, "fees": None, "repaid": "100.00",
                       "outstanding": loan["outstanding"], "amount_due": loan["amount_due"],
                       "expected": f"{expected:f}", "difference": f"{outstanding - expected:f}", "reconciles": False}
    assert "interest_and_fees" not in summary
    assert "DOES NOT RECONCILE" in text and f"{outstanding - expected:f}" in text
    assert before["first_delinquency_on"] == loan["first_delinquency_on"]
    assert before.get("last_payment_on") == loan.get("last_payment_on")

    # The book moves: interest and fees recorded, an agency's confirmed payment appended, the figures updated.
    ledger = (Repayment.of(loan["repayments"][0]), Repayment("2026-11-20", "250.00", "agency-1", "PAY-1"))
    now_owed = principal + Decimal("12.50") + Decimal("5.00") - Decimal("350.00")
    update_loan(escalated, "C-1", outstanding=f"{now_owed:f}", amount_due="80.00", interest="12.50", fees="5.00",
                last_payment_on="2026-11-20", limitation_date="2029-11-20", repayments=ledger)
    after, text = ledger_of(escalated, "C-1")
    assert after["summary"] == {"principal": loan["principal"], "interest": "12.50", "fees": "5.00",
                                "repaid": "350.00", "outstanding": f"{now_owed:f}", "amount_due": "80.00",
                                "expected": f"{now_owed:f}", "difference": "0.00", "reconciles": True}
    assert after["repayments"][-1] == {"on": "2026-11-20", "amount": "250.00", "by": "agency-1",
                                       "payment_id": "PAY-1"}
    assert (after["interest"], after["fees"]) == ("12.50", "5.00")
    assert (after["last_payment_on"], after["limitation_date"]) == ("2026-11-20", "2029-11-20")
    assert "DOES NOT RECONCILE" not in text and "reconciles: outstanding = principal" in text
    for shown in ("12.50", "5.00", "350.00", f"{now_owed:f}", "2026-11-20", "2029-11-20", "agency-1", "PAY-1"):
        assert shown in text, shown
    events = [e for e in escalated.events(case_id="C-1") if e.method == "GetPacket"]
    assert {"interest", "fees", "last_payment_on", "limitation_date"} <= set(events[-1].data["fields"])


def _bureau_case(env: Env, n: int) -> str:
    line = synth.case_line(n, jurisdiction="CN")
    line["loan"]["negative_notice_on"] = "2026-11-01"
    assert env.import_cases("lender-a", [line]).imported == 1
    env.client("lender-a").assign(line["case_id"], "bureau-1", "credit_reporting", "2027-06-30")
    return str(line["case_id"])


def pull(env: Env, since: str) -> tuple[list[dict[str, str]], str]:
    feed = env.client("bureau-1").pull_feed(since)
    return feed.records, feed.cursor


def test_an_updated_balance_is_resent_paid_in_full_is_zero_and_the_final_record_has_the_latest_figures(
        seeded: Env) -> None:
    case = _bureau_case(seeded, 70)
    records, cursor = pull(seeded, "")
    loan = synth.case_line(70, jurisdiction="CN")["loan"]
    assert [(r.case_id, r.fields["outstanding"]) for r in records] == [(case, loan["outstanding"])]
    assert pull(seeded, cursor) == ([], cursor)

    update_loan(seeded, case, outstanding="321.00", amount_due="45.00", last_payment_on="2026-11-25")
    records, cursor = pull(seeded, cursor)
    assert [(r.fields["outstanding"], r.fields["amount_due"], r.fields["last_payment_on"]) for r in records] == \
        [("321.00", "45.00", "2026-11-25")]
    assert pull(seeded, cursor) == ([], cursor)

    update_loan(seeded, case, outstanding="0.00", amount_due="0.00", last_payment_on="2026-11-28")
    records, cursor = pull(seeded, cursor)
    assert [(r.fields["status"], r.fields["outstanding"], r.fields["amount_due"]) for r in records] == [("open", "0.00", "0.00")]
    # Metro 2: a zero balance is 13 (paid or closed account/zero balance), nothing owed or past due, dated closed.
    segment = metro2.parse(metro2.BASE, metro2.base_segment({**records[0].to_dict(), "national_id": "123456789"},
                                                            datetime(2026, 12, 1, tzinfo=UTC)))
    assert segment["AccountStatus"] == "13" and segment["CurrentBalance"] == segment["AmountPastDue"] == "0" * 9
    assert segment["DateLastPayment"] == segment["DateClosed"] == "11282026"

    # It settles: one final record, with the latest figures (not the import's).
    seeded.client("lender-a").set_flags(case, status="settled")
    records, cursor = pull(seeded, cursor)
    assert [(r.fields["status"], r.fields["outstanding"], r.fields["last_payment_on"]) for r in records] == \
        [("settled", "0.00", "2026-11-28")]
    assert pull(seeded, cursor) == ([], cursor)


def test_a_confirmed_payment_reaches_the_packet_and_keeps_the_promise_it_was_made_for(escalated: Env) -> None:
    """End to end through the gateway: counsel reports, the lender confirms; the packet's ledger carries the entry
    with who collected it, the figures moved by it, and the agency's earlier promise is judged by it."""
    firm, lender = escalated.client("lawfirm-1"), escalated.client("lender-a")
    before, _ = ledger_of(escalated, "C-1")
    reported = firm.report_payment("C-1", "100.00", escalated.clock.current.date().isoformat(), "FIRM-1")
    lender.confirm_payment(reported.payment_id)
    after, text = ledger_of(escalated, "C-1")
    entry = after["repayments"][-1]
    assert (entry["amount"], entry["by"], entry["payment_id"]) == ("100.00", "lawfirm-1", reported.payment_id)
    assert Decimal(after["summary"]["outstanding"]) == Decimal(before["summary"]["outstanding"]) - Decimal("100.00")
    assert Decimal(after["summary"]["repaid"]) == Decimal(before["summary"]["repaid"]) + Decimal("100.00")
    assert reported.payment_id in text
    history = json.loads(lender.get_case("C-1", "servicing").fields["contact_history"])
    (promise,) = [h for h in history if h["result"] == "promise_to_pay"]
    assert promise["promise_state"] == "kept"  # 100.00 promised by 2026-12-05, paid on the day it was made
