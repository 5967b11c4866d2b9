"""Collection-conduct rules: may this contact happen now, and if not, why not?

The evaluation is pure: a decision is a function of the rule set, the case
state, the contact history and a clock the caller passes in. That is what lets
every legal boundary (07:59 vs 08:00, the 7th vs the 8th call, a DST switch
day) be tested exhaustively without a server, and makes a decision replayable
for an auditor. Enforcement, storage and auditing live in the caller.

The numbers live in `policies/conduct/*.toml`, one file per jurisdiction, so a
compliance officer can change a cap or a window without a code change; the
file is read into a `ConductRules` by `conduct_file`.

Order of evaluation (fixed, the first refusal wins, so the code a caller sees
is deterministic): case status -> cease_contact -> disputed ->
attorney_represented -> opt-outs (in file order) -> third-party rules ->
notices before an agency's contact -> artificial-voice consent ->
channel/stage -> contact window -> caps (in file order) -> cooldown. (The
regional licence is the caller's standing, checked before any of these:
`access.regional_licence`.)

Opt-outs (issue 26) are outcomes recorded on earlier contacts (`stop_calls`,
`stop_texts`, `refused`, `has_attorney`): each closes one medium to one number,
one person, or the borrower, for every org, and nothing reopens it: the
history only grows, and an outcome is recorded once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from types import MappingProxyType
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import Code, CustosError
from ..model import STAGES, STATUSES
from .mandates import MandateRules
from .preconditions import LitigationRules, ReportingRules
from .retention import RetentionRules

CHANNELS = ("call", "sms", "visit", "letter")
PARTIES = ("borrower", "emergency_contact")
# undeliverable: a letter came back (Reg F §1006.30(a)(1)(ii) needs a letter that did not).
# invalid_number: the number is not in service (a CN unreachability evidence, issue 26); the opt-outs
# (stop_calls, stop_texts, refused, has_attorney) close a medium, a person or the borrower (OPT_OUT_SCOPES).
RESULTS = ("connected", "no_answer", "promise_to_pay", "dispute", "wrong_number", "undeliverable",
           "stop_calls", "stop_texts", "refused", "has_attorney", "invalid_number")
# Case flags that refuse contact, in evaluation order, with the code each refusal carries.
FLAG_CODES = (
    ("cease_contact", Code.CEASE_CONTACT),
    ("disputed", Code.DISPUTED),
    ("attorney_represented", Code.ATTORNEY_REPRESENTED),
)
CAP_CODES = (Code.CONTACT_CAP_REACHED, Code.NUMBER_CAP_REACHED)
CAP_SCOPES = ("borrower", "case", "target")
CAP_COUNTS = ("attempts", "connected")
# What a third-party contact may release of the emergency contact record.
RELEASABLE = ("name", "relation", "phone")
# ---- opt-outs (issue 26)
# "target": the number (or person) the contact went to; "borrower": whatever the target.
OPT_OUT_SCOPES = ("target", "borrower")
OPT_OUT_CODES = (Code.CONTACT_OPTED_OUT, Code.THIRD_PARTY_REFUSED, Code.ATTORNEY_REPRESENTED)
# What a contact's target is, per channel: a target-scoped opt-out is recorded only on a contact whose target is
# of a kind it closes (a "stop calls" said on a visit names no number).
TARGET_KIND = {"call": "phone", "sms": "phone", "visit": "address", "letter": "address"}
UNREACHABLE_EVIDENCE = ("invalid_number", "failed_attempts")
OPEN_STATUS = "open"
THIRD_PARTY = "emergency_contact"


# --------------------------------------------------------------------------- rule set


@dataclass(frozen=True)
class Window:
    """Permitted local wall-clock hours, start inclusive, end exclusive."""

    start: time
    end: time
    channels: frozenset[str]


@dataclass(frozen=True)
class Cap:
    """At most `limit` matching contacts within `days` local calendar days (today and days-1 before).

    `scope` says whose contacts are counted together: the whole borrower (all
    cases, all orgs), the request's case (= the debt), or the request's target
    (= the number or person). `count` says whether every attempt counts or only
    connected ones. A cap applies to a request whose channel and party it lists.
    """

    id: str
    code: Code
    scope: str
    count: str
    channels: frozenset[str]
    parties: frozenset[str]
    limit: int
    days: int


@dataclass(frozen=True)
class Cooldown:
    """No contact within `days` local days after a conversation; the conversation day is day 1."""

    scope: str
    channels: frozenset[str]
    parties: frozenset[str]
    days: int


@dataclass(frozen=True)
class ThirdParty:
    """When a third party (an emergency contact) may be contacted, how, and what is released."""

    requires_lost_contact: bool
    channels: frozenset[str]
    release: tuple[str, ...]
    once_per_person_days: int  # 0: no once-per-person rule
    # What the history may show instead of the lost_contact flag (issue 26); empty: the flag alone.
    evidence: tuple[str, ...] = ()
    invalid_results: frozenset[str] = frozenset()
    failed_results: frozenset[str] = frozenset()
    failed_attempts: int = 0


@dataclass(frozen=True)
class OptOut:
    """An outcome that closes contact for good: `channels` to `parties`, at the contact's target or the borrower."""

    result: str
    code: Code
    scope: str
    channels: frozenset[str]
    parties: frozenset[str]

    def applies_to(self, channel: str, party: str) -> bool:
        """May this outcome be recorded on a contact of that channel and party (does it name what it closes)?"""
        if self.scope == "borrower":
            return True
        return party in self.parties and TARGET_KIND[channel] in {TARGET_KIND[c] for c in self.channels}


@dataclass(frozen=True)
class PlanRules:
    """Promises and plans in this jurisdiction: how far ahead a promise may fall, how late an instalment may be
    paid and still count as kept (`[plans]` in the conduct file)."""

    grace_days: int = 5
    promise_max_days: int = 90


# ---- licences, artificial voices, notices (issue 26)
NOTICE_KINDS = ("negative_reporting", "validation", "outsourcing")
# The notices a rule file may require before an agency's contact (the negative-reporting one gates furnishing).
CONTACT_NOTICES = ("validation", "outsourcing")


@dataclass(frozen=True)
class Prerequisites:
    """What must hold before contact beyond the conduct caps (`[licensing]`, `[artificial_voice]`, `[notices]`)."""

    # Regions (ISO 3166-2 or country codes) where an organisation of a licensed kind needs a licence for the
    # borrower's region as well as its own (`custos org licence`); checked on every read and contact.
    licensed_regions: frozenset[str] = frozenset()
    # An artificial or prerecorded voice call needs the borrower's recorded prior express consent.
    artificial_voice_consent: bool = True
    # Notices (CONTACT_NOTICES) recorded on or before the borrower's local today before an agency's contact.
    notices: tuple[str, ...] = ()
    # Clearing a dispute needs the day verification was sent (`lender flag --no-disputed --verification-sent`).
    verification_to_clear_dispute: bool = False


@dataclass(frozen=True)
class ConductRules:
    """The parsed, validated rule set of one jurisdiction."""

    jurisdiction: str
    source: str
    connected_results: frozenset[str]
    # Caps on connected calls count a call whose outcome is not recorded yet as
    # connected, so an org cannot escape the cap by not reporting outcomes.
    unrecorded_counts_as_connected: bool
    last_contact_stage: str
    min_stage: Mapping[str, str]  # channel -> lowest stage; a channel not listed is never allowed
    window: Window
    flags: Mapping[str, frozenset[str]]  # flag -> parties whose contact it refuses
    third_party: ThirdParty | None
    caps: tuple[Cap, ...]
    cooldown: Cooldown | None
    litigation: LitigationRules
    reporting: ReportingRules
    retention: RetentionRules
    plans: PlanRules = PlanRules()
    mandates: MandateRules = field(default_factory=MandateRules)  # issue 26: optional [mandates] table
    opt_outs: tuple[OptOut, ...] = ()
    recording_years: int = 0  # how long a recording's reference outlives the borrower's erasure ([recordings])
    prerequisites: Prerequisites = Prerequisites()
    # EU (issue 26): stages at which a case keeps its data on an erasure request (GDPR Art. 17(3)(e), legal
    # claims), and the legal basis per purpose the record of processing activities states (Art. 30).
    erasure_claim_stages: frozenset[str] = frozenset()
    legal_basis: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def opt_out(self, result: str | None) -> OptOut | None:
        return next((o for o in self.opt_outs if o.result == result), None)


def needs_all_history(rules: ConductRules) -> bool:
    """Opt-outs and unreachability evidence have no horizon: the caller then loads the borrower's whole history."""
    return bool(rules.opt_outs) or bool(rules.third_party and rules.third_party.evidence)


def history_horizon(rules: ConductRules) -> timedelta:
    """How far back the caller must load history for `evaluate_contact` to be exact.

    A rule over N local calendar days reaches back to local midnight N-1 days
    ago, which is less than N days plus the hours since midnight (and at most
    one DST hour); one spare day covers that. Entries older than this never
    change a decision, so passing more history gives the same answer.
    """
    days = max([c.days for c in rules.caps] + [rules.cooldown.days if rules.cooldown else 0])
    horizon = timedelta(days=days + 1)
    if rules.third_party and rules.third_party.once_per_person_days:
        horizon = max(horizon, timedelta(days=rules.third_party.once_per_person_days))
    return horizon


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class CaseState:
    """What the rules need to know about the case; no personal data."""

    case_id: str
    borrower_key: str
    jurisdiction: str
    timezone: str
    stage: str
    status: str
    disputed: bool
    cease_contact: bool
    attorney_represented: bool
    lost_contact: bool
    # ---- issue 26: the owning lender (its own contact needs no notice), the consent and the notices on file
    lender_id: str = ""
    consent_artificial_voice: bool = False
    notices: Mapping[str, date] = field(default_factory=dict)  # notice kind -> the day it was given


@dataclass(frozen=True)
class ContactAttempt:
    """One past attempt, of any org and any case of the same borrower."""

    at: datetime
    case_id: str
    org_id: str
    channel: str
    party: str
    target: str
    result: str | None


@dataclass(frozen=True)
class ContactRequest:
    """The contact an org asks to open now."""

    case_id: str
    org_id: str
    channel: str
    party: str
    target: str
    # The borrower's current number (its key), for the unreachability evidence of a third-party request.
    borrower_target: str = ""
    artificial_voice: bool = False  # an artificial or AI voice call (TCPA §227(b)(1)(A)); channel "call"


@dataclass(frozen=True)
class ConductDecision:
    """Allowed or not, with the stable code and the rule that decided."""

    allowed: bool
    code: Code
    rule: str
    notes: tuple[str, ...] = ()


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CustosError(Code.INVALID_ARGUMENT, "the case's time zone is not a known IANA zone") from None


def _check(value: str, choices: Sequence[str], code: Code) -> None:
    if value not in choices:
        raise CustosError(code)


def _validate(rules: ConductRules, case: CaseState, request: ContactRequest,
              history: Sequence[ContactAttempt], now: datetime) -> None:
    """Reject malformed inputs before deciding: a typo must never read as 'allowed'."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise CustosError(Code.INVALID_TIME, "the clock must be timezone-aware")
    if case.jurisdiction != rules.jurisdiction:
        raise CustosError(Code.INTERNAL, f"{rules.jurisdiction} rules applied to a {case.jurisdiction} case")
    if request.case_id != case.case_id:
        raise CustosError(Code.INTERNAL, "the request and the case state name different cases")
    _check(case.stage, STAGES, Code.UNKNOWN_STAGE)
    _check(case.status, STATUSES, Code.UNKNOWN_STATUS)
    _check(request.channel, CHANNELS, Code.UNKNOWN_CHANNEL)
    _check(request.party, PARTIES, Code.UNKNOWN_PARTY)
    for attempt in history:
        _check(attempt.channel, CHANNELS, Code.UNKNOWN_CHANNEL)
        _check(attempt.party, PARTIES, Code.UNKNOWN_PARTY)
        if attempt.result is not None:
            _check(attempt.result, RESULTS, Code.UNKNOWN_RESULT)
        if attempt.at.tzinfo is None or attempt.at.utcoffset() is None:
            raise CustosError(Code.INVALID_TIME, "a history entry has no time zone")


def _in_scope(scope: str, attempt: ContactAttempt, request: ContactRequest) -> bool:
    if scope == "case":
        return attempt.case_id == request.case_id
    if scope == "target":
        return attempt.target == request.target
    return True  # borrower: the caller passes only this borrower's history


def _deny(code: Code, rule: str, *notes: str) -> ConductDecision:
    return ConductDecision(False, code, rule, tuple(notes))


def opted_out(rules: ConductRules, history: Sequence[ContactAttempt], request: ContactRequest) -> OptOut | None:
    """The first opt-out (in file order) an earlier outcome set that closes this request, if any."""
    for opt in rules.opt_outs:
        if request.channel not in opt.channels or request.party not in opt.parties:
            continue
        if any(a.result == opt.result and (opt.scope == "borrower" or a.target == request.target) for a in history):
            return opt
    return None


def unreachable(tp: ThirdParty, history: Sequence[ContactAttempt], borrower_target: str) -> str | None:
    """Which evidence in the history shows the borrower unreachable at the current number, if any.

    Only calls to the borrower's current number count (a new number has not been tried). invalid_number: the
    latest call with a recorded outcome was recorded invalid. failed_attempts: the last N calls all failed; a
    call with no outcome yet breaks the run (it may have connected), as does any other outcome.
    """
    if not borrower_target:
        return None
    calls = sorted((a for a in history if a.party == "borrower" and a.channel == "call"
                    and a.target == borrower_target), key=lambda a: a.at)
    if "invalid_number" in tp.evidence:
        recorded = [a for a in calls if a.result is not None]
        if recorded and recorded[-1].result in tp.invalid_results:
            return "invalid_number"
    if "failed_attempts" in tp.evidence and tp.failed_attempts and len(calls) >= tp.failed_attempts:
        if all(a.result in tp.failed_results for a in calls[-tp.failed_attempts:]):
            return "failed_attempts"
    return None


def evaluate_contact(rules: ConductRules, case: CaseState, request: ContactRequest,
                     history: Sequence[ContactAttempt], now: datetime) -> ConductDecision:
    """Decide whether `request` may be opened at `now`; see the module docstring for the order."""
    _validate(rules, case, request, history, now)
    j = rules.jurisdiction
    channel, party = request.channel, request.party

    if case.status != OPEN_STATUS:
        return _deny(Code.CASE_CLOSED, f"{j}.status", f"the case is {case.status}; no contact")

    for flag, code in FLAG_CODES:
        if getattr(case, flag) and party in rules.flags[flag]:
            return _deny(code, f"{j}.{flag}", f"the {flag} flag refuses contact with the {party}")

    closed = opted_out(rules, history, request)
    if closed is not None:
        return _deny(closed.code, f"{j}.opt_out.{closed.result}",
                     f"a {closed.result} outcome closed {channel} contact with this "
                     + ("borrower's parties" if closed.scope == "borrower" else "number or person"))

    notes: list[str] = []
    if party == THIRD_PARTY:
        tp = rules.third_party
        if tp is None:
            return _deny(Code.THIRD_PARTY_NOT_ALLOWED, f"{j}.third_party",
                         "no third-party contact in this rule set")
        if tp.requires_lost_contact and not case.lost_contact:
            shown = unreachable(tp, history, request.borrower_target)
            if shown is None and not tp.evidence:
                return _deny(Code.THIRD_PARTY_NOT_ALLOWED, f"{j}.third_party",
                             "an emergency contact may be contacted only when lost_contact is set")
            if shown is None:
                return _deny(Code.THIRD_PARTY_NOT_UNREACHABLE, f"{j}.third_party.unreachable",
                             "an emergency contact may be contacted only when lost_contact is set or the history "
                             f"shows the borrower unreachable ({', '.join(tp.evidence)})")
            notes.append(f"borrower unreachable: {shown}")
        if channel not in tp.channels:
            return _deny(Code.CHANNEL_NOT_ALLOWED, f"{j}.third_party.channel",
                         f"channel {channel} is not allowed for a third party",
                         f"allowed: {', '.join(sorted(tp.channels))}")
        if tp.once_per_person_days:
            since = now - timedelta(days=tp.once_per_person_days)
            if any(a.party == THIRD_PARTY and a.target == request.target and a.at > since for a in history):
                return _deny(Code.THIRD_PARTY_ALREADY_CONTACTED, f"{j}.third_party.once",
                             "this third party was already contacted; a location inquiry is made once")
        notes.append(f"third-party contact: release {', '.join(tp.release)} only, no debt data")

    pre = rules.prerequisites
    local_day = now.astimezone(_zone(case.timezone)).date()
    if case.lender_id and request.org_id != case.lender_id:
        for kind in pre.notices:
            given = case.notices.get(kind)
            if given is None or given > local_day:
                return _deny(Code.NOTICE_REQUIRED, f"{j}.notice.{kind}",
                             f"an agency's contact needs the {kind} notice recorded on or before the local today")
    if request.artificial_voice:
        if channel != "call":
            return _deny(Code.CHANNEL_NOT_ALLOWED, f"{j}.artificial_voice.channel",
                         "an artificial voice is a call")
        if pre.artificial_voice_consent and not case.consent_artificial_voice:
            return _deny(Code.ARTIFICIAL_VOICE_NOT_CONSENTED, f"{j}.artificial_voice",
                         "an artificial or AI voice call needs the borrower's recorded prior express consent")

    if channel not in rules.min_stage:
        return _deny(Code.CHANNEL_NOT_ALLOWED, f"{j}.channel", f"channel {channel} is not used in {j}")
    rank = STAGES.index(case.stage)
    lowest, last = rules.min_stage[channel], rules.last_contact_stage
    if rank < STAGES.index(lowest) or rank > STAGES.index(last):
        return _deny(Code.STAGE_NOT_ALLOWED, f"{j}.stage",
                     f"channel {channel} is allowed from stage {lowest} to {last}; "
                     f"the case is at {case.stage}")

    zone = _zone(case.timezone)
    local = now.astimezone(zone)
    window = rules.window
    if channel in window.channels and not window.start <= local.time() < window.end:
        return _deny(Code.OUTSIDE_CONTACT_WINDOW, f"{j}.window",
                     f"contact is allowed {window.start:%H:%M}-{window.end:%H:%M} borrower local time "
                     f"(end exclusive); it is {local:%H:%M} there")

    today = local.date()
    local_dates: list[date] = [a.at.astimezone(zone).date() for a in history]

    for cap in rules.caps:
        if channel not in cap.channels or party not in cap.parties:
            continue
        first_day = today - timedelta(days=cap.days - 1)
        used = sum(
            1 for a, day in zip(history, local_dates, strict=True)
            if day >= first_day
            and a.channel in cap.channels and a.party in cap.parties
            and _in_scope(cap.scope, a, request)
            and (cap.count == "attempts" or a.result in rules.connected_results
                 or (a.result is None and rules.unrecorded_counts_as_connected))
        )
        if used >= cap.limit:
            period = "today" if cap.days == 1 else f"in {cap.days} local days"
            return _deny(cap.code, f"{j}.cap.{cap.id}",
                         f"{used} of {cap.limit} {cap.count} per {cap.scope} {period} already made")

    cd = rules.cooldown
    if cd and channel in cd.channels and party in cd.parties:
        for a, day in zip(history, local_dates, strict=True):
            if (a.result in rules.connected_results and a.channel in cd.channels and a.party in cd.parties
                    and _in_scope(cd.scope, a, request) and (today - day).days < cd.days):
                ago = (today - day).days
                return _deny(Code.COOLDOWN, f"{j}.cooldown",
                             f"a conversation {ago} local day(s) ago blocks this for {cd.days} days "
                             f"(the conversation day is day 1); allowed again in {cd.days - ago} day(s)")

    return ConductDecision(True, Code.OK, f"{j}.allow", tuple(notes))
