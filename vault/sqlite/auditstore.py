"""The embedded store's audit log in SQL: its reads (the core's `AuditReader` port) and its leader's writes.

The events, their query index, the tree's stored entries and head live in
audit.db; the checkpoints published and the regulators' cosignatures live in
custos.db (they are written by units of work, `Repo.insert_checkpoint` and
`Repo.insert_cosignature`, in the case database's transaction). So an
`AuditStore` holds a connection to each: a reader thread's own (the audit
file's opened on first use), or the writer's, on which `AuditLog` appends.
It imports no store and no log: `store.py` knows cases only, and the log
(`auditlog.py`) uses this module.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from gateway.core.model import AuditEntry
from gateway.core.rules import auditstats
from gateway.tlog.merkle import Frontier
from gateway.tlog.proofs import contiguous, new_nodes

from .db import DERIVE_FACTS, FACTS_EVERY, TOP_LEVEL, Connection, blob


@functools.cache  # one text per batch size; sizes are bounded by the caller's per-statement limit
def _audit_insert_sql(rows: int) -> str:
    return ("INSERT INTO audit_events(seq, leaf, leaf_hash, time, org, case_id, borrower_id) VALUES "
            + ",".join(["(?,?,?,?,?,?,?)"] * rows))


class AuditStore:
    """The log's SQL over `conn` (custos.db) and the audit file's connection (given, or a factory for lazy opening).

    What the core reads is the `AuditReader` port (gateway/core/ports.py);
    the rest (`insert_audit_rows`, `mark_audit`, `store_nodes` and the reads
    they need) is for the log's leader, on the writer's connections.
    """

    def __init__(self, conn: Connection, *, audit_conn: Connection | None = None,
                 audit_factory: Callable[[], Connection] | None = None) -> None:
        self.conn = conn
        self._audit_conn = audit_conn
        self._audit_factory = audit_factory

    @property
    def audit_conn(self) -> Connection:
        if self._audit_conn is None:
            assert self._audit_factory is not None
            self._audit_conn = self._audit_factory()
        return self._audit_conn

    # ------------------------------------------------------------ published checkpoints (custos.db)
    def published_checkpoint(self, size: int) -> str | None:
        row = self.conn.execute("SELECT note FROM checkpoints WHERE size = ?", (size,)).fetchone()
        return str(row[0]) if row else None

    def latest_checkpoint(self) -> tuple[int, str] | None:
        row = self.conn.execute("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
        return (int(row[0]), str(row[1])) if row else None

    # ------------------------------------------------------------ regulators' cosignatures (custos.db)
    def cosigned(self) -> list[tuple[str, str, int, str, str]]:
        rows = self.conn.execute(
            "SELECT cosigner, vkey, size, note, line FROM cosignatures c WHERE id = (SELECT MAX(id) FROM cosignatures"
            " WHERE cosigner = c.cosigner) ORDER BY cosigner")
        return [(str(a), str(b), int(n), str(d), str(e)) for a, b, n, d, e in rows]

    # ------------------------------------------------------------ the events, their index and the tree (audit.db)
    def audit_query(self, case_id: str = "", org: str = "", borrower_id: str = "", since: str = "",
                    from_seq: int = 0) -> Iterator[AuditEntry]:
        """Events matching every filter, in log order, from one read snapshot.

        With a case, borrower or org filter the indexed part of the log is found
        through the index runs (one seek per run, see `mark_audit`) and the not
        yet indexed tail (fewer than `AuditLog.index_every` events) is scanned;
        both halves are one statement, so they see the same `indexed_upto`.
        """
        conds: list[str] = []
        params: list[Any] = []
        for col, val in (("case_id", case_id), ("org", org), ("borrower_id", borrower_id)):
            if val:
                conds.append(f"e.{col} = ?")
                params.append(val)
        if since:
            conds.append("e.time >= ?")
            params.append(since)
        where = "".join(f" AND {c}" for c in conds)
        key = next((f"{p}:{v}" for p, v in (("c", case_id), ("b", borrower_id), ("o", org)) if v), "")
        if not key:
            sql = f"SELECT e.seq, e.leaf FROM audit_events e WHERE e.seq >= ?{where} ORDER BY e.seq"
            args: list[Any] = [from_seq, *params]
        else:
            upto = "(SELECT COALESCE(MAX(CAST(value AS INTEGER)), 0) FROM meta WHERE key = 'indexed_upto')"
            sql = (f"SELECT e.seq, e.leaf FROM audit_runix x JOIN audit_events e ON e.seq = x.seq"
                   f" WHERE x.run IN (SELECT run FROM audit_runs) AND x.key = ? AND x.seq >= ?"
                   f" AND x.seq < {upto}{where}"
                   f" UNION ALL SELECT e.seq, e.leaf FROM audit_events e WHERE e.seq >= MAX(?, {upto}){where}"
                   f" ORDER BY 1")
            args = [key, from_seq, *params, from_seq, *params]
        for seq, leaf in self.audit_conn.execute(sql, args):
            yield AuditEntry(int(seq), bytes(leaf))

    def audit_stats(self, start: str, end: str, by: Sequence[str], size: int,
                    lender: str = "") -> dict[tuple[str, ...], int]:
        """Events per group among the first `size` in [start, end): grouped in SQL over the derived facts (events
        below `facts_upto`, see `mark_audit`), and the tail after them counted from its leaves.

        The mark is read first: facts below it are committed and never change, so the two halves meet
        exactly even if the index moves on between the statements.
        """
        upto = min(self.audit_facts_upto(), size)
        cols = [f"substr(time, 1, {auditstats.BUCKETS[k]})" if k in auditstats.BUCKETS else k for k in by]
        where = "time >= ? AND time < ? AND seq < ?" + (" AND lender = ?" if lender else "")
        args: list[Any] = [start, end, upto, *([lender] if lender else [])]
        sql = (f"SELECT {', '.join([*cols, 'COUNT(*)'])} FROM audit_facts WHERE {where}"
               + (f" GROUP BY {', '.join(str(i + 1) for i in range(len(cols)))}" if cols else ""))
        counts: dict[tuple[str, ...], int] = {}
        for row in self.audit_conn.execute(sql, args):
            if row[-1]:
                counts[tuple(str(v) for v in row[:-1])] = int(row[-1])
        tail = auditstats.count((bytes(r[0]) for r in self.audit_conn.execute(
            "SELECT leaf FROM audit_events WHERE seq >= ? AND seq < ? AND time >= ? AND time < ?",
            (upto, size, start, end))), by, start, end, lender)
        for key, n in tail.items():
            counts[key] = counts.get(key, 0) + n
        return counts

    def audit_facts_upto(self) -> int:
        row = self.audit_conn.execute("SELECT value FROM meta WHERE key = 'facts_upto'").fetchone()
        return int(row[0]) if row else 0

    def audit_indexed_upto(self) -> int:
        row = self.audit_conn.execute("SELECT value FROM meta WHERE key = 'indexed_upto'").fetchone()
        return int(row[0]) if row else 0

    def insert_audit_rows(self, rows: list[tuple[Any, ...]], per_statement: int) -> None:
        """Append event rows, `per_statement` to a multi-row INSERT; the caller decides the transaction."""
        for i in range(0, len(rows), per_statement):
            chunk = rows[i:i + per_statement]
            self.audit_conn.execute(_audit_insert_sql(len(chunk)), [blob(v) if type(v) is bytes else v
                                                                   for row in chunk for v in row])

    def mark_audit(self, start: int, frontier: Frontier, fanout: int) -> int:
        """Bring the derived state up to `frontier`: index events [start, size) and store the tree head.

        The events become one new sorted run of the query index (level 0). Once a
        level holds `fanout` runs they are merged into one run of the next level,
        up to `TOP_LEVEL`, whose runs stay. A new run always takes the highest
        run number, so its rows are written together at the right edge of the
        B-tree: each entry is written once per level, on fresh pages, and a query
        makes one seek per run. Both parts are derived from the events (see
        AuditLog.index_every); the caller holds the transaction.
        """
        conn = self.audit_conn
        end = frontier.size
        run = self._new_run(0, start, end)
        conn.execute(
            "INSERT INTO audit_runix(run, key, seq)"
            " SELECT ?, k, seq FROM (SELECT 'c:' || case_id AS k, seq FROM audit_events"
            "  WHERE seq >= ? AND seq < ? AND case_id != ''"
            " UNION ALL SELECT 'o:' || org, seq FROM audit_events WHERE seq >= ? AND seq < ? AND org != ''"
            " UNION ALL SELECT 'b:' || borrower_id, seq FROM audit_events"
            "  WHERE seq >= ? AND seq < ? AND borrower_id != '') ORDER BY 2, 3",
            (run, start, end, start, end, start, end),
        )
        facts = self.audit_facts_upto()
        if end - facts >= FACTS_EVERY:  # what audit stats groups by, derived from the leaves a batch at a time
            conn.execute(DERIVE_FACTS, (facts, end))
            conn.execute("INSERT INTO meta(key, value) VALUES ('facts_upto', ?)"
                         " ON CONFLICT(key) DO UPDATE SET value = excluded.value", (str(end),))
        for level in range(TOP_LEVEL):
            runs = conn.execute("SELECT run, first, upto FROM audit_runs WHERE level = ? ORDER BY run",
                                (level,)).fetchall()
            if len(runs) < fanout:
                break
            ids = [r[0] for r in runs]
            marks = ",".join("?" * len(ids))
            merged = self._new_run(level + 1, min(r[1] for r in runs), max(r[2] for r in runs))
            conn.execute(f"INSERT INTO audit_runix(run, key, seq) SELECT ?, key, seq FROM audit_runix"
                         f" WHERE run IN ({marks}) ORDER BY key, seq", (merged, *ids))
            conn.execute(f"DELETE FROM audit_runix WHERE run IN ({marks})", ids)
            conn.execute(f"DELETE FROM audit_runs WHERE run IN ({marks})", ids)
        conn.execute(
            "INSERT INTO meta(key, value) VALUES ('indexed_upto', ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (str(end),),
        )
        conn.execute(
            "INSERT INTO audit_head(id, size, root, frontier) VALUES (1, ?, ?, ?)"
            " ON CONFLICT(id) DO UPDATE SET size = excluded.size, root = excluded.root, frontier = excluded.frontier",
            (end, frontier.root(), frontier.dumps()),
        )
        return end

    def _new_run(self, level: int, first: int, upto: int) -> int:
        conn = self.audit_conn
        run = int(conn.execute("SELECT COALESCE(MAX(run), 0) + 1 FROM audit_runs").fetchone()[0])
        conn.execute("INSERT INTO audit_runs(run, level, first, upto) VALUES (?, ?, ?, ?)", (run, level, first, upto))
        return run

    def audit_leaf_hashes(self, start: int) -> Iterator[tuple[int, bytes]]:
        for seq, lh in self.audit_conn.execute(
                "SELECT seq, leaf_hash FROM audit_events WHERE seq >= ? ORDER BY seq", (start,)):
            yield int(seq), bytes(lh)

    def audit_nodes(self, level: int, start: int, end: int) -> list[bytes]:
        """Stored tree entries of `level` from index `start` on, up to `end`, as far as they run without a gap."""
        return contiguous(start, self.audit_conn.execute(
            "SELECT idx, hash FROM audit_nodes WHERE level = ? AND idx >= ? AND idx < ? ORDER BY idx",
            (level, start, end)))

    def audit_leaf_hash_range(self, start: int, end: int) -> list[bytes]:
        return [bytes(r[0]) for r in self.audit_conn.execute(
            "SELECT leaf_hash FROM audit_events WHERE seq >= ? AND seq < ? ORDER BY seq", (start, end))]

    def audit_tile_inner(self, level: int, index: int) -> bytes | None:
        row = self.audit_conn.execute("SELECT interior FROM audit_inner WHERE level = ? AND idx = ?",
                                      (level, index)).fetchone()
        return bytes(row[0]) if row else None

    def store_nodes(self, old_size: int, new_size: int) -> None:
        """The tree entries completed between the two sizes and their tiles' interiors (derived data: idempotent)."""
        nodes = new_nodes(old_size, new_size, self.audit_leaf_hash_range, self.audit_nodes)
        if nodes:
            rows = ",".join(["(?,?,?)"] * len(nodes))
            self.audit_conn.execute("INSERT OR IGNORE INTO audit_nodes(level, idx, hash) VALUES " + rows,
                                    [v for lvl, idx, h, _ in nodes for v in (lvl, idx, blob(h))])
            self.audit_conn.execute("INSERT OR IGNORE INTO audit_inner(level, idx, interior) VALUES " + rows,
                                    [v for lvl, idx, _, inner in nodes for v in (lvl - 1, idx, blob(inner))])

    def audit_noded_size(self) -> int:
        """Leaves covered by the stored level-1 entries."""
        row = self.audit_conn.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_nodes WHERE level = 1").fetchone()
        return int(row[0]) * 256

    def audit_head(self) -> tuple[int, bytes, str] | None:
        row = self.audit_conn.execute("SELECT size, root, frontier FROM audit_head WHERE id = 1").fetchone()
        return (int(row[0]), bytes(row[1]), str(row[2])) if row else None
