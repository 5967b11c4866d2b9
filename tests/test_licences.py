"""Issue 26 (items 4, 5, 7): licences where the borrower lives, artificial voices, notices before collection.

End to end over gRPC on both backends: `custos org licence` per region, the case's region at import, checked on
GetCase, PullCases and OpenContact; `contact open --artificial-voice` under a recorded, revocable consent, counted
in the call caps; the validation and outsourcing notices gating an agency's contact; verification on clearing a
dispute. Each boundary: the day before, the day, the day after; one region (kind, case) and another.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from custos_client import CustosClientError, PullRecord

from gateway import cli, synth
from gateway.core.errors import PolicyError
from gateway.core.rules.conduct import CaseState, ContactRequest, evaluate_contact
from gateway.core.rules.conduct_file import load_conduct_dir, load_conduct_rules
from policies import BUNDLE_DIR
from tests.conftest import Env


def at(day: str, hour: int = 15) -> datetime:
    """`day` at 15:00Z: 10:00 in New York, inside the US window."""
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


def refused(call: Any) -> CustosClientError:
    with pytest.raises(CustosClientError) as info:
        call()
    return info.value


def licence(env: Env, org: str, region: str, expires: str, no: str = "LIC-R-1") -> int:
    return cli.main(["org", "licence", str(env.data), "--id", org, "--region", region, "--licence-no", no,
                     "--licence-expires", expires])


def last(env: Env, method: str, case: str = "", **kw: Any) -> dict[str, Any]:
    events = [e for e in env.events(**({"case_id": case} if case else {}), **kw) if e.method == method]
    return events[-1]


def line(i: int, jurisdiction: str, **extra: Any) -> dict[str, Any]:
    return {**synth.case_line(i, jurisdiction=jurisdiction), **extra}


@pytest.fixture
def regions(seeded: Env) -> Env:
    """US cases of lender-a held by agency-1: C-11 in US-CA (licensing), C-12 in US-NV (not listed), C-13 none."""
    lines = [line(11, "US", region="US-CA"), line(12, "US", region="US-NV"), line(13, "US")]
    assert seeded.import_cases("lender-a", lines).imported == 3
    for case in ("C-11", "C-12", "C-13"):
        seeded.client("lender-a").assign(case, "agency-1", "collection", "2026-12-31")
    seeded.clock.current = at("2026-12-01")
    return seeded


# ---------------------------------------------------------------------------------------------- regional licences


def test_a_region_that_licenses_collectors_needs_the_agencys_licence_there(regions: Env) -> None:
    agency = regions.client("agency-1")
    err = refused(lambda: agency.get_case("C-11", "collection"))
    assert (err.code, err.status) == ("REGION_NOT_LICENSED", "PERMISSION_DENIED")
    ev = last(regions, "GetCase", "C-11")
    assert (ev.decision, ev.code, ev.data["rule"], ev.data["fields"]) == (
        "deny", "REGION_NOT_LICENSED", "identity.licence.region:US-CA", [])
    assert refused(lambda: agency.open_contact("C-11", "call")).code == "REGION_NOT_LICENSED"
    assert last(regions, "OpenContact", "C-11").code == "REGION_NOT_LICENSED"
    # One region and another: a licence for New York does not reach a Californian borrower.
    assert licence(regions, "agency-1", "US-NY", "2027-12-31") == 0
    assert refused(lambda: agency.get_case("C-11", "collection")).code == "REGION_NOT_LICENSED"
    # A region the policy does not list, and a case with no region: the org-wide licence, as before.
    assert agency.get_case("C-12", "collection").case_id == "C-12"
    assert agency.get_case("C-13", "collection").case_id == "C-13"
    assert agency.open_contact("C-12", "call").phone
    # Another kind: the lender owns the case and needs no licence.
    assert regions.client("lender-a").get_case("C-11", "servicing").case_id == "C-11"


def test_the_regional_licence_holds_through_its_last_day(regions: Env) -> None:
    agency = regions.client("agency-1")
    assert licence(regions, "agency-1", "US-CA", "2026-12-02") == 0
    ev = last(regions, "OperatorOrgLicence", org="agency-1")
    assert ev.decision == "allow" and "region=US-CA" in ev.data["rule"] and "LIC-R-1" not in ev.data["rule"]
    for day in ("2026-12-01", "2026-12-02"):  # the day before expiry, the day itself
        regions.clock.current = at(day)
        assert agency.get_case("C-11", "collection").case_id == "C-11"
        assert agency.open_contact("C-11", "call").phone
    regions.clock.current = at("2026-12-03")  # the day after
    err = refused(lambda: agency.get_case("C-11", "collection"))
    assert (err.code, err.status) == ("REGIONAL_LICENCE_EXPIRED", "PERMISSION_DENIED")
    assert refused(lambda: agency.open_contact("C-11", "call")).code == "REGIONAL_LICENCE_EXPIRED"
    assert last(regions, "OpenContact", "C-11").data["rule"] == "identity.licence.region:US-CA"
    # Re-running updates it: renewed, the agency reads again the same day.
    assert licence(regions, "agency-1", "US-CA", "2027-12-31", no="LIC-R-2") == 0
    assert agency.get_case("C-11", "collection").case_id == "C-11"


def test_pull_cases_leaves_out_a_case_of_an_unlicensed_region(regions: Env) -> None:
    agency = regions.client("agency-1")

    def pulled() -> set[str]:
        return {item.record.case_id for item in agency.pull_cases("collection") if isinstance(item, PullRecord)}

    assert {"C-12", "C-13"} <= pulled() and "C-11" not in pulled()
    assert licence(regions, "agency-1", "US-CA", "2026-12-31") == 0
    assert "C-11" in pulled()


def test_policy_explain_names_the_regional_licence(regions: Env) -> None:
    e = regions.client("lender-a").explain("agency-1", "C-11", "collection")
    assert (e.decision, e.code) == ("deny", "REGION_NOT_LICENSED")
    assert "identity.licence.region:US-CA" in e.rules
    assert any("US-CA" in n for n in e.notes)


def test_import_validates_the_region(seeded: Env) -> None:
    lines = [line(21, "US", region="us-ca"), line(22, "US", region="California"), line(23, "US", region=7),
             line(24, "CN", region="DE"), line(25, "US", region="US-CA")]
    result = seeded.import_cases("lender-a", lines)
    assert result.imported == 2
    assert [(r.line, r.code) for r in result.rejected] == [
        (1, "INVALID_REGION"), (2, "INVALID_REGION"), (3, "INVALID_REGION")]
    # The same lines again: the stored ones are the same (their digests include the region), nothing changes.
    again = seeded.import_cases("lender-a", lines[3:])
    assert again.already_imported == 2 and again.imported == 0


def test_org_licence_refuses_bad_input_with_stable_codes(regions: Env, capsys: pytest.CaptureFixture[str]) -> None:
    assert licence(regions, "agency-1", "California", "2026-12-31") != 0
    assert "INVALID_REGION" in capsys.readouterr().err
    assert licence(regions, "agency-1", "US-CA", "31/12/2026") != 0
    assert "INVALID_DATE" in capsys.readouterr().err
    assert licence(regions, "agency-nobody", "US-CA", "2026-12-31") != 0
    assert "ORG_NOT_FOUND" in capsys.readouterr().err
    codes = [e.code for e in regions.events(method="OperatorOrgLicence")]
    assert codes == ["INVALID_REGION", "INVALID_DATE", "ORG_NOT_FOUND"]


# ---------------------------------------------------------------------------------------------- artificial voices


def test_an_artificial_voice_needs_the_recorded_consent_and_revoking_it_closes_it(regions: Env) -> None:
    agency, lender = regions.client("agency-1"), regions.client("lender-a")
    err = refused(lambda: agency.open_contact("C-13", "call", artificial_voice=True))
    assert (err.code, err.status) == ("ARTIFICIAL_VOICE_NOT_CONSENTED", "FAILED_PRECONDITION")
    ev = last(regions, "OpenContact", "C-13")
    assert (ev.data["channel"], ev.data["rule"]) == ("call", "US.artificial_voice;artificial_voice")
    assert agency.open_contact("C-13", "call").phone  # an ordinary call needs no such consent
    assert lender.set_consent("C-13", artificial_voice=True).artificial_voice is True
    opened = agency.open_contact("C-13", "call", artificial_voice=True)
    assert opened.phone and opened.artificial_voice is True and opened.channel == "call"
    ev = last(regions, "OpenContact", "C-13")
    assert (ev.decision, ev.data["channel"], ev.data["rule"]) == ("allow", "call", "US.allow;artificial_voice")
    assert "consent:artificial_voice=yes" in last(regions, "SetConsent", "C-13").data["rule"]
    # Only a call: a text cannot carry a voice.
    assert refused(lambda: agency.open_contact("C-13", "sms", artificial_voice=True)).code == "CHANNEL_NOT_ALLOWED"
    assert lender.set_consent("C-13", artificial_voice=False).artificial_voice is False
    assert refused(lambda: agency.open_contact("C-13", "call", artificial_voice=True)).code == \
        "ARTIFICIAL_VOICE_NOT_CONSENTED"


def test_artificial_voice_calls_count_in_the_same_caps_as_calls(regions: Env) -> None:
    agency = regions.client("agency-1")
    regions.client("lender-a").set_consent("C-13", artificial_voice=True)
    for n in range(1, 8):  # US: 7 calls per case in 7 days, artificial or not
        agency.open_contact("C-13", "call", artificial_voice=n % 2 == 1)
    err = refused(lambda: agency.open_contact("C-13", "call", artificial_voice=True))  # the 8th
    assert err.code == "CONTACT_CAP_REACHED"
    assert refused(lambda: agency.open_contact("C-13", "call")).code == "CONTACT_CAP_REACHED"


def test_a_cn_artificial_voice_needs_consent_too(seeded: Env) -> None:
    agency = seeded.client("agency-1")
    assert refused(lambda: agency.open_contact("C-1", "call", artificial_voice=True)).code == \
        "ARTIFICIAL_VOICE_NOT_CONSENTED"
    assert last(seeded, "OpenContact", "C-1").data["rule"] == "CN.artificial_voice;artificial_voice"


# ---------------------------------------------------------------------------------------------- notices


@pytest.fixture
def unnoticed(seeded: Env) -> Env:
    """C-31 (US) and C-32 (CN), imported without notices, held by agency-1; 2026-11-30 10:00 in New York."""
    lines = [line(31, "US", notices={}), line(32, "CN", notices={})]
    assert seeded.import_cases("lender-a", lines).imported == 2
    for case in ("C-31", "C-32"):
        seeded.client("lender-a").assign(case, "agency-1", "collection", "2026-12-31")
    seeded.clock.current = at("2026-11-30")
    return seeded


def test_a_us_agency_contact_waits_for_the_validation_notice(unnoticed: Env) -> None:
    agency, lender = unnoticed.client("agency-1"), unnoticed.client("lender-a")
    err = refused(lambda: agency.open_contact("C-31", "call"))
    assert (err.code, err.status) == ("NOTICE_REQUIRED", "FAILED_PRECONDITION")
    assert last(unnoticed, "OpenContact", "C-31").data["rule"] == "US.notice.validation"
    # One kind and another: the outsourcing notice is not the validation notice.
    lender.record_notice("C-31", "2026-11-30", kind="outsourcing")
    assert refused(lambda: agency.open_contact("C-31", "call")).code == "NOTICE_REQUIRED"
    # Tomorrow (New York) cannot be recorded yet; today can, and the agency may call.
    assert refused(lambda: lender.record_notice("C-31", "2026-12-01", kind="validation")).code == "NOTICE_IN_FUTURE"
    got = lender.record_notice("C-31", "2026-11-30", kind="validation")
    assert got.to_dict() == {"case_id": "C-31", "kind": "validation", "notice_on": "2026-11-30"}
    assert last(unnoticed, "RecordNotice", "C-31").data["rule"] == "notice:validation=2026-11-30"
    assert agency.open_contact("C-31", "call").phone


def test_a_cn_agency_contact_waits_for_the_outsourcing_notice(unnoticed: Env) -> None:
    unnoticed.clock.current = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
    agency, lender = unnoticed.client("agency-1"), unnoticed.client("lender-a")
    assert refused(lambda: agency.open_contact("C-32", "sms")).code == "NOTICE_REQUIRED"
    assert last(unnoticed, "OpenContact", "C-32").data["rule"] == "CN.notice.outsourcing"
    lender.record_notice("C-32", "2026-11-30", kind="validation")
    assert refused(lambda: agency.open_contact("C-32", "sms")).code == "NOTICE_REQUIRED"
    lender.record_notice("C-32", "2026-11-30", kind="outsourcing")
    assert agency.open_contact("C-32", "sms").phone


def test_the_lenders_own_contact_needs_no_notice(unnoticed: Env) -> None:
    assert unnoticed.client("lender-a").open_contact("C-31", "call").phone


def test_the_negative_reporting_notice_is_still_the_default_kind(unnoticed: Env) -> None:
    lender = unnoticed.client("lender-a")
    got = lender.record_notice("C-31", "2026-11-29")
    assert got.negative_notice_on == "2026-11-29" and got.kind == "negative_reporting"
    assert last(unnoticed, "RecordNotice", "C-31").data["rule"] == "notice:negative_reporting=2026-11-29"
    assert refused(lambda: lender.record_notice("C-31", "2026-11-29", kind="bogus")).code == "UNKNOWN_NOTICE_KIND"
    assert refused(lambda: unnoticed.client("agency-1").open_contact("C-31", "call")).code == "NOTICE_REQUIRED"


def test_a_notice_gates_from_its_day_in_the_borrowers_calendar() -> None:
    """Pure: the notice given on D; an agency's call the day before (refused), on D and the day after (allowed)."""
    rules = load_conduct_dir(BUNDLE_DIR / "conduct")["US"]
    state = CaseState("C-1", "B-1", "US", "America/New_York", "reminder", "open", False, False, False, False,
                      lender_id="lender-a", notices={"validation": date(2026, 12, 2)})
    request = ContactRequest("C-1", "agency-1", "call", "borrower", "t")
    codes = [evaluate_contact(rules, state, request, [], at(day)).code for day in ("2026-12-01", "2026-12-02",
                                                                                 "2026-12-03")]
    assert codes == ["NOTICE_REQUIRED", "OK", "OK"]
    # 23:30 on D-1 in New York is already D in UTC: the borrower's calendar decides (the notice is checked
    # before the window, so its code is the one seen).
    late = datetime(2026, 12, 2, 4, 30, tzinfo=UTC)
    assert evaluate_contact(rules, state, request, [], late).code == "NOTICE_REQUIRED"
    owner = ContactRequest("C-1", "lender-a", "call", "borrower", "t")
    assert evaluate_contact(rules, state, owner, [], at("2026-12-01")).allowed


# ---------------------------------------------------------------------------------------------- verification


def test_clearing_a_us_dispute_records_that_verification_was_sent(unnoticed: Env) -> None:
    lender = unnoticed.client("lender-a")
    lender.set_flags("C-31", disputed=True)
    err = refused(lambda: lender.set_flags("C-31", disputed=False))
    assert (err.code, err.status) == ("VERIFICATION_REQUIRED", "FAILED_PRECONDITION")
    assert last(unnoticed, "SetFlags", "C-31").data["rule"] == "US.notice.verification"
    assert refused(lambda: lender.set_flags("C-31", disputed=False, verification_sent="2026-12-01")).code == \
        "NOTICE_IN_FUTURE"  # tomorrow in New York
    assert refused(lambda: lender.set_flags("C-31", disputed=True, verification_sent="2026-11-30")).code == \
        "INVALID_ARGUMENT"
    assert refused(lambda: lender.set_flags("C-31", disputed=False, verification_sent="30/11/2026")).code == \
        "INVALID_DATE"
    done = lender.set_flags("C-31", disputed=False, verification_sent="2026-11-30")
    assert "disputed" not in done.flags
    ev = last(unnoticed, "SetFlags", "C-31")
    assert ev.decision == "allow" and ev.data["rule"] == "flags:disputed=false;verification_sent=2026-11-30"


def test_clearing_a_cn_dispute_needs_no_verification_date(unnoticed: Env) -> None:
    lender = unnoticed.client("lender-a")
    lender.set_flags("C-32", disputed=True)
    assert "disputed" not in lender.set_flags("C-32", disputed=False).flags


# ---------------------------------------------------------------------------------------------- the policy file


@pytest.mark.parametrize("table, problem", [
    ('[licensing]\nregions = ["us-ca"]\n', "licensing.regions"),
    ('[licensing]\nregions = ["US-CA", "US-CA"]\n', "twice"),
    ('[notices]\nbefore_agency_contact = ["negative_reporting"]\n', "notices.before_agency_contact"),
    ("[artificial_voice]\nrequires_consent = 1\n", "artificial_voice.requires_consent"),
])
def test_the_conduct_file_checks_the_new_tables(tmp_path: Path, table: str, problem: str) -> None:
    base = (BUNDLE_DIR / "conduct" / "us.toml").read_text(encoding="utf-8")
    head = base.split("# ---- licences, artificial voices, notices (issue 26)")[0]
    path = tmp_path / "us.toml"
    path.write_text(head + table, encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_conduct_rules(path)
    assert problem in str(info.value)


# ---------------------------------------------------------------------------------------------- the command line


def test_the_command_line_carries_the_new_flags(unnoticed: Env, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUSTOS_GATEWAY", raising=False)
    monkeypatch.delenv("CUSTOS_IDENTITY", raising=False)

    def run(org: str, *argv: str) -> tuple[int, Any]:
        capsys.readouterr()
        rc = cli.main([*argv, "--gateway", unnoticed.addr, "--identity", str(unnoticed.identity(org)), "--json"])
        out = capsys.readouterr()
        assert "Traceback" not in out.err
        return rc, json.loads(out.out.strip() or (out.err.split(": ", 2)[-1] and "{}"))

    rc, doc = run("lender-a", "lender", "notice", "C-31", "--on", "2026-11-30", "--kind", "validation")
    assert rc == 0 and doc == {"case_id": "C-31", "kind": "validation", "notice_on": "2026-11-30"}
    rc, doc = run("lender-a", "lender", "consent", "C-31", "--artificial-voice", "yes")
    assert rc == 0 and doc["artificial_voice"] is True
    rc, doc = run("agency-1", "contact", "open", "C-31", "--channel", "call", "--artificial-voice")
    assert rc == 0 and doc["artificial_voice"] is True and doc["channel"] == "call"
    rc, _ = run("lender-a", "lender", "flag", "C-31", "--disputed")
    assert rc == 0
    rc, doc = run("lender-a", "lender", "flag", "C-31", "--no-disputed", "--verification-sent", "2026-11-30")
    assert rc == 0 and "disputed" not in doc["flags"]
    rc, doc = run("lender-a", "lender", "consent", "C-31", "--artificial-voice", "no")
    assert rc == 0 and doc["artificial_voice"] is False
    rc, doc = run("agency-1", "contact", "open", "C-31", "--channel", "call", "--artificial-voice")
    assert rc != 0 and doc["error"]["code"] == "ARTIFICIAL_VOICE_NOT_CONSENTED"
