"""The audit log's reads over PostgreSQL (the core's `AuditReader` port), and the tiles its commit stores.

A pooled connection per statement for a reader (`PgAuditLog.reads`), or the
group commit's connection inside its transaction for `store_nodes`.
Checkpoints and cosignatures are written by units of work (`PgStore`); they
are read here, with the events and the tree's stored entries.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import psycopg_pool

from gateway.core.errors import Code, CustosError
from gateway.core.model import AuditEntry
from gateway.core.rules import auditstats
from gateway.tlog.proofs import contiguous, new_nodes

from .schema import DERIVE_FACTS, FACTS_EVERY
from .store import Statements


class PgAuditStore(Statements):
    """The log's SQL over `conn()`: a pooled connection per statement, or the commit's connection."""

    # ------------------------------------------------------------ published checkpoints
    def published_checkpoint(self, size: int) -> str | None:
        row = self._one("SELECT note FROM checkpoints WHERE size = %s", (size,))
        return str(row[0]) if row else None

    def latest_checkpoint(self) -> tuple[int, str] | None:
        row = self._one("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1", ())
        return (int(row[0]), str(row[1])) if row else None

    # ------------------------------------------------------------ regulators' cosignatures
    def cosigned(self) -> list[tuple[str, str, int, str, str]]:
        rows = self._all("SELECT DISTINCT ON (cosigner) cosigner, vkey, size, note, line FROM cosignatures"
                         " ORDER BY cosigner, id DESC", ())
        return [(str(a), str(b), int(n), str(d), str(e)) for a, b, n, d, e in rows]

    # ------------------------------------------------------------ the tree's stored nodes
    def audit_nodes(self, level: int, start: int, end: int) -> list[bytes]:
        return contiguous(start, self._all(
            "SELECT idx, hash FROM audit_nodes WHERE level = %s AND idx >= %s AND idx < %s ORDER BY idx",
            (level, start, end)))

    def audit_leaf_hash_range(self, start: int, end: int) -> list[bytes]:
        return [bytes(r[0]) for r in self._all(
            "SELECT leaf_hash FROM audit_events WHERE seq >= %s AND seq < %s ORDER BY seq", (start, end))]

    def audit_tile_inner(self, level: int, index: int) -> bytes | None:
        row = self._one("SELECT interior FROM audit_inner WHERE level = %s AND idx = %s", (level, index))
        return bytes(row[0]) if row else None

    def store_nodes(self, old_size: int, new_size: int) -> None:
        """The tree entries completed between the two sizes and their tiles' interiors (idempotent across replicas)."""
        for level, idx, h, inner in new_nodes(old_size, new_size, self.audit_leaf_hash_range, self.audit_nodes):
            self._exec("INSERT INTO audit_nodes(level, idx, hash) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                       (level, idx, h))
            self._exec("INSERT INTO audit_inner(level, idx, interior) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                       (level - 1, idx, inner))

    def audit_noded_size(self) -> int:
        return int(self._one("SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_nodes WHERE level = 1", ())[0]) * 256

    # ------------------------------------------------------------ audit stats
    def derive_facts(self, old_size: int, new_size: int) -> None:
        """The facts of the events up to the last multiple of FACTS_EVERY at or below `new_size`, from that at or
        below `old_size` (in the commit's transaction; idempotent across replicas and over the migration's)."""
        first, upto = old_size // FACTS_EVERY * FACTS_EVERY, new_size // FACTS_EVERY * FACTS_EVERY
        if upto > first:
            self._exec(DERIVE_FACTS, (first, upto))

    def audit_stats(self, start: str, end: str, by: Sequence[str], size: int,
                    lender: str = "") -> dict[tuple[str, ...], int]:
        """Events per group among the first `size` in [start, end): grouped in SQL over the facts, which every
        commit derives up to the multiples of FACTS_EVERY it crosses, and the tail after that counted from its
        leaves (at most FACTS_EVERY - 1 of them)."""
        upto = size // FACTS_EVERY * FACTS_EVERY
        cols = [f"substr(time, 1, {auditstats.BUCKETS[k]})" if k in auditstats.BUCKETS else k for k in by]
        where = "time >= %s AND time < %s AND seq < %s" + (" AND lender = %s" if lender else "")
        args: list[Any] = [start, end, upto, *([lender] if lender else [])]
        sql = (f"SELECT {', '.join([*cols, 'COUNT(*)'])} FROM audit_facts WHERE {where}"
               + (f" GROUP BY {', '.join(str(i + 1) for i in range(len(cols)))}" if cols else ""))
        counts: dict[tuple[str, ...], int] = {}
        for row in self._all(sql, args):
            if row[-1]:
                counts[tuple(str(v) for v in row[:-1])] = int(row[-1])
        tail = auditstats.count((bytes(r[0]) for r in self._all(
            "SELECT leaf FROM audit_events WHERE seq >= %s AND seq < %s AND time >= %s AND time < %s",
            (upto, size, start, end))), by, start, end, lender)
        for key, n in tail.items():
            counts[key] = counts.get(key, 0) + n
        return counts

    # ------------------------------------------------------------ audit
    def audit_query(self, case_id: str = "", org: str = "", borrower_id: str = "", since: str = "",
                    from_seq: int = 0) -> Iterator[AuditEntry]:
        """Events matching every filter, in log order, streamed through a server-side cursor (one snapshot)."""
        conds = ["seq >= %s"]
        params: list[Any] = [from_seq]
        for col, val in (("case_id", case_id), ("org", org), ("borrower_id", borrower_id)):
            if val:
                conds.append(f"{col} = %s")
                params.append(val)
        if since:
            conds.append("time >= %s")
            params.append(since)
        sql = f"SELECT seq, leaf FROM audit_events WHERE {' AND '.join(conds)} ORDER BY seq"
        try:
            with self._conn() as conn, conn.transaction(), conn.cursor(name="audit_query") as cur:
                cur.itersize = 1000
                cur.execute(sql, params)
                for seq, leaf in cur:
                    yield AuditEntry(int(seq), bytes(leaf))
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout):
            raise CustosError(Code.UNAVAILABLE, "the database cannot be reached") from None
