"""The policy bundle: field-release rules, compiled once, evaluated as pure lookups.

Deny by default: a (kind, purpose, stage) with no rule releases nothing, and a
field no rule names is never released. Each decision names the rules that made
it, and the bundle's revision hash goes into every audit event.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from ..errors import Code, PolicyError
from ..model import (
    ALL_FIELDS,
    BORROWER_PI_FIELDS,
    ENCRYPTED_FIELDS,
    JURISDICTIONS,
    NEVER_TO_AGENCY,
    PURPOSES,
    STAGES,
)
from .capabilities import Capabilities, load_capabilities
from .conduct import ConductRules
from .conduct_file import load_conduct_dir
from .limits import Limits, load_limits
from .tomlfile import FileCtx, load_toml, read_policy_file

TRANSFORMS = ("plain", "mask", "last4", "redact", "year_only", "pseudonym")


@dataclass(frozen=True)
class Transform:
    name: str
    keep_first: int = 0
    keep_last: int = 4

    def describe(self) -> str:
        if self.name == "mask":
            return f"mask(keep_first={self.keep_first},keep_last={self.keep_last})"
        return self.name


@dataclass(frozen=True)
class ReleaseRule:
    id: str
    purpose: str
    to: tuple[str, ...]
    stages: tuple[str, ...]
    owner_only: bool
    requires_mandate: bool
    fields: dict[str, Transform]


@dataclass(frozen=True)
class Withhold:
    """Fields a jurisdiction keeps from a kind for a purpose whatever the release rules grant (data minimisation,
    GDPR Art. 5(1)(c)): it only ever takes away, so deny by default still holds."""

    id: str
    jurisdictions: tuple[str, ...]
    purposes: tuple[str, ...]
    to: tuple[str, ...]
    fields: tuple[str, ...]


@dataclass(frozen=True)
class ReleaseDecision:
    allowed: bool
    code: Code
    rules: tuple[str, ...]
    fields: dict[str, Transform] = field(default_factory=dict)
    # Worked out once per compiled decision, used on every read (Core._grant).
    encrypted: tuple[str, ...] = field(init=False, repr=False, compare=False)  # decrypted from the vault
    needs_loan: bool = field(init=False, repr=False, compare=False)
    rule: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        encrypted = tuple(n for n in self.fields if n in ENCRYPTED_FIELDS)
        object.__setattr__(self, "encrypted", encrypted)
        object.__setattr__(self, "needs_loan", any(n not in BORROWER_PI_FIELDS for n in self.fields))
        object.__setattr__(self, "rule", ",".join(self.rules) if self.rules else "default-deny")


@dataclass(frozen=True)
class PolicyBundle:
    revision: str
    rules: tuple[ReleaseRule, ...]
    conduct: dict[str, ConductRules]
    _table: dict[tuple[str, str, str], ReleaseDecision]
    capabilities: Capabilities
    limits: Limits = field(default_factory=Limits)
    withholds: tuple[Withhold, ...] = ()
    _access: dict[tuple[str, str], tuple[bool, bool]] = field(init=False, repr=False, compare=False)
    _withheld: dict[tuple[str, str, str, str], ReleaseDecision] = field(init=False, repr=False, compare=False)

    def release(self, kind: str, purpose: str, stage: str, jurisdiction: str = "") -> ReleaseDecision:
        """Pure lookup in the compiled table; absent means deny. With the case's jurisdiction, that
        jurisdiction's `[[withhold]]` entries are taken away (named in the decision's rules)."""
        if jurisdiction:
            narrowed = self._withheld.get((kind, purpose, stage, jurisdiction))
            if narrowed is not None:
                return narrowed
        hit = self._table.get((kind, purpose, stage))
        if hit is not None:
            return hit
        if any(r.purpose == purpose and kind in r.to for r in self.rules):
            return ReleaseDecision(False, Code.STAGE_NOT_ALLOWED, ("default-deny",))
        return ReleaseDecision(False, Code.PURPOSE_NOT_ALLOWED, ("default-deny",))

    def __post_init__(self) -> None:
        # Asked on every request: answered once per (kind, purpose) here, not by scanning the rules.
        access: dict[tuple[str, str], tuple[bool, bool]] = {}
        for r in self.rules:
            for kind in r.to:
                owner, mandate = access.get((kind, r.purpose), (False, False))
                access[(kind, r.purpose)] = (owner or r.owner_only, mandate or r.requires_mandate)
        object.__setattr__(self, "_access", access)
        withheld: dict[tuple[str, str, str, str], ReleaseDecision] = {}
        for (kind, purpose, stage), decision in self._table.items():
            for w in self.withholds:
                if kind not in w.to or purpose not in w.purposes:
                    continue
                for j in w.jurisdictions:
                    prev = withheld.get((kind, purpose, stage, j), decision)
                    fields = {n: t for n, t in prev.fields.items() if n not in w.fields}
                    withheld[(kind, purpose, stage, j)] = ReleaseDecision(True, Code.OK, (*prev.rules, w.id), fields)
        object.__setattr__(self, "_withheld", withheld)

    @property
    def jurisdictions(self) -> tuple[str, ...]:
        """The jurisdictions this gateway serves: one per conduct file loaded (a case or an organisation in another
        could never be contacted, retained or reported by rule), sorted, so a message lists them alike."""
        return tuple(sorted(self.conduct))

    def mandate_required(self, kind: str, purpose: str) -> bool:
        return self._access.get((kind, purpose), (False, False))[1]

    def owner_only(self, kind: str, purpose: str) -> bool:
        return self._access.get((kind, purpose), (False, False))[0]


def _parse_transform(ctx: FileCtx, fname: str, raw: object) -> Transform:
    if isinstance(raw, str):
        spec: dict[str, Any] = {"transform": raw}
    elif isinstance(raw, dict):
        spec = dict(raw)
    else:
        raise ctx.fail(f"field '{fname}': transform must be a string or table", fname)
    name = spec.pop("transform", None)
    if name not in TRANSFORMS:
        raise ctx.fail(f"field '{fname}': unknown transform {name!r} (known: {', '.join(TRANSFORMS)})", fname)
    keep_first = spec.pop("keep_first", 0)
    keep_last = spec.pop("keep_last", 4)
    if spec:
        raise ctx.fail(f"field '{fname}': unknown keys {sorted(spec)}", fname)
    for label, val in (("keep_first", keep_first), ("keep_last", keep_last)):
        if not isinstance(val, int) or isinstance(val, bool) or not 0 <= val <= 32:
            raise ctx.fail(f"field '{fname}': {label} must be an integer 0-32", fname)
    return Transform(name, keep_first, keep_last)


def _str_list(ctx: FileCtx, rid: str, key: str, value: object, allowed: tuple[str, ...]) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise ctx.fail(f"rule '{rid}': '{key}' must be a non-empty list of strings", key)
    if items == ["*"] and key == "stages":
        return STAGES
    for item in items:
        if item not in allowed:
            raise ctx.fail(f"rule '{rid}': unknown {ITEM_NAMES.get(key, key)} {item!r} in '{key}'", key)
    return tuple(items)


ITEM_NAMES = {"to": "organisation kind", "stages": "stage", "jurisdictions": "jurisdiction", "purposes": "purpose",
              "fields": "field"}
RULE_KEYS = {"id", "purpose", "to", "stages", "owner_only", "requires_mandate", "fields", "note"}


WITHHOLD_KEYS = {"id", "jurisdictions", "purposes", "to", "fields", "note"}


def _entry(file_ctx: FileCtx, table: str, what: str, i: int, raw: object, seen: set[str],
           keys: set[str]) -> tuple[FileCtx, str]:
    """The checks every `[[release]]` and `[[withhold]]` entry starts with: a table, a new id, known keys.
    Returns the entry's context and id; `seen` gains the id (release and withhold ids share one namespace)."""
    ctx = file_ctx.within(table, i)
    if not isinstance(raw, dict):
        raise file_ctx.fail(f"{table} entry #{i + 1} must be a table ([[{table}]])", table)
    rid = raw.get("id")
    if not isinstance(rid, str) or not rid:
        raise ctx.fail(f"{what} #{i + 1}: 'id' must be a non-empty string", "id")
    if rid in seen:
        raise ctx.fail(f"duplicate rule id {rid!r}", "id")
    seen.add(rid)
    extra = set(raw) - keys
    if extra:
        raise ctx.fail(f"{what} '{rid}': unknown keys {sorted(extra)}", sorted(extra)[0])
    return ctx, rid


def load_withholds(path: Path, kinds: tuple[str, ...], rule_ids: set[str]) -> tuple[Withhold, ...]:
    """The optional `[[withhold]]` entries of release.toml: per jurisdiction, fields no rule may release."""
    data, text = load_toml(path)
    file_ctx = FileCtx(path, text)
    raw_list = data.get("withhold", [])
    if not isinstance(raw_list, list):
        raise file_ctx.fail("'withhold' must be an array of tables ([[withhold]])", "withhold")
    out: list[Withhold] = []
    seen = set(rule_ids)
    for i, raw in enumerate(raw_list):
        ctx, wid = _entry(file_ctx, "withhold", "withhold", i, raw, seen, WITHHOLD_KEYS)
        jurisdictions = _str_list(ctx, wid, "jurisdictions", raw.get("jurisdictions"), JURISDICTIONS)
        purposes = _str_list(ctx, wid, "purposes", raw.get("purposes"), PURPOSES)
        to = _str_list(ctx, wid, "to", raw.get("to"), kinds)
        fields = _str_list(ctx, wid, "fields", raw.get("fields"), ALL_FIELDS)
        out.append(Withhold(wid, jurisdictions, purposes, to, fields))
    return tuple(out)


def load_release_rules(path: Path, kinds: tuple[str, ...]) -> tuple[ReleaseRule, ...]:
    """The release rules; `kinds` are those of the bundle's capability table, the only ones a rule may name."""
    data, text = load_toml(path)
    ctx = FileCtx(path, text)
    unknown = set(data) - {"release", "withhold"}
    if unknown:
        raise ctx.fail(f"unknown top-level keys {sorted(unknown)}", sorted(unknown)[0])
    raw_rules = data.get("release")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise ctx.fail("expected one or more [[release]] tables")
    rules: list[ReleaseRule] = []
    seen: set[str] = set()
    file_ctx = ctx
    for i, raw in enumerate(raw_rules):
        ctx, rid = _entry(file_ctx, "release", "rule", i, raw, seen, RULE_KEYS)
        purpose = raw.get("purpose")
        if purpose not in PURPOSES:
            raise ctx.fail(f"rule '{rid}': unknown purpose {purpose!r}", "purpose")
        to = _str_list(ctx, rid, "to", raw.get("to"), kinds)
        stages = _str_list(ctx, rid, "stages", raw.get("stages"), STAGES)
        owner_only = raw.get("owner_only", False)
        requires_mandate = raw.get("requires_mandate", True)
        if not isinstance(owner_only, bool) or not isinstance(requires_mandate, bool):
            raise ctx.fail(f"rule '{rid}': owner_only and requires_mandate are booleans", "owner_only")
        raw_fields = raw.get("fields")
        if not isinstance(raw_fields, dict) or not raw_fields:
            raise ctx.fail(f"rule '{rid}': 'fields' must be a non-empty table", "fields")
        fields: dict[str, Transform] = {}
        for fname, spec in raw_fields.items():
            if fname not in ALL_FIELDS:
                raise ctx.fail(f"rule '{rid}': unknown field {fname!r}", fname)
            transform = _parse_transform(ctx, fname, spec)
            forbidden = NEVER_TO_AGENCY.get(fname)
            if "agency" in to and forbidden and ("*" in forbidden or transform.name in forbidden):
                raise ctx.fail(
                    f"rule '{rid}': field '{fname}' with transform '{transform.name}' may never be released to agencies",
                    fname,
                )
            fields[fname] = transform
        rules.append(ReleaseRule(rid, purpose, to, stages, owner_only, requires_mandate, fields))
    return tuple(rules)


def compile_table(rules: tuple[ReleaseRule, ...]) -> dict[tuple[str, str, str], ReleaseDecision]:
    """Union of the fields of every rule matching (kind, purpose, stage), computed once."""
    table: dict[tuple[str, str, str], ReleaseDecision] = {}
    for rule in rules:
        for kind in rule.to:
            for stage in rule.stages:
                key = (kind, rule.purpose, stage)
                prev = table.get(key)
                fields = dict(prev.fields) if prev else {}
                fields.update(rule.fields)
                names = (prev.rules if prev else ()) + (rule.id,)
                table[key] = ReleaseDecision(True, Code.OK, names, fields)
    return table


def revision_of(directory: Path) -> str:
    """Hash of every policy file's relative path and bytes, in a fixed order."""
    digest = hashlib.sha256()
    for path in sorted(directory.rglob("*.toml")):
        rel = path.relative_to(directory).as_posix()
        digest.update(rel.encode() + b"\0" + read_policy_file(path) + b"\0")
    return "sha256:" + digest.hexdigest()


def load_bundle(directory: Path) -> PolicyBundle:
    """Load and validate the whole bundle; any problem raises PolicyError naming the file."""
    if not directory.is_dir():
        raise PolicyError(str(directory), None, "policy directory not found")
    release_path = directory / "release.toml"
    if not release_path.exists():
        raise PolicyError(str(release_path), None, "missing release rules file")
    capabilities_path = directory / "capabilities.toml"
    if not capabilities_path.exists():
        raise PolicyError(str(capabilities_path), None, "missing capability table (which kinds may take which action)")
    capabilities = load_capabilities(capabilities_path)
    rules = load_release_rules(release_path, capabilities.kinds)
    conduct: dict[str, ConductRules] = {}
    conduct_dir = directory / "conduct"
    if conduct_dir.is_dir():
        conduct = load_conduct_dir(conduct_dir)
    limits = load_limits(directory / "limits.toml", capabilities.kinds)
    withholds = load_withholds(release_path, capabilities.kinds, {r.id for r in rules})
    return PolicyBundle(revision_of(directory), rules, conduct, compile_table(rules), capabilities, limits,
                        withholds)


# ----------------------------------------------------------------- transforms


def apply_transform(t: Transform, value: str, pseudonym_key: bytes, recipient: str) -> str:
    """Applies one transform to a plaintext value; pure."""
    name = t.name
    if name == "plain":
        return value
    if name == "redact":
        return "[redacted]"
    if name == "last4":
        return value[-4:]
    if name == "year_only":
        return value[:4]
    if name == "pseudonym":
        mac = hmac.new(pseudonym_key, recipient.encode() + b"\0" + value.encode(), hashlib.sha256)
        return "psn_" + mac.hexdigest()[:24]
    # mask: keep the first/last characters, never fewer than four masked.
    n = len(value)
    keep_last = min(t.keep_last, max(n - 4, 0))
    keep_first = min(t.keep_first, max(n - keep_last - 4, 0))
    return value[:keep_first] + "*" * (n - keep_first - keep_last) + value[n - keep_last:]


def days_past_due(first_delinquency_on: str | None, today: date) -> str:
    if not first_delinquency_on:
        return "0"
    return str(max((today - date.fromisoformat(first_delinquency_on)).days + 1, 0))


def json_value(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
