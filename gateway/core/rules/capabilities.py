"""Capabilities as data: which kinds of organisation there are, what each may do, whom a purpose goes to. Pure.

Read from `policies/capabilities.toml` with the rest of the bundle (so the
table is part of the policy revision, and a bad file stops the bundle from
loading, naming file, line and problem). The use cases ask `allows(kind,
action)` instead of listing kinds; adding a party kind is a row here plus the
release rules that give it fields. What a kind may *read* stays the release
rules' (`policies/release.toml`); this table says which calls it may make.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..model import PURPOSES
from .tomlfile import FileCtx, load_toml

# Every action the use cases ask the table about (the use case's name), and what it is.
ACTIONS: dict[str, str] = {
    "import_cases": "import or update the caller's cases (ImportCases)",
    "assign": "mandate one of the caller's cases to an organisation (lender assign)",
    "recall": "recall one mandate (lender recall)",
    "escalate": "hand a case to counsel for litigation (lender escalate)",
    "record_notice": "record the negative-information notice (lender notice)",
    "set_consent": "record the borrower's consents (lender consent)",
    "set_stage": "move a case to another stage (lender stage)",
    "set_flags": "set or clear a case's flags (lender flag)",
    "place_cases": "bulk placement (lender place)",
    "recall_all": "recall every mandate held by one organisation (lender recall-all)",
    "erase": "erase a borrower, or cancel a scheduled erasure (lender erase)",
    "purge_plan": "the retention purge plan (lender purge-plan)",
    "explain": "explain a release decision for another organisation (policy explain)",
    "subject_data": "the borrower's own data for a subject-access export (lender subject-export)",
    "subject_events": "the audit events about one borrower (subject report)",
    "list_cases": "list the caller's cases: its own, or those mandated to it (ListCases)",
    "open_contact": "open a contact attempt on a case (OpenContact)",
    "packet": "the signed litigation packet of a case (GetLitigationPacket)",
    "pull_feed": "the credit-reporting feed (PullFeed)",
    "audit_query": "query the audit log, with or without proofs (AuditQuery)",
    "audit_stats": "counts of audit events per group over a time range (AuditStats)",
    "prove": "inclusion and consistency proofs of the audit log",
    "checkpoint": "the audit log's signed checkpoint",
    "cosign": "cosign a checkpoint as a witness",
    "performance": "figures per agency and law firm from the audit log and confirmed payments (lender performance)",
    # ---- promises and plans
    "propose_plan": "propose a repayment plan on a mandated case (plan propose)",
    "decide_plan": "accept or reject a plan proposed on one of the caller's cases (lender plan accept|reject)",
    "show_plans": "a case's plans: its own case's, or a mandated one's (plan show)",
    "report_payment": "report a payment collected on a mandated case (payment report)",
    "list_payments": "list the payments reported on the caller's cases (lender payments)",
    "decide_payment": "confirm or reject a reported payment (lender payment confirm|reject)",
    "statement": "the month's confirmed payments with their commissions (statement)",
    "update_accounts": "account updates of the caller's cases: figures, repayments, status, corrections (lender update)",
    "compliance_report": "a period's compliance report: a lender's own cases, a regulator's all (audit compliance-report)",
    # ---- EU (issue 26)
    "record_forbearance": "record a forbearance measure on one of the caller's cases (lender forbearance)",
    "ropa": "the record of processing activities generated from the caller's mandates (lender ropa)",
}

# Roles, not capabilities: behaviour that follows from what a kind *is*, so no row can give it to another kind.
# The lender owns cases (the case key is the lender's id; its reads are the owner's, its refusals name its own
# case); the regulator supervises (its subject reports are logged under `supervision` and see events no case
# attributes). The use cases compare against these names, never against a kind literal.
LENDER = "lender"
REGULATOR = "regulator"

KIND_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")
KIND_KEYS = {"actions", "licensed", "agent_required", "note"}
PURPOSE_KEYS = {"mandated_to", "note"}


@dataclass(frozen=True)
class Capabilities:
    """The compiled table: answered by lookups, asked on every call."""

    actions: Mapping[str, frozenset[str]]      # kind -> the actions it may take (every kind there is)
    licensed: frozenset[str]                   # kinds that need a licence in force to act at all
    mandated: Mapping[str, frozenset[str]]     # purpose -> the kinds a case may be mandated to for it
    # Kinds whose every call must name the person acting (`custos-agent`; AGENT_REQUIRED otherwise).
    agent_kinds: frozenset[str] = frozenset()

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds an organisation may be registered with, in the file's order."""
        return tuple(self.actions)

    def allows(self, kind: str, action: str) -> bool:
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")  # a use case naming an action the table cannot hold
        return action in self.actions.get(kind, frozenset())

    def mandated_to(self, purpose: str) -> frozenset[str]:
        return self.mandated.get(purpose, frozenset())

    def placed_for(self, kind: str) -> tuple[str, ...]:
        """The purposes a case may be mandated to this kind for, in PURPOSES order (agency: collection)."""
        return tuple(p for p in PURPOSES if kind in self.mandated_to(p))

    def needs_licence(self, kind: str) -> bool:
        return kind in self.licensed

    def agent_required(self, kind: str) -> bool:
        return kind in self.agent_kinds


def _names(ctx: FileCtx, where: str, key: str, value: object, known: Mapping[str, object] | tuple[str, ...],
           what: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ctx.fail(f"{where} {key}: must be a list of strings", key)
    for item in value:
        if item not in known:
            raise ctx.fail(f"{where} {key}: unknown {what} {item!r} (known: {', '.join(known)})", key)
    if len(set(value)) != len(value):
        raise ctx.fail(f"{where} {key}: lists a {what} twice", key)
    return frozenset(value)


def _section(ctx: FileCtx, header: str) -> FileCtx:
    """The `[header]` table's lines, up to the next header, so a key is found in its own table."""
    start = re.search(rf"^[ \t]*\[[ \t]*{re.escape(header)}[ \t]*\]", ctx.text, re.M)
    if start is None:
        return ctx
    end = re.compile(r"^[ \t]*\[", re.M).search(ctx.text, start.end())
    first = ctx.text.count("\n", 0, start.start()) + ctx.first_line
    return FileCtx(ctx.path, ctx.text[start.start():end.start() if end else len(ctx.text)], first)


def _row(file_ctx: FileCtx, table: str, name: str, raw: object, keys: set[str],
         problem: str | None) -> tuple[FileCtx, str, dict[str, Any]]:
    """One `[table.name]` row checked for its name (`problem`: why it is wrong, None: it is right) and its keys;
    its own section to locate further problems in, its header, its content."""
    where = f"[{table}.{name}]"
    ctx = _section(file_ctx, f"{table}.{name}")
    if problem is not None:
        raise ctx.fail(f"{where}: {problem}", name)
    if not isinstance(raw, dict):
        raise ctx.fail(f"{where} must be a table", name)
    extra = set(raw) - keys
    if extra:
        raise ctx.fail(f"{where}: unknown keys {sorted(extra)} (known: {', '.join(sorted(keys))})", sorted(extra)[0])
    return ctx, where, raw


def _table(ctx: FileCtx, data: dict[str, Any], name: str) -> dict[str, Any]:
    raw = data.get(name, {})
    if not isinstance(raw, dict):
        raise ctx.fail(f"[{name}] must be a table", name)
    return raw


def load_capabilities(path: Path) -> Capabilities:
    """The capability table of the bundle; any problem is a PolicyError naming file, line and problem."""
    data, text = load_toml(path)
    ctx = FileCtx(path, text)
    unknown = set(data) - {"kinds", "purposes"}
    if unknown:
        raise ctx.fail(f"unknown top-level keys {sorted(unknown)}", sorted(unknown)[0])
    kinds = _table(ctx, data, "kinds")
    if not kinds:
        raise ctx.fail("expected one or more [kinds.<kind>] tables")
    actions: dict[str, frozenset[str]] = {}
    licensed: set[str] = set()
    agent_kinds: set[str] = set()
    file_ctx = ctx
    for kind, raw in kinds.items():
        bad = None if KIND_RE.fullmatch(kind) else "a kind is 1-32 of a-z, 0-9 and _, starting with a letter"
        ctx, where, raw = _row(file_ctx, "kinds", kind, raw, KIND_KEYS, bad)
        actions[kind] = _names(ctx, where, "actions", raw.get("actions", []), ACTIONS, "action")
        needs = raw.get("licensed", False)
        if not isinstance(needs, bool):
            raise ctx.fail(f"{where} licensed: must be true or false", "licensed")
        if needs:
            licensed.add(kind)
        agent = raw.get("agent_required", False)
        if not isinstance(agent, bool):
            raise ctx.fail(f"{where} agent_required: must be true or false", "agent_required")
        if agent:
            agent_kinds.add(kind)
    mandated: dict[str, frozenset[str]] = {}
    for purpose, raw in _table(file_ctx, data, "purposes").items():
        bad = None if purpose in PURPOSES else f"unknown purpose (known: {', '.join(PURPOSES)})"
        ctx, where, raw = _row(file_ctx, "purposes", purpose, raw, PURPOSE_KEYS, bad)
        mandated[purpose] = _names(ctx, where, "mandated_to", raw.get("mandated_to", []), tuple(actions), "kind")
    return Capabilities(actions, frozenset(licensed), mandated, frozenset(agent_kinds))
