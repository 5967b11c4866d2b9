"""`custos audit subject-report`: what a borrower may learn of who saw their data (PIPL Art. 45, GDPR Art. 15)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from custos_client import CustosClientError

from gateway import cli, synth
from gateway.core.model import EventDraft
from tests.conftest import Env


def test_the_report_names_every_recipient_field_and_refusal_of_this_borrower_only(seeded: Env,
                                                                                 capsys: pytest.CaptureFixture[str]
                                                                                 ) -> None:
    seeded.client("agency-1").get_case("C-1", "collection")
    with pytest.raises(CustosClientError):
        seeded.client("agency-2").get_case("C-2", "collection")  # no mandate: refused, audited
    # Another lender uses the same borrower id for its own borrower: none of that may appear.
    other = synth.case_line(90, lender_prefix="X", borrower=1)
    other["borrower"]["borrower_id"] = "B-1"
    seeded.import_cases("lender-b", [other])
    seeded.client("lender-b").assign("XC-90", "agency-1", "collection", "2026-12-31")
    seeded.client("agency-1").get_case("XC-90", "collection")

    events = seeded.client("regulator-1").subject_events("B-1", "lender-a")
    assert events and {e.event.case_id for e in events} <= {"C-1", "C-2"}
    argv = ["--gateway", seeded.addr, "--identity", str(seeded.identity("regulator-1")), "--json"]
    assert cli.main(["audit", "subject-report", "B-1", "--lender", "lender-a", *argv]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["borrower_id"] == "B-1" and report["lender"] == "lender-a"
    assert set(report["recipients"]["agency-1"]) >= {"full_name", "phone", "amount_due"}
    release = next(r for r in report["releases"] if r["org"] == "agency-1")
    assert release["purpose"] == "collection" and release["case_id"] == "C-1" and release["rule"]
    refusal = next(r for r in report["refusals"] if r["org"] == "agency-2")
    assert (refusal["case_id"], refusal["code"]) == ("C-2", "NO_MANDATE")
    # the grant's rule goes on with the records' presence (issue 26): ";agreement=yes;pia=yes"
    assert any(a["rule"].split(";")[0] == "mandate.grant:agency-1" for a in report["actions"])
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
        with pytest.raises(CustosClientError) as info:
            lender.subject_events(borrower, other)
        assert info.value.code == code
    # A regulator without a lender gets every lender's borrower of the id (here only lender-a has a B-1).
    assert {e.report_lender for e in seeded.client("regulator-1").subject_events("B-1")} == {"lender-a"}
    with pytest.raises(CustosClientError) as info:
        seeded.client("regulator-1").subject_events("B-404")
    assert info.value.code == "CASE_NOT_FOUND"
    with pytest.raises(CustosClientError) as info:
        seeded.client("agency-1").subject_events("B-1", "lender-a")
    assert info.value.code == "WRONG_ORG_KIND"
    asked = [e for e in seeded.events(borrower_id="B-1") if e.method == "SubjectReport"]
    assert asked and asked[0].org == "lender-a" and asked[0].decision == "allow"


def _same_ids_at_lender_b(env: Env) -> None:
    """lender-b imports its own C-1 of its own B-1 (other PI), mandates it to agency-b, which reads it."""
    line = synth.case_line(1, jurisdiction="CN", borrower=1, seed=99)
    assert env.import_cases("lender-b", [line]).imported == 1
    env.client("lender-b").assign("C-1", "agency-b", "collection", "2026-12-31")
    env.client("agency-b").get_case("C-1", "collection")
    env.client("lender-b").set_stage("C-1", "letter")
    env.client("agency-1").get_case("C-1", "collection")  # lender-a's C-1 (agency-1's mandate is lender-a's)


def _orgs_and_rules(report: dict[str, Any]) -> tuple[set[str], set[str]]:
    rows = report["releases"] + report["refusals"] + report["actions"]
    return {r["org"] for r in rows}, {r["rule"].split(";")[0] for r in rows}


def test_lenders_with_the_same_case_and_borrower_ids_get_only_their_own_borrowers_events(
        seeded: Env, capsys: pytest.CaptureFixture[str]) -> None:
    _same_ids_at_lender_b(seeded)
    events = seeded.client("lender-a").subject_events("B-1")
    assert events and not {e.event.org for e in events} & {"lender-b", "agency-b"}  # lender-b's C-1 is not theirs
    assert {e.report_lender for e in events} == {"lender-a"}
    for who, lender in (("lender-a", ""), ("regulator-1", "lender-a")):
        argv = ["--gateway", seeded.addr, "--identity", str(seeded.identity(who)), "--json"]
        assert cli.main(["audit", "subject-report", "B-1", *(["--lender", lender] if lender else []), *argv]) == 0
        out = json.loads(capsys.readouterr().out)
        report = out if lender else out["lenders"][0]
        assert [r["lender"] for r in out.get("lenders", [report])] == ["lender-a"]
        orgs, rules = _orgs_and_rules(report)
        assert "lender-b" not in orgs and "agency-b" not in orgs, who
        assert "mandate.grant:agency-b" not in rules and "mandate.grant:agency-1" in rules
        assert set(report["recipients"]) == {"agency-1"}
        assert {r["case_id"] for r in report["releases"]} == {"C-1"}
    # lender-b's report is its own borrower's: agency-b's read, not agency-1's.
    report = seeded.client("lender-b").subject_events("B-1")
    assert {e.event.org for e in report if e.event.data.get("fields")} == {"agency-b"}
    assert {e.event.data["lender"] for e in report if "lender" in e.event.data} == {"lender-b"}


def test_the_regulators_report_without_a_lender_lists_each_lenders_borrower_apart(
        seeded: Env, capsys: pytest.CaptureFixture[str]) -> None:
    _same_ids_at_lender_b(seeded)
    with pytest.raises(CustosClientError):
        seeded.client("agency-2").get_case("C-1", "collection")  # no mandate: whose C-1 it meant is not known
    argv = ["--gateway", seeded.addr, "--identity", str(seeded.identity("regulator-1"))]
    assert cli.main(["audit", "subject-report", "B-1", *argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["borrower_id"] == "B-1" and report["unattributed"] == []
    by_lender = {r["lender"]: r for r in report["lenders"]}
    assert list(by_lender) == ["lender-a", "lender-b"]
    assert set(by_lender["lender-a"]["recipients"]) == {"agency-1"}
    assert set(by_lender["lender-b"]["recipients"]) == {"agency-b"}
    assert _orgs_and_rules(by_lender["lender-b"])[0] == {"lender-b", "agency-b", "agency-2"}
    assert "stage:reminder->letter" in " ".join(_orgs_and_rules(by_lender["lender-b"])[1])
    assert "stage" not in " ".join(_orgs_and_rules(by_lender["lender-a"])[1])
    for lender in ("lender-a", "lender-b"):  # the unresolved attempt is listed, as such, for each C-1's owner
        refused = [r for r in by_lender[lender]["refusals"] if r["org"] == "agency-2" and r["case_id"] == "C-1"]
        assert [(r["code"], r["resolved"]) for r in refused] == [("NO_MANDATE", False)]
    # The request is audited once per lender's borrower it covers, each naming its lender.
    asked = [e for e in seeded.events(borrower_id="B-1") if e.method == "SubjectReport"]
    assert sorted(e.data["lender"] for e in asked) == ["lender-a", "lender-b"]
    assert cli.main(["audit", "subject-report", "B-1", *argv]) == 0
    table = capsys.readouterr().out
    assert "B-1 of lender-a" in table and "B-1 of lender-b" in table and "agency-b: " in table


def test_events_carry_their_owning_lender_and_audit_query_shows_it(seeded: Env,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    _same_ids_at_lender_b(seeded)
    argv = ["--gateway", seeded.addr, "--identity", str(seeded.identity("regulator-1")), "--json"]
    assert cli.main(["audit", "query", "--case", "C-1", *argv]) == 0
    events = json.loads(capsys.readouterr().out)["events"]
    reads = {(e["org"], e["lender"]) for e in events if e["method"] == "GetCase" and e["decision"] == "allow"}
    assert reads == {("agency-1", "lender-a"), ("agency-b", "lender-b")}
    imports = {(e["org"], e["lender"]) for e in events if e["rule"] == "import"}
    assert imports == {("lender-a", "lender-a"), ("lender-b", "lender-b")}
    # Who acts is the org; whose case it is, the lender; an event about no lender's case has no lender key.
    assert all("lender" not in e.data for e in seeded.events(org="regulator-1") if not e.data["borrower_id"])


def _legacy(env: Env, org: str, method: str, case_id: str, rule: str, fields: tuple[str, ...] = ()) -> None:
    """An event as written before events named their lender (no `lender` key in the leaf)."""
    env.gw.vault.audit.append([EventDraft(
        org=org, method=method, purpose="collection" if fields else "", case_id=case_id, borrower_id="B-1",
        decision="allow", code="OK", rule=rule, time="2026-11-30T02:00:00.000000Z", trace_id="0" * 32,
        fields=list(fields))])


def test_events_written_before_events_named_their_lender_are_attributed_by_the_records_or_listed_apart(
        seeded: Env, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _same_ids_at_lender_b(seeded)
    _legacy(seeded, "agency-b", "GetCase", "C-1", "legacy-read", ("phone",))  # only lender-b mandated C-1 to it
    _legacy(seeded, "lender-b", "SetStage", "C-1", "legacy-stage")           # a lender acts on its own cases
    _legacy(seeded, "regulator-1", "Legacy", "", "legacy-regulator")         # no record says whose
    seeded.client("lender-b").assign("C-1", "agency-1", "collection", "2026-12-31")
    _legacy(seeded, "agency-1", "GetCase", "C-1", "legacy-ambiguous", ("phone",))  # both lenders mandated C-1 to it
    assert all("lender" not in e.data for e in seeded.events(case_id="C-1") if e.data["rule"].startswith("legacy"))
    rules = {e.event.data["rule"] for e in seeded.client("lender-a").subject_events("B-1")}
    assert not {r for r in rules if r.startswith("legacy")}  # none of them is sure to be lender-a's
    rules_b = {e.event.data["rule"] for e in seeded.client("lender-b").subject_events("B-1")}
    assert {"legacy-read", "legacy-stage"} <= rules_b and "legacy-ambiguous" not in rules_b
    argv = ["--gateway", seeded.addr, "--identity", str(seeded.identity("regulator-1")), "--json"]
    assert cli.main(["audit", "subject-report", "B-1", *argv]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {r["rule"] for r in report["unattributed"]} == {"legacy-regulator", "legacy-ambiguous"}
    # Old and new leaves verify together: the leaf is whatever is stored.
    vkey = str(seeded.data / "audit.vkey")
    assert cli.main(["audit", "verify", "--key", vkey, "--state", str(tmp_path / "state.json"), *argv[:-1]]) == 0


def test_the_export_names_the_calling_lender_from_its_events() -> None:
    """The subject-export document (gateway/formats/subject_report.export), without a gateway."""
    from datetime import UTC, datetime

    from gateway.formats import subject_report

    events = [{"seq": 3, "org": "agency-1", "decision": "allow", "fields": ["name"], "report_lender": "lender-a"},
              {"seq": 4, "org": "agency-2", "decision": "deny", "code": "NO_MANDATE", "report_lender": "lender-a"}]
    doc = subject_report.export("B-1", [{"case_id": "C-1"}], events, datetime(2026, 1, 2, 3, 4, 5, 678, UTC))
    assert doc["generated_at"] == "2026-01-02T03:04:05+00:00" and doc["cases"] == [{"case_id": "C-1"}]
    assert doc["disclosures"]["lender"] == "lender-a"
    assert doc["disclosures"]["recipients"] == {"agency-1": ["name"]}
    assert [r["code"] for r in doc["disclosures"]["refusals"]] == ["NO_MANDATE"]
    assert subject_report.export("B-1", [], [], datetime.now(UTC))["disclosures"]["lender"] == ""
