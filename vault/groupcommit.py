"""Group commit: every unit of work and its audit events, batched into one commit per leader.

Callers submit a unit of work; whoever finds no commit in progress becomes the
leader, commits every queued unit at once (`_commit`, the backend's), and
wakes the rest. No dedicated writer thread, so a call that finds the log idle
pays no thread hand-off; under load one fsync covers many calls. Each caller
returns only after the commit holding its events succeeded: nothing is
released before its audit event is durable. If the commit fails, every caller
in the batch gets AUDIT_UNAVAILABLE and nothing of the batch is stored.
Backend-independent: `vault/sqlite` and `vault/postgres` subclass it and implement `_commit`
over a batch of `Queued` units (the one type they share with it).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from gateway.core.errors import Code, CustosError
from gateway.core.model import EventDraft
from gateway.core.ports import StaleView, Work
from gateway.tlog.merkle import Frontier, leaf_hash

log = logging.getLogger("custos.audit")

T = TypeVar("T")


@dataclass
class Queued(Generic[T]):
    """One caller's unit of work waiting for a commit: what a backend's `_commit` reads and answers.

    Public because it is the contract between the batching and a backend: the
    commit reads `work`, `writes` and `fresh_as`, and sets `result` or `error`
    of each (through `run_units`, `checked` and `_fail`); nothing else of it.
    """

    work: Work[T]
    done: bool = False
    result: Any = None
    error: BaseException | None = None
    writes: bool = True  # False: only events, no case-data change (skips the case-database transaction)
    # The generation of the unchecked view the events were decided on (`CaseReader.assume`); None: checked.
    # Only for an append (writes=False): a stale unit would have changed rows already.
    fresh_as: int | None = None
    events: list[EventDraft] = field(default_factory=list)
    # Held while the caller waits; released exactly once: when its batch is
    # durable, or to make it the next leader. No broadcast wakes every waiter.
    wake: threading.Lock = field(default_factory=threading.Lock)


class GroupCommit:
    """The batching half of an audit log; subclasses commit a batch."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._pending: list[Queued[Any]] = []
        self._leading = False
        self._closed = False
        self._idle = threading.Condition(self._mutex)
        # `serve --metrics`: told each batch's number of units (gateway/transport/metrics.py); None: not watched.
        self.observe_batch: Callable[[int], None] | None = None

    def close(self, timeout: float) -> bool:
        """Refuse new work; wait (at most `timeout` s) for the commit in progress. True if none was left running."""
        with self._mutex:
            self._closed = True
            return self._idle.wait_for(lambda: not self._leading, timeout)

    def run(self, work: Work[T], *, writes: bool = True) -> T:
        """Run `work` in the serialised writer; return its result once its events are durable."""
        return self._submit(Queued(work, writes=writes))

    def _submit(self, item: Queued[T]) -> T:
        item.wake.acquire()
        with self._mutex:
            if self._closed:
                raise CustosError(Code.SHUTTING_DOWN)
            self._pending.append(item)
            lead = not self._leading
            self._leading = True
        if not lead:
            item.wake.acquire()  # until our batch is durable, or we are handed the lead
        if not item.done:
            self._lead(item)
        if item.error is not None:
            raise item.error
        return item.result  # type: ignore[no-any-return]

    def _lead(self, own: Queued[Any]) -> None:
        """Commit everything pending (our own unit included), wake its callers, pass the lead on."""
        with self._mutex:
            batch, self._pending = self._pending, []
        if self.observe_batch is not None:
            self.observe_batch(len(batch))
        try:
            self._commit(batch)
        except Exception:  # noqa: BLE001 - a backend's commit that raised outside its own guard
            # Nothing of the batch is known to be stored: refuse every caller of it (else all but the
            # leader would wake with no error and no result, as if their units had been stored).
            self._fail(batch, "commit")
        finally:
            for item in batch:
                item.done = True
                if item is not own:
                    item.wake.release()
            with self._mutex:
                successor = self._pending[0] if self._pending else None
                self._leading = successor is not None
                if successor is None:
                    self._idle.notify_all()
            if successor is not None:
                successor.wake.release()

    def append(self, events: list[EventDraft], *, fresh_as: int | None = None) -> None:
        """Record events that change nothing else (denials, reads); see `ports.AuditLog` for `fresh_as`."""
        self._submit(Queued(lambda _repo: (None, events), writes=False, fresh_as=fresh_as))

    def _commit(self, batch: list[Queued[Any]]) -> None:
        """Run the batch's units and make their events durable in one commit; set each item's result or error."""
        raise NotImplementedError

    @staticmethod
    def _fail(batch: list[Queued[Any]], stage: str) -> None:
        log.error("audit log write failed at %s; refusing the batch", stage,
                  extra={"event": "audit_write_failed", "stage": stage})
        for item in batch:
            item.error = CustosError(Code.AUDIT_UNAVAILABLE)
            item.result = None
            item.done = True


def run_units(batch: list[Queued[Any]], store: Any, savepoint: Callable[[], AbstractContextManager[Any]],
              revision: str, passthrough: tuple[type[BaseException], ...] = ()) -> list[EventDraft]:
    """Run each unit of the batch, a writing one in its own savepoint; return every unit's events.

    A unit that raises is undone alone and gets its error (INTERNAL unless it
    raised a CustosError); its events are dropped. Exceptions in `passthrough`
    (the backend's: a lost connection, a deadlock) fail the whole batch instead.
    """
    events: list[EventDraft] = []
    for item in batch:
        item.events = []
        if not item.writes:
            item.result, drafts = item.work(store)
        else:
            try:
                with savepoint():
                    item.result, drafts = item.work(store)
            except passthrough:
                raise
            except BaseException as exc:  # noqa: BLE001 - the unit's own failure: undo it alone
                item.error = exc if isinstance(exc, CustosError) else _internal(exc)
                continue
        item.events = with_revision(drafts, revision)
        events.extend(item.events)
    return events


def checked(batch: list[Queued[Any]], events: list[EventDraft], generation: Callable[[], int]) -> list[EventDraft]:
    """The events still to store once each unchecked view is checked against the store's generation now.

    An item decided on a generation that is no longer current gets StaleView
    and its events are dropped: its caller decides again on a fresh view. The
    generation is read only if some item carries one.
    """
    if all(item.fresh_as is None for item in batch):
        return events
    now = generation()
    kept: list[EventDraft] = []
    for item in batch:
        if item.fresh_as is not None and item.fresh_as != now and item.error is None:
            item.error, item.result = StaleView(), None
        elif item.error is None:
            kept.extend(item.events)
    return kept


def leaf_rows(frontier: Frontier, events: list[EventDraft]) -> list[tuple[Any, ...]]:
    """Number the events after `frontier` (which it extends): each as (seq, leaf, leaf hash, time, org, case, borrower)."""
    rows = []
    for draft in events:
        seq = frontier.size
        leaf = draft.leaf_bytes(seq)
        lh = leaf_hash(leaf)
        frontier.append(lh)
        rows.append((seq, leaf, lh, draft.time, draft.org, draft.case_id, draft.borrower_id))
    return rows


def with_revision(drafts: list[EventDraft], revision: str) -> list[EventDraft]:
    """Events without a policy revision of their own carry the one in force at the commit."""
    for draft in drafts:
        if not draft.policy_revision:
            draft.policy_revision = revision
    return drafts


def _internal(exc: BaseException) -> CustosError:
    # Log the type only: exception text from lower layers might hold a value.
    log.error("unit of work failed: %s", type(exc).__name__,
              extra={"event": "unit_of_work_failed", "error": type(exc).__name__})
    return CustosError(Code.INTERNAL)
