"""The store over PostgreSQL: the core's CaseReader and UnitOfWork, one SQL statement per call.

A reader takes a pooled connection per statement and keeps what it reads in
the replica's row cache (vault/rowcache.py) for one value of the database's
change counter, which triggers move in every transaction that changes a
cached table, on any replica. `refresh` reads the counter (one round trip);
`assume` uses the cache as last seen and leaves the proof to the audit
commit, which reads the counter under the head lock and refuses events
decided on an older value (vault/postgres/auditlog.py). A unit of work runs
on the group commit's connection, inside its transaction, uncached.
Borrower fields, contract texts and loan terms are sealed before they are
sent; PostgreSQL holds ciphertexts, blind indexes and identifiers. The
audit log's reads are beside the log (`auditstore.py`), not here.
"""

from __future__ import annotations

import functools
import json
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import date
from typing import Any, TypeVar

import psycopg
import psycopg_pool

from gateway.core.errors import Code, CustosError
from gateway.core.model import (
    BORROWER_PI_FIELDS,
    CaseRow,
    ContactRow,
    ImportedCase,
    ImportOutcome,
    LoanRow,
    MandateRow,
    Org,
    PaymentRow,
    PlanRow,
    RegionalLicence,
    Repayment,
)
from vault.crypto import BlindIndex, DecryptionError, FieldCipher, Opener
from vault.records import (
    CASE_COLS,
    CASE_FIELDS,
    CONTACT_COLS,
    MANDATE_COLS,
    ORG_COLS,
    PAYMENT_COLS,
    PLAN_COLS,
    UPDATABLE_LOAN,
    Reasons,
    case_row,
    contact_row,
    contract_ad,
    import_digest,
    licences_json,
    mandate_row,
    org_row,
    payment_row,
    plan_row,
    reason_ad,
    seal_fields,
    terms_ad,
)
from vault.rowcache import SCOPED_CHANGES, CachedView, Change, RowCache, Rows, scoped, scoped_changes

ConnSource = Callable[[], AbstractContextManager[psycopg.Connection[Any]]]

TERMS = ("product", "currency", "principal", "outstanding", "amount_due", "originated_on", "due_on",
         "first_delinquency_on", "last_payment_on", "repayments", "limitation_date", "negative_notice_on",
         "interest", "fees")

R = TypeVar("R")

# The cases changed after a generation (schema.py, version 13), each with its borrower and loan now.
CHANGES_SQL = ("SELECT s.lender_id, s.case_id, c.borrower_id, c.loan_id FROM cache_scope s LEFT JOIN cases c"
               " ON c.lender_id = s.lender_id AND c.case_id = s.case_id WHERE s.n > %s LIMIT %s")


def unavailable(fn: Callable[..., R]) -> Callable[..., R]:
    """A database that cannot be reached is UNAVAILABLE for the caller, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> R:
        try:
            return fn(*args, **kwargs)
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout):
            raise CustosError(Code.UNAVAILABLE, "the database cannot be reached") from None

    return wrapper


class Statements:
    """One statement over `conn()`, a database that cannot be reached made UNAVAILABLE: the store's and the log's."""

    def __init__(self, conn: ConnSource) -> None:
        self._conn = conn

    @unavailable
    def _one(self, sql: str, params: Sequence[Any]) -> Any:
        with self._conn() as conn:
            return conn.execute(sql, params).fetchone()

    @unavailable
    def _all(self, sql: str, params: Sequence[Any]) -> list[Any]:
        with self._conn() as conn:
            return conn.execute(sql, params).fetchall()

    @unavailable
    def _exec(self, sql: str, params: Sequence[Any]) -> int:
        with self._conn() as conn:
            return conn.execute(sql, params).rowcount


class PgStore(Statements, CachedView, Reasons):
    """Reads and writes over `conn()`: a pooled connection per statement (cached), or the unit of work's connection."""

    def __init__(self, conn: ConnSource, cipher: FieldCipher, bidx: BlindIndex, cache: RowCache | None = None) -> None:
        super().__init__(conn)
        self.cipher = cipher
        self.bidx = bidx
        self._shared = cache
        self._rows: Rows | None = None

    # ------------------------------------------------------------ the request view
    @unavailable
    def _generation(self) -> int:
        row = self._one("SELECT n FROM generation WHERE id = 1", ())
        return int(row[0])

    def assume(self) -> int | None:
        """The cache as last seen, unchecked: the audit commit that carries this call's events checks it.

        Asking PostgreSQL for the counter costs a round trip per call; the
        audit log reads it anyway, under its lock, in the transaction that
        stores the events (`PgAuditLog`), and refuses events decided on a
        generation that is no longer current, so the caller decides again.
        """
        state = self._shared.assumed() if self._shared is not None else None
        if state is None:
            self.refresh()
            return None
        generation, rows = state
        self._pick(rows, generation)
        return generation

    @unavailable
    def _changes(self, since: int) -> list[Change] | None:
        return scoped_changes(self._all(CHANGES_SQL, (since, SCOPED_CHANGES + 1)))

    # ------------------------------------------------------------ orgs
    @scoped("orgs")
    def get_org(self, org_id: str) -> Org | None:
        row = self._one(f"SELECT {ORG_COLS} FROM orgs WHERE id = %s", (org_id,))
        return org_row(row) if row else None

    @scoped("orgs")
    def org_name(self, org_id: str) -> str:
        row = self._one("SELECT name FROM orgs WHERE id = %s", (org_id,))
        return str(row[0]) if row else ""

    def insert_org(self, org: Org, now: str) -> None:
        self._exec("INSERT INTO orgs(id, kind, name, jurisdiction, licence_no, licence_expires, disabled, created_at,"
                   " address, telephone) VALUES (%s, %s, %s, %s, %s, %s, false, %s, %s, %s)",
                   (org.id, org.kind, org.name, org.jurisdiction, org.licence_no,
                    org.licence_expires.isoformat() if org.licence_expires else None, now, org.address,
                    org.telephone))

    def set_org_disabled(self, org_id: str, disabled: bool = True) -> int:
        return self._exec("UPDATE orgs SET disabled = %s WHERE id = %s", (disabled, org_id))

    # ---- licences (issue 26)
    def set_org_licences(self, org_id: str, licences: Sequence[RegionalLicence]) -> int:
        return self._exec("UPDATE orgs SET licences = %s WHERE id = %s", (licences_json(licences), org_id))

    # ------------------------------------------------------------ cases and mandates
    @scoped("case", 1)
    def get_case(self, lender: str, case_id: str) -> CaseRow | None:
        row = self._one(f"SELECT {CASE_COLS} FROM cases WHERE lender_id = %s AND case_id = %s", (lender, case_id))
        return case_row(row) if row else None

    def cases_of_lender(self, lender: str) -> list[CaseRow]:
        return [case_row(r) for r in self._all(f"SELECT {CASE_COLS} FROM cases WHERE lender_id = %s ORDER BY case_id",
                                            (lender,))]

    def cases_by_index(self, lender: str, field: str, value: str) -> list[CaseRow]:
        column = {"national_id": "nid_bidx", "phone": "phone_bidx"}[field]
        cols = ", ".join("c." + c.strip() for c in CASE_COLS.split(","))
        rows = self._all(f"SELECT {cols} FROM borrowers b JOIN cases c ON c.lender_id = b.lender_id"
                         f" AND c.borrower_id = b.borrower_id WHERE b.lender_id = %s AND b.{column} = %s"
                         " ORDER BY c.case_id", (lender, self.bidx(lender, field, value)))
        return [case_row(r) for r in rows]

    def set_case_fields(self, lender: str, case_id: str, values: Mapping[str, Any], now: str) -> None:
        assert set(values) <= CASE_FIELDS
        sets = ", ".join(f"{k} = %s" for k in values)
        self._exec(f"UPDATE cases SET {sets}, updated_at = %s WHERE lender_id = %s AND case_id = %s",
                   (*values.values(), now, lender, case_id))

    # ------------------------------------------------------------ erasure
    def cases_of_borrower(self, lender: str, borrower_id: str) -> list[CaseRow]:
        return [case_row(r) for r in self._all(f"SELECT {CASE_COLS} FROM cases WHERE lender_id = %s AND borrower_id = %s"
                                            " ORDER BY case_id", (lender, borrower_id))]

    def borrower_erased(self, lender: str, borrower_id: str) -> bool:
        row = self._one("SELECT erased_at FROM borrowers WHERE lender_id = %s AND borrower_id = %s",
                        (lender, borrower_id))
        return row is not None and row[0] is not None

    def set_erasure(self, lender: str, borrower_id: str, state: str, due: str | None, now: str) -> None:
        self._exec("UPDATE cases SET erasure = %s, erase_due = %s, updated_at = %s"
                   " WHERE lender_id = %s AND borrower_id = %s", (state, due, now, lender, borrower_id))

    def erase_borrower(self, lender: str, borrower_id: str, now: str) -> None:
        """Crypto-shredding, as the embedded store does (see there); what PostgreSQL keeps: deploy/README.md."""
        where = " WHERE lender_id = %s AND borrower_id = %s"
        key = (lender, borrower_id)
        self._exec("UPDATE borrowers SET wrapped_dek = NULL, nid_bidx = NULL, phone_bidx = NULL, "
                   + ", ".join(f"{f} = NULL" for f in BORROWER_PI_FIELDS) + ", erased_at = %s" + where, (now, *key))
        self._exec("UPDATE loans SET terms = '', contract_text = NULL" + where, key)
        self._exec("UPDATE contacts SET target = ''" + where, key)
        self._exec("UPDATE plans SET reason = NULL" + where, key)  # sealed under the key that is going
        self._exec("UPDATE furnished SET digest = '' WHERE lender_id = %s AND case_id IN"
                   " (SELECT case_id FROM cases" + where + ")", (lender, *key))
        self._exec("UPDATE cases SET erasure = 'erased', erase_due = NULL, import_digest = NULL, updated_at = %s"
                   + where, (now, *key))

    def rewrap_keys(self, limit: int) -> int:
        """As the embedded store does (see there): the data keys only, compare-and-set per row."""
        older = [v for v in self.cipher.kek.versions() if v < self.cipher.kek.primary_version()]
        if not older:
            return 0
        rows = self._all("SELECT lender_id, borrower_id, kek_version, wrapped_dek FROM borrowers"
                         " WHERE kek_version = ANY(%s) AND wrapped_dek IS NOT NULL LIMIT %s FOR UPDATE SKIP LOCKED",
                         (older, limit))
        for lender, borrower, version, wrapped in rows:
            moved = self.cipher.rewrap_dek(lender, borrower, int(version), bytes(wrapped))
            if moved is not None:
                self._exec("UPDATE borrowers SET kek_version = %s, wrapped_dek = %s WHERE lender_id = %s"
                           " AND borrower_id = %s AND kek_version = %s", (moved[0], moved[1], lender, borrower, version))
        return len(rows)

    def touch_generation(self) -> None:
        """No one case's change: every replica's row cache goes whole (vault/postgres/schema.py, version 13)."""
        self._exec("WITH g AS (UPDATE generation SET n = n + 1 WHERE id = 1 RETURNING n)"
                   " INSERT INTO cache_scope(lender_id, case_id, n) SELECT '', '', n FROM g"
                   " ON CONFLICT (lender_id, case_id) DO UPDATE SET n = EXCLUDED.n", ())

    def kek_usage(self) -> dict[int, int]:
        return {int(v): int(n) for v, n in self._all(
            "SELECT kek_version, count(*) FROM borrowers WHERE wrapped_dek IS NOT NULL GROUP BY kek_version", ())}

    def retention_candidates(self, closed_before: str, lender: str = "") -> list[tuple[str, str]]:
        sql = ("SELECT lender_id, borrower_id FROM cases WHERE erasure IN ('', 'restricted')"
               + (" AND lender_id = %s" if lender else "")
               + " GROUP BY lender_id, borrower_id HAVING SUM(CASE WHEN status = 'open' THEN 1 ELSE 0 END) = 0"
               " AND MAX(closed_at) <= %s ORDER BY lender_id, borrower_id")
        params = (lender, closed_before) if lender else (closed_before,)
        return [(str(r[0]), str(r[1])) for r in self._all(sql, params)]

    def due_erasures(self, now: str) -> list[tuple[str, str]]:
        return [(str(r[0]), str(r[1])) for r in self._all(
            "SELECT DISTINCT lender_id, borrower_id FROM cases WHERE erase_due IS NOT NULL AND erase_due <= %s"
            " AND erasure = 'pending' ORDER BY lender_id, borrower_id", (now,))]

    @scoped("case", 1)
    def mandates_for(self, org_id: str, case_id: str) -> tuple[MandateRow, ...]:
        return tuple(mandate_row(r) for r in self._all(
            f"SELECT {MANDATE_COLS} FROM mandates WHERE org_id = %s AND case_id = %s ORDER BY id DESC",
            (org_id, case_id)))

    def feed_high_water(self) -> int:
        return int(self._one("SELECT n FROM feed_counter WHERE id = 1", ())[0])

    def feed_changes(self, org_id: str, purpose: str, after: tuple[int, str, str], upto: int,
                     limit: int) -> list[tuple[int, str, str]]:
        seq, lender, case_id = after
        rows = self._all(
            "SELECT f.seq, f.lender_id, f.case_id FROM case_feed f WHERE f.seq >= %s AND f.seq <= %s"
            " AND (f.seq > %s OR f.lender_id > %s OR (f.lender_id = %s AND f.case_id > %s))"
            " AND EXISTS (SELECT 1 FROM mandates m WHERE m.org_id = %s AND m.case_id = f.case_id"
            " AND m.lender_id = f.lender_id AND m.purpose = %s)"
            " ORDER BY f.seq, f.lender_id, f.case_id LIMIT %s",
            (seq, upto, seq, lender, lender, case_id, org_id, purpose, limit))
        return [(int(a), str(b), str(c)) for a, b, c in rows]

    def lapse_mandates(self, ended_before: str, now: str) -> int:
        # Asked first: an UPDATE of no row still fires the statement trigger, which would drop every row cache.
        if self._one("SELECT 1 FROM mandates WHERE recalled_at IS NULL AND lapsed_at IS NULL AND until < %s LIMIT 1",
                     (ended_before,)) is None:
            return 0
        return self._exec(
            "UPDATE mandates SET lapsed_at = %s WHERE recalled_at IS NULL AND lapsed_at IS NULL AND until < %s",
            (now, ended_before))

    def mandates_of_org(self, org_id: str) -> list[MandateRow]:
        return [mandate_row(r) for r in self._all(
            f"SELECT {MANDATE_COLS} FROM mandates WHERE org_id = %s AND recalled_at IS NULL ORDER BY case_id, id DESC",
            (org_id,))]

    def cases_by_id(self, lender: str, case_ids: Sequence[str]) -> dict[str, CaseRow]:
        rows = self._all(f"SELECT {CASE_COLS} FROM cases WHERE lender_id = %s AND case_id = ANY(%s)",
                         (lender, list(case_ids)))
        return {r.case_id: r for r in map(case_row, rows)}

    @unavailable
    def grant_mandates(self, lender: str, grants: Sequence[tuple[str, str, str, str, date, str | None]],
                       now: str) -> None:
        """Two statements for the whole batch (arrays unnested server-side), not two per mandate."""
        if not grants:
            return
        cases, orgs, purposes, labels, untils, rates = (list(col) for col in zip(*grants, strict=True))
        with self._conn() as conn:
            # `case_id = ANY(...)` lets the planner take the (lender_id, case_id) index; the join alone it
            # estimates blind and may scan every mandate for each row (measured: 4.5 x slower once mandates exist).
            conn.execute("UPDATE mandates SET recalled_at = %s WHERE lender_id = %s AND case_id = ANY(%s)"
                         " AND recalled_at IS NULL AND (case_id, org_id, purpose) IN"
                         " (SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]))",
                         (now, lender, cases, cases, orgs, purposes))
            conn.execute("INSERT INTO mandates(lender_id, case_id, org_id, purpose, label, granted_at, until, commission)"
                         " SELECT %s, g.case_id, g.org_id, g.purpose, g.label, %s, g.until, g.commission"
                         " FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[])"
                         " WITH ORDINALITY AS g(case_id, org_id, purpose, label, until, commission, n) ORDER BY g.n",
                         (lender, now, cases, orgs, purposes, labels, [u.isoformat() for u in untils], rates))

    def mandates_of_case(self, lender: str, case_id: str) -> list[MandateRow]:
        return [mandate_row(r) for r in self._all(
            f"SELECT {MANDATE_COLS} FROM mandates WHERE lender_id = %s AND case_id = %s ORDER BY id DESC",
            (lender, case_id))]

    def set_negative_notice(self, case: CaseRow, on: str) -> None:
        self._edit_terms(case, {"negative_notice_on": on})

    def _edit_terms(self, case: CaseRow, values: Mapping[str, Any]) -> None:
        """Terms are one sealed document here: open it, change those values, seal it again (inside the unit)."""
        loan = self._one("SELECT terms FROM loans WHERE lender_id = %s AND loan_id = %s FOR UPDATE",
                         (case.lender_id, case.loan_id))
        borrower = self._one("SELECT kek_version, wrapped_dek, dek_version FROM borrowers"
                             " WHERE lender_id = %s AND borrower_id = %s", (case.lender_id, case.borrower_id))
        if loan is None or borrower is None or borrower[1] is None:
            raise CustosError(Code.CASE_NOT_FOUND)
        dek = self.cipher.unwrap_dek(case.lender_id, case.borrower_id, int(borrower[0]), bytes(borrower[1]))
        ad = terms_ad(case.loan_id)
        opener = self.cipher.opener(dek, case.lender_id, case.borrower_id, int(borrower[2]))
        try:
            terms = json.loads(opener(ad, bytes(loan[0])))
        except DecryptionError:
            raise CustosError(Code.DECRYPTION_FAILED) from None
        terms.update(values)
        text = json.dumps(terms, ensure_ascii=False, separators=(",", ":"))
        sealed = self.cipher.encrypt(dek, case.lender_id, case.borrower_id, ad, int(borrower[2]), text)
        self._exec("UPDATE loans SET terms = %s WHERE lender_id = %s AND loan_id = %s",
                   (sealed, case.lender_id, case.loan_id))

    # ------------------------------------------------------------ the living account (lender update)
    def update_loan(self, case: CaseRow, values: Mapping[str, Any], now: str) -> None:
        assert values and set(values) <= UPDATABLE_LOAN, set(values) - UPDATABLE_LOAN
        self._edit_terms(case, {k: [r.record() for r in v] if k == "repayments" else v for k, v in values.items()})
        self._exec("UPDATE cases SET updated_at = %s WHERE lender_id = %s AND case_id = %s",
                   (now, case.lender_id, case.case_id))

    def correct_borrower(self, case: CaseRow, values: Mapping[str, str], now: str) -> None:
        row = self._one("SELECT kek_version, wrapped_dek, dek_version FROM borrowers"
                        " WHERE lender_id = %s AND borrower_id = %s FOR UPDATE", (case.lender_id, case.borrower_id))
        assert values and set(values) <= set(BORROWER_PI_FIELDS) and row is not None and row[1] is not None
        dek = self.cipher.unwrap_dek(case.lender_id, case.borrower_id, int(row[0]), bytes(row[1]))
        enc = seal_fields(self.cipher, dek, case.lender_id, case.borrower_id, int(row[2]), values)
        cols: list[tuple[str, Any]] = list(enc.items())
        cols += [(f"{'nid' if k == 'national_id' else 'phone'}_bidx", self.bidx(case.lender_id, k, v))
                 for k, v in values.items() if k in ("national_id", "phone")]
        self._exec(f"UPDATE borrowers SET {', '.join(f'{k} = %s' for k, _ in cols)}"
                   " WHERE lender_id = %s AND borrower_id = %s",
                   (*(v for _, v in cols), case.lender_id, case.borrower_id))

    def last_update(self, lender: str, case_id: str) -> tuple[str, bytes] | None:
        row = self._one("SELECT account_as_of, update_digest FROM cases WHERE lender_id = %s AND case_id = %s",
                        (lender, case_id))
        return (str(row[0]), bytes(row[1] or b"")) if row and row[0] is not None else None

    def set_last_update(self, lender: str, case_id: str, as_of: str, digest: bytes, now: str) -> None:
        self._exec("UPDATE cases SET account_as_of = %s, update_digest = %s, updated_at = %s"
                   " WHERE lender_id = %s AND case_id = %s", (as_of, digest, now, lender, case_id))

    def insert_mandate(self, lender: str, case_id: str, org_id: str, purpose: str, label: str, until: date,
                       now: str, commission: str | None = None) -> None:
        self._exec("INSERT INTO mandates(lender_id, case_id, org_id, purpose, label, granted_at, until, commission)"
                   " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", (lender, case_id, org_id, purpose, label, now,
                                                                until.isoformat(), commission))

    def recall_mandates(self, lender: str, case_id: str, org_id: str, now: str, purpose: str | None = None) -> int:
        sql = ("UPDATE mandates SET recalled_at = %s WHERE lender_id = %s AND case_id = %s AND org_id = %s"
               " AND recalled_at IS NULL")
        params: tuple[Any, ...] = (now, lender, case_id, org_id)
        if purpose:
            sql += " AND purpose = %s"
            params += (purpose,)
        return self._exec(sql, params)

    # ---- mandates (issue 26)
    def set_mandate_records(self, lender: str, records: Sequence[tuple[str, str, str, str | None, str | None]]
                            ) -> None:
        for case_id, org_id, purpose, agreement, pia in records:
            self._exec("UPDATE mandates SET agreement = %s, pia = %s WHERE lender_id = %s AND case_id = %s"
                       " AND org_id = %s AND purpose = %s AND recalled_at IS NULL",
                       (agreement, pia, lender, case_id, org_id, purpose))

    # ------------------------------------------------------------ units of work
    def lock_borrower(self, lender: str, borrower_id: str) -> None:
        """Until the commit, no other transaction, on any replica, decides about this borrower."""
        self._one("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"{lender}/{borrower_id}",))

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        with self._conn() as conn, conn.transaction():
            yield

    # ------------------------------------------------------------ import
    def import_state(self, lender: str, case: ImportedCase) -> ImportOutcome | None:
        """SAME or OTHER for a case imported before, None for a new one."""
        row = self._one("SELECT import_digest FROM cases WHERE lender_id = %s AND case_id = %s", (lender, case.case_id))
        if row is None:
            return None
        same = row[0] is not None and bytes(row[0]) == import_digest(self.bidx, lender, case)
        return ImportOutcome.SAME if same else ImportOutcome.OTHER

    def loan_exists(self, lender: str, loan_id: str) -> bool:
        return self._one("SELECT 1 FROM loans WHERE lender_id = %s AND loan_id = %s", (lender, loan_id)) is not None

    def import_cases(self, lender: str, cases: Sequence[ImportedCase], now: str) -> list[ImportOutcome]:
        """ports.UnitOfWork.import_cases, a case at a time (each statement is a round trip here either way)."""
        out: list[ImportOutcome] = []
        for case in cases:
            state = self.import_state(lender, case)
            out.append(self.import_case(lender, case, now) if state is None else state)
        return out

    def import_case(self, lender: str, case: ImportedCase, now: str) -> ImportOutcome:
        """One case with its loan and (new or joined) borrower, sealed before it is sent; inside the unit's transaction.

        STORED; or ERASED or LOAN_EXISTS, before anything is written.
        """
        row = self._one("SELECT kek_version, wrapped_dek, dek_version, erased_at FROM borrowers"
                        " WHERE lender_id = %s AND borrower_id = %s FOR UPDATE", (lender, case.borrower_id))
        if row is not None and row[3] is not None:
            return ImportOutcome.ERASED
        if self.loan_exists(lender, case.loan["loan_id"]):
            return ImportOutcome.LOAN_EXISTS
        if row is None:
            dek, kek_version, wrapped = self.cipher.new_dek(lender, case.borrower_id)
            dek_version = 1
            self._exec("INSERT INTO borrowers(lender_id, borrower_id, kek_version, wrapped_dek, dek_version)"
                       " VALUES (%s, %s, %s, %s, %s)", (lender, case.borrower_id, kek_version, wrapped, dek_version))
        else:
            kek_version, wrapped, dek_version = int(row[0]), bytes(row[1]), int(row[2])
            dek = self.cipher.unwrap_dek(lender, case.borrower_id, kek_version, wrapped)
        enc = seal_fields(self.cipher, dek, lender, case.borrower_id, dek_version, case.pi)
        sets = ", ".join(f"{f} = %s" for f in enc)
        self._exec(f"UPDATE borrowers SET {sets}, nid_bidx = %s, phone_bidx = %s"
                   " WHERE lender_id = %s AND borrower_id = %s",
                   (*enc.values(), self.bidx(lender, "national_id", case.pi["national_id"]),
                    self.bidx(lender, "phone", case.pi["phone"]), lender, case.borrower_id))
        loan = case.loan
        terms = json.dumps({k: loan.get(k) for k in TERMS}, ensure_ascii=False, separators=(",", ":"))
        sealed_terms = self.cipher.encrypt(dek, lender, case.borrower_id, terms_ad(loan["loan_id"]), dek_version, terms)
        contract = (self.cipher.encrypt(dek, lender, case.borrower_id, contract_ad(loan["loan_id"]), dek_version,
                                        case.contract_text) if case.contract_text is not None else None)
        self._exec("INSERT INTO loans(lender_id, loan_id, borrower_id, terms, contract_text) VALUES (%s, %s, %s, %s, %s)",
                   (lender, loan["loan_id"], case.borrower_id, sealed_terms, contract))
        self._exec("INSERT INTO cases(lender_id, case_id, borrower_id, loan_id, jurisdiction, timezone, stage,"
                   " consent_third_party, consent_credit, created_at, updated_at, import_digest, region,"
                   " validation_notice_on, outsourcing_notice_on)"
                   " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                   (lender, case.case_id, case.borrower_id, loan["loan_id"], case.jurisdiction, case.timezone,
                    case.stage, case.consent_third_party, case.consent_credit, now, now,
                    import_digest(self.bidx, lender, case), case.region or None,
                    case.validation_notice_on, case.outsourcing_notice_on))
        if row is not None:  # a joined borrower: a pending or restricted erasure of its other cases covers this one
            self._exec("UPDATE cases c SET erasure = o.erasure, erase_due = o.erase_due"
                       " FROM (SELECT erasure, erase_due FROM cases WHERE lender_id = %s AND borrower_id = %s"
                       " AND erasure IN ('pending', 'restricted') ORDER BY erasure LIMIT 1) o"
                       " WHERE c.lender_id = %s AND c.case_id = %s", (lender, case.borrower_id, lender, case.case_id))
        return ImportOutcome.STORED

    # ------------------------------------------------------------ sealed values
    @scoped("borrower", 0, 1)
    def _borrower_row(self, lender: str, borrower_id: str) -> tuple[Any, ...] | None:
        row = self._one(f"SELECT kek_version, wrapped_dek, dek_version, {', '.join(BORROWER_PI_FIELDS)} FROM borrowers"
                        " WHERE lender_id = %s AND borrower_id = %s", (lender, borrower_id))
        return tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) if row else None

    @scoped("loan", 0, 1)
    def _contract_blob(self, lender: str, loan_id: str) -> bytes | None:
        row = self._one("SELECT contract_text FROM loans WHERE lender_id = %s AND loan_id = %s", (lender, loan_id))
        return bytes(row[0]) if row and row[0] is not None else None

    @scoped("borrower", 0, 1)
    def _opener(self, lender: str, borrower: str, kek_version: int, wrapped: bytes,
                dek_version: int) -> Opener:
        return Reasons._opener(self, lender, borrower, kek_version, wrapped, dek_version)

    def loan_values(self, case: CaseRow) -> LoanRow | None:
        return self._loan_row(case.lender_id, case.loan_id, case.borrower_id)

    @scoped("loan", 0, 1)
    def _loan_row(self, lender: str, loan_id: str, borrower_id: str) -> LoanRow | None:
        """The loan's terms, opened (PostgreSQL holds them sealed; the embedded store's pages are encrypted)."""
        loan = self._one("SELECT terms FROM loans WHERE lender_id = %s AND loan_id = %s", (lender, loan_id))
        opener = self._borrower_opener(lender, borrower_id)
        if loan is None or opener is None:
            return None
        try:
            terms = json.loads(opener(terms_ad(loan_id), bytes(loan[0])))
        except DecryptionError:
            raise CustosError(Code.DECRYPTION_FAILED) from None
        repayments = tuple(Repayment.of(r) for r in terms.pop("repayments") or [])
        return LoanRow(loan_id=loan_id, repayments=repayments, **{k: terms.get(k) for k in TERMS if k != "repayments"})

    # ------------------------------------------------------------ contacts
    def insert_contact(self, lender: str, case_id: str, borrower_id: str, org_id: str, channel: str, party: str,
                       target: bytes, opened_at: str) -> str:
        contact_id = "K-" + secrets.token_hex(8)
        self._exec("INSERT INTO contacts(id, lender_id, case_id, borrower_id, org_id, channel, party, target, opened_at)"
                   " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                   (contact_id, lender, case_id, borrower_id, org_id, channel, party, target, opened_at))
        return contact_id

    def contacts_since(self, lender: str, borrower_id: str, since: str) -> list[ContactRow]:
        return [contact_row(r) for r in self._all(
            f"SELECT {CONTACT_COLS} FROM contacts WHERE lender_id = %s AND borrower_id = %s AND opened_at >= %s"
            " ORDER BY opened_at", (lender, borrower_id, since))]

    def contact_history(self, case: CaseRow) -> list[ContactRow]:
        return [contact_row(r) for r in self._all(
            f"SELECT {CONTACT_COLS} FROM contacts WHERE lender_id = %s AND case_id = %s ORDER BY opened_at",
            (case.lender_id, case.case_id))]

    def get_contact(self, contact_id: str) -> ContactRow | None:
        row = self._one(f"SELECT {CONTACT_COLS} FROM contacts WHERE id = %s", (contact_id,))
        return contact_row(row) if row else None

    def set_contact_result(self, contact_id: str, result: str, now: str) -> None:
        self._exec("UPDATE contacts SET result = %s, result_at = %s WHERE id = %s", (result, now, contact_id))

    # ------------------------------------------------------------ published checkpoints
    def insert_checkpoint(self, size: int, note: str, at: str) -> None:
        self._exec("INSERT INTO checkpoints(size, note, at) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                   (size, note, at))

    # ------------------------------------------------------------ regulators' cosignatures
    def insert_cosignature(self, org: str, cosigner: str, vkey: str, size: int, note: str, line: str,
                           at: str) -> None:
        self._exec("INSERT INTO cosignatures(org, cosigner, vkey, size, note, line, at)"
                   " VALUES (%s, %s, %s, %s, %s, %s, %s)", (org, cosigner, vkey, size, note, line, at))

    # ------------------------------------------------------------ the bureau feed
    def feed_head(self, bureau: str) -> int:
        return int(self._one("SELECT COALESCE(MAX(seq), 0) FROM furnished WHERE bureau = %s", (bureau,))[0])

    def lock_feed(self, bureau: str) -> None:
        """Until the commit, no other replica numbers this bureau's records."""
        self._one("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"feed/{bureau}",))

    def last_furnished(self, bureau: str, lender: str, case_id: str) -> tuple[int, bytes, str] | None:
        row = self._one("SELECT seq, digest, condition FROM furnished WHERE bureau = %s AND lender_id = %s"
                        " AND case_id = %s ORDER BY seq DESC LIMIT 1", (bureau, lender, case_id))
        return (int(row[0]), bytes(row[1]), str(row[2])) if row else None

    def record_furnished(self, bureau: str, lender: str, case_id: str, digest: bytes, condition: str,
                         at: str) -> int:
        seq = self.feed_head(bureau) + 1
        self._exec("INSERT INTO furnished(bureau, seq, lender_id, case_id, digest, condition, at)"
                   " VALUES (%s, %s, %s, %s, %s, %s, %s)", (bureau, seq, lender, case_id, digest, condition, at))
        return seq

    # ---- promises and plans
    def set_promise(self, contact_id: str, amount: str, on: str) -> None:
        self._exec("UPDATE contacts SET promise_amount = %s, promise_on = %s WHERE id = %s", (amount, on, contact_id))

    def insert_plan(self, case: CaseRow, org_id: str, instalments: Sequence[Repayment], now: str) -> str:
        plan_id = "PL-" + secrets.token_hex(8)
        self._exec("INSERT INTO plans(id, lender_id, case_id, borrower_id, org_id, status, instalments, proposed_at)"
                   " VALUES (%s, %s, %s, %s, %s, 'proposed', %s, %s)",
                   (plan_id, case.lender_id, case.case_id, case.borrower_id, org_id,
                    json.dumps([i.record() for i in instalments]), now))
        return plan_id

    def get_plan(self, plan_id: str) -> PlanRow | None:
        row = self._one(f"SELECT {PLAN_COLS} FROM plans WHERE id = %s", (plan_id,))
        return plan_row(row) if row else None

    def plans_of_case(self, lender: str, case_id: str) -> list[PlanRow]:
        return [plan_row(r) for r in self._all(
            f"SELECT {PLAN_COLS} FROM plans WHERE lender_id = %s AND case_id = %s ORDER BY proposed_at DESC, id",
            (lender, case_id))]

    def set_plan_status(self, plan: PlanRow, status: str, now: str, reason: str | None = None) -> None:
        sealed = None
        if reason is not None:
            case = self.get_case(plan.lender_id, plan.case_id)
            assert case is not None
            sealed = self.seal_plan_reason(case, plan.plan_id, reason)
        self._exec("UPDATE plans SET status = %s, decided_at = %s, reason = COALESCE(%s, reason) WHERE id = %s",
                   (status, now, sealed, plan.plan_id))

    def set_active_plan(self, case: CaseRow, plan_id: str | None, now: str) -> None:
        self._exec("UPDATE cases SET active_plan = %s, updated_at = %s WHERE lender_id = %s AND case_id = %s",
                   (plan_id, now, case.lender_id, case.case_id))
    # ---- payments reported by those who collect (gateway/core/usecases/payments.py)
    def insert_payment(self, payment: PaymentRow) -> bool:
        p = payment
        return bool(self._exec(
            f"INSERT INTO payments({PAYMENT_COLS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (lender_id, org_id, reference) DO NOTHING",
            (p.id, p.lender_id, p.case_id, p.borrower_id, p.org_id, p.amount, p.currency, p.paid_on, p.reference,
             p.status, p.reported_at, p.decided_at, p.commission, None)))

    def decide_payment(self, payment: PaymentRow, status: str, decided_at: str, commission: str | None,
                       reason: str | None) -> bool:
        sealed = (self.seal_reason(payment.lender_id, payment.borrower_id, reason_ad(payment.id), reason)
                  if reason is not None else None)
        return bool(self._exec(
            "UPDATE payments SET status = %s, decided_at = %s, commission = %s, reason = %s WHERE id = %s"
            " AND status = 'reported'", (status, decided_at, commission, sealed, payment.id)))

    def get_payment(self, payment_id: str) -> PaymentRow | None:
        row = self._one(f"SELECT {PAYMENT_COLS} FROM payments WHERE id = %s", (payment_id,))
        return payment_row(row) if row else None

    def payment_by_reference(self, lender: str, org_id: str, reference: str) -> PaymentRow | None:
        row = self._one(f"SELECT {PAYMENT_COLS} FROM payments WHERE lender_id = %s AND org_id = %s"
                        " AND reference = %s", (lender, org_id, reference))
        return payment_row(row) if row else None

    def payments_of_lender(self, lender: str, status: str = "", org_id: str = "") -> list[PaymentRow]:
        sql = f"SELECT {PAYMENT_COLS} FROM payments WHERE lender_id = %s"
        params: list[str] = [lender]
        if status:
            sql, params = sql + " AND status = %s", [*params, status]
        if org_id:
            sql, params = sql + " AND org_id = %s", [*params, org_id]
        return [payment_row(r) for r in self._all(sql + " ORDER BY reported_at, id", params)]

    def confirmed_payments(self, start: str, end: str, lender: str = "", org_id: str = "") -> list[PaymentRow]:
        sql = (f"SELECT {PAYMENT_COLS} FROM payments WHERE status = 'confirmed' AND decided_at >= %s"
               " AND decided_at < %s")
        params: list[str] = [start, end]
        if lender:
            sql, params = sql + " AND lender_id = %s", [*params, lender]
        if org_id:
            sql, params = sql + " AND org_id = %s", [*params, org_id]
        return [payment_row(r) for r in self._all(sql + " ORDER BY decided_at, id", params)]

    # ---- opt-outs and call recordings (issue 26)
    def set_recording(self, contact_id: str, ref: str, until: str) -> None:
        self._exec("UPDATE contacts SET recording = %s, recording_until = %s WHERE id = %s", (ref, until, contact_id))

    def purge_recordings(self, now: str) -> int:
        """Only an erased borrower's references go: while the data is kept, the recording's reference is too."""
        return self._exec(
            "UPDATE contacts SET recording = NULL, recording_until = NULL WHERE recording IS NOT NULL"
            " AND recording_until < %s AND EXISTS (SELECT 1 FROM borrowers b WHERE b.lender_id = contacts.lender_id"
            " AND b.borrower_id = contacts.borrower_id AND b.erased_at IS NOT NULL)", (now,))
    # ---- EU (issue 26): forbearance measures, and a lender's mandates for its record of processing
    def add_forbearance(self, lender: str, case_id: str, measure: str, on: str, now: str) -> None:
        self._exec("INSERT INTO forbearance(lender_id, case_id, measure, on_date, recorded_at)"
                   " VALUES (%s,%s,%s,%s,%s)", (lender, case_id, measure, on, now))

    def forbearance_of(self, lender: str, case_id: str) -> list[tuple[str, str]]:
        return [(str(m), str(d)) for m, d in self._all(
            "SELECT measure, on_date FROM forbearance WHERE lender_id = %s AND case_id = %s ORDER BY on_date, ctid",
            (lender, case_id))]

    def mandates_of_lender(self, lender: str) -> list[MandateRow]:
        return [mandate_row(r) for r in self._all(
            f"SELECT {MANDATE_COLS} FROM mandates WHERE lender_id = %s ORDER BY id", (lender,))]
