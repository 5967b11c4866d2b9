"""Collection-conduct rule files: `policies/conduct/*.toml`, one per jurisdiction, parsed into `ConductRules`.

Apart from the evaluation (`conduct.py`) because reading a file is not
deciding: the loader is strict (unknown keys, wrong types and values out of
range are errors naming file and line), so a typo in a rule file stops the
bundle instead of reading as "allowed".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import time
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import Code, PolicyError
from ..model import JURISDICTIONS, PURPOSES, STAGES
from .conduct import (
    CAP_CODES,
    CAP_COUNTS,
    CAP_SCOPES,
    CHANNELS,
    CONTACT_NOTICES,
    FLAG_CODES,
    OPT_OUT_CODES,
    OPT_OUT_SCOPES,
    PARTIES,
    RELEASABLE,
    RESULTS,
    UNREACHABLE_EVIDENCE,
    Cap,
    ConductRules,
    Cooldown,
    OptOut,
    PlanRules,
    Prerequisites,
    ThirdParty,
    Window,
)
from .mandates import KNOWN_MECHANISMS, MandateRules
from .preconditions import OBSOLETE_FROM, LitigationRules, ReportingRules
from .retention import RETENTION_STARTS, RetentionRules
from .tomlfile import FileCtx, load_toml

_TIME_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_ID_RE = re.compile(r"^[a-z0-9_]{1,48}$")
_MAX_DAYS = 3660  # ten years: beyond this a number is a typo, not a policy


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
    "retention", "plans", "mandates", "opt_out", "recordings", "licensing", "artificial_voice", "notices",
    "erasure", "processing",
)
# The outcomes an [[opt_out]] may name: those that close something (the others are facts about one contact).
_OPT_OUT_RESULTS = ("stop_calls", "stop_texts", "refused", "has_attorney")
# A region in `[licensing] regions` (model.REGION_RE).
_REGION_RE = re.compile(r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")


def load_conduct_rules(path: Path) -> ConductRules:
    """Parse and validate one rule file; any problem is a PolicyError naming file and line."""
    data, text = load_toml(path)
    loc = _Locator(path, text)
    top = _Table(loc, data, "")
    top.only(_TOP_KEYS)
    # The one place the literal set stays: a file may declare only a jurisdiction the code knows (some behaviour
    # is an `if` on it in a use case); which of them a gateway serves is the files loaded (PolicyBundle.jurisdictions).
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
        tp.only(("requires_lost_contact", "channels", "release", "once_per_person_days", "evidence",
                 "invalid_results", "failed_results", "failed_attempts"))
        # Optional (issue 26): without `evidence`, the lost_contact flag alone shows the borrower unreachable.
        evidence = tp.names("evidence", UNREACHABLE_EVIDENCE) if "evidence" in tp.data else ()
        third_party = ThirdParty(
            requires_lost_contact=tp.boolean("requires_lost_contact"),
            channels=frozenset(tp.names("channels", CHANNELS)),
            release=tp.names("release", RELEASABLE),
            once_per_person_days=tp.integer("once_per_person_days", 0, _MAX_DAYS),
            evidence=evidence,
            invalid_results=frozenset(tp.names("invalid_results", RESULTS)) if "invalid_number" in evidence
            else frozenset(),
            failed_results=frozenset(tp.names("failed_results", RESULTS)) if "failed_attempts" in evidence
            else frozenset(),
            failed_attempts=tp.integer("failed_attempts", 1, 100) if "failed_attempts" in evidence else 0,
        )
        if third_party.failed_results & connected:
            raise tp.fail("failed_results", "lists a result that counts as connected")
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
    lit.only(("refuse_disputed", "refuse_after_limitation_date", "requires_limitation_date", "requires_forbearance"))
    after_limitation = lit.boolean("refuse_after_limitation_date")
    # Optional; by default a rule that refuses after the limitation date also refuses without one (fail closed).
    litigation = LitigationRules(
        lit.boolean("refuse_disputed"), after_limitation,
        lit.boolean("requires_limitation_date") if "requires_limitation_date" in lit.data else after_limitation,
        lit.boolean("requires_forbearance") if "requires_forbearance" in lit.data else False)
    rep = top.table("credit_reporting")
    rep.only(("requires_consent", "requires_prior_notice", "requires_prior_contact", "letter_wait_days",
              "obsolete_years", "obsolete_from", "obsolete_offset_days", "requires_first_delinquency",
              "refuse_identity_theft", "refuse_discharged"))
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
        # Optional (issue 26); by default withheld (fail closed).
        refuse_identity_theft=(rep.boolean("refuse_identity_theft") if "refuse_identity_theft" in rep.data
                               else True),
        refuse_discharged=rep.boolean("refuse_discharged") if "refuse_discharged" in rep.data else True,
    )

    ret = top.table("retention")
    ret.only(("years", "start"))
    retention = RetentionRules(years=ret.integer("years", 1, 30), start=ret.string("start", RETENTION_STARTS))

    plans = PlanRules()
    if "plans" in top.data:  # optional: without it, the defaults of PlanRules
        pl = top.table("plans")
        pl.only(("grace_days", "promise_max_days"))
        plans = PlanRules(grace_days=pl.integer("grace_days", 0, 60),
                          promise_max_days=pl.integer("promise_max_days", 1, 366))

    mandates = MandateRules()
    if "mandates" in top.data:  # optional (issue 26): without it, the defaults of MandateRules
        mt = top.table("mandates")
        mt.only(("refuse_identity_theft", "refuse_discharged", "requires_agreement", "requires_pia",
                 "cross_border_safeguards", "cross_border_consent", "transfer_mechanisms"))

        def switch(key: str) -> bool:
            return mt.boolean(key) if key in mt.data else bool(getattr(MandateRules(), key))

        mandates = MandateRules(
            refuse_identity_theft=switch("refuse_identity_theft"), refuse_discharged=switch("refuse_discharged"),
            requires_agreement=switch("requires_agreement"), requires_pia=switch("requires_pia"),
            cross_border_safeguards=switch("cross_border_safeguards"),
            # absent: PIPL's three (the default); [] lets nothing abroad
            transfer_mechanisms=(mt.names("transfer_mechanisms", KNOWN_MECHANISMS) if "transfer_mechanisms" in mt.data
                                 else MandateRules().transfer_mechanisms),
            cross_border_consent=switch("cross_border_consent"))
    opt_outs = _opt_outs(loc, top)
    recording_years = _recording_years(top)
    prerequisites = _prerequisites(top)
    claim_stages: frozenset[str] = frozenset()
    if "erasure" in top.data:  # optional (EU): stages whose cases keep their data on an erasure request
        er = top.table("erasure")
        er.only(("claim_stages",))
        claim_stages = frozenset(er.names("claim_stages", STAGES))
    legal_basis: dict[str, str] = {}
    if "processing" in top.data:  # optional (EU): the legal basis per purpose, for the record of processing
        pr = top.table("processing")
        pr.only(("legal_basis",))
        basis = pr.table("legal_basis", "processing.legal_basis")
        basis.only(PURPOSES)
        for purpose in basis.data:
            legal_basis[purpose] = basis.string(purpose)
            if not legal_basis[purpose].strip() or len(legal_basis[purpose]) > 500:
                raise basis.fail(purpose, "must be 1-500 characters")

    return ConductRules(
        erasure_claim_stages=claim_stages,
        legal_basis=MappingProxyType(legal_basis),
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
        plans=plans,
        mandates=mandates,
        opt_outs=opt_outs,
        recording_years=recording_years,
        prerequisites=prerequisites,
    )


# ---- opt-outs and call recordings (issue 26)
def _opt_outs(loc: _Locator, top: _Table) -> tuple[OptOut, ...]:
    raw = top.data.get("opt_out", [])
    if not isinstance(raw, list):
        raise top.fail("opt_out", "must be an array of tables ([[opt_out]])")
    out: list[OptOut] = []
    for index, item in enumerate(raw):
        entry = _Table(loc, item, "opt_out", index, f"opt_out[{index + 1}]")
        entry.only(("result", "code", "scope", "channels", "parties"))
        result = entry.string("result", _OPT_OUT_RESULTS)
        if any(o.result == result for o in out):
            raise entry.fail("result", f"'{result}' is set by an earlier opt_out")
        out.append(OptOut(result=result, code=Code(entry.string("code", OPT_OUT_CODES)),
                          scope=entry.string("scope", OPT_OUT_SCOPES),
                          channels=frozenset(entry.names("channels", CHANNELS)),
                          parties=frozenset(entry.names("parties", PARTIES))))
        if not out[-1].channels or not out[-1].parties:
            raise entry.fail("channels" if not out[-1].channels else "parties", "must not be empty")
    return tuple(out)


def _recording_years(top: _Table) -> int:
    """How long a call recording's reference outlives the borrower's erasure; optional, default 0 (not kept)."""
    if "recordings" not in top.data:
        return 0
    rec = top.table("recordings")
    rec.only(("keep_years",))
    return rec.integer("keep_years", 1, 30)


# ---- licences, artificial voices, notices (issue 26)
def _prerequisites(top: _Table) -> Prerequisites:
    """The optional `[licensing]`, `[artificial_voice]` and `[notices]` tables; absent: Prerequisites' defaults."""
    regions: frozenset[str] = frozenset()
    if "licensing" in top.data:
        lic = top.table("licensing")
        lic.only(("regions",))
        raw = lic.raw("regions")
        if not isinstance(raw, list) or not all(isinstance(r, str) and _REGION_RE.match(r) for r in raw):
            raise lic.fail("regions", "must be a list of ISO 3166-2 regions or country codes (\"US-CA\", \"DE\")")
        if len(set(raw)) != len(raw):
            raise lic.fail("regions", "lists a value twice")
        regions = frozenset(raw)
    consent = True
    if "artificial_voice" in top.data:
        av = top.table("artificial_voice")
        av.only(("requires_consent",))
        consent = av.boolean("requires_consent")
    notices: tuple[str, ...] = ()
    verification = False
    if "notices" in top.data:
        no = top.table("notices")
        no.only(("before_agency_contact", "verification_to_clear_dispute"))
        notices = no.names("before_agency_contact", CONTACT_NOTICES) if "before_agency_contact" in no.data else ()
        if "verification_to_clear_dispute" in no.data:
            verification = no.boolean("verification_to_clear_dispute")
    return Prerequisites(regions, consent, notices, verification)


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
