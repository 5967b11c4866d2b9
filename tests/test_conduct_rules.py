"""Every conduct rule of both shipped rule sets, at its boundaries.

The tests load the real files from policies/conduct/, so a change to a number
there that changes a legal boundary fails here and has to be made on purpose.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gateway.core.errors import CATALOGUE, CustosError, PolicyError
from gateway.core.rules.conduct import (
    CaseState,
    ConductDecision,
    ConductRules,
    ContactAttempt,
    ContactRequest,
    evaluate_contact,
    history_horizon,
)
from gateway.core.rules.conduct_file import load_conduct_dir, load_conduct_rules

POLICY_DIR = Path(__file__).resolve().parents[1] / "policies" / "conduct"
RULES = load_conduct_dir(POLICY_DIR)
CN = RULES["CN"]
US = RULES["US"]
ZONES = {"CN": "Asia/Shanghai", "US": "America/New_York"}


def make_case(rules: ConductRules, **changes: object) -> CaseState:
    """An open case C-1 at stage reminder with no flags set, in the jurisdiction's usual zone."""
    fields: dict[str, object] = {
        "case_id": "C-1", "borrower_key": "bk-1", "jurisdiction": rules.jurisdiction,
        "timezone": ZONES[rules.jurisdiction], "stage": "reminder", "status": "open",
        "disputed": False, "cease_contact": False, "attorney_represented": False, "lost_contact": False,
    }
    fields.update(changes)
    return CaseState(**fields)  # type: ignore[arg-type]


def req(channel: str = "call", party: str = "borrower", target: str = "t-main",
        case_id: str = "C-1", org: str = "agency-a") -> ContactRequest:
    return ContactRequest(case_id=case_id, org_id=org, channel=channel, party=party, target=target)


def att(at: datetime, result: str | None = "no_answer", channel: str = "call", party: str = "borrower",
        target: str = "t-main", case_id: str = "C-1", org: str = "agency-a") -> ContactAttempt:
    return ContactAttempt(at=at.astimezone(UTC), case_id=case_id, org_id=org, channel=channel,
                          party=party, target=target, result=result)


def local(zone: str, y: int, mo: int, d: int, h: int, mi: int = 0, s: int = 0) -> datetime:
    """A wall-clock time in `zone`, returned in UTC as the gateway's clock would give it."""
    return datetime(y, mo, d, h, mi, s, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def decide(rules: ConductRules, now: datetime, request: ContactRequest | None = None,
           history: tuple[ContactAttempt, ...] | list[ContactAttempt] = (),
           case: CaseState | None = None) -> ConductDecision:
    return evaluate_contact(rules, case or make_case(rules), request or req(), history, now)


def assert_decision(decision: ConductDecision, code: str, rule: str) -> None:
    assert (decision.code, decision.rule) == (code, rule), decision
    assert decision.allowed is (code == "OK")
    if code != "OK":
        assert code in CATALOGUE


# --------------------------------------------------------------------------- loading


def test_shipped_files_load_keyed_by_jurisdiction() -> None:
    assert set(RULES) == {"CN", "US", "EU"}
    assert CN.source.endswith("cn.toml") and US.source.endswith("us.toml")
    assert [c.id for c in CN.caps] == ["connected_per_day", "attempts_per_number"]
    assert [c.id for c in US.caps] == ["calls_per_7_days"]
    assert CN.cooldown is None and US.cooldown is not None


def test_history_horizon_covers_every_rule() -> None:
    # CN: one local day plus a spare day for the hours since local midnight.
    assert history_horizon(CN) == timedelta(days=2)
    # US: the once-per-person third-party rule remembers ten years.
    assert history_horizon(US) == timedelta(days=3650)


# --------------------------------------------------------------------------- contact window

SH = "Asia/Shanghai"
NY = "America/New_York"
LA = "America/Los_Angeles"

WINDOW_CASES = [
    # rules, zone, (h, m, s), channel, stage, expected code
    (CN, SH, (7, 59, 59), "call", "reminder", "OUTSIDE_CONTACT_WINDOW"),
    (CN, SH, (8, 0, 0), "call", "reminder", "OK"),
    (CN, SH, (21, 59, 59), "call", "reminder", "OK"),
    (CN, SH, (22, 0, 0), "call", "reminder", "OUTSIDE_CONTACT_WINDOW"),
    (CN, SH, (22, 0, 0), "sms", "reminder", "OUTSIDE_CONTACT_WINDOW"),
    (CN, SH, (7, 59, 0), "visit", "field_visit", "OUTSIDE_CONTACT_WINDOW"),
    (CN, SH, (23, 30, 0), "letter", "letter", "OK"),  # letters are not bound by the window
    (US, NY, (7, 59, 0), "call", "reminder", "OUTSIDE_CONTACT_WINDOW"),
    (US, NY, (8, 0, 0), "call", "reminder", "OK"),
    (US, NY, (20, 59, 59), "call", "reminder", "OK"),
    (US, NY, (21, 0, 0), "call", "reminder", "OUTSIDE_CONTACT_WINDOW"),
    (US, NY, (21, 0, 0), "sms", "reminder", "OUTSIDE_CONTACT_WINDOW"),
    (US, NY, (2, 0, 0), "letter", "letter", "OK"),
]


@pytest.mark.parametrize(("rules", "zone", "hms", "channel", "stage", "code"), WINDOW_CASES)
def test_contact_window_boundaries(rules: ConductRules, zone: str, hms: tuple[int, int, int],
                                   channel: str, stage: str, code: str) -> None:
    now = local(zone, 2026, 6, 10, *hms)
    decision = decide(rules, now, req(channel=channel), case=make_case(rules, stage=stage, timezone=zone))
    assert_decision(decision, code, f"{rules.jurisdiction}.window" if code != "OK" else
                    f"{rules.jurisdiction}.allow")


@pytest.mark.parametrize(("agency_time", "code"), [
    # The agency works in New York; the borrower lives in Los Angeles (3 hours behind in June).
    ((10, 59), "OUTSIDE_CONTACT_WINDOW"),  # 07:59 for the borrower
    ((11, 0), "OK"),                       # 08:00 for the borrower
    ((23, 59), "OK"),                      # 20:59 for the borrower
    ((0, 0), "OUTSIDE_CONTACT_WINDOW"),    # 21:00 for the borrower (next NY day, same LA day)
])
def test_window_uses_the_borrowers_zone_not_the_agencys(agency_time: tuple[int, int], code: str) -> None:
    day = 11 if agency_time == (0, 0) else 10
    now = datetime(2026, 6, day, *agency_time, tzinfo=ZoneInfo(NY))  # given in the agency's zone
    decision = decide(US, now, case=make_case(US, timezone=LA))
    assert decision.code == code


def test_cn_window_with_a_utc_clock() -> None:
    # 00:00 UTC is 08:00 in Shanghai; 13:59 UTC is 21:59; 14:00 UTC is 22:00.
    assert decide(CN, datetime(2026, 6, 10, 0, 0, tzinfo=UTC)).allowed
    assert decide(CN, datetime(2026, 6, 10, 13, 59, tzinfo=UTC)).allowed
    assert decide(CN, datetime(2026, 6, 10, 14, 0, tzinfo=UTC)).code == "OUTSIDE_CONTACT_WINDOW"
    assert decide(CN, datetime(2026, 6, 9, 23, 59, tzinfo=UTC)).code == "OUTSIDE_CONTACT_WINDOW"


@pytest.mark.parametrize(("utc", "code"), [
    # 2026-03-08: New York springs forward at 02:00, so 08:00 local is 12:00 UTC (EDT, UTC-4).
    (datetime(2026, 3, 8, 11, 59, tzinfo=UTC), "OUTSIDE_CONTACT_WINDOW"),  # 07:59 EDT
    (datetime(2026, 3, 8, 12, 0, tzinfo=UTC), "OK"),                       # 08:00 EDT
    (datetime(2026, 3, 9, 0, 59, tzinfo=UTC), "OK"),                       # 20:59 EDT on the 8th
    (datetime(2026, 3, 9, 1, 0, tzinfo=UTC), "OUTSIDE_CONTACT_WINDOW"),    # 21:00 EDT on the 8th
    # 2026-11-01: New York falls back at 02:00, so 08:00 local is 13:00 UTC (EST, UTC-5).
    (datetime(2026, 11, 1, 12, 59, tzinfo=UTC), "OUTSIDE_CONTACT_WINDOW"),  # 07:59 EST
    (datetime(2026, 11, 1, 13, 0, tzinfo=UTC), "OK"),                       # 08:00 EST
    (datetime(2026, 11, 2, 1, 59, tzinfo=UTC), "OK"),                       # 20:59 EST on the 1st
    (datetime(2026, 11, 2, 2, 0, tzinfo=UTC), "OUTSIDE_CONTACT_WINDOW"),    # 21:00 EST on the 1st
])
def test_window_on_dst_switch_days(utc: datetime, code: str) -> None:
    assert decide(US, utc, case=make_case(US, timezone=NY)).code == code


# --------------------------------------------------------------------------- CN caps


def test_cn_third_and_fourth_connected_call_in_a_day_by_two_agencies() -> None:
    z = SH
    # Two agencies, two cases of the same borrower: one cap between them.
    history = [
        att(local(z, 2026, 6, 10, 9), "connected", org="agency-a", case_id="C-1", target="t-1"),
        att(local(z, 2026, 6, 10, 9, 30), "no_answer", org="agency-b", case_id="C-2", target="t-1"),
        att(local(z, 2026, 6, 10, 10), "no_answer", org="agency-b", case_id="C-2", target="t-2"),
        att(local(z, 2026, 6, 10, 10, 30), "promise_to_pay", org="agency-b", case_id="C-2", target="t-2"),
        att(local(z, 2026, 6, 10, 10, 45), "wrong_number", org="agency-a", case_id="C-1", target="t-3"),
        att(local(z, 2026, 6, 10, 10, 50), "connected", channel="sms", org="agency-a", target="t-1"),
        att(local(z, 2026, 6, 9, 21), "connected", org="agency-a"),  # yesterday
        att(local(z, 2026, 6, 9, 21, 30), "dispute", org="agency-a"),  # yesterday
    ]
    third = decide(CN, local(z, 2026, 6, 10, 11), req(org="agency-a"), history)
    assert_decision(third, "OK", "CN.allow")
    history.append(att(local(z, 2026, 6, 10, 11), "connected", org="agency-a", case_id="C-1"))
    fourth = decide(CN, local(z, 2026, 6, 10, 12), req(org="agency-b", case_id="C-2"), history,
                    case=make_case(CN, case_id="C-2"))
    assert_decision(fourth, "CONTACT_CAP_REACHED", "CN.cap.connected_per_day")
    # SMS are not calls; the next local day starts a new count.
    assert decide(CN, local(z, 2026, 6, 10, 12), req("sms"), history).allowed
    assert decide(CN, local(z, 2026, 6, 11, 8), req(), history).allowed


def test_an_unrecorded_call_counts_as_connected_until_its_outcome_is_recorded() -> None:
    z = SH
    history = [att(local(z, 2026, 6, 10, 9), "connected", org="agency-a"),
               att(local(z, 2026, 6, 10, 9, 30), "connected", org="agency-b", case_id="C-2"),
               att(local(z, 2026, 6, 10, 10), None, org="agency-a")]  # outcome not recorded
    assert_decision(decide(CN, local(z, 2026, 6, 10, 11), req(), history), "CONTACT_CAP_REACHED",
                    "CN.cap.connected_per_day")
    recorded = [*history[:2], att(local(z, 2026, 6, 10, 10), "no_answer", org="agency-a")]
    assert decide(CN, local(z, 2026, 6, 10, 11), req(), recorded).allowed


def test_cn_connected_cap_ignores_third_party_calls() -> None:
    z = SH
    history = [att(local(z, 2026, 6, 10, 9 + i), "connected", party="emergency_contact", target=f"e-{i}")
               for i in range(3)]
    assert decide(CN, local(z, 2026, 6, 10, 13), req(), history).allowed


@pytest.mark.parametrize(("prior", "code"), [(5, "OK"), (6, "NUMBER_CAP_REACHED")])
def test_cn_sixth_and_seventh_attempt_per_number(prior: int, code: str) -> None:
    z = SH
    results: list[str | None] = ["no_answer", None, "wrong_number", "no_answer", None, "no_answer"]
    history = [att(local(z, 2026, 6, 10, 8, 10 * i), results[i], org=("agency-a", "agency-b")[i % 2],
                   case_id=("C-1", "C-2")[i % 2], target="t-1") for i in range(prior)]
    history += [att(local(z, 2026, 6, 10, 8, 5), "no_answer", target="t-2"),       # another number
                att(local(z, 2026, 6, 10, 8, 6), "no_answer", channel="sms", target="t-1"),  # not a call
                att(local(z, 2026, 6, 9, 21), "no_answer", target="t-1")]          # yesterday
    decision = decide(CN, local(z, 2026, 6, 10, 12), req(target="t-1"), history)
    rule = "CN.allow" if code == "OK" else "CN.cap.attempts_per_number"
    assert_decision(decision, code, rule)
    assert decide(CN, local(z, 2026, 6, 10, 12), req(target="t-2"), history).allowed


# --------------------------------------------------------------------------- US caps and cooldown


@pytest.mark.parametrize(("prior", "code"), [(6, "OK"), (7, "CONTACT_CAP_REACHED")])
def test_us_seventh_and_eighth_call_in_seven_days(prior: int, code: str) -> None:
    z = LA
    # One call a day at 20:30 Los Angeles time, which is already the next day in UTC:
    # counting by UTC date would get the 7-day period wrong.
    history = [att(local(z, 2026, 6, 1 + i, 20, 30), "no_answer", org=("agency-a", "agency-b")[i % 2])
               for i in range(prior)]
    history += [att(local(z, 2026, 6, 7, 9), "no_answer", case_id="C-2"),  # another debt
                att(local(z, 2026, 6, 7, 10), "no_answer", channel="sms"),  # not a call
                att(local(z, 2026, 5, 31, 12), "no_answer")]                # 8 local days ago
    case = make_case(US, timezone=z)
    decision = decide(US, local(z, 2026, 6, 7, 20, 45), history=history, case=case)
    assert_decision(decision, code, "US.allow" if code == "OK" else "US.cap.calls_per_7_days")


def test_us_seven_day_period_is_today_and_the_six_local_days_before() -> None:
    z = LA
    history = [att(local(z, 2026, 6, 1 + i, 20, 30), "no_answer") for i in range(7)]
    case = make_case(US, timezone=z)
    assert decide(US, local(z, 2026, 6, 7, 20, 59), history=history, case=case).code == "CONTACT_CAP_REACHED"
    # On 06-08 the call of 06-01 (UTC date 06-02) has left the period: 6 calls, the 7th is allowed.
    assert decide(US, local(z, 2026, 6, 8, 8), history=history, case=case).allowed


@pytest.mark.parametrize(("days_after", "code"), [
    (0, "COOLDOWN"), (1, "COOLDOWN"), (6, "COOLDOWN"), (7, "OK"), (8, "OK"),
])
def test_us_call_days_after_a_conversation(days_after: int, code: str) -> None:
    z = NY
    conversation = local(z, 2026, 6, 1, 10)
    now = local(z, 2026, 6, 1 + days_after, 20 if days_after == 0 else 8)
    history = [att(conversation, "connected", org="agency-b")]  # another agency talked to the consumer
    decision = decide(US, now, history=history)
    assert_decision(decision, code, "US.allow" if code == "OK" else "US.cooldown")


@pytest.mark.parametrize(("result", "code"), [
    ("connected", "COOLDOWN"), ("promise_to_pay", "COOLDOWN"), ("dispute", "COOLDOWN"),
    ("no_answer", "OK"), ("wrong_number", "OK"), (None, "OK"),
])
def test_us_which_results_are_conversations(result: str | None, code: str) -> None:
    history = [att(local(NY, 2026, 6, 1, 10), result)]
    assert decide(US, local(NY, 2026, 6, 4, 10), history=history).code == code


def test_us_cooldown_is_per_debt_and_per_call() -> None:
    history = [att(local(NY, 2026, 6, 1, 10), "connected", case_id="C-2")]
    assert decide(US, local(NY, 2026, 6, 3, 10), history=history).allowed  # other debt
    history = [att(local(NY, 2026, 6, 1, 10), "connected")]
    assert decide(US, local(NY, 2026, 6, 3, 10), req("sms"), history).allowed  # not a call
    history = [att(local(NY, 2026, 6, 1, 10), "connected", channel="visit")]
    assert decide(US, local(NY, 2026, 6, 3, 10), history=history).allowed  # not a telephone conversation


def test_us_cooldown_counts_local_days_across_dst() -> None:
    # Conversation Monday 2026-03-02 20:00 EST; day 7 is Sunday 03-08 (the spring-forward day).
    history = [att(local(NY, 2026, 3, 2, 20), "connected")]
    assert decide(US, datetime(2026, 3, 8, 12, 0, tzinfo=UTC), history=history).code == "COOLDOWN"
    # 03-09 08:00 EDT is less than 7 x 24 h after the conversation, but it is the 8th local day.
    monday = datetime(2026, 3, 9, 12, 0, tzinfo=UTC)
    assert monday - history[0].at < timedelta(days=7)
    assert decide(US, monday, history=history).allowed


# --------------------------------------------------------------------------- flags and status


ALL_CHANNELS = ("call", "sms", "visit", "letter")


@pytest.mark.parametrize("rules", [CN, US], ids=["CN", "US"])
@pytest.mark.parametrize(("flag", "code"), [("cease_contact", "CEASE_CONTACT"), ("disputed", "DISPUTED")])
@pytest.mark.parametrize("channel", ALL_CHANNELS)
def test_cease_contact_and_dispute_refuse_every_channel(rules: ConductRules, flag: str, code: str,
                                                        channel: str) -> None:
    j = rules.jurisdiction
    now = local(ZONES[j], 2026, 6, 10, 10)
    case = make_case(rules, stage="field_visit", **{flag: True})
    assert_decision(decide(rules, now, req(channel), case=case), code, f"{j}.{flag}")
    third = make_case(rules, stage="field_visit", lost_contact=True, **{flag: True})
    third_party = req("call", "emergency_contact", "e-1")
    assert_decision(decide(rules, now, third_party, case=third), code, f"{j}.{flag}")
    assert decide(rules, now, req(channel), case=make_case(rules, stage="field_visit")).allowed


@pytest.mark.parametrize("party", ["borrower", "emergency_contact"])
def test_us_attorney_represented_refuses_borrower_and_third_parties(party: str) -> None:
    case = make_case(US, attorney_represented=True, lost_contact=True)
    decision = decide(US, local(NY, 2026, 6, 10, 10), req("call", party, "e-1"), case=case)
    assert_decision(decision, "ATTORNEY_REPRESENTED", "US.attorney_represented")


def test_cn_has_no_attorney_rule() -> None:
    case = make_case(CN, attorney_represented=True)
    assert decide(CN, local(SH, 2026, 6, 10, 10), case=case).allowed


@pytest.mark.parametrize("rules", [CN, US], ids=["CN", "US"])
@pytest.mark.parametrize("status", ["settled", "closed"])
def test_settled_or_closed_case_refuses_contact(rules: ConductRules, status: str) -> None:
    j = rules.jurisdiction
    case = make_case(rules, status=status, cease_contact=True)  # status is checked first
    assert_decision(decide(rules, local(ZONES[j], 2026, 6, 10, 10), case=case), "CASE_CLOSED", f"{j}.status")


def test_evaluation_order_is_fixed() -> None:
    now = local(NY, 2026, 6, 10, 22)  # also outside the window
    case = make_case(US, stage="early_warning", cease_contact=True, disputed=True, attorney_represented=True)
    assert decide(US, now, case=case).code == "CEASE_CONTACT"
    case = make_case(US, stage="early_warning", disputed=True, attorney_represented=True)
    assert decide(US, now, case=case).code == "DISPUTED"
    case = make_case(US, stage="early_warning", attorney_represented=True)
    assert decide(US, now, case=case).code == "ATTORNEY_REPRESENTED"
    assert decide(US, now, req("call", "emergency_contact", "e-1"),
                  case=make_case(US, stage="early_warning")).code == "THIRD_PARTY_NOT_ALLOWED"
    assert decide(US, now, case=make_case(US, stage="early_warning")).code == "STAGE_NOT_ALLOWED"
    assert decide(US, now).code == "OUTSIDE_CONTACT_WINDOW"


# --------------------------------------------------------------------------- third parties


@pytest.mark.parametrize("rules", [CN, US], ids=["CN", "US"])
def test_third_party_only_when_lost_contact(rules: ConductRules) -> None:
    j = rules.jurisdiction
    now = local(ZONES[j], 2026, 6, 10, 10)
    request = req("call", "emergency_contact", "e-1")
    # CN also accepts the history's evidence (issue 26), so its refusal says the borrower is not shown unreachable.
    refused = ("THIRD_PARTY_NOT_UNREACHABLE", "CN.third_party.unreachable") if j == "CN" \
        else ("THIRD_PARTY_NOT_ALLOWED", "US.third_party")
    assert_decision(decide(rules, now, request), *refused)
    allowed = decide(rules, now, request, case=make_case(rules, lost_contact=True))
    assert_decision(allowed, "OK", f"{j}.allow")
    assert any("name, phone" in note for note in allowed.notes)


@pytest.mark.parametrize(("rules", "channel", "code"), [
    (CN, "sms", "OK"), (CN, "visit", "CHANNEL_NOT_ALLOWED"), (CN, "letter", "CHANNEL_NOT_ALLOWED"),
    (US, "sms", "CHANNEL_NOT_ALLOWED"), (US, "visit", "CHANNEL_NOT_ALLOWED"),
])
def test_third_party_channels(rules: ConductRules, channel: str, code: str) -> None:
    j = rules.jurisdiction
    case = make_case(rules, lost_contact=True, stage="field_visit")
    decision = decide(rules, local(ZONES[j], 2026, 6, 10, 10), req(channel, "emergency_contact", "e-1"),
                      case=case)
    assert_decision(decision, code, f"{j}.allow" if code == "OK" else f"{j}.third_party.channel")


@pytest.mark.parametrize("result", [None, "no_answer", "connected", "wrong_number"])
def test_us_location_inquiry_once_per_person(result: str | None) -> None:
    # Every attempt uses up the one contact, answered or not (see us.toml).
    case = make_case(US, lost_contact=True)
    first = att(local(NY, 2026, 1, 5, 10), result, party="emergency_contact", target="e-1",
                org="agency-b", case_id="C-2")
    now = local(NY, 2026, 6, 10, 10)
    second = decide(US, now, req("call", "emergency_contact", "e-1"), [first], case)
    assert_decision(second, "THIRD_PARTY_ALREADY_CONTACTED", "US.third_party.once")
    assert decide(US, now, req("call", "emergency_contact", "e-2"), [first], case).allowed
    # A borrower call to the same key is not a third-party contact.
    assert decide(US, now, req("call", "borrower", "t-main"), [first], case).allowed


def test_cn_emergency_contact_may_be_called_again_within_the_number_cap() -> None:
    case = make_case(CN, lost_contact=True)
    history = [att(local(SH, 2026, 6, 10, 9), "connected", party="emergency_contact", target="e-1")]
    request = req("call", "emergency_contact", "e-1")
    assert decide(CN, local(SH, 2026, 6, 10, 10), request, history, case).allowed
    history = [att(local(SH, 2026, 6, 10, 8, i), "no_answer", party="emergency_contact", target="e-1")
               for i in range(6)]
    decision = decide(CN, local(SH, 2026, 6, 10, 10), request, history, case)
    assert decision.code == "NUMBER_CAP_REACHED"


# --------------------------------------------------------------------------- stages

STAGE_CASES = [
    ("early_warning", "call", "STAGE_NOT_ALLOWED"),
    ("early_warning", "sms", "STAGE_NOT_ALLOWED"),
    ("early_warning", "letter", "STAGE_NOT_ALLOWED"),
    ("early_warning", "visit", "STAGE_NOT_ALLOWED"),
    ("reminder", "call", "OK"),
    ("reminder", "sms", "OK"),
    ("reminder", "letter", "STAGE_NOT_ALLOWED"),
    ("reminder", "visit", "STAGE_NOT_ALLOWED"),
    ("letter", "letter", "OK"),
    ("letter", "call", "OK"),
    ("letter", "visit", "STAGE_NOT_ALLOWED"),
    ("field_visit", "visit", "OK"),
    ("field_visit", "letter", "OK"),
    ("litigation", "call", "STAGE_NOT_ALLOWED"),  # decision: agencies stop at litigation
    ("litigation", "visit", "STAGE_NOT_ALLOWED"),
]


@pytest.mark.parametrize("rules", [CN, US], ids=["CN", "US"])
@pytest.mark.parametrize(("stage", "channel", "code"), STAGE_CASES)
def test_stage_gates(rules: ConductRules, stage: str, channel: str, code: str) -> None:
    j = rules.jurisdiction
    now = local(ZONES[j], 2026, 6, 10, 10)
    decision = decide(rules, now, req(channel), case=make_case(rules, stage=stage))
    assert_decision(decision, code, f"{j}.allow" if code == "OK" else f"{j}.stage")


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("request_", "code"), [
    (req("fax"), "UNKNOWN_CHANNEL"),
    (req("call", "neighbour"), "UNKNOWN_PARTY"),
])
def test_unknown_channel_or_party_is_an_error(request_: ContactRequest, code: str) -> None:
    with pytest.raises(CustosError) as info:
        decide(CN, local(SH, 2026, 6, 10, 10), request_)
    assert info.value.code == code


def test_bad_case_or_clock_is_an_error() -> None:
    now = local(SH, 2026, 6, 10, 10)
    for case, code in [(make_case(CN, stage="collections"), "UNKNOWN_STAGE"),
                       (make_case(CN, status="paused"), "UNKNOWN_STATUS"),
                       (make_case(CN, timezone="Mars/Olympus"), "INVALID_ARGUMENT")]:
        with pytest.raises(CustosError) as info:
            decide(CN, now, case=case)
        assert info.value.code == code
    with pytest.raises(CustosError) as info:
        decide(CN, datetime(2026, 6, 10, 10))  # naive
    assert info.value.code == "INVALID_TIME"
    with pytest.raises(CustosError) as info:
        decide(CN, now, history=[att(now, "hung_up")])
    assert info.value.code == "UNKNOWN_RESULT"


# --------------------------------------------------------------------------- files drive behaviour


def _copy(tmp_path: Path, name: str, old: str, new: str) -> Path:
    text = (POLICY_DIR / name).read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    target = tmp_path / name
    target.write_text(text.replace(old, new), encoding="utf-8")
    return target


def test_changed_cap_in_file_changes_the_decision(tmp_path: Path) -> None:
    history = [att(local(SH, 2026, 6, 10, 9 + i), "connected") for i in range(3)]
    now = local(SH, 2026, 6, 10, 13)
    assert decide(CN, now, history=history).code == "CONTACT_CAP_REACHED"
    loose = load_conduct_rules(_copy(tmp_path, "cn.toml", "limit = 3", "limit = 4"))
    assert decide(loose, now, history=history).allowed


def test_changed_window_in_file_changes_the_decision(tmp_path: Path) -> None:
    now = local(SH, 2026, 6, 10, 21, 30)
    assert decide(CN, now).allowed
    tight = load_conduct_rules(_copy(tmp_path, "cn.toml", 'end = "22:00"', 'end = "21:00"'))
    assert_decision(decide(tight, now), "OUTSIDE_CONTACT_WINDOW", "CN.window")


def test_changed_cooldown_in_file_changes_the_decision(tmp_path: Path) -> None:
    history = [att(local(NY, 2026, 6, 1, 10), "connected")]
    now = local(NY, 2026, 6, 5, 10)
    assert decide(US, now, history=history).code == "COOLDOWN"
    text = (POLICY_DIR / "us.toml").read_text(encoding="utf-8")
    head, tail = text.split("[cooldown]")
    short = tmp_path / "us.toml"
    short.write_text(head + "[cooldown]" + tail.replace("days = 7", "days = 3"), encoding="utf-8")
    assert decide(load_conduct_rules(short), now, history=history).allowed


def _line_of(path: Path, fragment: str) -> int:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip().startswith(fragment):
            return number
    raise AssertionError(fragment)


BAD_FILES = [
    # (old, new, fragment on the line the error must name, words in the problem)
    ('start = "08:00"', 'start = "08:00"\ncolour = "red"', 'colour = "red"', "unknown key"),
    ("limit = 3", 'limit = "3"', 'limit = "3"', "integer"),
    ("limit = 3", "limit = true", "limit = true", "integer"),
    ('end = "22:00"', 'end = "25:00"', 'end = "25:00"', "HH:MM"),
    ('end = "22:00"', 'end = "07:00"', 'end = "07:00"', "later than start"),
    ('code = "NUMBER_CAP_REACHED"', 'code = "TOO_MANY"', 'code = "TOO_MANY"', "not one of"),
    ('scope = "target"', 'scope = "planet"', 'scope = "planet"', "not one of"),
    ('call = "reminder"', 'call = "pre_legal"', 'call = "pre_legal"', "not one of"),
    ('channels = ["call", "sms", "visit"]', 'channels = ["fax"]', 'channels = ["fax"]', "fax"),
    ("once_per_person_days = 0", "once_per_person_days = -1", "once_per_person_days = -1", "between"),
    ("days = 1", "days = 0", "days = 0", "between"),
]


@pytest.mark.parametrize(("old", "new", "fragment", "words"), BAD_FILES)
def test_bad_file_names_file_and_line(tmp_path: Path, old: str, new: str, fragment: str, words: str) -> None:
    text = (POLICY_DIR / "cn.toml").read_text(encoding="utf-8")
    path = tmp_path / "cn.toml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_conduct_rules(path)
    assert info.value.path == str(path)
    assert info.value.line == _line_of(path, fragment)
    assert words in info.value.problem
    assert info.value.code == "POLICY_INVALID"


def test_missing_jurisdiction_names_file_and_line(tmp_path: Path) -> None:
    path = _copy(tmp_path, "cn.toml", 'jurisdiction = "CN"\n', "")
    with pytest.raises(PolicyError) as info:
        load_conduct_rules(path)
    assert info.value.path == str(path) and info.value.line == 1
    assert "jurisdiction" in info.value.problem


def test_unknown_jurisdiction_and_syntax_error(tmp_path: Path) -> None:
    path = _copy(tmp_path, "cn.toml", 'jurisdiction = "CN"', 'jurisdiction = "XX"')
    with pytest.raises(PolicyError) as info:
        load_conduct_rules(path)
    assert info.value.line == _line_of(path, 'jurisdiction = "XX"')
    path = _copy(tmp_path, "cn.toml", "limit = 3", "limit = = 3")
    with pytest.raises(PolicyError) as info:
        load_conduct_rules(path)
    assert info.value.line == _line_of(path, "limit = = 3")


def test_unknown_table_names_its_header(tmp_path: Path) -> None:
    path = _copy(tmp_path, "cn.toml", "[window]", "[lunch_break]\nstart = \"12:00\"\n\n[window]")
    with pytest.raises(PolicyError) as info:
        load_conduct_rules(path)
    assert info.value.line == _line_of(path, "[lunch_break]")


def test_duplicate_jurisdiction_in_directory(tmp_path: Path) -> None:
    shutil.copy(POLICY_DIR / "cn.toml", tmp_path / "cn.toml")
    shutil.copy(POLICY_DIR / "cn.toml", tmp_path / "cn-copy.toml")
    with pytest.raises(PolicyError) as info:
        load_conduct_dir(tmp_path)
    assert "already defined" in info.value.problem
    assert info.value.path.endswith("cn.toml") and info.value.line is not None


def test_missing_or_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(PolicyError):
        load_conduct_dir(tmp_path)
    with pytest.raises(PolicyError):
        load_conduct_dir(tmp_path / "absent")
