"""Law firms and bureaus: escalation, and the litigation and credit-reporting preconditions of the release decision.

Every scenario is checked through `cases get` (enforcement, audited) and
`policy explain` (the same decision object), which must agree.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from custos_client import CustosClientError

from gateway import synth
from gateway.core.errors import Code, PolicyError
from gateway.core.model import CaseRow, ContactRow, LoanRow
from gateway.core.rules import preconditions
from tests.conftest import Env


def refused(env: Env, org: str, case: str, purpose: str) -> str:
    with pytest.raises(CustosClientError) as info:
        env.client(org).get_case(case, purpose)
    return info.value.code


def outcome(env: Env, org: str, case: str, purpose: str) -> str:
    """OK or the refusal code of a read; and explain must say the same."""
    try:
        env.client(org).get_case(case, purpose)
        code = "OK"
    except CustosClientError as err:
        code = err.code
    explained = env.client("lender-a").explain(org, case, purpose)
    assert explained.code == code, (code, explained)
    return code


def last_event(env: Env, case: str) -> dict[str, Any]:
    return [e for e in env.events(case_id=case) if e.method not in ("QueryAudit", "Explain")][-1]


def imported(env: Env, n: int, jurisdiction: str, **loan: Any) -> str:
    line = synth.case_line(n, jurisdiction=jurisdiction)
    consent = loan.pop("consent_credit", True)
    line["consent"]["credit_reporting"] = consent
    line["loan"].update(loan)
    assert env.import_cases("lender-a", [line]).imported == 1
    return str(line["case_id"])


# ---------------------------------------------------------------------------------------------- escalation


def test_escalation_moves_the_case_to_litigation_and_ends_every_agency_mandate_at_once(seeded: Env) -> None:
    lender = seeded.client("lender-a")
    lender.assign("C-1", "agency-2", "collection", "2026-12-31")
    assert seeded.client("agency-2").get_case("C-1", "collection").case_id == "C-1"
    assert refused(seeded, "lawfirm-1", "C-1", "litigation") == "NO_MANDATE"  # nothing before escalation
    done = lender.escalate("C-1", "lawfirm-1")
    assert done.stage == "litigation" and done.recalled == ["agency-1", "agency-2"]
    assert done.mandate.org_id == "lawfirm-1" and done.mandate.purpose == "litigation"
    assert done.mandate.until == "2027-11-30"  # a year from the case's local today (2026-11-30 in Shanghai)
    for agency in ("agency-1", "agency-2"):
        assert refused(seeded, agency, "C-1", "collection") == "MANDATE_RECALLED"
    packet = seeded.client("lawfirm-1").get_case("C-1", "litigation")
    assert {"full_name", "national_id", "date_of_birth", "contract_text", "repayments", "contact_history"} \
        <= set(packet.fields)
    assert "bank_account" not in packet.fields and "emergency_contacts" not in packet.fields
    rules = [e.data["rule"] for e in seeded.events(case_id="C-1") if e.method == "EscalateCase"]
    assert rules == ["mandate.recall:agency-1;escalation", "mandate.recall:agency-2;escalation",
                     "escalate:reminder->litigation;agreement=yes;pia=yes;to=lawfirm-1"]
    seqs = [e.seq for e in seeded.events(case_id="C-1") if e.method == "EscalateCase"]
    assert seqs == list(range(seqs[0], seqs[0] + 3))  # one commit: the three events are contiguous


def test_escalation_refusals_are_audited_with_their_codes(seeded: Env) -> None:
    lender = seeded.client("lender-a")
    cases = [(("C-1", "agency-1"), "PURPOSE_KIND_MISMATCH"), (("C-1", "lawfirm-404"), "ORG_NOT_FOUND"),
             (("C-1", "bad id!"), "INVALID_ORG_ID"), (("BC-1", "lawfirm-1"), "CASE_NOT_FOUND"),
             (("C-1", "lawfirm-1", "2026-13-01"), "INVALID_DATE"), (("C-1", "lawfirm-1", "2026-11-01"), "UNTIL_IN_PAST")]
    for args, code in cases:
        with pytest.raises(CustosClientError) as info:
            lender.escalate(*args)
        assert info.value.code == code, args
    lender.set_flags("C-2", status="settled")
    with pytest.raises(CustosClientError) as info:
        lender.escalate("C-2", "lawfirm-1")
    assert info.value.code == "CASE_CLOSED"
    assert last_event(seeded, "C-2").code == "CASE_CLOSED"
    with pytest.raises(CustosClientError) as info:
        seeded.client("agency-1").escalate("C-1", "lawfirm-1")
    assert info.value.code == "WRONG_ORG_KIND"
    assert seeded.client("lender-a").get_case("C-1", "servicing").stage == "reminder"  # nothing changed


def test_the_law_firm_gets_only_its_own_escalated_cases_until_recalled(seeded: Env) -> None:
    lender = seeded.client("lender-a")
    lender.escalate("C-3", "lawfirm-2")
    assert outcome(seeded, "lawfirm-1", "C-3", "litigation") == "NO_MANDATE"  # another firm's case
    assert outcome(seeded, "lawfirm-2", "C-3", "litigation") == "OK"
    lender.recall("C-3", "lawfirm-2")
    assert outcome(seeded, "lawfirm-2", "C-3", "litigation") == "MANDATE_RECALLED"
    # A litigation mandate granted by hand before the stage is litigation releases nothing.
    lender.assign("C-5", "lawfirm-1", "litigation", "2026-12-31")
    assert outcome(seeded, "lawfirm-1", "C-5", "litigation") == "STAGE_NOT_ALLOWED"


def test_a_disputed_debt_gives_counsel_nothing_until_the_dispute_is_resolved(seeded: Env) -> None:
    lender = seeded.client("lender-a")
    lender.escalate("C-1", "lawfirm-1")
    lender.set_flags("C-1", disputed=True)
    assert outcome(seeded, "lawfirm-1", "C-1", "litigation") == "DISPUTED"
    event = last_event(seeded, "C-1")
    assert (event.decision, event.code, event.org) == ("deny", "DISPUTED", "lawfirm-1")
    lender.set_flags("C-1", disputed=False)
    assert outcome(seeded, "lawfirm-1", "C-1", "litigation") == "OK"


def test_us_litigation_material_is_refused_after_the_limitation_date_and_cn_is_not(seeded: Env) -> None:
    lender = seeded.client("lender-a")
    us = imported(seeded, 40, "US", limitation_date="2026-11-28")
    cn = imported(seeded, 41, "CN", limitation_date="2026-11-28")
    for case in (us, cn):
        lender.escalate(case, "lawfirm-1")
    assert outcome(seeded, "lawfirm-1", us, "litigation") == "LIMITATION_EXPIRED"
    assert last_event(seeded, us).code == "LIMITATION_EXPIRED"
    assert outcome(seeded, "lawfirm-1", cn, "litigation") == "OK"
    before = lender.explain("lawfirm-1", us, "litigation", "2026-11-28T20:00:00Z")  # 15:00 in New York, that day
    assert before.code == "OK"


def test_us_litigation_without_a_limitation_date_is_refused_read_packet_and_explain_alike(seeded: Env) -> None:
    """Issue 22 finding 12: no limitation date on file, no proof the debt is not time-barred (Reg F §1006.26(b))."""
    lender = seeded.client("lender-a")
    us = imported(seeded, 47, "US")  # synth lines carry no limitation_date
    cn = imported(seeded, 48, "CN")
    dated = imported(seeded, 49, "US", limitation_date="2030-01-01")
    for case in (us, cn, dated):
        lender.escalate(case, "lawfirm-1")
    assert outcome(seeded, "lawfirm-1", us, "litigation") == "LIMITATION_DATE_MISSING"
    denial = last_event(seeded, us)
    assert (denial.decision, denial.code, denial.data["fields"]) == ("deny", "LIMITATION_DATE_MISSING", [])
    with pytest.raises(CustosClientError) as info:
        seeded.client("lawfirm-1").get_packet(us)
    assert info.value.code == "LIMITATION_DATE_MISSING"
    packet_denial = [e for e in seeded.events(case_id=us) if e.method == "GetPacket"][-1]
    assert (packet_denial.decision, packet_denial.code) == ("deny", "LIMITATION_DATE_MISSING")
    explained = lender.explain("lawfirm-1", us, "litigation")
    assert explained.decision == "deny" and explained.fields == []
    assert "litigation.limitation_date_missing" in explained.rules
    assert outcome(seeded, "lawfirm-1", cn, "litigation") == "OK"  # CN has no such rule
    assert outcome(seeded, "lawfirm-1", dated, "litigation") == "OK"
    assert seeded.client("lawfirm-1").get_packet(dated)[1]


# ---------------------------------------------------------------------------------------------- credit reporting


def test_cn_furnishing_needs_consent_and_a_notice_given_before_the_day(seeded: Env) -> None:
    lender = seeded.client("lender-a")
    lender.assign("C-3", "bureau-1", "credit_reporting", "2026-12-31")
    assert outcome(seeded, "bureau-1", "C-3", "credit_reporting") == "NO_PRIOR_NOTICE"
    assert last_event(seeded, "C-3").code == "NO_PRIOR_NOTICE"
    with pytest.raises(CustosClientError) as info:
        lender.record_notice("C-3", "2026-12-05")
    assert info.value.code == "NOTICE_IN_FUTURE"
    with pytest.raises(CustosClientError) as info:
        lender.record_notice("C-3", "30/11/2026")
    assert info.value.code == "INVALID_DATE"
    assert lender.record_notice("C-3", "2026-11-30").negative_notice_on == "2026-11-30"
    assert outcome(seeded, "bureau-1", "C-3", "credit_reporting") == "NO_PRIOR_NOTICE"  # the same day is not before
    lender.record_notice("C-3", "2026-11-29")
    record = seeded.client("bureau-1").get_case("C-3", "credit_reporting").fields
    assert {"national_id", "full_name", "date_of_birth", "loan_id", "outstanding", "disputed"} <= set(record)
    assert lender.get_case("C-3", "servicing").fields["negative_notice_on"] == "2026-11-29"
    # No consent on file: refused whatever the notice.
    no_consent = imported(seeded, 42, "CN", consent_credit=False, negative_notice_on="2026-11-01")
    lender.assign(no_consent, "bureau-1", "credit_reporting", "2026-12-31")
    assert outcome(seeded, "bureau-1", no_consent, "credit_reporting") == "CONSENT_REQUIRED"
    with_notice = imported(seeded, 43, "CN", negative_notice_on="2026-11-01")  # the import's notice date counts
    lender.assign(with_notice, "bureau-1", "credit_reporting", "2026-12-31")
    assert outcome(seeded, "bureau-1", with_notice, "credit_reporting") == "OK"


def test_a_disputed_account_is_furnished_with_its_dispute_marker(seeded: Env) -> None:
    lender = seeded.client("lender-a")
    case = imported(seeded, 44, "CN", negative_notice_on="2026-11-01")
    lender.assign(case, "bureau-1", "credit_reporting", "2026-12-31")
    lender.set_flags(case, disputed=True)
    assert seeded.client("bureau-1").get_case(case, "credit_reporting").fields["disputed"] == "true"


def test_us_furnishing_needs_a_conversation_or_a_letter_fourteen_days_old(seeded: Env) -> None:
    lender, agency = seeded.client("lender-a"), seeded.client("agency-1")
    case = "C-4"  # US, America/New_York
    lender.assign(case, "bureau-1", "credit_reporting", "2027-06-30")
    lender.assign(case, "agency-1", "collection", "2027-06-30")
    lender.set_stage(case, "letter")
    assert outcome(seeded, "bureau-1", case, "credit_reporting") == "NO_PRIOR_CONTACT"
    seeded.clock.current = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
    letter = agency.open_contact(case, "letter")
    seeded.clock.current += timedelta(days=13, hours=23)
    assert outcome(seeded, "bureau-1", case, "credit_reporting") == "NO_PRIOR_CONTACT"
    seeded.clock.current += timedelta(hours=1)  # 14 days after the letter
    assert outcome(seeded, "bureau-1", case, "credit_reporting") == "OK"
    agency.record_outcome(letter.contact_id, "undeliverable")
    assert outcome(seeded, "bureau-1", case, "credit_reporting") == "NO_PRIOR_CONTACT"
    call = agency.open_contact(case, "call")
    assert outcome(seeded, "bureau-1", case, "credit_reporting") == "NO_PRIOR_CONTACT"  # an unanswered call is not
    agency.record_outcome(call.contact_id, "connected")
    assert outcome(seeded, "bureau-1", case, "credit_reporting") == "OK"


def test_obsolete_negative_information_is_not_furnished(seeded: Env) -> None:
    lender = seeded.client("lender-a")
    old = imported(seeded, 45, "US", first_delinquency_on="2019-05-01")   # +180 days +7 years = 2026-10-28
    recent = imported(seeded, 46, "US", first_delinquency_on="2019-06-10")  # -> 2026-12-07
    for case in (old, recent):
        lender.assign(case, "bureau-1", "credit_reporting", "2026-12-31")
    assert outcome(seeded, "bureau-1", old, "credit_reporting") == "REPORTING_OBSOLETE"
    assert outcome(seeded, "bureau-1", recent, "credit_reporting") == "NO_PRIOR_CONTACT"  # not yet obsolete


def test_us_furnishing_without_a_date_of_first_delinquency_is_withheld(seeded: Env) -> None:
    """Issue 22 finding 13: without it the record would carry zeros and never become obsolete (FCRA §605(c))."""
    lender, agency = seeded.client("lender-a"), seeded.client("agency-1")
    undated = imported(seeded, 51, "US", first_delinquency_on=None)
    dated = imported(seeded, 52, "US")
    seeded.clock.current = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)  # 10:00 in New York
    for case in (undated, dated):
        lender.assign(case, "bureau-1", "credit_reporting", "2027-06-30")
        lender.assign(case, "agency-1", "collection", "2027-06-30")
        call = agency.open_contact(case, "call")
        agency.record_outcome(call.contact_id, "connected")  # the prior contact holds for both
    assert outcome(seeded, "bureau-1", undated, "credit_reporting") == "FIRST_DELINQUENCY_MISSING"
    assert last_event(seeded, undated).code == "FIRST_DELINQUENCY_MISSING"
    assert outcome(seeded, "bureau-1", dated, "credit_reporting") == "OK"
    feed = seeded.client("bureau-1").pull_feed("")
    assert [r.case_id for r in feed.records] == [dated]
    withheld = [e for e in seeded.events(case_id=undated) if e.method == "PullFeed"]
    assert [(e.decision, e.code) for e in withheld] == [("deny", "FIRST_DELINQUENCY_MISSING")]
    explained = lender.explain("bureau-1", undated, "credit_reporting")
    assert "credit_reporting.first_delinquency" in explained.rules


def test_the_new_precondition_keys_default_to_refusing(tmp_path: Path) -> None:
    """A rule file written before the keys existed fails closed: a date the rule needs must be on file."""
    from gateway.core.rules.conduct_file import load_conduct_rules
    from policies import BUNDLE_DIR

    text = (BUNDLE_DIR / "conduct" / "us.toml").read_text()
    old = tmp_path / "us.toml"
    old.write_text(text.replace("requires_limitation_date = true", "").replace("requires_first_delinquency = true", ""))
    rules = load_conduct_rules(old)
    assert rules.litigation.requires_limitation_date and rules.reporting.requires_first_delinquency
    cn = load_conduct_rules(BUNDLE_DIR / "conduct" / "cn.toml")
    assert not cn.litigation.requires_limitation_date and not cn.reporting.requires_first_delinquency
    assert preconditions.litigation(rules.litigation, _case(), _loan(), date(2026, 12, 1)).code == \
        Code.LIMITATION_DATE_MISSING
    assert preconditions.litigation(rules.litigation, _case(), _loan(limitation_date="garbage"),
                                    date(2026, 12, 1)).code == Code.LIMITATION_DATE_MISSING


# ---------------------------------------------------------------------------------------------- pure rules


def _case(**kw: Any) -> CaseRow:
    base: dict[str, Any] = dict(lender_id="l", case_id="c", borrower_id="b", loan_id="L", jurisdiction="US",
                                timezone="UTC", stage="litigation", status="open", disputed=False,
                                cease_contact=False, attorney_represented=False, lost_contact=False, legal_hold=False,
                                consent_third_party=True, consent_credit=True)
    base.update(kw)
    return CaseRow(**base)


def _loan(**kw: Any) -> LoanRow:
    base: dict[str, Any] = {f: None for f in LoanRow.FIELDS}
    base.update(loan_id="L", currency="USD", repayments=())
    base.update(kw)
    return LoanRow(**base)


def test_obsolescence_dates_by_jurisdiction() -> None:
    us = preconditions.ReportingRules(False, False, True, 14, 7, "first_delinquency_on", 180)
    cn = preconditions.ReportingRules(True, True, False, 0, 5, "default_end", 0)
    assert preconditions.obsolete_on(us, _case(), _loan(first_delinquency_on="2020-01-01")) == date(2027, 6, 29)
    assert preconditions.obsolete_on(us, _case(), _loan(first_delinquency_on="2019-09-03")) == date(2027, 3, 1)
    assert preconditions.obsolete_on(us, _case(), _loan()) is None  # no delinquency date: not obsolete
    assert preconditions.obsolete_on(cn, _case(), _loan(last_payment_on="2020-02-29")) is None  # open: in default
    settled = _case(status="settled")
    assert preconditions.obsolete_on(cn, settled, _loan(last_payment_on="2020-02-29")) == date(2025, 2, 28)


def test_a_letter_counts_only_if_sent_to_the_borrower_and_not_returned() -> None:
    rules = preconditions.ReportingRules(False, False, True, 14, 7, "first_delinquency_on", 180)
    now = datetime(2026, 12, 20, tzinfo=UTC)

    def contact(channel: str, party: str, result: str | None, days_ago: int) -> ContactRow:
        at = (now - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return ContactRow("K", "l", "c", "b", "o", channel, party, b"", at, result, None)

    def ok(*contacts: ContactRow) -> bool:
        evidence = preconditions.Evidence(_loan(), contacts)
        return preconditions.credit_reporting(rules, frozenset({"connected"}), _case(), evidence, now,
                                              now.date()).code == Code.OK

    assert not ok()
    assert ok(contact("letter", "borrower", None, 14))
    assert not ok(contact("letter", "borrower", None, 13))
    assert not ok(contact("letter", "borrower", "undeliverable", 30))
    assert not ok(contact("letter", "emergency_contact", None, 30))
    assert not ok(contact("sms", "borrower", "connected", 30))  # a text is not a conversation
    assert ok(contact("visit", "borrower", "connected", 0))
    assert not ok(contact("call", "borrower", "no_answer", 1))


def test_a_conduct_file_without_the_precondition_tables_is_refused_with_its_name(tmp_path: Path) -> None:
    from gateway.core.rules.conduct_file import load_conduct_rules
    from policies import BUNDLE_DIR

    text = (BUNDLE_DIR / "conduct" / "us.toml").read_text()
    cut = tmp_path / "us.toml"
    cut.write_text(text[:text.index("[litigation]")])
    with pytest.raises(PolicyError) as info:
        load_conduct_rules(cut)
    assert "us.toml" in str(info.value) and "litigation" in str(info.value)
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('obsolete_from = "first_delinquency_on"', 'obsolete_from = "whenever"'))
    with pytest.raises(PolicyError) as info:
        load_conduct_rules(bad)
    assert "obsolete_from" in str(info.value)
