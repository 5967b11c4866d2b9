"""The audit log over PostgreSQL: one transaction per group commit, the sequence and tree head locked in it.

The leader of a batch (vault/groupcommit.py) takes one pooled connection and,
in one transaction: runs each unit in a savepoint, locks the single row of
`audit_head` (FOR UPDATE), reads the change counter, refuses the events of
any read decided on an older counter (StaleView: the caller decides again),
numbers the rest after the size it finds, extends the stored frontier over
their leaf hashes, inserts them, stores the new head, and commits. Replicas
therefore append to one sequence and one tree: the second of two concurrent
commits waits for the first and continues from its head. Case changes and
their events commit together. A deadlock between replicas (each holding a
borrower lock the other's batch needs) rolls one batch back whole, and it is
run again from the start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import psycopg
import psycopg.errors
import psycopg_pool

from gateway.core.errors import Code, CustosError
from gateway.core.model import EventDraft
from gateway.tlog.merkle import Frontier
from gateway.tlog.proofs import TILE
from vault.crypto import BlindIndex, FieldCipher
from vault.groupcommit import GroupCommit, Queued, checked, leaf_rows, run_units

from .auditstore import PgAuditStore
from .schema import FACTS_EVERY, FEED_NUMBER
from .store import PgStore

log = logging.getLogger("custos.audit")

RETRIES = 3  # a batch rolled back by a deadlock or a serialization failure is run again this many times
CONFLICTS = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)


class PgAuditLog(GroupCommit):
    def __init__(self, pool: psycopg_pool.ConnectionPool[Any], cipher: FieldCipher, bidx: BlindIndex,
                 policy_revision: Callable[[], str], observe: Callable[[int], None] = lambda _n: None) -> None:
        super().__init__()
        self._observe = observe  # each commit's reading of the change counter, for this replica's row cache
        self._pool = pool
        self._cipher = cipher
        self._bidx = bidx
        self._revision = policy_revision
        self._size = 0
        # Test hook: a callable run just before COMMIT (fault injection).
        self.before_commit: Callable[[], None] | None = None
        self._reads = PgAuditStore(pool.connection)  # stateless: a pooled connection per statement, any thread
        self._catch_up_tiles()

    def _catch_up_tiles(self) -> None:
        """Tiles for a log written before they existed (schema version 4); idempotent across replicas."""
        with self._pool.connection() as conn, conn.transaction():
            tables = PgAuditStore(lambda: nullcontext(conn))
            row = conn.execute("SELECT size FROM audit_head WHERE id = 1").fetchone()
            size, tiled = int(row[0]) if row else 0, tables.audit_noded_size()
            if tiled // TILE < size // TILE:
                tables.store_nodes(tiled, size)

    @property
    def size(self) -> int:
        """The tree size after this replica's last commit (others may have appended since)."""
        return self._size

    def head(self) -> tuple[int, bytes]:
        """(size, root) of the one tree as committed now, by any replica."""
        try:
            with self._pool.connection() as conn:
                row = conn.execute("SELECT size, root FROM audit_head WHERE id = 1").fetchone()
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout):
            raise CustosError(Code.AUDIT_UNAVAILABLE, "the database cannot be reached") from None
        assert row is not None
        return int(row[0]), bytes(row[1])

    def reads(self) -> PgAuditStore:
        """The log's reads (the core's AuditReader), through the pool: one for every thread."""
        return self._reads

    def _commit(self, batch: list[Queued[Any]]) -> None:
        for attempt in range(RETRIES + 1):
            for item in batch:
                item.result, item.error = None, None
            try:
                self._attempt(batch)
                return
            except CONFLICTS:
                log.warning("audit batch rolled back by a conflict between replicas; running it again",
                            extra={"event": "audit_batch_retried"})
                if attempt == RETRIES:
                    self._fail(batch, "commit")
                    return
            except (psycopg.OperationalError, psycopg_pool.PoolTimeout):
                log.error("the database cannot be reached; refusing the batch", extra={"event": "database_unreachable"})
                self._fail(batch, "connect")
                return
            except BaseException:  # noqa: BLE001 - any failure to commit refuses the whole batch
                self._fail(batch, "commit")
                return

    def _attempt(self, batch: list[Queued[Any]]) -> None:
        """The batch in one transaction: each unit in a savepoint inside it, then the events; all or nothing."""
        revision = self._revision()
        size = self._size
        # A batch of appends only (reads, denials) runs in pipeline mode: statements go out together and
        # the server answers them in order, so it costs two round trips (BEGIN, the head, the counter;
        # then the rows, the head, COMMIT). Units need each statement's answer (row counts) before the next.
        pipelined = not any(item.writes for item in batch)
        with self._pool.connection() as conn, conn.pipeline() if pipelined else nullcontext(), conn.transaction():
            store = PgStore(lambda: nullcontext(conn), self._cipher, self._bidx)
            events = run_units(batch, store, conn.transaction, revision, (*CONFLICTS, psycopg.OperationalError))
            # The head first, then the counter in a statement of its own: one that started after the lock
            # was granted sees every change whose events precede ours in the log (a statement that waited
            # for the lock would read the counter from before the wait).
            locked = conn.execute("SELECT size, frontier FROM audit_head WHERE id = 1 FOR UPDATE")
            counter = conn.execute("SELECT n FROM generation WHERE id = 1")
            head, generation = locked.fetchone(), counter.fetchone()
            assert head is not None and generation is not None
            if not pipelined:  # the batch's change feed entries, numbered in commit order (under the head lock)
                conn.execute(FEED_NUMBER)
            seen = int(generation[0])
            events = checked(batch, events, lambda: seen)
            if events:
                before = int(head[0])
                size = self._append(conn, Frontier.loads(before, str(head[1])), events)
                if size // TILE > before // TILE:  # derived, in the same commit: tiles never lag the head
                    PgAuditStore(lambda: nullcontext(conn)).store_nodes(before, size)
                if size // FACTS_EVERY > before // FACTS_EVERY:  # what audit stats groups by, likewise
                    PgAuditStore(lambda: nullcontext(conn)).derive_facts(before, size)
            if self.before_commit is not None:
                self.before_commit()
        self._size = size
        self._observe(seen)

    @staticmethod
    def _append(conn: psycopg.Connection[Any], frontier: Frontier, events: list[EventDraft]) -> int:
        rows = leaf_rows(frontier, events)
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO audit_events(seq, leaf, leaf_hash, time, org, case_id, borrower_id)"
                            " VALUES (%s, %s, %s, %s, %s, %s, %s)", rows)
        conn.execute("UPDATE audit_head SET size = %s, root = %s, frontier = %s WHERE id = 1",
                     (frontier.size, frontier.root(), frontier.dumps()))
        return frontier.size
