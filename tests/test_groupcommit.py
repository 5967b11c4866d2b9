"""vault/groupcommit.py on its own: the batching, and the pure steps every backend's commit shares.

The invariant suites (test_audit, test_ports) show the backends keep "no
release before its event is durable"; these tests pin down the parts they are
built from, with an in-memory commit and no database.
"""

from __future__ import annotations

import json
import threading
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import pytest

from gateway.core.errors import Code, CustosError
from gateway.core.model import EventDraft
from gateway.core.ports import StaleView
from gateway.tlog.merkle import Frontier, leaf_hash, root_of
from vault.groupcommit import GroupCommit, Queued, checked, leaf_rows, run_units, with_revision


def draft(n: int, revision: str = "") -> EventDraft:
    return EventDraft(org="agency-1", method="GetCase", purpose="collection", case_id=f"C-{n}", borrower_id=f"B-{n}",
                      decision="allow", code="OK", rule="collection.reminder", time="2026-12-01T00:00:00Z",
                      trace_id="", policy_revision=revision)


def no_savepoint() -> AbstractContextManager[Any]:
    return nullcontext()


def test_with_revision_fills_only_events_without_one() -> None:
    own, bare = draft(1, "sha256:own"), draft(2)
    assert with_revision([own, bare], "sha256:now") == [own, bare]
    assert (own.policy_revision, bare.policy_revision) == ("sha256:own", "sha256:now")


def test_leaf_rows_number_after_the_frontier_and_extend_it() -> None:
    before = [leaf_hash(b"earlier-%d" % i) for i in range(5)]
    frontier = Frontier()
    for lh in before:
        frontier.append(lh)
    rows = leaf_rows(frontier, [draft(1), draft(2), draft(3)])
    assert [r[0] for r in rows] == [5, 6, 7]
    for seq, leaf, lh, time, org, case_id, borrower_id in rows:
        assert lh == leaf_hash(leaf) and json.loads(leaf)["seq"] == seq
        assert (time, org, case_id, borrower_id) == ("2026-12-01T00:00:00Z", "agency-1", f"C-{seq - 4}", f"B-{seq - 4}")
    assert frontier.size == 8 and frontier.root() == root_of(before + [r[2] for r in rows])


def test_run_units_undoes_a_failing_writer_alone_and_keeps_the_others_events() -> None:
    def ok(n: int) -> Any:
        return lambda _store: (f"result-{n}", [draft(n)])

    def broken(_store: Any) -> Any:
        raise KeyError("a value that must not be logged")

    def refused(_store: Any) -> Any:
        raise CustosError(Code.CASE_NOT_FOUND)

    batch: list[Queued[Any]] = [Queued(ok(1)), Queued(broken), Queued(refused), Queued(ok(2), writes=False)]
    events = run_units(batch, store=object(), savepoint=no_savepoint, revision="sha256:r")
    assert [e.case_id for e in events] == ["C-1", "C-2"] and {e.policy_revision for e in events} == {"sha256:r"}
    assert batch[0].result == "result-1" and batch[3].result == "result-2"
    assert isinstance(batch[1].error, CustosError) and batch[1].error.code == Code.INTERNAL
    assert "must not be logged" not in str(batch[1].error)
    assert isinstance(batch[2].error, CustosError) and batch[2].error.code == Code.CASE_NOT_FOUND
    assert batch[1].events == [] and batch[2].events == []


def test_run_units_lets_a_backend_failure_through_to_fail_the_batch() -> None:
    class Lost(Exception):
        pass

    def lost(_store: Any) -> Any:
        raise Lost

    with pytest.raises(Lost):
        run_units([Queued(lost)], store=object(), savepoint=no_savepoint, revision="", passthrough=(Lost,))


def test_checked_drops_the_events_of_a_view_that_went_stale() -> None:
    fresh, stale, checked_unit = Queued[Any](lambda s: (None, []), writes=False, fresh_as=7), \
        Queued[Any](lambda s: (None, []), writes=False, fresh_as=6), Queued[Any](lambda s: (None, []))
    fresh.events, stale.events, checked_unit.events = [draft(1)], [draft(2)], [draft(3)]
    kept = checked([fresh, stale, checked_unit], [draft(1), draft(2), draft(3)], generation=lambda: 7)
    assert [e.case_id for e in kept] == ["C-1", "C-3"]
    assert isinstance(stale.error, StaleView) and fresh.error is None and checked_unit.error is None


def test_checked_reads_no_generation_when_no_unit_carries_one() -> None:
    def never() -> int:
        raise AssertionError("read the generation")

    events = [draft(1)]
    assert checked([Queued[Any](lambda s: (None, events))], events, generation=never) is events


class Memory(GroupCommit):
    """An in-memory commit: what a backend does, minus the database; counts batches."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.stored: list[EventDraft] = []
        self.batches: list[int] = []
        self.fail = fail

    def _commit(self, batch: list[Queued[Any]]) -> None:
        if self.fail:
            raise OSError("disk gone")
        events = run_units(batch, store=self, savepoint=no_savepoint, revision="sha256:m")
        self.batches.append(len(batch))
        self.stored.extend(events)


def test_every_caller_returns_only_with_its_events_stored_one_batch_or_many() -> None:
    log = Memory()
    results: dict[int, Any] = {}
    gate = threading.Barrier(16)

    def call(n: int) -> None:
        gate.wait(timeout=10)
        results[n] = log.run(lambda _store: (n, [draft(n)]))
        assert any(e.case_id == f"C-{n}" for e in log.stored)  # stored before the caller got its result

    threads = [threading.Thread(target=call, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == {n: n for n in range(16)}
    assert sorted(e.case_id for e in log.stored) == sorted(f"C-{n}" for n in range(16))
    assert sum(log.batches) == 16


def test_a_commit_that_raises_refuses_every_caller_of_its_batch() -> None:
    log = Memory(fail=True)
    with pytest.raises(CustosError) as info:
        log.append([draft(1)])
    assert info.value.code == Code.AUDIT_UNAVAILABLE and log.stored == []


def test_a_closed_log_takes_no_more_work() -> None:
    log = Memory()
    assert log.close(timeout=1)
    with pytest.raises(CustosError) as info:
        log.run(lambda _store: (None, []))
    assert info.value.code == Code.SHUTTING_DOWN
