"""Issue 25: contact events that show conduct (`party`, `zone`), and the compliance report whose every figure is
recounted from the verified events (`custos audit compliance-report [--verify]`, gateway/core/rules/compliance.py).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from custos_client import CustosClientError

from gateway.core.model import EventDraft
from gateway.core.rules import compliance
from gateway.tlog.merkle import canonical_json
from tests.conftest import Env
from tests.test_cli import Run, assert_error, conn

DAY = ("2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z")


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    return Run(capsys)


# ------------------------------------------------------------------ the leaf keys party and zone


def _draft(**kw: str) -> EventDraft:
    base: dict[str, Any] = dict(org="agency-x", method="OpenContact", purpose="collection", case_id="C-1",
                                borrower_id="B-1", decision="allow", code="OK", rule="CN.allow", time="t",
                                trace_id="abc", fields=["borrower.phone"], policy_revision="rev")
    base.update(kw)
    return EventDraft(**base)


@pytest.mark.parametrize("kw", [
    {"party": "borrower", "zone": "Asia/Shanghai"},
    {"party": "emergency_contact", "zone": "America/New_York", "channel": "call", "contact_id": "K-1",
     "lender": "lender-a"},
    {"party": 'quote " é 合成 \u2028', "zone": "tab \t nul \x00"},
    {"zone": "Asia/Shanghai"},
    {"party": "borrower"},
])
def test_party_and_zone_keep_the_leaf_canonical(kw: dict[str, str]) -> None:
    draft = _draft(**kw)
    assert draft.leaf_bytes(7) == canonical_json(draft.leaf_object(7))
    assert json.loads(draft.leaf_bytes(7)) == draft.leaf_object(7)
    front, tail = draft.head_parts()
    assert draft.head_bytes() == front + tail
    assert (b'"zone"' in draft.leaf_bytes(7)) == bool(kw.get("zone"))
    assert (b'"party"' in draft.leaf_bytes(7)) == bool(kw.get("party"))


def test_contact_events_show_channel_party_and_zone(seeded: Env) -> None:
    """Each channel's event differs; an outcome names its contact, channel, party and zone, so caps per local day
    can be recounted from the log alone."""
    seeded.clock.current = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)  # 11:00 in Shanghai
    agency = seeded.client("agency-1")
    call = agency.open_contact("C-1", "call")
    agency.record_outcome(call.contact_id, "connected")
    sms = agency.open_contact("C-1", "sms")
    agency.record_outcome(sms.contact_id, "no_answer")
    seeded.clock.current = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)  # 23:00 there: outside the window
    with pytest.raises(CustosClientError):
        agency.open_contact("C-1", "call")
    reg = seeded.client("regulator-1")
    opened = reg.audit_query(case_id="C-1", method="OpenContact")
    assert [(e.decision, e.data["channel"], e.data["party"], e.data["zone"], e.data.get("contact_id")) for e in opened] == [
        ("allow", "call", "borrower", "Asia/Shanghai", call.contact_id),
        ("allow", "sms", "borrower", "Asia/Shanghai", sms.contact_id),
        ("deny", "call", "borrower", "Asia/Shanghai", None)]
    assert opened[0].data["fields"] == opened[1].data["fields"] and opened[0] != opened[1]
    outcomes = reg.audit_query(case_id="C-1", method="RecordOutcome")
    assert [(e.data["contact_id"], e.data["channel"], e.data["party"], e.data["zone"], e.data["rule"]) for e in outcomes] == [
        (call.contact_id, "call", "borrower", "Asia/Shanghai", "contact.outcome:connected"),
        (sms.contact_id, "sms", "borrower", "Asia/Shanghai", "contact.outcome:no_answer")]
    # A read is no contact: its leaf keeps its old shape.
    assert all("party" not in e and "zone" not in e for e in reg.audit_query(case_id="C-1", method="GetCase"))


# ------------------------------------------------------------------ the conduct recount


def _plant(env: Env, contact_id: str, hour: int, result: str, borrower: str = "B-9", case: str = "C-9") -> None:
    """A connected call appended straight to the log, bypassing the conduct rules (as a dishonest store might)."""
    base: dict[str, Any] = dict(org="agency-1", purpose="collection", case_id=case, borrower_id=borrower,
                                decision="allow", code="OK", trace_id="planted", policy_revision="rev",
                                lender="lender-a", channel="call", contact_id=contact_id, party="borrower",
                                zone="Asia/Shanghai")
    at = f"2026-12-01T{hour:02d}:00:00.000000Z"
    env.gw.vault.audit.append([
        EventDraft(method="OpenContact", rule="CN.allow", time=at, fields=["borrower.phone"], **base),
        EventDraft(method="RecordOutcome", rule=f"contact.outcome:{result}", time=at, **base)])


def test_the_recount_finds_a_cap_breach_planted_in_the_store(seeded: Env, run: Run) -> None:
    # Four connected calls to one borrower on one Shanghai day (the CN cap is 3): 01:00 to 04:00 UTC.
    for i, hour in enumerate((1, 2, 3, 4)):
        _plant(seeded, f"K-{i}", hour, "connected")
    _plant(seeded, "K-9", 17, "connected")  # 01:00 on 2 December there: the next local day, not counted with them
    report = seeded.client("regulator-1").compliance_report(*DAY).document
    assert report["conduct"]["breaches"] == [
        {"lender": "lender-a", "borrower_id": "B-9", "day": "2026-12-01", "jurisdiction": "CN",
         "cap": "CN.cap.connected_per_day", "count": 4, "limit": 3}]
    days = {(d["borrower_id"], d["day"]): d for d in report["conduct"]["borrower_days"]}
    assert days["B-9", "2026-12-01"]["connected_calls"] == 4 and days["B-9", "2026-12-02"]["contacts"] == 1
    assert "CN.cap.attempts_per_number" in report["conduct"]["not_recounted"]  # the log names no number
    assert report["caps"]["CN"]["caps"][0] == {"id": "connected_per_day", "scope": "borrower", "count": "connected",
                                               "channels": ["call"], "parties": ["borrower"], "limit": 3, "days": 1}
    assert report["policy_revision"] == seeded.gw.core.bundle.revision
    # The planted events are in the signed log: the recount from the verified events agrees, breach and all.
    vkey = str(seeded.data / "audit.vkey")
    rc, doc, _ = run.json("audit", "compliance-report", "--from", DAY[0], "--to", DAY[1], "--verify", "--key", vkey,
                          *conn(seeded, "regulator-1"))
    assert rc == 0 and doc["verified"] is True and doc["conduct"]["breaches"] == report["conduct"]["breaches"]


def _honest_day(seeded: Env) -> dict[str, str]:
    """Through the real gateway, on one Shanghai day: three connected calls, a fourth refused by the cap, an SMS,
    reads through an entrusted and a provided mandate (with consent and notice recorded before one)."""
    seeded.clock.current = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
    lender, agency = seeded.client("lender-a"), seeded.client("agency-1")
    lender.set_consent("C-3", third_party_sharing=True)
    lender.record_notice("C-3", "2026-12-01")
    lender.assign("C-3", "agency-2", "collection", "2026-12-31", "provided")
    seeded.client("agency-2").get_case("C-3", "collection")
    agency.get_case("C-1", "collection")
    ids = {}
    for i in range(3):
        seeded.clock.advance(minutes=30)
        ids[f"call{i}"] = agency.open_contact("C-1", "call").contact_id
        agency.record_outcome(ids[f"call{i}"], "connected")
    seeded.clock.advance(minutes=30)
    with pytest.raises(CustosClientError) as info:
        agency.open_contact("C-1", "call")
    assert info.value.code == "CONTACT_CAP_REACHED"
    ids["sms"] = agency.open_contact("C-1", "sms").contact_id
    return ids


def test_an_honest_log_shows_no_breach_and_its_figures_are_a_recount_of_the_events(seeded: Env, run: Run) -> None:
    _honest_day(seeded)
    reg = seeded.client("regulator-1")
    report = reg.compliance_report(*DAY).document
    assert report["conduct"]["breaches"] == []
    days = {(d["borrower_id"], d["day"]): d for d in report["conduct"]["borrower_days"]}
    assert days["B-1", "2026-12-01"] == {"lender": "lender-a", "borrower_id": "B-1", "day": "2026-12-01",
                                         "jurisdiction": "CN", "contacts": 4, "channels": {"call": 3, "sms": 1},
                                         "connected_calls": 3}
    assert report["refusals"]["by_code"] == {"CONTACT_CAP_REACHED": 1}
    assert report["refusals"]["by_org"] == {"agency-1": {"CONTACT_CAP_REACHED": 1}}
    routes = {(r["kind"], r["purpose"], r["label"]): r for r in report["releases"]}
    assert set(routes) == {("agency", "collection", "entrusted"), ("agency", "collection", "provided")}
    assert routes["agency", "collection", "provided"]["count"] == 1 and "phone" in routes[
        "agency", "collection", "provided"]["fields"]
    assert report["org_kinds"] == {"agency-1": "agency", "agency-2": "agency"}
    assert report["coverage"] == {"released_cases": 2, "with_consent": 1, "with_notice": 1}
    assert report["erasures"] == [] and report["purges"] == []
    # Every figure equals a recount from `audit query`, with the report's own statement.
    events = [e.data for e in reg.audit_query()]
    recount = compliance.figures(events, start=report["period"]["from"], end=report["period"]["to"],
                                 size=report["size"], lender="", kinds=report["org_kinds"], caps=report["caps"])
    assert compliance.differences(report, recount) == [] and all(report[k] == recount[k] for k in compliance.FIGURES)
    # And --verify recounts it from the events verified by proof.
    vkey = str(seeded.data / "audit.vkey")
    rc, doc, _ = run.json("audit", "compliance-report", "--from", DAY[0], "--to", DAY[1], "--verify", "--key", vkey,
                          *conn(seeded, "regulator-1"))
    assert rc == 0 and doc["verified"] is True
    # The call is audited, with no PI: the period only.
    asked = reg.audit_query(method="ComplianceReport")
    assert asked and asked[-1].data["rule"] == f"compliance.report:from={report['period']['from']};to={report['period']['to']}"


def test_erasures_and_purges_are_listed(seeded: Env) -> None:
    seeded.clock.current = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
    seeded.client("lender-a").erase("B-3")
    report = seeded.client("regulator-1").compliance_report(*DAY).document
    assert [(e["case_id"], e["borrower_id"], e["reason"]) for e in report["erasures"]] == [("C-3", "B-3", "request")]
    assert report["purges"] == []


def test_verify_fails_when_the_report_is_not_the_logs(seeded: Env, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    _plant(seeded, "K-1", 1, "connected")
    honest = seeded.gw.core.compliance_report

    def hiding(*args: Any) -> dict[str, Any]:
        report = honest(*args)
        report["conduct"]["borrower_days"] = []
        return report

    monkeypatch.setattr(seeded.gw.core, "compliance_report", hiding)
    vkey = str(seeded.data / "audit.vkey")
    rc, doc, err = run.json("audit", "compliance-report", "--from", DAY[0], "--to", DAY[1], "--verify", "--key", vkey,
                            *conn(seeded, "regulator-1"))
    assert_error(rc, doc, err, "REPORT_MISMATCH")
    assert "B-9" not in err and "conduct" in err


# ------------------------------------------------------------------ who


def test_a_lenders_report_holds_none_of_another_lenders_cases(seeded: Env) -> None:
    seeded.clock.current = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
    seeded.client("lender-b").assign("BC-1", "agency-b", "collection", "2026-12-31")
    seeded.client("agency-b").get_case("BC-1", "collection")
    with pytest.raises(CustosClientError):
        seeded.client("agency-b").get_case("BC-2", "collection")
    seeded.client("agency-1").get_case("C-1", "collection")
    mine = seeded.client("lender-a").compliance_report(*DAY).document
    theirs = seeded.client("lender-b").compliance_report(*DAY).document
    everyone = seeded.client("regulator-1").compliance_report(*DAY).document
    assert mine["scope"] == "lender-a" and theirs["scope"] == "lender-b" and everyone["scope"] == "all"
    assert "agency-b" not in json.dumps(mine) and "lender-b" not in json.dumps(mine)
    assert "agency-1" not in json.dumps(theirs) and "lender-a" not in json.dumps(theirs)
    assert mine["org_kinds"] == {"agency-1": "agency"} and theirs["org_kinds"] == {"agency-b": "agency"}
    # A refusal made before the case was resolved names no lender: only the regulator's report counts it.
    assert theirs["refusals"] == {"by_code": {}, "by_org": {}}
    assert everyone["refusals"]["by_org"] == {"agency-b": {"NO_MANDATE": 1}}
    assert everyone["org_kinds"] == {"agency-1": "agency", "agency-b": "agency"}
    assert {r["count"] for r in theirs["releases"]} == {1} and theirs["coverage"]["released_cases"] == 1


def test_a_lender_verifies_its_own_report_from_its_own_events(seeded: Env, run: Run) -> None:
    """A lender's recount reads only its scope of the log (audit query is scoped to its own events) and agrees."""
    _honest_day(seeded)
    seeded.client("lender-b").assign("BC-1", "agency-b", "collection", "2026-12-31")
    seeded.client("agency-b").get_case("BC-1", "collection")
    vkey = str(seeded.data / "audit.vkey")
    rc, doc, _ = run.json("audit", "compliance-report", "--from", DAY[0], "--to", DAY[1], "--verify", "--key", vkey,
                          *conn(seeded, "lender-a"))
    assert rc == 0 and doc["verified"] is True and doc["scope"] == "lender-a"
    assert doc["coverage"]["released_cases"] == 2 and "agency-b" not in json.dumps(doc)


@pytest.mark.parametrize(("org", "span", "code"), [
    ("agency-1", DAY, "WRONG_ORG_KIND"),
    ("regulator-1", ("yesterday", DAY[1]), "INVALID_TIME"),
    ("regulator-1", (DAY[1], DAY[0]), "INVALID_TIME_RANGE"),
    ("regulator-1", (DAY[0], DAY[0]), "INVALID_TIME_RANGE"),
])
def test_a_bad_request_is_a_stable_code_and_audited(seeded: Env, org: str, span: tuple[str, str], code: str) -> None:
    with pytest.raises(CustosClientError) as info:
        seeded.client(org).compliance_report(*span)
    assert info.value.code == code
    refused = seeded.events(method="ComplianceReport", decision="deny")
    assert [e.code for e in refused] == [code] and refused[0].org == org
