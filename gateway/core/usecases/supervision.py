"""Supervision: the regulator's audit queries and signed checkpoints.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from gateway.tlog.cosign import verify_cosignature
from gateway.tlog.merkle import parse_verifier_key, verify_checkpoint
from gateway.tlog.proofs import StoredTree

from ..errors import Code, CustosError
from ..model import (
    ID_RE,
    AuditEntry,
    Caller,
    EventDraft,
    SubjectEntry,
    parse_time,
    rfc3339,
)
from ..ports import CaseReader, UnitOfWork
from ..rules import auditstats
from ..rules.auditfilter import EventFilter, event_filter
from ..rules.capabilities import LENDER, REGULATOR
from .context import Context

MAX_PROVEN_SEQS = 1000  # events a sample may name in one query


class Paged(Iterator[AuditEntry]):
    """A query's events in log order, at most `limit` of them (0: all); once it ends, `next_from_seq` is the
    sequence number of the next matching event, where the next page starts (0: there is none).

    Looking one event ahead costs the scan the next page would make anyway,
    and it answers "is there more" exactly, so a reader never asks for an
    empty last page.
    """

    def __init__(self, rows: Iterable[AuditEntry], limit: int = 0) -> None:
        self._rows = iter(rows)
        self._left = limit
        self._limited = limit > 0
        self.next_from_seq = 0

    def __next__(self) -> AuditEntry:
        entry = next(self._rows)
        if self._limited:
            if not self._left:
                self.next_from_seq = entry.seq
                close = getattr(self._rows, "close", None)
                if close is not None:
                    close()
                raise StopIteration
            self._left -= 1
        return entry


@dataclass(frozen=True)
class ProvenEvents:
    """Events each with its inclusion proof in the tree of `size`, and (for the current tree) its checkpoint."""

    checkpoint: str  # signed now for the current tree; "" when the reader named a size it verified before
    size: int
    events: Iterator[tuple[AuditEntry, list[bytes]]]
    page: Paged | None = None  # its `next_from_seq` once the events are read


class Supervision(Context):
    def audit_query(self, caller: Caller, case_id: str = "", org: str = "", borrower_id: str = "", since: str = "",
                    from_seq: int = 0, filters: Mapping[str, str] | None = None, limit: int = 0) -> Paged:
        """Events matching every filter, in log order, at most `limit` (0: all); `filters`: auditfilter.KEYS.

        A lender gets only events whose `lender` is itself (see `_query_allowed`).
        """
        since_text, flt = self._query_allowed(caller, case_id, org, borrower_id, since, filters, limit)
        rows: Iterable[AuditEntry] = self.audit.reads().audit_query(case_id, org, borrower_id, since_text,
                                                                    max(from_seq, 0))
        if flt.active():
            rows = (e for e in rows if flt.matches(e.leaf))
        return Paged(rows, limit)

    def proven_audit_query(self, caller: Caller, case_id: str = "", org: str = "", borrower_id: str = "",
                           since: str = "", from_seq: int = 0, seqs: Sequence[int] = (),
                           size: int = 0, filters: Mapping[str, str] | None = None, limit: int = 0) -> ProvenEvents:
        """The query's events, each with its inclusion proof: what a regulator reads is checked against the tree.

        Served with the events so the reader verifies each one against a
        checkpoint it verified (the pinned key's signature, or a size it
        verified before) with no call per event; an event edited in place
        then no longer leads to the signed root. `seqs` names events instead
        of the filters (an incremental verifier's random sample).
        """
        self._standing(caller, action="audit_query", purpose="supervision")
        head = self.audit.head()[0]
        if size < 0 or size > head or len(seqs) > MAX_PROVEN_SEQS or any(
                not 0 <= s < (size or head) for s in seqs):
            raise self._deny(caller, Code.PROOF_OUT_OF_RANGE, "input", purpose="supervision")
        since_text, flt = self._query_allowed(caller, case_id, org, borrower_id, since, filters, limit)
        head, root = self.audit.head()  # after this query's own event: the checkpoint covers it
        target = size or head
        note = "" if size else self.sign_checkpoint(head, root)
        tree = self._stored_tree()
        if seqs:
            rows: Iterator[AuditEntry] = self._events_at(sorted(set(seqs)))
            flt = EventFilter(lender=flt.lender)  # named events instead of the filters; a lender's scope stays
        else:
            rows = self.audit.reads().audit_query(case_id, org, borrower_id, since_text, max(from_seq, 0))

        def matching() -> Iterator[AuditEntry]:
            for entry in rows:
                if entry.seq >= target:
                    break  # appended after the checkpoint: the next query proves it
                if flt.active() and not flt.matches(entry.leaf):
                    continue
                yield entry

        page = Paged(matching(), limit)
        return ProvenEvents(note, target, ((e, tree.inclusion(e.seq, target)) for e in page), page)

    def audit_stats(self, caller: Caller, start: str, end: str, by: str | Sequence[str] = ()) -> dict[str, Any]:
        """Events per group over [start, end), counted at a tree size whose checkpoint is signed for the answer.

        Counted over the events below that size, this request's own event
        included (it is audited first), so a reader recounts exactly these
        figures from the verified events of that checkpoint (`--verify`). A
        regulator counts every event; a lender only those that name it as the
        owning lender. The rule names the range and keys only: no PI.
        """
        org = self._standing(caller, action="audit_stats", purpose="supervision")
        kw: dict[str, Any] = {"purpose": "supervision" if org.kind == REGULATOR else "servicing"}
        keys = auditstats.stats_keys(by)
        if not isinstance(keys, tuple):
            raise self._deny(caller, keys, "input", **kw)
        span = auditstats.stats_range(start, end)
        if not isinstance(span, tuple):
            raise self._deny(caller, span, "input", **kw)
        lender = org.id if org.kind == LENDER else ""
        self.audit.append([self._event(caller, "allow", Code.OK, f"supervision.stats:from={span[0]};to={span[1]};"
                                       f"by={','.join(keys)}", lender=lender, **kw)])
        size, root = self.audit.head()
        note = self.sign_checkpoint(size, root)
        counts = self.audit.reads().audit_stats(span[0], span[1], keys, size, lender)
        return auditstats.document(span[0], span[1], keys, size, note, counts, lender)

    def _events_at(self, seqs: Sequence[int]) -> Iterator[AuditEntry]:
        """The stored events at these sequence numbers, in order; one that is missing is left out."""
        log = self.audit.reads()
        for seq in seqs:
            rows = log.audit_query(from_seq=seq)
            try:
                entry = next(rows, None)
            finally:
                close = getattr(rows, "close", None)
                if close is not None:
                    close()
            if entry is not None and entry.seq == seq:
                yield entry

    def _query_allowed(self, caller: Caller, case_id: str, org: str, borrower_id: str, since: str,
                       filters: Mapping[str, str] | None = None, limit: int = 0) -> tuple[str, EventFilter]:
        """A query checked and audited before anything is read; the `since` bound as stored, and the further
        filters (rules/auditfilter.py).

        A regulator sees every event. A lender (its compliance officer) sees
        only events whose `lender` is itself: the scope is forced, also on the
        proven path and over a sample. Naming another lender's organisation,
        or a case id another lender also uses, is not refused: case ids are
        each lender's own, so refusing would tell whether another lender has
        such a case; the answer simply holds none of another lender's events.
        """
        who = self._standing(caller, action="audit_query", purpose="supervision")
        lender = who.id if who.kind == LENDER else ""
        kw: dict[str, Any] = {"purpose": "servicing", "lender": lender} if lender else {"purpose": "supervision"}
        for value in (case_id, org, borrower_id):
            if value and not ID_RE.fullmatch(value):
                raise self._deny(caller, Code.INVALID_ARGUMENT, "input", **kw)
        if limit < 0:
            raise self._deny(caller, Code.INVALID_ARGUMENT, "input", **kw)
        flt = event_filter(**(filters or {}))
        if not isinstance(flt, EventFilter):
            raise self._deny(caller, flt, "input", **kw)
        since_text = ""
        if since:
            ts = parse_time(since)
            if ts is None:
                raise self._deny(caller, Code.INVALID_TIME, "input", **kw)
            since_text = rfc3339(ts)
        self.audit.append([self._event(caller, "allow", Code.OK, "supervision.query", case_id=case_id,
                                       borrower_id=borrower_id, **kw)])
        return since_text, replace(flt, lender=lender) if lender else flt

    def _tree(self, caller: Caller, kind: str, **kw: int) -> tuple[StoredTree, int]:
        """The stored tree and the current size, for a regulator; the request is audited (no PI: sizes only)."""
        self._standing(caller, action="prove", purpose="supervision")
        size = self.audit.head()[0]
        detail = ";".join(f"{k}={v}" for k, v in kw.items())
        self.audit.append([self._event(caller, "allow", Code.OK, f"supervision.{kind}:{detail}",
                                       purpose="supervision")])
        return self._stored_tree(), size

    def _stored_tree(self) -> StoredTree:
        log = self.audit.reads()
        return self._nodes.tree(log.audit_nodes, log.audit_leaf_hash_range, log.audit_tile_inner)

    def inclusion_proof(self, caller: Caller, seq: int, size: int = 0) -> dict[str, Any]:
        """RFC 9162 PATH for the event `seq` (its leaf index: sequence numbers start at 0) in the tree of `size`."""
        tree, head = self._tree(caller, "prove", seq=seq, size=size)
        size = size or head
        if not 0 <= seq < size <= head:
            raise self._deny(caller, Code.PROOF_OUT_OF_RANGE, "input", purpose="supervision")
        leaf = tree.entries(0, seq, seq + 1)[0]
        return {"index": seq, "tree_size": size, "leaf_hash": leaf, "root": tree.root(size),
                "proof": tree.inclusion(seq, size)}

    def consistency_proof(self, caller: Caller, first: int, second: int = 0) -> dict[str, Any]:
        """RFC 9162 PROOF that the tree of `first` events is a prefix of the tree of `second`."""
        tree, head = self._tree(caller, "consistency", first=first, second=second)
        second = second or head
        if not 0 < first <= second <= head:
            raise self._deny(caller, Code.PROOF_OUT_OF_RANGE, "input", purpose="supervision")
        return {"from": first, "to": second, "from_root": tree.root(first), "to_root": tree.root(second),
                "proof": tree.consistency(first, second)}

    def subject_events(self, caller: Caller, borrower_id: str, lender: str = "") -> Iterator[SubjectEntry]:
        """Every event about one lender's borrower of this id, in log order, each with that lender.

        PIPL Art. 45 / GDPR Art. 15: who received which of the borrower's fields,
        when, for what purpose and under which rule, and every refused attempt.
        Borrower and case ids are the lender's own, so two lenders may both have
        a B-1 and a C-1: an event belongs to the lender it names (`lender`), and
        one written before events named it to the lender the records make sure
        of (`_Attribution`). A lender gets its own borrower only (another's is
        not found). A regulator names the lender, or gets every lender's borrower
        of this id apart, and events no record attributes ("" as the lender).
        Refusals that name one of the lender's cases but were decided before the
        case was resolved (no borrower id) are listed for each lender owning that
        case id: which lender's case the caller meant is not known.
        """
        org = self._standing(caller, action="subject_events", purpose="supervision")
        kw: dict[str, Any] = {"purpose": "supervision" if org.kind == REGULATOR else "servicing"}
        if not ID_RE.fullmatch(borrower_id) or (lender and not ID_RE.fullmatch(lender)):
            raise self._deny(caller, Code.INVALID_ARGUMENT, "input", **kw)
        if org.kind == LENDER:
            if lender not in ("", org.id):
                raise self._deny(caller, Code.CASE_NOT_FOUND, "ownership", **kw)
            lender = org.id
        repo, log = self.reader(), self.audit.reads()
        attribution = _Attribution(repo, borrower_id)
        about = [(entry, attribution.lender(json.loads(entry.leaf))) for entry in log.audit_query(borrower_id=borrower_id)]
        named = [lender] if lender else sorted({owner for _, owner in about if owner})
        cases = {owner: {c.case_id for c in repo.cases_of_borrower(owner, borrower_id)} for owner in named}
        owners = [owner for owner in named if cases[owner]]
        if not owners:
            raise self._deny(caller, Code.CASE_NOT_FOUND, "subject", **kw)
        self.audit.append([self._event(caller, "allow", Code.OK, f"subject_report:lender={owner}",
                                       borrower_id=borrower_id, lender=owner, **kw) for owner in owners])
        found: dict[tuple[int, str], SubjectEntry] = {}
        for entry, owner in about:
            if owner in owners or (not owner and org.kind == REGULATOR):
                found[entry.seq, owner] = SubjectEntry(entry.seq, entry.leaf, owner)
        for owner in owners:
            for case_id in sorted(cases[owner]):
                for entry in log.audit_query(case_id=case_id):
                    event = json.loads(entry.leaf)
                    if event.get("borrower_id"):
                        continue  # about a borrower: found above if it is this one
                    attributed = attribution.lender(event)
                    if attributed == owner or (not attributed and event.get("decision") == "deny"):
                        # Refused before the case was resolved (e.g. no mandate: which lender's case is not
                        # revealed): an attempt at this borrower's data if the id meant this lender's case.
                        found[entry.seq, owner] = SubjectEntry(entry.seq, entry.leaf, owner)
        yield from (found[key] for key in sorted(found))

    def checkpoint(self, caller: Caller, size: int = 0) -> tuple[str, int, list[str]]:
        """A checkpoint of the current tree, signed now (or, given a size, the one published for it).

        With it, the latest checkpoint each regulator cosigned, each followed
        by its cosignature line: a verifier requires the checkpoint to extend them.
        """
        self._standing(caller, action="checkpoint", purpose="supervision")
        log = self.audit.reads()
        cosigned = [note.rstrip("\n") + "\n" + line + "\n" for _, _, _, note, line in log.cosigned()]
        if size:
            found = log.published_checkpoint(size)
            if found is None:
                raise CustosError(Code.CHECKPOINT_NOT_FOUND)
            return found, size, cosigned
        head, root = self.audit.head()
        return self.sign_checkpoint(head, root), head, cosigned

    def publish_checkpoint(self) -> int | None:
        """Sign and store a checkpoint of the current tree if it grew since the last one: run every second.

        So a checkpoint exists at least once a second while events arrive (and
        one is signed on demand for every request). Stored with the size it
        covers; replicas publishing the same size store it once.
        """
        size, root = self.audit.head()
        if size == self._published:
            return None
        note = self.sign_checkpoint(size, root)
        now = self.clock.now()
        def work(store: UnitOfWork) -> tuple[None, list[EventDraft]]:
            store.insert_checkpoint(size, note, rfc3339(now))
            return None, []

        self.audit.run(work)
        self._published = size
        return size

    def cosign(self, caller: Caller, note: str, line: str, cosigner_vkey: str) -> int:
        """Store a regulator's cosignature of a checkpoint this log signed and whose tree it still holds."""
        self._standing(caller, action="cosign", purpose="supervision")
        kw: dict[str, Any] = {"purpose": "supervision"}
        try:
            cp = verify_checkpoint(note, parse_verifier_key(self.verifier_key))
            verify_cosignature(note, line, cosigner_vkey)
        except ValueError:
            raise self._deny(caller, Code.COSIGNATURE_INVALID, "cosign", **kw) from None
        head = self.audit.head()[0]
        if cp.size > head or self._stored_tree().root(cp.size) != cp.root:
            raise self._deny(caller, Code.COSIGNATURE_INVALID, "cosign.tree", **kw)
        name = cosigner_vkey.split("+", 1)[0]
        now = self.clock.now()

        def work(store: UnitOfWork) -> tuple[None, list[EventDraft]]:
            store.insert_cosignature(caller.org_id, name, cosigner_vkey.strip(), cp.size, note, line, rfc3339(now))
            return None, [self._event(caller, "allow", Code.OK, f"supervision.cosign:size={cp.size}", now=now, **kw)]

        self.audit.run(work)
        return cp.size


class _Attribution:
    """The owning lender an event is about: the one it names, or for an event written before events named one
    (or one that names none), the one the records make sure of; "" when they do not.

    An event without `lender` is attributed when it is sure: a lender acts on its own cases and borrowers only,
    so its event is its own if it owns that case (of this borrower) or borrower; another organisation's event
    about a case is the lender's that mandated that case to it, if exactly one lender of this borrower did;
    a regulator's subject report names its lender in the rule. Anything else stays unattributed, and only a
    regulator sees it (listed apart), never a lender: it may be another lender's borrower of the same id.
    """

    def __init__(self, repo: CaseReader, borrower_id: str) -> None:
        self._repo = repo
        self._borrower = borrower_id
        self._kinds: dict[str, str] = {}
        self._memo: dict[tuple[str, str, str], str] = {}

    def lender(self, event: dict[str, Any]) -> str:
        named = event.get("lender")
        if isinstance(named, str) and named:
            return named
        org, case_id, rule = str(event.get("org", "")), str(event.get("case_id", "")), str(event.get("rule", ""))
        borrower = str(event.get("borrower_id", ""))
        if borrower and borrower != self._borrower:
            return ""
        key = (org, case_id, borrower if borrower else rule if rule.startswith(_REPORT_RULE) else "")
        if key not in self._memo:
            self._memo[key] = self._decide(org, case_id, borrower, rule)
        return self._memo[key]

    def _decide(self, org: str, case_id: str, borrower: str, rule: str) -> str:
        repo = self._repo
        if org not in self._kinds:
            found = repo.get_org(org) if org else None
            self._kinds[org] = found.kind if found is not None else ""
        kind = self._kinds[org]
        if kind == LENDER:
            if case_id:
                case = repo.get_case(org, case_id)
                return org if case is not None and (not borrower or case.borrower_id == borrower) else ""
            return org if borrower and repo.cases_of_borrower(org, borrower) else ""
        if kind == REGULATOR:
            named = rule[len(_REPORT_RULE):] if rule.startswith(_REPORT_RULE) else ""
            return named if borrower and named and repo.cases_of_borrower(named, borrower) else ""
        if not case_id:
            return ""
        lenders: set[str] = set()
        for lender in {m.lender_id for m in repo.mandates_for(org, case_id)}:
            case = repo.get_case(lender, case_id)
            if case is not None and case.borrower_id == self._borrower:
                lenders.add(lender)
        return lenders.pop() if len(lenders) == 1 else ""


_REPORT_RULE = "subject_report:lender="
