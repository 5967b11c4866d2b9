"""Issue 26 end to end over gRPC, on both backends: opt-out outcomes close one medium, number, person or the
borrower for every org; third parties only when the borrower is shown unreachable; call recordings' references
kept past erasure for the record-keeping period, then purged."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from custos_client import CustosClientError

from gateway import cli, synth
from tests.conftest import Env

# The fixture clock is 2026-11-30 02:00Z, 10:00 in Shanghai: inside the CN window. C-1/C-2 are CN, borrower B-1.


@pytest.fixture
def two_agencies(seeded: Env) -> Env:
    """agency-1 holds C-1, agency-2 holds C-2; both cases are borrower B-1's."""
    seeded.client("lender-a").assign("C-2", "agency-2", "collection", "2026-12-31")
    return seeded


@pytest.fixture
def two_contacts(seeded: Env) -> Env:
    """C-9 (CN, borrower B-9) with two emergency contacts, lost_contact set, mandated to agency-1."""
    line = synth.case_line(9, jurisdiction="CN")
    first = line["borrower"]["emergency_contacts"][0]
    line["borrower"]["emergency_contacts"].append({"name": "Second Synth", "relation": "friend",
                                                   "phone": first["phone"][:-2] + "88"})
    assert seeded.import_cases("lender-a", [line]).imported == 1
    lender = seeded.client("lender-a")
    lender.assign("C-9", "agency-1", "collection", "2026-12-31")
    lender.set_flags("C-9", lost_contact=True)
    return seeded


def code_of(call: object) -> str:
    with pytest.raises(CustosClientError) as info:
        call()  # type: ignore[operator]
    return info.value.code


def last_deny(env: Env, case: str) -> dict[str, object]:
    return [e for e in env.events(case_id=case) if e.decision == "deny"][-1]


# --------------------------------------------------------------------------- opt-outs


def test_stop_calls_closes_calls_to_that_number_for_every_org(two_agencies: Env) -> None:
    a1, a2, lender = (two_agencies.client(o) for o in ("agency-1", "agency-2", "lender-a"))
    call = a1.open_contact("C-1", "call")
    assert a1.record_outcome(call.contact_id, "stop_calls").result == "stop_calls"
    assert code_of(lambda: a1.open_contact("C-1", "call")) == "CONTACT_OPTED_OUT"
    deny = last_deny(two_agencies, "C-1")
    assert (deny.code, deny.data["rule"], deny.method) == ("CONTACT_OPTED_OUT", "CN.opt_out.stop_calls",
                                                            "OpenContact")
    # Another org on another case of the same borrower, and the lender itself: the same number, closed.
    assert code_of(lambda: a2.open_contact("C-2", "call")) == "CONTACT_OPTED_OUT"
    assert code_of(lambda: lender.open_contact("C-2", "call")) == "CONTACT_OPTED_OUT"
    # The other medium to the same number stays open; so does another number (the emergency contact's).
    assert a1.open_contact("C-1", "sms").phone == call.phone
    lender.set_flags("C-1", lost_contact=True)
    other = a1.open_contact("C-1", "call", "emergency_contact")
    assert other.phone != call.phone
    # A day, a month later: still closed (opt-outs have no horizon).
    two_agencies.clock.advance(days=31)
    assert code_of(lambda: a1.open_contact("C-1", "call")) == "CONTACT_OPTED_OUT"


def test_stop_texts_closes_sms_only(seeded: Env) -> None:
    agency = seeded.client("agency-1")
    sms = agency.open_contact("C-1", "sms")
    agency.record_outcome(sms.contact_id, "stop_texts")
    assert code_of(lambda: agency.open_contact("C-1", "sms")) == "CONTACT_OPTED_OUT"
    assert last_deny(seeded, "C-1").data["rule"] == "CN.opt_out.stop_texts"
    assert agency.open_contact("C-1", "call").phone == sms.phone


def test_refused_closes_that_third_party_not_the_next_nor_the_borrower(two_contacts: Env) -> None:
    agency = two_contacts.client("agency-1")
    people = json.loads(two_contacts.client("lender-a").get_case("C-9", "servicing").fields["emergency_contacts"])
    first = agency.open_contact("C-9", "call", "emergency_contact")
    assert first.phone == people[0]["phone"]
    agency.record_outcome(first.contact_id, "refused")
    second = agency.open_contact("C-9", "call", "emergency_contact")
    assert second.phone == people[1]["phone"]  # one person closed, the other open
    agency.record_outcome(second.contact_id, "refused")
    assert code_of(lambda: agency.open_contact("C-9", "sms", "emergency_contact")) == "THIRD_PARTY_REFUSED"
    assert last_deny(two_contacts, "C-9").data["rule"] == "CN.opt_out.refused"
    borrower = agency.open_contact("C-9", "call")
    assert borrower.party == "borrower" and borrower.phone not in (people[0]["phone"], people[1]["phone"])
    # A borrower cannot "refuse" as a third party: the outcome names nobody to close.
    assert code_of(lambda: agency.record_outcome(borrower.contact_id, "refused")) == "OUTCOME_NOT_APPLICABLE"
    assert last_deny(two_contacts, "C-9").data["rule"] == "contact.outcome:refused"


def test_has_attorney_closes_the_borrower_on_every_case_but_not_third_parties_in_cn(two_agencies: Env) -> None:
    a1, a2, lender = (two_agencies.client(o) for o in ("agency-1", "agency-2", "lender-a"))
    lender.set_stage("C-1", "field_visit")
    call = a1.open_contact("C-1", "call")
    a1.record_outcome(call.contact_id, "has_attorney")
    for channel in ("call", "sms", "visit", "letter"):
        assert code_of(lambda channel=channel: a1.open_contact("C-1", channel)) == "ATTORNEY_REPRESENTED"
    assert last_deny(two_agencies, "C-1").data["rule"] == "CN.opt_out.has_attorney"
    assert code_of(lambda: a2.open_contact("C-2", "call")) == "ATTORNEY_REPRESENTED"
    lender.set_flags("C-1", lost_contact=True)
    assert a1.open_contact("C-1", "call", "emergency_contact").party == "emergency_contact"


def test_stop_calls_on_a_visit_is_not_applicable(seeded: Env) -> None:
    lender, agency = seeded.client("lender-a"), seeded.client("agency-1")
    lender.set_stage("C-1", "field_visit")
    visit = agency.open_contact("C-1", "visit")
    assert code_of(lambda: agency.record_outcome(visit.contact_id, "stop_calls")) == "OUTCOME_NOT_APPLICABLE"
    assert agency.record_outcome(visit.contact_id, "connected").result == "connected"
    assert agency.open_contact("C-1", "call").phone


# --------------------------------------------------------------------------- third parties: unreachable


def test_cn_third_party_after_the_third_failed_call_and_a_connected_call_resets(seeded: Env) -> None:
    agency = seeded.client("agency-1")

    def failed_call(result: str = "no_answer") -> None:
        agency.record_outcome(agency.open_contact("C-1", "call").contact_id, result)

    def third_party() -> object:
        return agency.open_contact("C-1", "call", "emergency_contact")

    failed_call()
    failed_call()
    assert code_of(third_party) == "THIRD_PARTY_NOT_UNREACHABLE"  # after the second failed call
    assert last_deny(seeded, "C-1").data["rule"] == "CN.third_party.unreachable"
    failed_call()
    assert third_party().party == "emergency_contact"  # after the third
    seeded.clock.advance(days=1)
    failed_call("connected")  # a conversation: the borrower is reachable again
    failed_call()
    failed_call()
    assert code_of(third_party) == "THIRD_PARTY_NOT_UNREACHABLE"
    failed_call()
    assert third_party().party == "emergency_contact"


def test_cn_an_invalid_number_opens_third_parties(seeded: Env) -> None:
    agency = seeded.client("agency-1")
    assert code_of(lambda: agency.open_contact("C-1", "call", "emergency_contact")) == "THIRD_PARTY_NOT_UNREACHABLE"
    agency.record_outcome(agency.open_contact("C-1", "call").contact_id, "invalid_number")
    assert agency.open_contact("C-1", "call", "emergency_contact").party == "emergency_contact"


def test_us_third_parties_still_need_lost_contact(seeded: Env) -> None:
    lender = seeded.client("lender-a")
    seeded.clock.current = seeded.clock.current.replace(hour=15)  # 10:00 in New York
    for _ in range(3):
        lender.record_outcome(lender.open_contact("C-4", "call").contact_id, "no_answer")
    assert code_of(lambda: lender.open_contact("C-4", "call", "emergency_contact")) == "THIRD_PARTY_NOT_ALLOWED"


# --------------------------------------------------------------------------- call recordings


REF = "pbx-7:2026/11/30-0001"


def test_recording_reference_is_listed_to_the_lender_and_audited_by_presence(seeded: Env) -> None:
    agency, lender = seeded.client("agency-1"), seeded.client("lender-a")
    call = agency.open_contact("C-1", "call")
    assert code_of(lambda: agency.record_outcome(call.contact_id, "connected", recording="bad ref")) \
        == "INVALID_RECORDING"
    assert code_of(lambda: agency.record_outcome(call.contact_id, "connected", recording="x" * 129)) \
        == "INVALID_RECORDING"
    recorded = agency.record_outcome(call.contact_id, "connected", recording=REF)
    assert recorded.recording == REF
    event = [e for e in seeded.events(case_id="C-1") if e.method == "RecordOutcome"][-1]
    assert event.data["fields"] == ["recording"] and event.decision == "allow"
    assert REF not in json.dumps([e.data for e in seeded.events()])
    history = json.loads(lender.get_case("C-1", "servicing").fields["contact_history"])
    assert [h.get("recording") for h in history] == [REF]
    released = agency.get_case("C-1", "collection").fields.get("contact_history")
    assert released is None or REF not in released
    sms = agency.open_contact("C-1", "sms")
    assert code_of(lambda: agency.record_outcome(sms.contact_id, "no_answer", recording=REF)) \
        == "OUTCOME_NOT_APPLICABLE"


def test_recording_survives_erasure_for_the_keeping_period_then_is_purged(seeded: Env) -> None:
    agency, lender = seeded.client("agency-1"), seeded.client("lender-a")
    recorded_at = seeded.clock.current
    call = agency.open_contact("C-1", "call")
    agency.record_outcome(call.contact_id, "connected", recording=REF)
    assert lender.erase("B-1").state == "erased"

    def stored() -> str | None:
        row = seeded.gw.vault.reader().get_contact(call.contact_id)
        assert row is not None
        return row.recording

    assert stored() == REF  # the borrower's data is gone, the reference stays (CN keep_years = 2)
    core = seeded.gw.core
    seeded.clock.current = recorded_at.replace(year=2028) - timedelta(days=1)
    core.run_retention()
    assert stored() == REF  # the day before the period ends
    seeded.clock.current = recorded_at.replace(year=2028)
    core.run_retention()
    assert stored() == REF  # the day it ends (kept until then, inclusive)
    seeded.clock.current = recorded_at.replace(year=2028) + timedelta(days=1)
    core.run_retention()
    assert stored() is None  # the day after
    purge = [e for e in seeded.events() if str(e.data["rule"]).startswith("retention.recordings")]
    assert [e.data["rule"] for e in purge] == ["retention.recordings:purged=1"]


def test_recording_of_a_borrower_not_erased_is_kept_past_the_period(seeded: Env) -> None:
    agency = seeded.client("agency-1")
    call = agency.open_contact("C-1", "call")
    agency.record_outcome(call.contact_id, "connected", recording=REF)
    seeded.clock.advance(days=3 * 366)
    seeded.gw.core.run_retention()
    row = seeded.gw.vault.reader().get_contact(call.contact_id)
    assert row is not None and row.recording == REF


# --------------------------------------------------------------------------- policy explain


def test_policy_explain_names_opt_outs_and_third_party_evidence(seeded: Env) -> None:
    agency, lender = seeded.client("agency-1"), seeded.client("lender-a")

    def notes() -> list[str]:
        return lender.explain("agency-1", "C-1", "collection").notes

    assert any("THIRD_PARTY_NOT_UNREACHABLE" in n for n in notes())
    for _ in range(3):
        agency.record_outcome(agency.open_contact("C-1", "call").contact_id, "no_answer")
    assert "third parties: the history shows the borrower unreachable (failed_attempts)" in notes()
    agency.record_outcome(agency.open_contact("C-1", "call").contact_id, "stop_calls")
    explained = notes()
    assert any(n.startswith("opt-out stop_calls recorded 1 time(s): closes call to that number or person "
                            "(rule CN.opt_out.stop_calls, CONTACT_OPTED_OUT)") for n in explained), explained
    assert "a borrower call to the current number: refused (CONTACT_OPTED_OUT, rule CN.opt_out.stop_calls)" \
        in explained
    assert not any(n.startswith("a borrower sms") for n in explained)


# --------------------------------------------------------------------------- the CLI


def test_cli_contact_outcome_recording(seeded: Env, capsys: pytest.CaptureFixture[str]) -> None:
    contact = seeded.client("agency-1").open_contact("C-1", "call")
    conn = ["--gateway", seeded.addr, "--identity", str(seeded.identity("agency-1")), "--json"]
    capsys.readouterr()
    rc = cli.main(["contact", "outcome", contact.contact_id, "--result", "stop_calls", "--recording", "bad ref",
                   *conn])
    out = capsys.readouterr()
    assert rc != 0 and json.loads(out.out)["error"]["code"] == "INVALID_RECORDING" and "Traceback" not in out.err
    rc = cli.main(["contact", "outcome", contact.contact_id, "--result", "stop_calls", "--recording", REF, *conn])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and (doc["result"], doc["recording"]) == ("stop_calls", REF)
