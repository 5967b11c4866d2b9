"""Property tests: no sequence of allowed contacts ever breaks a cap.

Random streams of contact requests (several agencies, several cases of one
borrower, several numbers, random outcomes, over ten local days that may
include a DST switch) are fed to evaluate_contact in time order; every allowed
request joins the history with its outcome. After each step the history is
checked against the caps as the law states them, computed here independently
of the rule engine, so a bug in the engine's counting cannot hide itself.

Streams are dense (many requests per local day, mostly inside the window,
mostly unanswered calls) so that the caps are actually reached; run with
`--hypothesis-show-statistics` to see which rules refused how often.

Shrinking is switched off: shrinking these long, time-sorted streams ran
into Hypothesis's five-minute limit, while the unshrunk stream (at most 90
requests) is printed in seconds and the failed assertion shows the breached
count.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from hypothesis import Phase, event, given, settings
from hypothesis import strategies as st

from gateway.core.rules.conduct import (
    CaseState,
    ConductRules,
    ContactAttempt,
    ContactRequest,
    evaluate_contact,
    history_horizon,
)
from gateway.core.rules.conduct_file import load_conduct_dir

PHASES = (Phase.explicit, Phase.reuse, Phase.generate)
POLICY_DIR = Path(__file__).resolve().parents[1] / "policies" / "conduct"
RULES = load_conduct_dir(POLICY_DIR)
CONVERSATIONS = {"connected", "promise_to_pay", "dispute"}
CASES = ("C-1", "C-2", "C-3")
ORGS = ("agency-a", "agency-b", "lender")
FIRST_MINUTE = 7 * 60 + 30  # requests fall between 07:30 and 23:30 local, so both window edges are crossed

# One request: local day, minute of that day, org, case, (channel, party, target), outcome if allowed.
Step = tuple[int, int, str, str, tuple[str, str, str], str | None]

# Borrower calls dominate, with some SMS and some third-party calls.
KINDS = [("call", "borrower", "t-1")] * 4 + [("call", "borrower", "t-2")] * 3 + [
    ("sms", "borrower", "t-1"), ("call", "emergency_contact", "e-1"), ("call", "emergency_contact", "e-2")]


def streams(days: int, cases: tuple[str, ...], outcomes: list[str | None]) -> st.SearchStrategy[list[Step]]:
    """Requests in time order over `days` local days."""
    step = st.tuples(st.integers(0, days - 1), st.integers(FIRST_MINUTE, FIRST_MINUTE + 16 * 60),
                     st.sampled_from(ORGS), st.sampled_from(cases), st.sampled_from(KINDS),
                     st.sampled_from(outcomes))
    return st.lists(step, min_size=30, max_size=90).map(lambda steps: sorted(steps, key=lambda s: s[:2]))


# CN: three days, conversations common, so both daily caps are reached.
CN_STREAMS = streams(3, CASES, [None, "no_answer", "no_answer", "wrong_number",
                                "connected", "connected", "promise_to_pay", "dispute"])
# US: nine days (the 7-day period slides), two cases so each gets many calls, and few conversations,
# or the cooldown would hide the 7-in-7 cap.
US_STREAMS = streams(9, CASES[:2], [None, None] + ["no_answer"] * 12
                     + ["wrong_number", "connected", "promise_to_pay", "dispute"])


def run(rules: ConductRules, zone: str, start: date, steps: list[Step],
        check: bool = True) -> list[ContactAttempt]:
    """Feed the stream to the engine; return the history of allowed attempts, checked against the caps.

    The history is checked once, at the end: it only ever grows and every cap
    is monotone (a count over a prefix never exceeds the count over the whole,
    a call inside a cooldown stays inside it), so a breach at any point is
    still a breach at the end. Checking once keeps shrinking a failure fast.
    `check` is off only for modified rule sets, whose caps differ from the law
    the checks encode.
    """
    tz = ZoneInfo(zone)
    cases = {
        case_id: CaseState(case_id=case_id, borrower_key="bk-1", jurisdiction=rules.jurisdiction,
                           timezone=zone, stage="reminder", status="open", disputed=False,
                           cease_contact=False, attorney_represented=False, lost_contact=True)
        for case_id in CASES
    }
    history: list[ContactAttempt] = []
    for day, minute, org, case_id, (channel, party, target), outcome in steps:
        wall = datetime.combine(start + timedelta(days=day), datetime.min.time()) + timedelta(minutes=minute)
        now = wall.replace(tzinfo=tz).astimezone(UTC)  # wall-clock time in the borrower's zone
        request = ContactRequest(case_id=case_id, org_id=org, channel=channel, party=party, target=target)
        decision = evaluate_contact(rules, cases[case_id], request, history, now)
        assert decision.allowed is (decision.code == "OK")
        event(decision.rule)
        if decision.allowed:
            history.append(ContactAttempt(at=now, case_id=case_id, org_id=org, channel=channel,
                                          party=party, target=target, result=outcome))
    if check:
        CHECKS[rules.jurisdiction](history, tz)
    return history


def check_cn(history: list[ContactAttempt], zone: ZoneInfo) -> None:
    """CN: <= 3 connected borrower calls per local day; <= 6 call attempts per number per local day."""
    calls = [a for a in history if a.channel == "call"]
    connected = Counter(a.at.astimezone(zone).date() for a in calls
                        if a.party == "borrower" and a.result in CONVERSATIONS)
    assert max(connected.values(), default=0) <= 3, connected
    per_number = Counter((a.target, a.at.astimezone(zone).date()) for a in calls)
    assert max(per_number.values(), default=0) <= 6, per_number


def check_us(history: list[ContactAttempt], zone: ZoneInfo) -> None:
    """US: <= 7 calls per debt in any 7 consecutive local days; no call within 7 local days after a
    conversation on that debt (its day is day 1); each third party contacted once."""
    calls = [a for a in history if a.channel == "call" and a.party == "borrower"]
    for case_id in CASES:
        days: list[date] = sorted(a.at.astimezone(zone).date() for a in calls if a.case_id == case_id)
        for last in days:  # the busiest 7-day period ends on a day with a call
            assert sum(1 for d in days if last - timedelta(days=6) <= d <= last) <= 7
        for talk in (a for a in calls if a.case_id == case_id and a.result in CONVERSATIONS):
            talk_day = talk.at.astimezone(zone).date()
            for later in calls:
                if later.case_id == case_id and later.at > talk.at:
                    assert (later.at.astimezone(zone).date() - talk_day).days >= 7
    third = Counter(a.target for a in history if a.party == "emergency_contact")
    assert max(third.values(), default=0) <= 1, third


CHECKS = {"CN": check_cn, "US": check_us}

# An ordinary week and two starts whose streams cross a US DST switch (Shanghai has none).
STARTS = [date(2026, 6, 8), date(2026, 3, 6), date(2026, 10, 30)]


@settings(max_examples=50, deadline=None, phases=PHASES)
@given(steps=CN_STREAMS, start=st.sampled_from(STARTS))
def test_cn_caps_never_exceeded(steps: list[Step], start: date) -> None:
    run(RULES["CN"], "Asia/Shanghai", start, steps)


@settings(max_examples=50, deadline=None, phases=PHASES)
@given(steps=US_STREAMS, start=st.sampled_from(STARTS),
       zone=st.sampled_from(["America/New_York", "America/Los_Angeles"]))
def test_us_caps_never_exceeded(steps: list[Step], start: date, zone: str) -> None:
    run(RULES["US"], zone, start, steps)


def _variants() -> dict[str, ConductRules]:
    """The shipped rule sets, plus US variants whose horizon is short enough for old history to exist."""
    us = RULES["US"]
    assert us.third_party is not None
    return {
        "CN": RULES["CN"],
        "US": us,
        "US-no-once": replace(us, third_party=replace(us.third_party, once_per_person_days=0)),
        "US-once-3": replace(us, third_party=replace(us.third_party, once_per_person_days=3)),
    }


VARIANTS = _variants()


@settings(max_examples=30, deadline=None, phases=PHASES)
@given(data=st.data(), variant=st.sampled_from(sorted(VARIANTS)), extra=st.integers(1, 12 * 24 * 60))
def test_history_older_than_the_horizon_never_changes_a_decision(data: st.DataObject, variant: str,
                                                                 extra: int) -> None:
    """The caller may load only `history_horizon` of history: the answer must equal the one with all of it."""
    rules = VARIANTS[variant]
    steps = data.draw(CN_STREAMS if rules.jurisdiction == "CN" else US_STREAMS)
    zone = "Asia/Shanghai" if rules.jurisdiction == "CN" else "America/New_York"
    start = date(2026, 3, 3)
    history = run(rules, zone, start, steps, check=variant in RULES)
    now = (history[-1].at if history else datetime(2026, 3, 3, tzinfo=UTC)) + timedelta(minutes=extra)
    recent = [a for a in history if a.at >= now - history_horizon(rules)]
    for case_id in CASES[:2]:
        case = CaseState(case_id=case_id, borrower_key="bk-1", jurisdiction=rules.jurisdiction, timezone=zone,
                         stage="reminder", status="open", disputed=False, cease_contact=False,
                         attorney_represented=False, lost_contact=True)
        for target, party in (("t-1", "borrower"), ("e-1", "emergency_contact")):
            request = ContactRequest(case_id=case_id, org_id="agency-a", channel="call", party=party,
                                     target=target)
            assert (evaluate_contact(rules, case, request, history, now)
                    == evaluate_contact(rules, case, request, recent, now))
