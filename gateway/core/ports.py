"""The ports the core depends on: storage of cases, the unit of work, the audit log and its reads. Protocols only.

The core is written against these and nothing else; each storage backend
(`vault/sqlite`, the embedded default, and later PostgreSQL) implements them,
and one contract suite (tests/test_ports.py) checks every implementation.
Typed rows from `model` cross the boundary, never tuples or dicts.

What an implementation promises:

- A `CaseReader` is one request's view of the store. After `refresh()` every
  read is as fresh as a new query at that moment: a change committed anywhere
  before `refresh()` returned is seen. A reader may cache, but only what it
  can prove fresh, and it never holds plaintext personal data. `assume()`
  instead picks the reader's cached view without asking the store (None if it
  checked after all) and returns its generation: whatever is decided on it is
  proven fresh only at the commit of its events, by passing the generation as
  `fresh_as` to the audit log.
- A `UnitOfWork` runs inside one transaction of the audit log's writer
  (`AuditLog.run`): everything it changes commits together with the events it
  returns, or none of it does. `lock_borrower` serialises the decisions about
  one borrower (contact caps) against every other unit of work, in any
  process, until the commit.
- The `AuditLog` numbers events and extends the Merkle tree inside the commit
  that stores them: one sequence, one tree, whoever writes. A caller of `run`
  gets its result only once its events are durable; if they cannot be made
  durable it gets AUDIT_UNAVAILABLE and nothing of its unit is stored. Given
  `fresh_as`, it stores the events only if no change to cached rows has
  committed since that generation (read inside the commit, so a change
  acknowledged before is always seen), and otherwise raises StaleView and
  stores nothing of the call.
- An `AuditReader`, from `AuditLog.reads()`, reads the log: its events, the
  tree's stored entries, the checkpoints published and the cosignatures. A
  read sees every commit of the log that returned before it started.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import date
from typing import Any, Protocol, TypeVar

from .model import (
    AuditEntry,
    CaseRow,
    ContactRow,
    EventDraft,
    ImportedCase,
    ImportOutcome,
    LoanRow,
    MandateRow,
    Org,
    PaymentRow,
    PlanRow,
    RegionalLicence,
    Repayment,
    Unsealer,
)

T = TypeVar("T")


class CaseReader(Protocol):
    """Reads for one request (see the module docstring for freshness)."""

    def refresh(self) -> None: ...

    def assume(self) -> int | None: ...

    def memo(self, key: tuple[Any, ...]) -> Any: ...

    def remember(self, key: tuple[Any, ...], value: Any, case: str = "") -> None:
        """Keep a value derived from cached rows: of orgs and of the case with id `case` only (its borrower, loan and
        mandates), or of anything (no case). It goes with the next change that could alter those rows."""

    def get_org(self, org_id: str) -> Org | None: ...

    def org_name(self, org_id: str) -> str: ...

    def get_case(self, lender: str, case_id: str) -> CaseRow | None: ...

    def cases_of_lender(self, lender: str) -> list[CaseRow]: ...

    def cases_by_index(self, lender: str, field: str, value: str) -> list[CaseRow]: ...

    def mandates_for(self, org_id: str, case_id: str) -> Sequence[MandateRow]: ...

    def mandates_of_org(self, org_id: str) -> list[MandateRow]: ...

    def mandates_of_case(self, lender: str, case_id: str) -> list[MandateRow]: ...

    def feed_high_water(self) -> int:
        """The change feed's number of the last committed change (every change up to it is committed)."""

    def feed_changes(self, org_id: str, purpose: str, after: tuple[int, str, str], upto: int,
                     limit: int) -> list[tuple[int, str, str]]:
        """(number, lender, case id) of each case changed after `after` (in that order) and up to `upto` that
        `org_id` holds or held a mandate of for `purpose`, in that order; at most `limit`."""

    def loan_values(self, case: CaseRow) -> LoanRow | None:
        """None also when the borrower was erased (the terms went with the data key)."""

    def cases_of_borrower(self, lender: str, borrower_id: str) -> list[CaseRow]: ...

    def borrower_erased(self, lender: str, borrower_id: str) -> bool: ...

    def due_erasures(self, now: str) -> list[tuple[str, str]]:
        """(lender, borrower) of every pending erasure due at `now` (RFC 3339)."""

    def retention_candidates(self, closed_before: str, lender: str = "") -> list[tuple[str, str]]:
        """(lender, borrower) not erased nor pending whose cases are all settled or closed, the last before `closed_before`.

        A restricted borrower (erasure refused under a hold) is a candidate: retention still runs out.
        """

    def kek_usage(self) -> dict[int, int]:
        """How many data keys each KEK version wraps (erased borrowers have none)."""

    def unsealer(self, case: CaseRow, fields: Iterable[str]) -> Unsealer: ...

    def borrower_values(self, case: CaseRow, fields: Iterable[str]) -> dict[str, str]: ...

    def contact_history(self, case: CaseRow) -> list[ContactRow]: ...

    def feed_head(self, bureau: str) -> int: ...

    # ---- opt-outs (issue 26): `policy explain` reads the borrower's opt-outs and unreachability evidence
    def contacts_since(self, lender: str, borrower_id: str, since: str) -> list[ContactRow]: ...

    def bidx(self, lender: str, field: str, value: str) -> bytes: ...

    # ---- promises and plans
    def get_plan(self, plan_id: str) -> PlanRow | None:
        """One plan by id, as committed (not cached: read only for a case whose `active_plan` is set)."""

    def plans_of_case(self, lender: str, case_id: str) -> list[PlanRow]:
        """Every plan of the case, newest proposal first."""

    def plan_reason(self, plan: PlanRow) -> str | None:
        """The plan's rejection reason opened with its borrower's key; None without one or once erased."""
    # ---- payments reported by those who collect (usecases/payments.py)
    def get_payment(self, payment_id: str) -> PaymentRow | None: ...

    def payment_by_reference(self, lender: str, org_id: str, reference: str) -> PaymentRow | None: ...

    def payments_of_lender(self, lender: str, status: str = "", org_id: str = "") -> list[PaymentRow]:
        """The lender's payments (optionally of one status and one reporting org), in the order reported."""

    def confirmed_payments(self, start: str, end: str, lender: str = "", org_id: str = "") -> list[PaymentRow]:
        """Payments confirmed at `start` <= decided_at < `end` (RFC 3339) of the lender and/or reporting org."""

    def payment_reason(self, payment: PaymentRow) -> str | None:
        """A rejected payment's reason, opened (None: none, or the borrower's data key is gone)."""

    # ---- EU (issue 26): forbearance measures, and a lender's mandates for its record of processing
    def forbearance_of(self, lender: str, case_id: str) -> list[tuple[str, str]]:
        """(measure, YYYY-MM-DD) of every forbearance measure recorded on the case, earliest day first."""

    def mandates_of_lender(self, lender: str) -> list[MandateRow]:
        """Every mandate the lender granted, recalled ones too, oldest first (the record of processing filters)."""


class AuditReader(Protocol):
    """The audit log's reads: its events, the tree's stored entries, published checkpoints and cosignatures.

    Apart from `CaseReader` because they are the log's, not the cases': each
    backend keeps them beside its audit log (`AuditLog.reads`). Every read
    is as fresh as a new query: what the log committed before the call is seen.
    """

    def audit_query(self, case_id: str = "", org: str = "", borrower_id: str = "", since: str = "",
                    from_seq: int = 0) -> Iterator[AuditEntry]:
        """Events matching every filter, in log order, from `from_seq` on (one read snapshot)."""

    def audit_stats(self, start: str, end: str, by: Sequence[str], size: int,
                    lender: str = "") -> dict[tuple[str, ...], int]:
        """Events per group (rules/auditstats.py) among the first `size` with a time in [start, end), and for a
        lender only those naming it: the derived facts where they exist, the tail counted from its leaves."""

    def audit_nodes(self, level: int, start: int, end: int) -> list[bytes]:
        """Stored tree entries of `level` from index `start` on, up to `end`, as far as they run without a gap."""

    def audit_leaf_hash_range(self, start: int, end: int) -> list[bytes]:
        """The leaf hashes of events [start, end), in order."""

    def audit_tile_inner(self, level: int, index: int) -> bytes | None:
        """The stored interior of full tile `index` of `level` (proofs.pyramid), or None."""

    def latest_checkpoint(self) -> tuple[int, str] | None:
        """(size, note) of the largest published checkpoint, or None."""

    def published_checkpoint(self, size: int) -> str | None:
        """The note published for a tree of `size`, or None."""

    def cosigned(self) -> list[tuple[str, str, int, str, str]]:
        """The latest cosignature of each cosigner: (cosigner, vkey, size, note, signature line)."""


class UnitOfWork(CaseReader, Protocol):
    """The store inside the audit log's write transaction."""

    def lapse_mandates(self, ended_before: str, now: str) -> int:
        """Mark open mandates whose last day is before `ended_before` as lapsed (the change feed sees it)."""

    def bidx(self, lender: str, field: str, value: str) -> bytes: ...

    def lock_borrower(self, lender: str, borrower_id: str) -> None: ...

    def insert_org(self, org: Org, now: str) -> None: ...

    def set_org_disabled(self, org_id: str, disabled: bool = True) -> int: ...

    # ---- licences (issue 26)
    def set_org_licences(self, org_id: str, licences: Sequence[RegionalLicence]) -> int:
        """Replace an org's regional licences (in its row: a change drops every remembered grant); rows changed."""
        ...

    def set_case_fields(self, lender: str, case_id: str, values: Mapping[str, Any], now: str) -> None: ...

    def insert_mandate(self, lender: str, case_id: str, org_id: str, purpose: str, label: str, until: date,
                       now: str, commission: str | None = None) -> None: ...

    def recall_mandates(self, lender: str, case_id: str, org_id: str, now: str, purpose: str | None = None) -> int: ...

    def cases_by_id(self, lender: str, case_ids: Sequence[str]) -> dict[str, CaseRow]: ...

    def grant_mandates(self, lender: str, grants: Sequence[tuple[str, str, str, str, date, str | None]],
                       now: str) -> None:
        """Many `assign`s at once, (case_id, org_id, purpose, label, until, commission) each: the same purpose's
        live mandate of that org on the case ends and the new one starts, in as few statements as the backend can."""

    def set_negative_notice(self, case: CaseRow, on: str) -> None: ...

    # ---- EU (issue 26)
    def add_forbearance(self, lender: str, case_id: str, measure: str, on: str, now: str) -> None:
        """Record a forbearance measure on the case (CCD Art. 35), dated `on` (YYYY-MM-DD)."""

    def update_loan(self, case: CaseRow, values: Mapping[str, Any], now: str) -> None:
        """Set the case's loan figures (`vault.records.UPDATABLE_LOAN`: decimal and date strings, `repayments` the
        whole ledger as Repayment rows); the change feed numbers the case."""

    def correct_borrower(self, case: CaseRow, values: Mapping[str, str], now: str) -> None:
        """Replace borrower PI fields (sealed as at import; the blind indexes follow national_id and phone)."""

    def last_update(self, lender: str, case_id: str) -> tuple[str, bytes] | None:
        """(as_of, keyed digest) of the last account update applied to the case; None before the first."""

    def set_last_update(self, lender: str, case_id: str, as_of: str, digest: bytes, now: str) -> None: ...

    def set_erasure(self, lender: str, borrower_id: str, state: str, due: str | None, now: str) -> None:
        """Every case of the borrower: erasure "" (none) or "pending" until `due`."""

    def touch_generation(self) -> None:
        """Move the row caches' counter: every replica drops its cached rows (a KEK version is retired)."""

    def rewrap_keys(self, limit: int) -> int:
        """Up to `limit` data keys moved from older KEK versions to the primary; how many. No field is decrypted."""

    def erase_borrower(self, lender: str, borrower_id: str, now: str) -> None:
        """Destroy the borrower's wrapped data key, every value sealed under it, blind indexes and keyed digests."""

    def import_cases(self, lender: str, cases: Sequence[ImportedCase], now: str) -> list[ImportOutcome]:
        """Store validated cases in order, each seeing the ones before it; per case what became of it
        (`ImportOutcome`: STORED, or why not). A refused case writes nothing."""

    def savepoint(self) -> Any: ...

    def insert_contact(self, lender: str, case_id: str, borrower_id: str, org_id: str, channel: str, party: str,
                       target: bytes, opened_at: str) -> str: ...

    def contacts_since(self, lender: str, borrower_id: str, since: str) -> list[ContactRow]: ...

    def get_contact(self, contact_id: str) -> ContactRow | None: ...

    def set_contact_result(self, contact_id: str, result: str, now: str) -> None: ...

    def lock_feed(self, bureau: str) -> None: ...

    def insert_checkpoint(self, size: int, note: str, at: str) -> None: ...

    def insert_cosignature(self, org: str, cosigner: str, vkey: str, size: int, note: str, line: str,
                           at: str) -> None: ...

    def last_furnished(self, bureau: str, lender: str, case_id: str) -> tuple[int, bytes, str] | None: ...

    def record_furnished(self, bureau: str, lender: str, case_id: str, digest: bytes, condition: str,
                         at: str) -> int: ...

    # ---- promises and plans
    def set_promise(self, contact_id: str, amount: str, on: str) -> None:
        """A promise to pay's terms on its contact (its result is set by `set_contact_result`)."""

    def insert_plan(self, case: CaseRow, org_id: str, instalments: Sequence[Repayment], now: str) -> str:
        """A proposed plan of `org_id` on the case; its id ("PL-" and hex)."""

    def set_plan_status(self, plan: PlanRow, status: str, now: str, reason: str | None = None) -> None:
        """Decide a plan (or supersede it); a reason is sealed under the borrower's data key."""

    def set_active_plan(self, case: CaseRow, plan_id: str | None, now: str) -> None:
        """The case's accepted plan (the change feed numbers the case)."""
    # ---- payments reported by those who collect (usecases/payments.py)
    def insert_payment(self, payment: PaymentRow) -> bool:
        """Store a reported payment; False (nothing stored) when its (lender, org, reference) is taken."""

    def decide_payment(self, payment: PaymentRow, status: str, decided_at: str, commission: str | None,
                       reason: str | None) -> bool:
        """Confirm or reject a payment still `reported` (False: it was not); the reason sealed under the
        borrower's data key."""

    # ---- mandates (issue 26)
    def set_mandate_records(self, lender: str, records: Sequence[tuple[str, str, str, str | None, str | None]]
                            ) -> None:
        """Name the agreement and impact-assessment references of live mandates, each (case, org, purpose,
        agreement, pia); called in the unit of work that granted them."""

    # ---- opt-outs and call recordings (issue 26)
    def set_recording(self, contact_id: str, ref: str, until: str) -> None:
        """A call recording's opaque reference on its contact, kept past an erasure until `until` (RFC 3339)."""

    def purge_recordings(self, now: str) -> int:
        """Drop the references of erased borrowers' recordings whose keeping period ended before `now`; how many."""


Work = Callable[[UnitOfWork], tuple[T, list[EventDraft]]]


class StaleView(Exception):
    """The unchecked view (`CaseReader.assume`) an append was decided on changed before the commit: decide again."""


class AuditLog(Protocol):
    def run(self, work: Work[T], *, writes: bool = True) -> T: ...

    def append(self, events: list[EventDraft], *, fresh_as: int | None = None) -> None: ...

    def head(self) -> tuple[int, bytes]: ...

    def reads(self) -> AuditReader:
        """The log's reads for the calling thread (a backend may keep a connection per thread)."""

    def close(self, timeout: float) -> bool: ...


class KeyVersions(Protocol):
    """The KEK versions a vault holds (`custos keys status` and `retire` compare them with `kek_usage`)."""

    def versions(self) -> list[int]: ...

    def primary_version(self) -> int: ...


class Vault(Protocol):
    """An opened data directory's storage, whichever backend (`vault.backends.open_vault`).

    What the rest of the gateway needs of it: a reader per thread and the
    audit log (which the core takes), the key versions and the blind-index
    key (the server derives its pseudonym key from it), the policy revision
    stamped on events, the store's step after an erasure (`forget`), and
    `close`. The directory's files are `vault.datadir.Layout`'s, not the vault's.
    """

    policy_revision: str

    @property
    def audit(self) -> AuditLog: ...

    @property
    def bidx_key(self) -> bytes: ...

    @property
    def kek(self) -> KeyVersions: ...

    def reader(self) -> CaseReader: ...

    def forget(self) -> bool: ...

    def close(self) -> None: ...
