"""Conduct rules end to end over gRPC: contact release, central caps, flags, mandates, explain."""

from __future__ import annotations

import json
import shutil
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from custos_client import CustosClientError

from gateway import cli, synth
from gateway.transport.server import build
from policies import BUNDLE_DIR
from tests.conftest import Env, FakeClock

# 2026-11-30 02:00Z is 10:00 in Shanghai: inside the CN window.


@pytest.fixture
def two_agencies(seeded: Env) -> Env:
    """C-1 and C-2 (both CN) share borrower B-1; agency-1 holds C-1, agency-2 holds C-2."""
    seeded.client("lender-a").assign("C-2", "agency-2", "collection", "2026-12-31")
    return seeded


def refused(call: object) -> CustosClientError:
    with pytest.raises(CustosClientError) as info:
        call()  # type: ignore[operator]
    return info.value


def deny_codes(env: Env, case: str) -> list[str]:
    return [e.code for e in env.events(case_id=case) if e.method == "OpenContact" and e.decision == "deny"]


def test_number_released_inside_the_window_and_refused_outside(seeded: Env) -> None:
    agency = seeded.client("agency-1")
    full_phone = seeded.client("lender-a").get_case("C-1", "servicing").fields["phone"]
    opened = agency.open_contact("C-1", "call")
    assert opened.phone == full_phone and set(opened.to_dict()) >= {"contact_id", "opened_at"}
    assert opened.address == "" and opened.name == "" and "address" not in opened.to_dict()
    seeded.clock.current = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)  # 22:00 in Shanghai
    err = refused(lambda: agency.open_contact("C-1", "call"))
    assert (err.code, err.status) == ("OUTSIDE_CONTACT_WINDOW", "FAILED_PRECONDITION")
    seeded.clock.current = datetime(2026, 11, 30, 13, 59, tzinfo=UTC)  # 21:59 there
    assert agency.open_contact("C-1", "sms").phone == full_phone
    ev = [e for e in seeded.events(case_id="C-1") if e.method == "OpenContact"]
    assert [e.decision for e in ev] == ["allow", "deny", "allow"]
    assert ev[0].data["fields"] == ["borrower.phone"] and ev[1].code == "OUTSIDE_CONTACT_WINDOW"


def test_two_agencies_on_one_borrower_share_one_cap(two_agencies: Env) -> None:
    a1, a2 = two_agencies.client("agency-1"), two_agencies.client("agency-2")
    for agency, case in ((a1, "C-1"), (a2, "C-2"), (a1, "C-1")):
        contact = agency.open_contact(case, "call")
        agency.record_outcome(contact.contact_id, "connected")
    for agency, case in ((a2, "C-2"), (a1, "C-1")):
        err = refused(lambda agency=agency, case=case: agency.open_contact(case, "call"))
        assert err.code == "CONTACT_CAP_REACHED"
    assert deny_codes(two_agencies, "C-2") == ["CONTACT_CAP_REACHED"]
    # The next local day the cap starts again.
    two_agencies.clock.advance(days=1)
    assert a2.open_contact("C-2", "call").phone


def test_concurrent_attempts_never_exceed_the_cap(two_agencies: Env) -> None:
    """Twelve simultaneous call attempts from two agencies on one borrower: exactly three get the number.

    No outcome is recorded, so each granted call counts as connected (policies/conduct/cn.toml,
    unrecorded_counts_as_connected) and the 3-per-day cap across agencies decides.
    """
    results: list[str] = []
    lock = threading.Lock()

    def attempt(org: str, case: str) -> None:
        try:
            two_agencies.client(org).open_contact(case, "call")
            outcome = "ok"
        except CustosClientError as err:
            outcome = err.code
        with lock:
            results.append(outcome)

    for org in ("agency-1", "agency-2"):  # make the channels before the race
        two_agencies.client(org)
    threads = [threading.Thread(target=attempt, args=(("agency-1", "C-1") if i % 2 else ("agency-2", "C-2")))
               for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["CONTACT_CAP_REACHED"] * 9 + ["ok"] * 3


def test_cease_contact_stops_every_channel_at_once(seeded: Env) -> None:
    lender, agency = seeded.client("lender-a"), seeded.client("agency-1")
    lender.set_stage("C-1", "field_visit")
    lender.set_flags("C-1", lost_contact=True)
    assert agency.open_contact("C-1", "visit").address
    lender.set_flags("C-1", cease_contact=True)
    for channel, party in (("call", "borrower"), ("sms", "borrower"), ("visit", "borrower"), ("letter", "borrower"),
                           ("call", "emergency_contact")):
        err = refused(lambda channel=channel, party=party: agency.open_contact("C-1", channel, party))
        assert err.code == "CEASE_CONTACT", (channel, party)
    # The lender itself is bound too: its own calls count and are refused alike.
    assert refused(lambda: lender.open_contact("C-1", "call")).code == "CEASE_CONTACT"
    assert deny_codes(seeded, "C-1") == ["CEASE_CONTACT"] * 6


def test_expired_or_recalled_mandate_releases_nothing(seeded: Env) -> None:
    agency = seeded.client("agency-1")
    seeded.clock.current = datetime(2027, 1, 4, 2, 0, tzinfo=UTC)  # a Monday morning, mandate ended
    assert refused(lambda: agency.open_contact("C-1", "call")).code == "MANDATE_EXPIRED"
    seeded.clock.current = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
    seeded.client("lender-a").recall("C-1", "agency-1")
    assert refused(lambda: agency.open_contact("C-1", "call")).code == "MANDATE_RECALLED"


def test_settling_a_case_ends_its_mandates(seeded: Env) -> None:
    agency = seeded.client("agency-1")
    seeded.client("lender-a").set_flags("C-1", status="settled")
    assert refused(lambda: agency.open_contact("C-1", "call")).code == "CASE_CLOSED"
    assert refused(lambda: agency.get_case("C-1", "collection")).code == "CASE_CLOSED"
    assert agency.list_cases() == []


def test_dispute_outcome_flags_the_case_until_the_lender_clears_it(seeded: Env) -> None:
    agency = seeded.client("agency-1")
    contact = agency.open_contact("C-1", "call")
    recorded = agency.record_outcome(contact.contact_id, "dispute")
    assert recorded.result == "dispute"
    assert "disputed" in seeded.client("lender-a").list_cases()[0].flags
    assert refused(lambda: agency.open_contact("C-1", "call")).code == "DISPUTED"
    seeded.client("lender-a").set_flags("C-1", disputed=False)
    assert agency.open_contact("C-1", "call").phone


def test_outcomes_are_recorded_once_and_only_by_the_contacting_org(two_agencies: Env) -> None:
    contact = two_agencies.client("agency-1").open_contact("C-1", "call")
    err = refused(lambda: two_agencies.client("agency-2").record_outcome(contact.contact_id, "connected"))
    assert (err.code, err.status) == ("CONTACT_NOT_FOUND", "NOT_FOUND")
    two_agencies.client("agency-1").record_outcome(contact.contact_id, "no_answer")
    err = refused(lambda: two_agencies.client("agency-1").record_outcome(contact.contact_id, "connected"))
    assert err.code == "OUTCOME_ALREADY_RECORDED"
    assert refused(lambda: two_agencies.client("agency-1").record_outcome(contact.contact_id, "yelled")
                   ).code == "UNKNOWN_RESULT"


def test_emergency_contact_only_when_lost_contact_and_without_debt_data(seeded: Env) -> None:
    agency, lender = seeded.client("agency-1"), seeded.client("lender-a")
    err = refused(lambda: agency.open_contact("C-1", "call", "emergency_contact"))
    assert err.code == "THIRD_PARTY_NOT_UNREACHABLE"
    lender.set_flags("C-1", lost_contact=True)
    third = agency.open_contact("C-1", "call", "emergency_contact")
    contacts = json.loads(lender.get_case("C-1", "servicing").fields["emergency_contacts"])
    assert third.phone == contacts[0]["phone"] and third.name == contacts[0]["name"]
    assert set(third.to_dict()) == {"contact_id", "case_id", "channel", "party", "opened_at", "phone", "name"}
    ev = [e for e in seeded.events(case_id="C-1") if e.method == "OpenContact"][-1]
    assert sorted(ev.data["fields"]) == ["emergency_contact.name", "emergency_contact.phone"]


def test_us_rules_end_to_end(seeded: Env) -> None:
    # C-4 is a US case (America/New_York); 2026-11-30 02:00Z is 21:00 the day before there: outside.
    lender, agency = seeded.client("lender-a"), seeded.client("agency-1")
    lender.assign("C-4", "agency-1", "collection", "2026-12-31")
    assert refused(lambda: agency.open_contact("C-4", "call")).code == "OUTSIDE_CONTACT_WINDOW"
    seeded.clock.current = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)  # 10:00 in New York
    contact = agency.open_contact("C-4", "call")
    agency.record_outcome(contact.contact_id, "connected")
    seeded.clock.advance(days=6)
    assert refused(lambda: agency.open_contact("C-4", "call")).code == "COOLDOWN"
    seeded.clock.advance(days=1)
    assert agency.open_contact("C-4", "call").phone
    lender.set_flags("C-4", attorney_represented=True)
    assert refused(lambda: agency.open_contact("C-4", "call")).code == "ATTORNEY_REPRESENTED"
    assert refused(lambda: agency.open_contact("C-4", "letter")).code == "ATTORNEY_REPRESENTED"


def test_bad_contact_requests_get_stable_codes(seeded: Env) -> None:
    agency = seeded.client("agency-1")
    assert refused(lambda: agency.open_contact("C-1", "pigeon")).code == "UNKNOWN_CHANNEL"
    assert refused(lambda: agency.open_contact("C-1", "call", "neighbour")).code == "UNKNOWN_PARTY"
    assert refused(lambda: seeded.client("agency-2").open_contact("C-1", "call")).code == "NO_MANDATE"
    assert refused(lambda: seeded.client("regulator-1").open_contact("C-1", "call")).code == "WRONG_ORG_KIND"
    assert refused(lambda: agency.open_contact("C-1", "visit")).code == "STAGE_NOT_ALLOWED"


def test_changing_a_number_in_the_policy_file_changes_behaviour(env_dir: Path, tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(BUNDLE_DIR, policies, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    cn = policies / "conduct" / "cn.toml"
    cn.write_text(cn.read_text().replace('end = "22:00"', 'end = "21:00"', 1))
    clock = FakeClock(datetime(2026, 11, 30, 13, 30, tzinfo=UTC))  # 21:30 in Shanghai
    line = synth.case_line(1, jurisdiction="CN")
    for policy_dir, expected in ((None, "ok"), (policies, "OUTSIDE_CONTACT_WINDOW")):
        gw = build(env_dir / "data", "127.0.0.1:0", policy_dir=policy_dir, clock=clock)
        env = Env(env_dir, gw, clock, None)  # type: ignore[arg-type]
        try:
            if policy_dir is None:
                env.import_cases("lender-a", [line])
                env.client("lender-a").assign("C-1", "agency-1", "collection", "2026-12-31")
            try:
                env.client("agency-1").open_contact("C-1", "sms")
                got = "ok"
            except CustosClientError as err:
                got = err.code
            assert got == expected
            assert env.events(case_id="C-1")[-1].data["policy_revision"] == gw.core.bundle.revision
        finally:
            env.close()


def test_policy_explain_for_compliance_officers(seeded: Env, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--gateway", seeded.addr, "--identity", str(seeded.identity("lender-a")), "--json"]
    assert cli.main(["policy", "explain", "--org", "agency-1", "--case", "C-1", "--purpose", "collection",
                     *base]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["decision"] == "allow" and doc["code"] == "OK"
    fields = {f["field"]: f["transform"] for f in doc["fields"]}
    assert fields["phone"].startswith("mask") and fields["national_id"] == "last4" and "home_address" not in fields
    assert "collection.reminder" in doc["rules"] and doc["policy_revision"].startswith("sha256:")
    assert any("allowed" in n for n in doc["notes"])
    # At 23:00 local the call would be refused; in 2027 the mandate has ended.
    assert cli.main(["policy", "explain", "--org", "agency-1", "--case", "C-1", "--purpose", "collection",
                     "--at", "2026-11-30T15:00:00Z", *base]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert any("OUTSIDE_CONTACT_WINDOW" in n for n in doc["notes"])
    assert cli.main(["policy", "explain", "--org", "agency-1", "--case", "C-1", "--purpose", "collection",
                     "--at", "2027-02-01T02:00:00Z", *base]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["decision"], doc["code"], doc["fields"]) == ("deny", "MANDATE_EXPIRED", [])
    # Only the owning lender may ask.
    other = ["--gateway", seeded.addr, "--identity", str(seeded.identity("agency-1")), "--json"]
    assert cli.main(["policy", "explain", "--org", "agency-1", "--case", "C-1", "--purpose", "collection",
                     *other]) != 0
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "WRONG_ORG_KIND"


def test_contact_cli_contract(seeded: Env, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--gateway", seeded.addr, "--identity", str(seeded.identity("agency-1")), "--json"]
    assert cli.main(["contact", "open", "C-1", "--channel", "call", *base]) == 0
    opened = json.loads(capsys.readouterr().out)
    assert opened["phone"].startswith("+86") and opened["contact_id"]
    assert cli.main(["contact", "outcome", opened["contact_id"], "--result", "promise_to_pay", "--amount", "100.00",
                     "--on", "2026-12-05", *base]) == 0
    assert json.loads(capsys.readouterr().out)["result"] == "promise_to_pay"
    lender = ["--gateway", seeded.addr, "--identity", str(seeded.identity("lender-a")), "--json"]
    assert cli.main(["lender", "flag", "C-1", "--cease-contact", "--lost-contact", *lender]) == 0
    assert sorted(json.loads(capsys.readouterr().out)["flags"]) == ["cease_contact", "lost_contact"]
    assert cli.main(["contact", "open", "C-1", "--channel", "sms", *base]) == 3  # refused by the gateway
    out, err = capsys.readouterr()
    assert json.loads(out)["error"]["code"] == "CEASE_CONTACT" and err.startswith("error: CEASE_CONTACT: ")
    assert cli.main(["lender", "flag", "C-1", "--no-cease-contact", *lender]) == 0
    assert json.loads(capsys.readouterr().out)["flags"] == ["lost_contact"]


def test_every_contact_refusal_is_audited_with_its_code(two_agencies: Env) -> None:
    """Walk a case through each refusal; the audit log must hold one deny event per refusal, same code, same order."""
    env = two_agencies
    lender, a1 = env.client("lender-a"), env.client("agency-1")
    seen: list[str] = []

    def expect(code: str, call: object) -> None:
        err = refused(call)
        assert err.code == code
        seen.append(code)

    expect("STAGE_NOT_ALLOWED", lambda: a1.open_contact("C-1", "letter"))
    expect("THIRD_PARTY_NOT_UNREACHABLE", lambda: a1.open_contact("C-1", "call", "emergency_contact"))
    expect("UNKNOWN_CHANNEL", lambda: a1.open_contact("C-1", "fax"))
    expect("NO_MANDATE", lambda: env.client("agency-b").open_contact("C-1", "call"))
    first = a1.open_contact("C-1", "call")
    for _ in range(2):
        a1.open_contact("C-1", "call")
    expect("CONTACT_CAP_REACHED", lambda: a1.open_contact("C-1", "call"))  # three calls with no outcome yet
    a1.record_outcome(first.contact_id, "no_answer")
    for _ in range(3):
        a1.record_outcome(a1.open_contact("C-1", "call").contact_id, "no_answer")
    expect("NUMBER_CAP_REACHED", lambda: a1.open_contact("C-1", "call"))
    env.clock.advance(days=1)
    lender.set_flags("C-1", disputed=True)
    expect("DISPUTED", lambda: a1.open_contact("C-1", "sms"))
    lender.set_flags("C-1", disputed=False, cease_contact=True)
    expect("CEASE_CONTACT", lambda: a1.open_contact("C-1", "sms"))
    lender.set_flags("C-1", cease_contact=False)
    env.clock.advance(hours=13)  # 23:00 in Shanghai
    expect("OUTSIDE_CONTACT_WINDOW", lambda: a1.open_contact("C-1", "sms"))
    env.clock.advance(days=40)
    expect("MANDATE_EXPIRED", lambda: a1.open_contact("C-1", "sms"))
    audited = [e.code for e in env.events() if e.method == "OpenContact" and e.decision == "deny"]
    assert audited == seen


def test_policy_reload_changes_behaviour_without_a_restart(seeded: Env, tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(BUNDLE_DIR, policies, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    seeded.gw.policy_dir = policies
    seeded.clock.current = datetime(2026, 11, 30, 13, 30, tzinfo=UTC)  # 21:30 in Shanghai
    agency = seeded.client("agency-1")
    assert agency.open_contact("C-1", "sms").phone
    before = seeded.gw.core.bundle.revision
    cn = policies / "conduct" / "cn.toml"
    cn.write_text(cn.read_text().replace('end = "22:00"', 'end = "21:00"', 1))
    assert seeded.gw.reload_policies() != before
    assert refused(lambda: agency.open_contact("C-1", "sms")).code == "OUTSIDE_CONTACT_WINDOW"
    assert seeded.events(case_id="C-1")[-1].data["policy_revision"] == seeded.gw.core.bundle.revision
    # A broken bundle is refused and the running one stays in force.
    cn.write_text(cn.read_text().replace('\nend = "21:00"', '\nend = "25:00"', 1))
    from gateway.core.errors import PolicyError

    with pytest.raises(PolicyError):
        seeded.gw.reload_policies()
    assert refused(lambda: agency.open_contact("C-1", "sms")).code == "OUTSIDE_CONTACT_WINDOW"
