"""Collection-conduct rules: may this contact happen now, and if not, why not?

The evaluation is pure: a decision is a function of the rule set, the case
state, the contact history and a clock the caller passes in. That is what lets
every legal boundary (07:59 vs 08:00, the 7th vs the 8th call, a DST switch
day) be tested exhaustively without a server, and makes a decision replayable
for an auditor. Enforcement, storage and auditing live in the caller.

The numbers live in `policies/conduct/*.toml`, one file per jurisdiction, so a
compliance officer can change a cap or a window without a code change.

Order of evaluation (fixed, the first refusal wins, so the code a caller sees
is deterministic): case status -> cease_contact -> disputed ->
attorney_represented -> third-party rules -> channel/stage -> contact window ->
caps (in file order) -> cooldown.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import Code, CustosError, PolicyError
from ..model import JURISDICTIONS, STAGES, STATUSES
from .preconditions import OBSOLETE_FROM, LitigationRules, ReportingRules
from .retention import RETENTION_STARTS, RetentionRules
from .tomlfile import FileCtx, load_toml

CHANNELS = ("call", "sms", "visit", "letter")
PARTIES = ("borrower", "emergency_contact")
# undeliverable: a letter came back (Reg F §1006.30(a)(1)(ii) needs a letter that did not).
RESULTS = ("connected", "no_answer", "promise_to_pay", "dispute", "wrong_number", "undeliverable")
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
OPEN_STATUS = "open"
THIRD_PARTY = "emergency_contact"

_TIME_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_ID_RE = re.compile(r"^[a-z0-9_]{1,48}$")
_MAX_DAYS = 3660  # ten years: beyond this a number is a typo, not a policy


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


# --------------------------------------------------------------------------- loading


class _Locator(FileCtx):
    """Finds the line of a key inside a given table of the file, so errors point at it.

    tomllib keeps no positions; scanning the text for headers and `key =` lines
    is enough for the flat layout these files use.
    """

    def __init__(self, path: Path, text: str) -> None:
        super().__init__(path, text)
        self.keys: dict[tuple[str, int, str], int] = {}
        self.headers: dict[tuple[str, int], int] = {}
        table, index = "", 0
        seen: dict[str, int] = {}
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if match := re.match(r"\[\[\s*([\w.-]+)\s*\]\]", line):
                table = match.group(1)
                index = seen.get(table, 0)
                seen[table] = index + 1
                self.headers.setdefault((table, index), number)
            elif match := re.match(r"\[\s*([\w.-]+)\s*\]", line):
                table, index = match.group(1), 0
                self.headers.setdefault((table, index), number)
            elif match := re.match(r'"?([\w-]+)"?\s*=', line):
                self.keys.setdefault((table, index, match.group(1)), number)

    def error(self, problem: str, table: str = "", index: int = 0, key: str | None = None) -> PolicyError:
        line = None
        if key:
            # a key is either `key = ...` in the table, or the header of a sub-table `[table.key]`
            sub_table = f"{table}.{key}" if table else key
            line = self.keys.get((table, index, key)) or self.headers.get((sub_table, 0))
        if line is None:
            line = self.headers.get((table, index), 1)
        return PolicyError(str(self.path), line, problem)


class _Table:
    """Typed, strict access to one TOML table: unknown keys and wrong types are errors."""

    def __init__(self, loc: _Locator, data: Any, name: str, index: int = 0, label: str | None = None) -> None:
        self.loc = loc
        self.name = name
        self.index = index
        self.label = label or name or "top level"
        if not isinstance(data, dict):
            raise loc.error(f"{self.label} must be a table", name, index)
        self.data: dict[str, Any] = data

    def fail(self, key: str | None, problem: str) -> PolicyError:
        where = f"{self.label}.{key}" if key and self.name else (key or self.label)
        return self.loc.error(f"{where}: {problem}", self.name, self.index, key)

    def only(self, allowed: Sequence[str]) -> None:
        for key in self.data:
            if key not in allowed:
                raise self.fail(key, f"unknown key (allowed: {', '.join(allowed)})")

    def raw(self, key: str) -> Any:
        if key not in self.data:
            raise self.fail(None, f"missing key '{key}'")
        return self.data[key]

    def string(self, key: str, choices: Sequence[str] | None = None) -> str:
        value = self.raw(key)
        if not isinstance(value, str):
            raise self.fail(key, "must be a string")
        if choices is not None and value not in choices:
            raise self.fail(key, f"'{value}' is not one of {', '.join(choices)}")
        return value

    def boolean(self, key: str) -> bool:
        value = self.raw(key)
        if not isinstance(value, bool):
            raise self.fail(key, "must be true or false")
        return value

    def integer(self, key: str, low: int, high: int) -> int:
        value = self.raw(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, "must be an integer")
        if not low <= value <= high:
            raise self.fail(key, f"must be between {low} and {high}")
        return value

    def clock(self, key: str) -> time:
        value = self.string(key)
        match = _TIME_RE.match(value)
        if not match:
            raise self.fail(key, f"'{value}' is not a local time HH:MM (00:00-23:59)")
        return time(int(match.group(1)), int(match.group(2)))

    def names(self, key: str, choices: Sequence[str]) -> tuple[str, ...]:
        value = self.raw(key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, "must be a list of strings")
        for item in value:
            if item not in choices:
                raise self.fail(key, f"'{item}' is not one of {', '.join(choices)}")
        if len(set(value)) != len(value):
            raise self.fail(key, "lists a value twice")
        return tuple(value)

    def table(self, key: str, label: str | None = None) -> _Table:
        return _Table(self.loc, self.raw(key), key, 0, label or key)


_TOP_KEYS = (
    "jurisdiction", "connected_results", "unrecorded_counts_as_connected", "last_contact_stage",
    "window", "stages", "flags", "third_party", "caps", "cooldown", "litigation", "credit_reporting",
    "retention",
)


def load_conduct_rules(path: Path) -> ConductRules:
    """Parse and validate one rule file; any problem is a PolicyError naming file and line."""
    data, text = load_toml(path)
    loc = _Locator(path, text)
    top = _Table(loc, data, "")
    top.only(_TOP_KEYS)
    jurisdiction = top.string("jurisdiction", JURISDICTIONS)
    connected = frozenset(top.names("connected_results", RESULTS))
    unrecorded = top.boolean("unrecorded_counts_as_connected") if "unrecorded_counts_as_connected" in data else False
    last_stage = top.string("last_contact_stage", STAGES)

    win = top.table("window")
    win.only(("start", "end", "channels"))
    start, end = win.clock("start"), win.clock("end")
    if end <= start:
        raise win.fail("end", "must be later than start (windows do not span midnight)")
    window = Window(start, end, frozenset(win.names("channels", CHANNELS)))

    stages = top.table("stages")
    stages.only(CHANNELS)
    min_stage: dict[str, str] = {}
    for channel in stages.data:
        min_stage[channel] = stages.string(channel, STAGES)
        if STAGES.index(min_stage[channel]) > STAGES.index(last_stage):
            raise stages.fail(channel, f"is later than last_contact_stage '{last_stage}'")

    flag_table = top.table("flags")
    flag_names = tuple(name for name, _ in FLAG_CODES)
    flag_table.only(flag_names)
    flags = {name: frozenset(flag_table.names(name, PARTIES)) for name in flag_names}

    third_party: ThirdParty | None = None
    if "third_party" in top.data:
        tp = top.table("third_party")
        tp.only(("requires_lost_contact", "channels", "release", "once_per_person_days"))
        third_party = ThirdParty(
            requires_lost_contact=tp.boolean("requires_lost_contact"),
            channels=frozenset(tp.names("channels", CHANNELS)),
            release=tp.names("release", RELEASABLE),
            once_per_person_days=tp.integer("once_per_person_days", 0, _MAX_DAYS),
        )
        if not third_party.channels <= set(min_stage):
            raise tp.fail("channels", "lists a channel that [stages] does not allow")

    caps: list[Cap] = []
    raw_caps = top.data.get("caps", [])
    if not isinstance(raw_caps, list):
        raise top.fail("caps", "must be an array of tables ([[caps]])")
    for index, raw in enumerate(raw_caps):
        entry = _Table(loc, raw, "caps", index, f"caps[{index + 1}]")
        entry.only(("id", "code", "scope", "count", "channels", "parties", "limit", "days"))
        cap_id = entry.string("id")
        if not _ID_RE.match(cap_id):
            raise entry.fail("id", "must be 1-48 characters of a-z, 0-9 and _")
        if any(c.id == cap_id for c in caps):
            raise entry.fail("id", f"'{cap_id}' is used by an earlier cap")
        caps.append(Cap(
            id=cap_id,
            code=Code(entry.string("code", CAP_CODES)),
            scope=entry.string("scope", CAP_SCOPES),
            count=entry.string("count", CAP_COUNTS),
            channels=frozenset(entry.names("channels", CHANNELS)),
            parties=frozenset(entry.names("parties", PARTIES)),
            limit=entry.integer("limit", 1, 10_000),
            days=entry.integer("days", 1, 366),
        ))

    cooldown: Cooldown | None = None
    if "cooldown" in top.data:
        cd = top.table("cooldown")
        cd.only(("scope", "channels", "parties", "days"))
        cooldown = Cooldown(
            scope=cd.string("scope", CAP_SCOPES),
            channels=frozenset(cd.names("channels", CHANNELS)),
            parties=frozenset(cd.names("parties", PARTIES)),
            days=cd.integer("days", 1, 366),
        )

    lit = top.table("litigation")
    lit.only(("refuse_disputed", "refuse_after_limitation_date", "requires_limitation_date"))
    after_limitation = lit.boolean("refuse_after_limitation_date")
    # Optional; by default a rule that refuses after the limitation date also refuses without one (fail closed).
    litigation = LitigationRules(
        lit.boolean("refuse_disputed"), after_limitation,
        lit.boolean("requires_limitation_date") if "requires_limitation_date" in lit.data else after_limitation)
    rep = top.table("credit_reporting")
    rep.only(("requires_consent", "requires_prior_notice", "requires_prior_contact", "letter_wait_days",
              "obsolete_years", "obsolete_from", "obsolete_offset_days", "requires_first_delinquency"))
    obsolete_from = rep.string("obsolete_from", OBSOLETE_FROM)
    reporting = ReportingRules(
        requires_consent=rep.boolean("requires_consent"),
        requires_prior_notice=rep.boolean("requires_prior_notice"),
        requires_prior_contact=rep.boolean("requires_prior_contact"),
        letter_wait_days=rep.integer("letter_wait_days", 0, 366),
        obsolete_years=rep.integer("obsolete_years", 1, 30),
        obsolete_from=obsolete_from,
        obsolete_offset_days=rep.integer("obsolete_offset_days", 0, 3660),
        # Optional; by default required where obsolescence runs from that date (fail closed).
        requires_first_delinquency=(rep.boolean("requires_first_delinquency") if "requires_first_delinquency" in rep.data
                                    else obsolete_from == "first_delinquency_on"),
    )

    ret = top.table("retention")
    ret.only(("years", "start"))
    retention = RetentionRules(years=ret.integer("years", 1, 30), start=ret.string("start", RETENTION_STARTS))

    return ConductRules(
        jurisdiction=jurisdiction,
        source=str(path),
        connected_results=connected,
        unrecorded_counts_as_connected=unrecorded,
        last_contact_stage=last_stage,
        min_stage=MappingProxyType(min_stage),
        window=window,
        flags=MappingProxyType(flags),
        third_party=third_party,
        caps=tuple(caps),
        cooldown=cooldown,
        litigation=litigation,
        reporting=reporting,
        retention=retention,
    )


def load_conduct_dir(directory: Path) -> dict[str, ConductRules]:
    """Load every *.toml rule file in `directory`, keyed by jurisdiction.

    A missing or empty directory is an error: a gateway without conduct rules
    must not start, because it could not decide any contact.
    """
    if not directory.is_dir():
        raise PolicyError(str(directory), None, "conduct rule directory not found")
    files = sorted(directory.glob("*.toml"))
    if not files:
        raise PolicyError(str(directory), None, "no conduct rule files (*.toml)")
    rules: dict[str, ConductRules] = {}
    for path in files:
        loaded = load_conduct_rules(path)
        if loaded.jurisdiction in rules:
            _, text = load_toml(path)
            raise _Locator(path, text).error(
                f"jurisdiction '{loaded.jurisdiction}' is already defined by "
                f"{rules[loaded.jurisdiction].source}", key="jurisdiction")
        rules[loaded.jurisdiction] = loaded
    return rules


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

    notes: list[str] = []
    if party == THIRD_PARTY:
        tp = rules.third_party
        if tp is None:
            return _deny(Code.THIRD_PARTY_NOT_ALLOWED, f"{j}.third_party",
                         "no third-party contact in this rule set")
        if tp.requires_lost_contact and not case.lost_contact:
            return _deny(Code.THIRD_PARTY_NOT_ALLOWED, f"{j}.third_party",
                         "an emergency contact may be contacted only when lost_contact is set")
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
