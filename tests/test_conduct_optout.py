"""Issue 26, pure rules: opt-outs close exactly one medium, number, person or the borrower; third parties only
when the borrower is shown unreachable (CN: an invalid number, three consecutive failed calls)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.errors import PolicyError
from gateway.core.rules.conduct import (
    CHANNELS,
    PARTIES,
    ConductRules,
    ContactAttempt,
    ContactRequest,
    evaluate_contact,
    opted_out,
)
from gateway.core.rules.conduct_file import load_conduct_rules
from tests.test_conduct_rules import CN, US, ZONES, _copy, assert_decision, att, decide, local, make_case, req

SH, NY = ZONES["CN"], ZONES["US"]


def ask(channel: str, party: str, target: str, borrower_target: str = "") -> ContactRequest:
    return ContactRequest(case_id="C-1", org_id="agency-a", channel=channel, party=party, target=target,
                          borrower_target=borrower_target)


# --------------------------------------------------------------------------- opt-outs


@pytest.mark.parametrize("rules", [CN, US], ids=["CN", "US"])
def test_stop_calls_closes_calls_to_that_number_for_every_org(rules: ConductRules) -> None:
    j = rules.jurisdiction
    now = local(ZONES[j], 2026, 6, 10, 10)
    stop = att(now - timedelta(days=400), "stop_calls", org="agency-b", case_id="C-2", target="n-1")
    case = make_case(rules, lost_contact=True)
    # This number, any org, any case of the borrower: refused, whatever the age of the opt-out.
    assert_decision(decide(rules, now, req("call", target="n-1"), [stop], case), "CONTACT_OPTED_OUT",
                    f"{j}.opt_out.stop_calls")
    # The other medium to the same number stays open.
    sms = decide(rules, now, req("sms", target="n-1"), [stop], case)
    assert sms.code != "CONTACT_OPTED_OUT"
    # Another number stays open.
    assert_decision(decide(rules, now, req("call", target="n-2"), [stop], case), "OK", f"{j}.allow")
    # The same number as a third party's (one number, whoever's): closed too.
    assert_decision(decide(rules, now, ask("call", "emergency_contact", "n-1"), [stop], case),
                    "CONTACT_OPTED_OUT", f"{j}.opt_out.stop_calls")


def test_stop_texts_closes_sms_to_that_number_only() -> None:
    now = local(SH, 2026, 6, 10, 10)
    stop = att(now - timedelta(hours=1), "stop_texts", channel="sms", target="n-1")
    assert_decision(decide(CN, now, req("sms", target="n-1"), [stop]), "CONTACT_OPTED_OUT", "CN.opt_out.stop_texts")
    assert_decision(decide(CN, now, req("sms", target="n-2"), [stop]), "OK", "CN.allow")
    assert_decision(decide(CN, now, req("call", target="n-1"), [stop]), "OK", "CN.allow")


@pytest.mark.parametrize("rules", [CN, US], ids=["CN", "US"])
def test_refused_closes_that_person_only(rules: ConductRules) -> None:
    j = rules.jurisdiction
    now = local(ZONES[j], 2026, 6, 10, 10)
    refusal = att(now - timedelta(days=2), "refused", party="emergency_contact", target="p-1", org="agency-b")
    case = make_case(rules, lost_contact=True)
    assert_decision(decide(rules, now, ask("call", "emergency_contact", "p-1"), [refusal], case),
                    "THIRD_PARTY_REFUSED", f"{j}.opt_out.refused")
    # Another person, and the borrower, stay open.
    assert_decision(decide(rules, now, ask("call", "emergency_contact", "p-2"), [refusal], case), "OK", f"{j}.allow")
    assert_decision(decide(rules, now, req("call", target="t-main"), [refusal], case), "OK", f"{j}.allow")


def test_has_attorney_closes_the_borrower_cn_keeps_third_parties_us_closes_them() -> None:
    now = local(SH, 2026, 6, 10, 10)
    said = att(now - timedelta(days=30), "has_attorney", target="n-old", case_id="C-2", org="agency-b")
    case = make_case(CN, lost_contact=True, stage="field_visit")
    for channel in CHANNELS:
        assert_decision(decide(CN, now, req(channel, target="n-new"), [said], case), "ATTORNEY_REPRESENTED",
                        "CN.opt_out.has_attorney")
    assert_decision(decide(CN, now, ask("call", "emergency_contact", "p-1"), [said], case), "OK", "CN.allow")
    now = local(NY, 2026, 6, 10, 10)
    said = att(now - timedelta(days=30), "has_attorney", target="n-old")
    case = make_case(US, lost_contact=True)
    assert_decision(decide(US, now, ask("call", "emergency_contact", "p-1"), [said], case), "ATTORNEY_REPRESENTED",
                    "US.opt_out.has_attorney")


def test_flags_come_before_opt_outs() -> None:
    now = local(SH, 2026, 6, 10, 10)
    stop = att(now - timedelta(hours=1), "stop_calls", target="n-1")
    assert decide(CN, now, req("call", target="n-1"), [stop], make_case(CN, cease_contact=True)).code \
        == "CEASE_CONTACT"


# A history of outcomes on a few numbers and persons, in any order, over any span.
RESULT_CHOICES = ("connected", "no_answer", "promise_to_pay", "wrong_number", "invalid_number", "stop_calls",
                  "stop_texts", "refused", "has_attorney", None)
attempts = st.lists(st.tuples(st.integers(0, 2000), st.sampled_from(("call", "sms")), st.sampled_from(PARTIES),
                              st.sampled_from(("n-1", "n-2", "p-1")), st.sampled_from(RESULT_CHOICES)),
                    min_size=1, max_size=30)


@settings(max_examples=300, deadline=None)
@given(steps=attempts, rules=st.sampled_from([CN, US]))
def test_no_sequence_of_outcomes_reopens_a_closed_medium(
        steps: list[tuple[int, str, str, str, str | None]], rules: ConductRules) -> None:
    """Once an opt-out closes a (channel, party, target), every later history still closes it."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    history: list[ContactAttempt] = []
    closed: set[tuple[str, str, str]] = set()
    for hours, channel, party, target, result in sorted(steps, key=lambda s: s[0]):
        history.append(att(start + timedelta(hours=hours), result, channel=channel, party=party, target=target))
        for ch in CHANNELS:
            for pa in PARTIES:
                for tg in ("n-1", "n-2", "p-1"):
                    now_closed = opted_out(rules, history, ask(ch, pa, tg)) is not None
                    if (ch, pa, tg) in closed:
                        assert now_closed, (ch, pa, tg, result)
                    if now_closed:
                        closed.add((ch, pa, tg))
                        decision = evaluate_contact(rules, make_case(rules, lost_contact=True, stage="field_visit"),
                                                    ask(ch, pa, tg), history, start + timedelta(hours=hours + 1))
                        assert not decision.allowed


# --------------------------------------------------------------------------- third parties: unreachable


def calls(now: datetime, *results: str | None, target: str = "n-b") -> list[ContactAttempt]:
    """Borrower calls on consecutive days before `now`, oldest first."""
    return [att(now - timedelta(days=len(results) - i), r, target=target) for i, r in enumerate(results)]


def third(now: datetime, history: list[ContactAttempt], lost_contact: bool = False, rules: ConductRules = CN,
          borrower_target: str = "n-b") -> tuple[str, str]:
    decision = evaluate_contact(rules, make_case(rules, lost_contact=lost_contact),
                                ask("call", "emergency_contact", "p-1", borrower_target), history, now)
    return decision.code, decision.rule


def test_cn_third_party_after_the_third_failed_call_not_the_second() -> None:
    now = local(SH, 2026, 6, 10, 10)
    refused = ("THIRD_PARTY_NOT_UNREACHABLE", "CN.third_party.unreachable")
    assert third(now, []) == refused
    assert third(now, calls(now, "no_answer", "no_answer")) == refused
    assert third(now, calls(now, "no_answer", "no_answer", "no_answer")) == ("OK", "CN.allow")
    assert third(now, calls(now, "no_answer", "no_answer", "no_answer", "no_answer")) == ("OK", "CN.allow")


@pytest.mark.parametrize("between", ["connected", "promise_to_pay", None])
def test_cn_a_connected_or_unrecorded_call_resets_consecutive(between: str | None) -> None:
    now = local(SH, 2026, 6, 10, 10)
    refused = ("THIRD_PARTY_NOT_UNREACHABLE", "CN.third_party.unreachable")
    assert third(now, calls(now, "no_answer", "no_answer", between, "no_answer")) == refused
    assert third(now, calls(now, "no_answer", between, "no_answer", "no_answer", "no_answer")) == ("OK", "CN.allow")


def test_cn_failed_calls_count_on_the_borrowers_current_number_only() -> None:
    now = local(SH, 2026, 6, 10, 10)
    old = calls(now, "no_answer", "no_answer", "no_answer", target="n-old")
    assert third(now, old)[0] == "THIRD_PARTY_NOT_UNREACHABLE"
    assert third(now, old, borrower_target="n-old") == ("OK", "CN.allow")
    # SMS and third-party calls are no attempts to reach the borrower.
    sms = [att(now - timedelta(hours=h), "no_answer", channel="sms", target="n-b") for h in (1, 2, 3)]
    assert third(now, sms)[0] == "THIRD_PARTY_NOT_UNREACHABLE"
    assert third(now, calls(now, "no_answer", "no_answer", "no_answer"), borrower_target="")[0] \
        == "THIRD_PARTY_NOT_UNREACHABLE"


@pytest.mark.parametrize("result", ["invalid_number", "wrong_number"])
def test_cn_an_invalid_number_opens_third_parties_until_a_later_conversation(result: str) -> None:
    now = local(SH, 2026, 6, 10, 10)
    assert third(now, calls(now, result)) == ("OK", "CN.allow")
    assert third(now, calls(now, result, None)) == ("OK", "CN.allow")  # no outcome yet: still invalid
    assert third(now, calls(now, result, "connected"))[0] == "THIRD_PARTY_NOT_UNREACHABLE"


def test_us_keeps_the_lost_contact_rule() -> None:
    now = local(NY, 2026, 6, 10, 10)
    history = calls(now, "invalid_number", "no_answer", "no_answer", "no_answer")
    assert third(now, history, rules=US) == ("THIRD_PARTY_NOT_ALLOWED", "US.third_party")
    assert third(now, [], lost_contact=True, rules=US) == ("OK", "US.allow")


# --------------------------------------------------------------------------- the file


@pytest.mark.parametrize(("old", "new", "words"), [
    ('result = "stop_texts"', 'result = "stop_calls"', "set by an earlier opt_out"),
    ('result = "refused"', 'result = "no_answer"', "'no_answer' is not one of"),
    ('code = "THIRD_PARTY_REFUSED"', 'code = "CONTACT_CAP_REACHED"', "is not one of"),
    ('failed_results = ["no_answer"]', 'failed_results = ["connected"]', "counts as connected"),
    ("keep_years = 2", "keep_years = 0", "between 1 and 30"),
])
def test_bad_opt_out_or_evidence_names_file_and_line(tmp_path: Path, old: str, new: str, words: str) -> None:
    with pytest.raises(PolicyError) as info:
        load_conduct_rules(_copy(tmp_path, "cn.toml", old, new))
    assert words in str(info.value) and "cn.toml:" in str(info.value)


def test_opt_outs_are_read_from_the_file(tmp_path: Path) -> None:
    """A rule set without the stop_calls opt-out leaves calls open after one (the file is the behaviour)."""
    now = local(SH, 2026, 6, 10, 10)
    stop = att(now - timedelta(hours=1), "stop_calls", target="n-1")
    loose = load_conduct_rules(_copy(tmp_path, "cn.toml", 'result = "stop_calls"\ncode = "CONTACT_OPTED_OUT"\n'
                                     'scope = "target"\nchannels = ["call"]',
                                     'result = "stop_calls"\ncode = "CONTACT_OPTED_OUT"\n'
                                     'scope = "target"\nchannels = ["visit"]'))
    assert decide(loose, now, req("call", target="n-1"), [stop]).allowed
    assert not decide(CN, now, req("call", target="n-1"), [stop]).allowed
