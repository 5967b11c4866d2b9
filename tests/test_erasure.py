"""Invariant 7: erasure destroys the borrower's data key; afterwards no path returns the borrower's PI (issue 12)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from custos_client import CustosClientError, PullRemoved

from gateway import cli, synth
from tests.conftest import Env

PI_FIELDS = ("full_name", "national_id", "date_of_birth", "phone", "email", "home_address", "work_address",
             "employer", "bank_account", "emergency_contacts")


def _refused(call: Any) -> str:
    with pytest.raises(CustosClientError) as info:
        call()
    return str(info.value.code)


def _pi_values(line: dict[str, Any]) -> list[str]:
    b = line["borrower"]
    return [b["full_name"], b["national_id"], b["phone"], b["home_address"], b["bank_account"]]


def test_after_erasure_no_path_returns_the_borrowers_pi_and_the_log_verifies(
        seeded: Env, capsys: pytest.CaptureFixture[str]) -> None:
    lender = seeded.client("lender-a")
    line = synth.case_line(1, jurisdiction="CN", borrower=1)
    lender.assign("C-2", "bureau-1", "credit_reporting", "2026-12-31")
    lender.escalate("C-2", "lawfirm-1")
    before = lender.get_case("C-1", "servicing").fields
    assert before["full_name"] == line["borrower"]["full_name"]  # the control: PI is there to be erased
    assert {c.case_id for c in lender.list_cases(national_id=line["borrower"]["national_id"])} == {"C-1", "C-2"}

    receipt = lender.erase("B-1")
    assert receipt.state == "erased" and receipt.cases == ["C-1", "C-2"] and receipt.reason == "request"
    assert "wrapped data key" in receipt.destroyed
    assert {"C-1:agency-1", "C-2:lawfirm-1"} <= set(receipt.mandates_ended)
    at_seq = [e for e in seeded.events(borrower_id="B-1") if e.seq == receipt.audit_seq]
    assert at_seq and at_seq[0].method == "EraseBorrower"

    # Every other party, every path: refused, and said why.
    assert _refused(lambda: seeded.client("agency-1").get_case("C-1", "collection")) == "ERASED"
    assert _refused(lambda: seeded.client("agency-1").open_contact("C-1", "call")) == "ERASED"
    assert _refused(lambda: seeded.client("lawfirm-1").get_packet("C-2")) == "ERASED"
    assert _refused(lambda: seeded.client("lawfirm-1").get_case("C-2", "litigation")) == "ERASED"
    assert _refused(lambda: seeded.client("bureau-1").get_case("C-2", "credit_reporting")) == "ERASED"
    assert all(r["case_id"] != "C-2" for r in seeded.client("bureau-1").pull_feed("").records)
    assert seeded.client("agency-1").list_cases() == []
    assert _refused(lambda: lender.assign("C-1", "agency-1", "collection", "2026-12-31")) == "ERASED"
    # The lender sees the cases, marked erased, with no personal field; nobody finds them by the old values.
    for case in ("C-1", "C-2"):
        rec = lender.get_case(case, "servicing")
        assert rec.erasure == "erased" and not set(rec.fields) & set(PI_FIELDS)
        text = json.dumps(rec.to_dict(), ensure_ascii=False)
        assert not any(v in text for v in _pi_values(line))
    assert lender.list_cases(national_id=line["borrower"]["national_id"]) == []
    assert lender.list_cases(phone=line["borrower"]["phone"]) == []
    assert {c.case_id: c.erasure for c in lender.list_cases()}["C-1"] == "erased"
    # The borrower cannot be brought back under the same id; the erasure is done once.
    again = seeded.import_cases("lender-a", [synth.case_line(40, jurisdiction="CN", borrower=1)])
    assert again.imported == 0 and again.rejected[0].code == "BORROWER_ERASED"
    assert _refused(lambda: lender.erase("B-1")) == "ALREADY_ERASED"
    # The store holds no key for the borrower any more; other borrowers are untouched.
    repo = seeded.gw.vault.reader()
    case = repo.get_case("lender-a", "C-1")
    assert case is not None and repo.borrower_erased("lender-a", "B-1") and repo.loan_values(case) is None
    assert repo.unsealer(case, PI_FIELDS).fields == ()
    assert lender.get_case("C-3", "servicing").fields["full_name"]
    # Audited: the erasure per case, each mandate it ended, and every later refusal with its code.
    events = seeded.events(borrower_id="B-1")
    assert sorted(e.case_id for e in events if e.data["rule"] == "erasure:reason=request") == ["C-1", "C-2"]
    refusals = {(e.org, e.code) for e in events if e.decision == "deny"}
    assert {("agency-1", "ERASED"), ("lawfirm-1", "ERASED"), ("bureau-1", "ERASED")} <= refusals
    # The log still verifies: events never held PI.
    vkey = seeded.data / "audit.vkey"
    argv = ["--gateway", seeded.addr, "--identity", str(seeded.identity("regulator-1")), "--json"]
    assert cli.main(["audit", "verify", "--key", str(vkey), *argv]) == 0
    capsys.readouterr()


def test_a_legal_hold_blocks_erasure_and_lifting_it_lets_it_proceed(seeded: Env) -> None:
    lender = seeded.client("lender-a")
    lender.set_flags("C-2", legal_hold=True)
    assert _refused(lambda: lender.erase("B-1")) == "LEGAL_HOLD"
    assert _refused(lambda: lender.erase("B-1", grace_days=10)) == "LEGAL_HOLD"
    assert lender.get_case("C-1", "servicing").fields["full_name"]  # nothing was touched
    # ... but the request stands: the borrower is restricted (finding 14; its own test below).
    assert _refused(lambda: seeded.client("agency-1").get_case("C-1", "collection")) == "PROCESSING_RESTRICTED"
    held = [e for e in seeded.events(borrower_id="B-1") if e.code == "LEGAL_HOLD"]
    assert [(e.case_id, e.decision, e.data["rule"]) for e in held] == [("C-2", "deny", "erasure.legal_hold")] * 2
    lender.set_flags("C-2", legal_hold=False)
    assert lender.erase("B-1").state == "erased"
    assert "full_name" not in lender.get_case("C-1", "servicing").fields


def _pull(env: Env, org: str, since: str = "") -> tuple[list[dict[str, Any]], str]:
    items = list(env.client(org).pull_cases("collection", since))
    return items[:-1], str(items[-1].cursor)


def test_an_erasure_refused_under_a_litigation_hold_restricts_the_borrower_to_the_lender_and_counsel(
        seeded: Env) -> None:
    """Issue 22 finding 14 (PIPL Art. 47 ¶2): refused under a hold, the data is stored, not processed."""
    lender, agency, bureau, counsel = (seeded.client(o) for o in ("lender-a", "agency-1", "bureau-1", "lawfirm-1"))
    lender.assign("C-1", "bureau-1", "credit_reporting", "2026-12-31")
    lender.record_notice("C-1", "2026-11-01")
    lender.escalate("C-2", "lawfirm-1")
    lender.set_flags("C-2", legal_hold=True)  # a litigation hold: C-2 is in litigation
    seeded.clock.current = seeded.clock.current.replace(hour=3)  # 11:00 in Shanghai: inside the window
    # The control: before the refusal every party is served.
    assert agency.get_case("C-1", "collection").case_id == "C-1"
    items, cursor = _pull(seeded, "agency-1")
    assert [i.record.case_id for i in items] == ["C-1"]
    assert [r.case_id for r in bureau.pull_feed("").records] == ["C-1"]

    assert _refused(lambda: lender.erase("B-1")) == "LEGAL_HOLD"
    restricted = [e for e in seeded.events(borrower_id="B-1") if e.data["rule"] == "erasure.restricted:legal_hold"]
    assert sorted(e.case_id for e in restricted) == ["C-1", "C-2"]
    # Agencies: no read, no contact, not listed, removed from the work list.
    assert _refused(lambda: agency.get_case("C-1", "collection")) == "PROCESSING_RESTRICTED"
    assert _refused(lambda: agency.open_contact("C-1", "call")) == "PROCESSING_RESTRICTED"
    assert agency.list_cases() == []
    items, _ = _pull(seeded, "agency-1", cursor)
    assert [(i.case_id, i.code) for i in items if isinstance(i, PullRemoved)] == [("C-1", "PROCESSING_RESTRICTED")]
    assert _pull(seeded, "agency-1")[0] == []
    # The bureau: nothing, not even a final record; each withheld record audited.
    assert _refused(lambda: bureau.get_case("C-1", "credit_reporting")) == "PROCESSING_RESTRICTED"
    lender.set_flags("C-1", status="settled")
    assert all(r["case_id"] != "C-1" for r in bureau.pull_feed("").records)
    withheld = [e for e in seeded.events(case_id="C-1") if e.method == "PullFeed"][-1]
    assert (withheld.decision, withheld.code) == ("deny", "PROCESSING_RESTRICTED")
    for org, method in (("agency-1", "GetCase"), ("agency-1", "OpenContact"), ("bureau-1", "GetCase")):
        denials = [e for e in seeded.events(case_id="C-1") if e.org == org and e.method == method
                   and e.decision == "deny"]
        assert denials and denials[-1].code == "PROCESSING_RESTRICTED", (org, method)
    # Counsel keeps the held case in litigation; the lender keeps everything, and sees why.
    assert counsel.get_case("C-2", "litigation").fields["full_name"]
    assert counsel.get_packet("C-2")[1]
    rec = lender.get_case("C-1", "servicing")
    assert rec.erasure == "restricted" and rec.fields["full_name"]
    explained = lender.explain("agency-1", "C-1", "collection")
    assert (explained.decision, explained.code) == ("deny", "PROCESSING_RESTRICTED")
    assert "erasure.restricted" in explained.rules and explained.fields == []
    assert lender.explain("lawfirm-1", "C-2", "litigation").decision == "allow"
    # A case imported later for the borrower is restricted as well.
    assert seeded.import_cases("lender-a", [synth.case_line(71, jurisdiction="CN", borrower=1)]).imported == 1
    assert lender.get_case("C-71", "servicing").erasure == "restricted"
    assert _refused(lambda: lender.assign("C-71", "agency-1", "collection", "2026-12-31")) == "PROCESSING_RESTRICTED"


def test_a_restriction_under_another_hold_keeps_counsel_out_and_ends_only_when_the_lender_acts(seeded: Env) -> None:
    lender, agency, counsel = (seeded.client(o) for o in ("lender-a", "agency-1", "lawfirm-1"))
    lender.escalate("C-2", "lawfirm-1")
    lender.set_flags("C-1", legal_hold=True)  # not a litigation hold: C-1 is at reminder
    assert counsel.get_case("C-2", "litigation").case_id == "C-2"  # the control
    assert _refused(lambda: lender.erase("B-1", grace_days=10)) == "LEGAL_HOLD"
    assert _refused(lambda: counsel.get_case("C-2", "litigation")) == "PROCESSING_RESTRICTED"
    assert _refused(lambda: counsel.get_packet("C-2")) == "PROCESSING_RESTRICTED"
    assert lender.explain("lawfirm-1", "C-2", "litigation").code == "PROCESSING_RESTRICTED"
    assert _refused(lambda: lender.assign("C-1", "agency-2", "collection", "2026-12-31")) == "PROCESSING_RESTRICTED"
    # Lifting the hold does not lift the restriction: the borrower's request still stands.
    lender.set_flags("C-1", legal_hold=False)
    assert _refused(lambda: agency.get_case("C-1", "collection")) == "PROCESSING_RESTRICTED"
    # The lender withdraws the request: processing resumes.
    assert lender.erase("B-1", cancel=True).state == "cancelled"
    assert agency.get_case("C-1", "collection").case_id == "C-1"
    assert counsel.get_case("C-2", "litigation").case_id == "C-2"
    # Or erases once the hold is lifted.
    lender.set_flags("C-1", legal_hold=True)
    assert _refused(lambda: lender.erase("B-1")) == "LEGAL_HOLD"
    lender.set_flags("C-1", legal_hold=False)
    assert lender.erase("B-1").state == "erased"
    assert _refused(lambda: counsel.get_case("C-2", "litigation")) == "ERASED"


def test_a_scheduled_erasure_stops_release_at_once_can_be_cancelled_and_is_performed_when_due(seeded: Env) -> None:
    lender = seeded.client("lender-a")
    agency = seeded.client("agency-1")
    pending = lender.erase("B-1", grace_days=14)
    assert pending.state == "pending" and pending.due.startswith("2026-12-14") and pending.audit_seq >= 0
    assert _refused(lambda: agency.get_case("C-1", "collection")) == "ERASURE_PENDING"
    assert _refused(lambda: agency.open_contact("C-1", "call")) == "ERASURE_PENDING"
    rec = lender.get_case("C-1", "servicing")  # the lender still sees everything, and that it is pending
    assert rec.erasure == "pending" and rec.fields["full_name"]
    assert seeded.import_cases("lender-a", [synth.case_line(72, jurisdiction="CN", borrower=1)]).imported == 1
    assert lender.get_case("C-72", "servicing").erasure == "pending"  # a case imported meanwhile waits too
    assert lender.erase("B-1", cancel=True).state == "cancelled"
    assert agency.get_case("C-1", "collection").case_id == "C-1"
    assert _refused(lambda: lender.erase("B-1", cancel=True)) == "NO_PENDING_ERASURE"

    lender.erase("B-1", grace_days=14)
    core = seeded.gw.core
    seeded.clock.advance(days=13)
    assert core.run_due_erasures() == 0  # not due yet
    lender.set_flags("C-1", legal_hold=True)  # a hold set meanwhile: it waits, still pending
    seeded.clock.advance(days=2)
    core.run_due_erasures()
    assert lender.get_case("C-1", "servicing").erasure == "pending"
    lender.set_flags("C-1", legal_hold=False)
    core.run_due_erasures()  # (the gateway's own schedule may have run it first: the outcome is what counts)
    rec = lender.get_case("C-1", "servicing")
    assert rec.erasure == "erased" and "full_name" not in rec.fields
    done = [e for e in seeded.events(borrower_id="B-1") if e.data["rule"] == "erasure:reason=scheduled"]
    assert sorted(e.case_id for e in done) == ["C-1", "C-2", "C-72"] and done[0].method == "ScheduledErasure"
    assert _refused(lambda: agency.get_case("C-1", "collection")) == "ERASED"


def test_the_cli_receipt_and_the_errors(seeded: Env, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--gateway", seeded.addr, "--identity", str(seeded.identity("lender-a"))]
    assert cli.main(["lender", "erase", "B-3", "--grace", "5", "--cancel", *argv, "--json"]) != 0
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "INVALID_ARGUMENT"
    assert cli.main(["lender", "erase", "B-3", "--grace", "0", *argv, "--json"]) != 0
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "INVALID_ARGUMENT"
    assert cli.main(["lender", "erase", "B-3", *argv]) == 0
    text = capsys.readouterr().out
    assert "Erasure receipt: borrower B-3 of lender-a" in text and "wrapped data key" in text
    assert cli.main(["lender", "erase", "B-4", *argv, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["state"] == "erased" and doc["cases"] == ["C-4"] and doc["audit_seq"] > 0
    for org, borrower, code in (("lender-a", "BB-1", "BORROWER_NOT_FOUND"),  # another lender's borrower
                                ("lender-a", "nobody", "BORROWER_NOT_FOUND"),
                                ("lender-a", "bad id!", "INVALID_BORROWER_ID"),
                                ("lender-a", "x" * 5000, "INVALID_BORROWER_ID"),
                                ("agency-1", "B-5", "WRONG_ORG_KIND")):
        assert _refused(lambda o=org, b=borrower: seeded.client(o).erase(b)) == code
    assert seeded.client("lender-b").get_case("BC-1", "servicing").fields["full_name"]


def test_subject_export_gives_the_lender_the_borrowers_data_and_its_disclosures(
        seeded: Env, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = synth.case_line(1, jurisdiction="CN", borrower=1)
    seeded.client("agency-1").get_case("C-1", "collection")
    with pytest.raises(CustosClientError):
        seeded.client("agency-2").get_case("C-1", "collection")
    out = tmp_path / "b1.json"
    argv = ["--gateway", seeded.addr, "--identity", str(seeded.identity("lender-a"))]
    assert cli.main(["lender", "subject-export", "B-1", "--out", str(out), *argv, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["cases"] == 2 and summary["releases"] >= 1 and summary["refusals"] >= 1
    assert oct(out.stat().st_mode & 0o777) == "0o600"  # it holds the borrower's PI
    doc = json.loads(out.read_text())
    assert [c["case_id"] for c in doc["cases"]] == ["C-1", "C-2"]
    assert doc["cases"][0]["fields"]["full_name"] == line["borrower"]["full_name"]
    assert doc["cases"][0]["fields"]["national_id"] == line["borrower"]["national_id"]
    assert "full_name" in doc["disclosures"]["recipients"]["agency-1"] or doc["disclosures"]["recipients"]["agency-1"]
    assert any(r["org"] == "agency-2" for r in doc["disclosures"]["refusals"])
    # The export's own reads are audited as the lender's, under servicing.
    reads = [e for e in seeded.events(borrower_id="B-1") if e.method == "SubjectData"]
    assert sorted(e.case_id for e in reads) == ["C-1", "C-2"] and all(e.purpose == "servicing" for e in reads)
    # Another lender's borrower: not found, the same as none; an agency: not its call.
    assert cli.main(["lender", "subject-export", "BB-1", "--out", str(tmp_path / "x.json"), *argv, "--json"]) != 0
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "BORROWER_NOT_FOUND"
    assert not (tmp_path / "x.json").exists()
    assert _refused(lambda: seeded.client("agency-1").subject_data("B-1")) == "WRONG_ORG_KIND"
    # After erasure: the lender's export holds no PI of the borrower, and still lists the disclosures.
    seeded.client("lender-a").erase("B-1")
    assert cli.main(["lender", "subject-export", "B-1", "--out", str(out), *argv, "--json", "--force"]) == 0
    capsys.readouterr()
    text = out.read_text()
    assert not any(v in text for v in _pi_values(line)) and json.loads(text)["cases"][0]["erasure"] == "erased"
