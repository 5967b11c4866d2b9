"""The embedded store's audit log: group-committed (vault/groupcommit.py) over two SQLCipher files.

The leader runs every queued unit in one case-database transaction (each in
its own savepoint), appends their audit events as Merkle leaves to audit.db,
and commits. The audit file commits first: if the case database then failed,
the log would over-report, never under-report. Several processes may serve
one directory (`serve --processes`): each leader holds the directory's write
lock (vault.datadir.WriteLock) across its commit, so the sequence is the
database's and commits come one after another; `head` reads the log's end
from the file, so every process signs and proves the one tree.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any, TypeVar

from gateway.core.errors import Code, CustosError
from gateway.core.model import EventDraft
from gateway.tlog.merkle import Frontier
from gateway.tlog.proofs import TILE
from vault.groupcommit import GroupCommit, Queued, checked, leaf_rows, run_units
from vault.rowcache import Stamp

from .auditstore import AuditStore
from .db import Connection, DbError, IntegrityError
from .store import Repo

log = logging.getLogger("custos.audit")

T = TypeVar("T")


class AuditLog(GroupCommit):
    # Once this many events wait, the commit that crosses the mark also adds them
    # to the query index as one sorted run (AuditStore.mark_audit; runs are merged
    # `run_fanout` at a time, like a small LSM tree) and stores the tree head.
    # Queries read the runs up to `indexed_upto` and scan the short tail
    # (AuditStore.audit_query); on open the head is brought forward over the leaf
    # hashes after it. Checkpoints are signed over the in-memory head of
    # committed events (`head`).
    index_every = 256
    run_fanout = 8

    def __init__(self, repo: Repo, tables: AuditStore, policy_revision: Callable[[], str], *,
                 write_lock: AbstractContextManager[Any] | None = None,
                 reads: Callable[[], AuditStore] | None = None, watch: Stamp | None = None) -> None:
        self._repo = repo
        self.tables = tables  # the log's SQL on the writer's connections
        # The audit file's WAL-index watch: unchanged since our last commit means nobody else appended.
        self._watch = watch
        self._stamp: bytes | None = None
        self._write_lock: AbstractContextManager[Any] = write_lock or nullcontext()
        # A thread's own read connections, for `head` and `reads` (None: this process is the only writer, and
        # reads go through the writer's connections).
        self._reads = reads
        self._head_lock = threading.Lock()
        self._conn: Connection = repo.conn
        self._audit: Connection = tables.audit_conn
        self._revision = policy_revision
        super().__init__()
        head = tables.audit_head()
        frontier = Frontier.loads(head[0], head[2]) if head else Frontier()
        for seq, lh in tables.audit_leaf_hashes(frontier.size):
            if seq != frontier.size:
                log.error("audit log has a gap after the stored tree head; refusing to open it",
                          extra={"event": "audit_gap"})
                raise CustosError(Code.AUDIT_UNAVAILABLE)
            frontier.append(lh)
        self._frontier = frontier
        self._indexed = tables.audit_indexed_upto()
        self._catch_up_tiles()
        # Test hook: a callable run just before COMMIT (fault injection).
        self.before_commit: Callable[[], None] | None = None

    @property
    def size(self) -> int:
        return self._frontier.size

    def head(self) -> tuple[int, bytes]:
        """(size, root) of the tree as committed now, by any process serving the directory.

        The events other processes appended since this one's last commit are
        read from the file (one range read on the primary key) and added to
        the frontier, which is replaced, never changed.
        """
        if self._reads is not None and not self._unchanged():
            self._advance(self._reads().audit_leaf_hashes(self._frontier.size))
        frontier = self._frontier
        return frontier.size, frontier.root()

    def reads(self) -> AuditStore:
        """The log's reads (the core's AuditReader) on this thread's own connections, or the writer's."""
        return self._reads() if self._reads is not None else self.tables

    def _unchanged(self) -> bool:
        """Whether no commit to the audit file happened since this process's last one (no SQL, no system call)."""
        stamp = self._watch.stamp() if self._watch is not None else None
        return stamp is not None and stamp == self._stamp

    def _advance(self, rows: Iterator[tuple[int, bytes]]) -> None:
        frontier = self._frontier
        grown: Frontier | None = None
        for seq, lh in rows:
            if seq != (grown or frontier).size:
                break  # not contiguous (cannot happen: the sequence is the primary key); keep what is sound
            if grown is None:
                grown = frontier.copy()
            grown.append(lh)
        if grown is not None:
            self._publish(grown)

    def _publish(self, frontier: Frontier) -> None:
        """Make `frontier` the head unless a larger one already is (a commit and a `head` may race)."""
        with self._head_lock:
            if frontier.size > self._frontier.size:
                self._frontier = frontier

    def _commit(self, batch: list[Queued[Any]]) -> None:
        """Run the batch's units on the case database, make their events durable, then commit the units.

        The audit file commits first: if the case database then failed to
        commit, the log would over-report (an event for a change that did not
        happen, and whose result was never released), never under-report.
        """
        with self._write_lock:
            self._commit_locked(batch)

    def _commit_locked(self, batch: list[Queued[Any]]) -> None:
        if not self._unchanged():
            # Another process appended since our last commit: take its events (and index mark) first, under
            # the write lock, so ours are numbered after them at once rather than by a failed INSERT.
            self._advance(self.tables.audit_leaf_hashes(self._frontier.size))
            self._indexed = max(self._indexed, self.tables.audit_indexed_upto())
        main = self._conn
        revision = self._revision()
        # A batch of pure audit appends (reads, denials) never touches the case database.
        writers = [item for item in batch if item.writes]
        writes = bool(writers)
        try:
            if writes:
                # IMMEDIATE: the write lock from the start, so what the units read (a contact cap's count)
                # is what they write against, even beside an operator command writing from another process.
                main.execute("BEGIN IMMEDIATE")
        except DbError:
            self._fail(batch, "begin")
            return
        # A lone writing unit needs no savepoint: if it fails, the transaction is rolled back instead, and
        # that undoes nothing else. A savepoint is not free here: it keeps a copy of every page it changes,
        # and with it an import's cost per case grew with the store (measured, bench/README.md, issue 13).
        lone = writers[0] if len(writers) == 1 else None
        try:
            events = run_units(batch, self._repo, nullcontext if lone is not None else self._repo.savepoint,
                               revision)
            if lone is not None and lone.error is not None:
                main.execute("ROLLBACK")
                writes = False
            events = checked(batch, events, self._repo._generation)
            if events:
                try:
                    self._append(events)
                except IntegrityError:
                    # Another process appended since our head was read (an operator command): take the
                    # sequence and the tree from the database, under its write lock, and number ours after.
                    self._append(events, resync=True)
            if writes:
                main.execute("COMMIT")
        except BaseException:  # noqa: BLE001 - any failure to commit refuses the whole batch
            if writes:
                _rollback(main)
            self._fail(batch, "commit")

    def _append(self, events: list[EventDraft], *, resync: bool = False) -> None:
        """Number the events, make them durable as Merkle leaves; on return they are committed, else none is.

        The sequence is the database's: every row's number is its primary
        key, so a number another process took makes the INSERT fail whole
        (IntegrityError), and the caller retries with `resync`, which reads
        the rows appended since our head under the database's write lock and
        numbers ours after them. The usual batch is one multi-row INSERT
        committing on its own: one statement, one fsync, and the fewest
        hand-offs of the GIL while the other callers wait. A batch that
        crosses the index mark, fills a tile of the tree, is too big for one
        statement, or resyncs is one explicit transaction, in which the index
        mark is read from the database too (another process may have indexed).
        """
        audit = self._audit
        frontier = self._frontier.copy()
        old = frontier.size
        marked = frontier.size + len(events) - self._indexed >= self.index_every
        tiled = (old + len(events)) // TILE > old // TILE  # fills a tile: the tiles commit with the events
        single = not (marked or resync or tiled) and len(events) <= INSERT_CHUNK
        if not single:
            audit.execute("BEGIN IMMEDIATE")
        try:
            indexed = self._indexed if single else self.tables.audit_indexed_upto()
            if resync:
                for seq, lh in self.tables.audit_leaf_hashes(frontier.size):
                    if seq != frontier.size:
                        raise CustosError(Code.AUDIT_UNAVAILABLE, "gap in the stored sequence")
                    frontier.append(lh)
            rows = leaf_rows(frontier, events)
            if self.before_commit is not None:
                self.before_commit()
            self.tables.insert_audit_rows(rows, INSERT_CHUNK)
            if not single and frontier.size - indexed >= self.index_every:
                indexed = self.tables.mark_audit(indexed, frontier, self.run_fanout)
            if frontier.size // TILE > old // TILE:
                self.tables.store_nodes(old, frontier.size)
            if not single:
                audit.execute("COMMIT")
        except BaseException:
            if not single:
                _rollback(audit)
            raise
        self._publish(frontier)
        self._indexed = indexed
        if self._watch is not None:
            self._stamp = self._watch.stamp()  # under the write lock: this commit is the last one

    def _store_nodes(self, old: int, new: int) -> None:
        """Tiles are derived from the committed leaf hashes: one that fails to store is made at the next open."""
        try:
            self.tables.store_nodes(old, new)
        except DbError:
            log.warning("could not store the tree's tiles; proofs compute them until the next open",
                        extra={"event": "tiles_not_stored"})

    def _catch_up_tiles(self) -> None:
        """Tiles for a log written before they existed, or after a failed store (see `_store_nodes`)."""
        tiled = self.tables.audit_noded_size()
        if tiled // TILE < self._frontier.size // TILE:
            self._store_nodes(tiled, self._frontier.size)


INSERT_CHUNK = 500  # rows per statement: 3,500 parameters, well under SQLite's limit of 32,766


def _rollback(conn: Connection) -> None:
    try:
        conn.execute("ROLLBACK")
    except DbError:
        pass
