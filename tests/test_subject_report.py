"""`custos audit subject-report`: what a borrower may learn of who saw their data (PIPL Art. 45, GDPR Art. 15)."""

from __future__ import annotations

import json

import pytest
from custos_client import CustosError

from gateway import cli, synth
from tests.conftest import Env


def test_the_report_names_every_recipient_field_and_refusal_of_this_borrower_only(seeded: Env,
                                                                                 capsys: pytest.CaptureFixture[str]
                                                                                 ) -> None:
    seeded.client("agency-1").get_case("C-1", "collection")
    with pytest.raises(CustosError):
        seeded.client("agency-2").get_case("C-2", "collection")  # no mandate: refused, audited
    # Another lender uses the same borrower id for its own borrower: none of that may appear.
    other = synth.case_line(90, lender_prefix="X", borrower=1)
    other["borrower"]["borrower_id"] = "B-1"
    seeded.import_cases("lender-b", [other])
    seeded.client("lender-b").assign("XC-90", "agency-1", "collection", "2026-12-31")
    seeded.client("agency-1").get_case("XC-90", "collection")

    events = seeded.client("regulator-1").subject_events("B-1", "lender-a")
    assert events and {e["case_id"] for e in events} <= {"C-1", "C-2"}
    argv = ["--gateway", seeded.addr, "--identity", str(seeded.identity("regulator-1")), "--json"]
    assert cli.main(["audit", "subject-report", "B-1", "--lender", "lender-a", *argv]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["borrower_id"] == "B-1" and report["lender"] == "lender-a"
    assert set(report["recipients"]["agency-1"]) >= {"full_name", "phone", "amount_due"}
    release = next(r for r in report["releases"] if r["org"] == "agency-1")
    assert release["purpose"] == "collection" and release["case_id"] == "C-1" and release["rule"]
    refusal = next(r for r in report["refusals"] if r["org"] == "agency-2")
    assert (refusal["case_id"], refusal["code"]) == ("C-2", "NO_MANDATE")
    assert any(a["rule"] == "mandate.grant:agency-1" for a in report["actions"])
    text = json.dumps(report, ensure_ascii=False)
    line = synth.case_line(1, jurisdiction="CN", borrower=1)
    for value in synth.pi_values(line):
        assert value not in text  # events hold no personal values, so neither does the report
    assert all(r["case_id"] != "XC-90" for r in report["releases"] + report["refusals"] + report["actions"])
    # The same as a readable table.
    assert cli.main(["audit", "subject-report", "B-1", "--lender", "lender-a", *argv[:-1]]) == 0
    table = capsys.readouterr().out
    assert "agency-1: " in table and "NO_MANDATE" in table


def test_a_lender_gets_its_own_borrowers_only_and_the_request_is_audited(seeded: Env) -> None:
    lender = seeded.client("lender-a")
    assert lender.subject_events("B-1")
    for borrower, other, code in (("B-1", "lender-b", "CASE_NOT_FOUND"), ("B-404", "", "CASE_NOT_FOUND"),
                                  ("bad id!", "", "INVALID_ARGUMENT")):
        with pytest.raises(CustosError) as info:
            lender.subject_events(borrower, other)
        assert info.value.code == code
    with pytest.raises(CustosError) as info:
        seeded.client("regulator-1").subject_events("B-1")  # borrower ids are per lender: name it
    assert info.value.code == "INVALID_ARGUMENT"
    with pytest.raises(CustosError) as info:
        seeded.client("agency-1").subject_events("B-1", "lender-a")
    assert info.value.code == "WRONG_ORG_KIND"
    asked = [e for e in seeded.events(borrower_id="B-1") if e["method"] == "SubjectReport"]
    assert asked and asked[0]["org"] == "lender-a" and asked[0]["decision"] == "allow"
