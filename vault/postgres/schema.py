"""The PostgreSQL schema as numbered migrations, applied once each and recorded.

`migrate` takes an advisory lock, so replicas starting together apply each
migration once; every migration runs in its own transaction with the row
that records it. PostgreSQL sees only ciphertexts, blind indexes and
identifiers: borrower fields, contract texts and a loan's terms are sealed
under the borrower's data key before they reach it (`vault/records.py`).
"""

from __future__ import annotations

from typing import Any

from vault.records import BORROWER_GEN_COLUMNS

# What a change feed entry is made for (gateway/core/usecases/worklists.py): the columns whose change can change what is
# released of a case. The rows are numbered at commit (FEED_NUMBER), under the log's head lock.
# The columns as of migration 10, which made the trigger (its columns exist at that point); later ones add theirs.
_CASE_RELEASE_V10 = ("borrower_id", "loan_id", "jurisdiction", "timezone", "stage", "status", "disputed",
                     "cease_contact", "attorney_represented", "lost_contact", "legal_hold",
                     "consent_third_party", "consent_credit", "credit_withdrawn", "erasure", "closed_at")
_CASE_RELEASE_V15 = (*_CASE_RELEASE_V10, "active_plan")
# issue 26: the flags that end collection, and the cross-border safeguards every read abroad checks (migration 18)
CASE_RELEASE_COLUMNS = (*_CASE_RELEASE_V15, "identity_theft", "discharged", "consent_cross_border",
                        "transfer_mechanism", "transfer_valid_until")
LOAN_RELEASE_COLUMNS = ("borrower_id", "terms", "contract_text")
BORROWER_RELEASE_COLUMNS = tuple(c for c in BORROWER_GEN_COLUMNS if c not in ("lender_id", "borrower_id"))
PENDING = -1  # a change feed entry written in a transaction not yet numbered


def _changed(columns: tuple[str, ...]) -> str:
    return " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in columns)


def _feed_function(name: str, match: str) -> str:
    rows = ("VALUES (NEW.lender_id, NEW.case_id, -1)" if not match else
            f"SELECT lender_id, case_id, -1 FROM cases WHERE lender_id = NEW.lender_id AND {match}")
    return (f"""CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
                 INSERT INTO case_feed(lender_id, case_id, seq) {rows}
                 ON CONFLICT (lender_id, case_id) DO UPDATE SET seq = -1; RETURN NULL; END $$""")


# Run in each writing batch after the head is locked: the batch's feed entries get the next number, so
# numbers are given in commit order and a pull that read the counter has every change up to it.
FEED_NUMBER = ("WITH n AS (UPDATE feed_counter SET n = n + 1 WHERE id = 1"
               " AND EXISTS (SELECT 1 FROM case_feed WHERE seq = -1) RETURNING n)"
               " UPDATE case_feed SET seq = (SELECT n FROM n) WHERE seq = -1 AND EXISTS (SELECT 1 FROM n)")

CACHED_TABLES = ("orgs", "borrowers", "loans", "cases", "mandates")  # the rows replicas cache (vault/rowcache.py)
_UPSERT = " ON CONFLICT (lender_id, case_id) DO UPDATE SET n = EXCLUDED.n"


def _scope_function(name: str, rows: str, keys: tuple[str, ...]) -> str:
    """A row trigger's function: move the counter, and record the cases the row is of at the value it moved to
    (the whole cache, ('', ''), if the row's keys changed). The counter is moved here, under its row lock held
    to the commit, so no reader can have seen a value at or past the one recorded without this change."""
    moved = " OR ".join(f"OLD.{k} IS DISTINCT FROM NEW.{k}" for k in keys)
    return f"""CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ DECLARE v BIGINT; BEGIN
                 v := cache_bump();
                 IF TG_OP = 'UPDATE' THEN
                   IF {moved} THEN
                     INSERT INTO cache_scope(lender_id, case_id, n) VALUES ('', '', v){_UPSERT};
                   END IF;
                 END IF;
                 INSERT INTO cache_scope(lender_id, case_id, n) {rows}{_UPSERT}; RETURN NULL; END $$"""


# A loan's cases, through the index on (lender, borrower): matching the loan alone scans the lender's cases.
_LOAN_MATCH = "borrower_id = NEW.borrower_id AND loan_id = NEW.loan_id"
_OF_CASES = "SELECT lender_id, case_id, v FROM cases WHERE lender_id = NEW.lender_id AND {match}"
FACT_KEYS = ("org", "code", "method", "purpose", "channel", "decision", "lender", "agent")
FACTS_EVERY = 256  # facts are derived up to each multiple of this the log crosses (the tail is read as leaves)


def _leaf_text(key: str) -> str:
    """The leaf's string under `key`, "" when absent or not a string: auditstats.group_of in SQL."""
    return f"(CASE jsonb_typeof(j -> '{key}') WHEN 'string' THEN j ->> '{key}' ELSE '' END)"


# Facts of events [%s, %s), from their leaves.
DERIVE_FACTS = (f"INSERT INTO audit_facts(seq, time, {', '.join(FACT_KEYS)})"
                f" SELECT seq, {_leaf_text('time')}, {', '.join(_leaf_text(k) for k in FACT_KEYS)}"
                f" FROM (SELECT seq, convert_from(leaf, 'UTF8')::jsonb AS j FROM audit_events"
                f" WHERE seq >= %s AND seq < %s) e ON CONFLICT (seq) DO NOTHING")
MIGRATION_LOCK = 0x437573746F73  # "Custos": the advisory lock every migrating replica takes

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (1, "the first layout", [
        """CREATE TABLE orgs(
             id TEXT PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL, jurisdiction TEXT NOT NULL,
             licence_no TEXT, licence_expires TEXT, disabled BOOLEAN NOT NULL DEFAULT false, created_at TEXT NOT NULL)""",
        """CREATE TABLE borrowers(
             lender_id TEXT NOT NULL, borrower_id TEXT NOT NULL,
             kek_version INTEGER NOT NULL, wrapped_dek BYTEA, dek_version INTEGER NOT NULL,
             nid_bidx BYTEA, phone_bidx BYTEA,
             full_name BYTEA, national_id BYTEA, date_of_birth BYTEA, phone BYTEA, email BYTEA, home_address BYTEA,
             work_address BYTEA, employer BYTEA, bank_account BYTEA, emergency_contacts BYTEA,
             erased_at TEXT,
             PRIMARY KEY(lender_id, borrower_id))""",
        "CREATE INDEX borrowers_nid ON borrowers(lender_id, nid_bidx)",
        "CREATE INDEX borrowers_phone ON borrowers(lender_id, phone_bidx)",
        # A loan's terms (amounts, dates, repayments) sealed as one JSON document under the borrower's key.
        """CREATE TABLE loans(
             lender_id TEXT NOT NULL, loan_id TEXT NOT NULL, borrower_id TEXT NOT NULL,
             terms BYTEA NOT NULL, contract_text BYTEA,
             PRIMARY KEY(lender_id, loan_id))""",
        """CREATE TABLE cases(
             lender_id TEXT NOT NULL, case_id TEXT NOT NULL, borrower_id TEXT NOT NULL, loan_id TEXT NOT NULL,
             jurisdiction TEXT NOT NULL, timezone TEXT NOT NULL, stage TEXT NOT NULL,
             status TEXT NOT NULL DEFAULT 'open',
             disputed BOOLEAN NOT NULL DEFAULT false, cease_contact BOOLEAN NOT NULL DEFAULT false,
             attorney_represented BOOLEAN NOT NULL DEFAULT false, lost_contact BOOLEAN NOT NULL DEFAULT false,
             legal_hold BOOLEAN NOT NULL DEFAULT false,
             consent_third_party BOOLEAN NOT NULL DEFAULT false, consent_credit BOOLEAN NOT NULL DEFAULT false,
             created_at TEXT NOT NULL, updated_at TEXT NOT NULL, import_digest BYTEA,
             PRIMARY KEY(lender_id, case_id))""",
        "CREATE INDEX cases_borrower ON cases(lender_id, borrower_id)",
        """CREATE TABLE mandates(
             id BIGSERIAL PRIMARY KEY, lender_id TEXT NOT NULL, case_id TEXT NOT NULL, org_id TEXT NOT NULL,
             purpose TEXT NOT NULL, label TEXT NOT NULL, granted_at TEXT NOT NULL, until TEXT NOT NULL,
             recalled_at TEXT)""",
        "CREATE INDEX mandates_org ON mandates(org_id, case_id)",
        "CREATE INDEX mandates_case ON mandates(lender_id, case_id)",
        """CREATE TABLE contacts(
             id TEXT PRIMARY KEY, lender_id TEXT NOT NULL, case_id TEXT NOT NULL, borrower_id TEXT NOT NULL,
             org_id TEXT NOT NULL, channel TEXT NOT NULL, party TEXT NOT NULL, target BYTEA NOT NULL,
             opened_at TEXT NOT NULL, result TEXT, result_at TEXT)""",
        "CREATE INDEX contacts_borrower ON contacts(lender_id, borrower_id, opened_at)",
        "CREATE INDEX contacts_case ON contacts(lender_id, case_id, opened_at)",
        """CREATE TABLE audit_events(
             seq BIGINT PRIMARY KEY, leaf BYTEA NOT NULL, leaf_hash BYTEA NOT NULL,
             time TEXT NOT NULL, org TEXT NOT NULL, case_id TEXT NOT NULL, borrower_id TEXT NOT NULL)""",
        "CREATE INDEX audit_case ON audit_events(case_id, seq) WHERE case_id <> ''",
        "CREATE INDEX audit_org ON audit_events(org, seq) WHERE org <> ''",
        "CREATE INDEX audit_borrower ON audit_events(borrower_id, seq) WHERE borrower_id <> ''",
        # The head of the one tree: every appending transaction locks this row, so the sequence and the
        # root come from the database inside the commit, whichever replica writes.
        """CREATE TABLE audit_head(
             id INTEGER PRIMARY KEY CHECK (id = 1), size BIGINT NOT NULL, root BYTEA NOT NULL, frontier TEXT NOT NULL)""",
        """INSERT INTO audit_head(id, size, root, frontier)
             VALUES (1, 0, decode('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', 'hex'), '[]')""",
        """CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN RAISE EXCEPTION 'audit log is append-only'; END $$""",
        """CREATE TRIGGER audit_no_update BEFORE UPDATE OR DELETE ON audit_events
             FOR EACH ROW EXECUTE FUNCTION audit_append_only()""",
        """CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit_events
             FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()""",
    ]),
    # Every change to a table whose rows the replicas cache moves one counter in the same transaction,
    # whoever writes; each replica's row cache lives for one value of it (vault/rowcache.py), and the
    # audit commit reads it under the head lock to refuse events decided on an older one.
    (2, "the change counter behind the replicas' row caches", [
        "CREATE TABLE generation(id INTEGER PRIMARY KEY CHECK (id = 1), n BIGINT NOT NULL)",
        "INSERT INTO generation(id, n) VALUES (1, 0)",
        """CREATE FUNCTION bump_generation() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN UPDATE generation SET n = n + 1 WHERE id = 1; RETURN NULL; END $$""",
        *(f"""CREATE TRIGGER {table}_gen AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table}
               FOR EACH STATEMENT EXECUTE FUNCTION bump_generation()"""
          for table in CACHED_TABLES),
    ]),
    # The bureau feed's memory (gateway/core/usecases/furnishing.py): keyed digests of what each bureau was sent.
    (3, "the bureau feed's furnished records", [
        """CREATE TABLE furnished(
             bureau TEXT NOT NULL, seq BIGINT NOT NULL, lender_id TEXT NOT NULL, case_id TEXT NOT NULL,
             digest BYTEA NOT NULL, condition TEXT NOT NULL, at TEXT NOT NULL, PRIMARY KEY(bureau, seq))""",
        "CREATE INDEX furnished_case ON furnished(bureau, lender_id, case_id, seq)",
    ]),
    # The tree's interior hashes (gateway/tlog/proofs.py): tile entries above level 0, derived from the leaves.
    (4, "the tree's interior hashes", [
        """CREATE TABLE audit_nodes(level INTEGER NOT NULL, idx BIGINT NOT NULL, hash BYTEA NOT NULL,
             PRIMARY KEY(level, idx))""",
    ]),
    # Regulators' cosignatures of checkpoints (C2SP tlog-cosignature), served with the checkpoint.
    (5, "regulators' cosignatures", [
        """CREATE TABLE cosignatures(
             id BIGSERIAL PRIMARY KEY, org TEXT NOT NULL, cosigner TEXT NOT NULL, vkey TEXT NOT NULL,
             size BIGINT NOT NULL, note TEXT NOT NULL, line TEXT NOT NULL, at TEXT NOT NULL)""",
    ]),
    # Checkpoints as published (at least once a second while events arrive), by any replica.
    (6, "published checkpoints", [
        "CREATE TABLE checkpoints(size BIGINT PRIMARY KEY, note TEXT NOT NULL, at TEXT NOT NULL)",
    ]),
    (7, "consent changes", [
        "ALTER TABLE cases ADD COLUMN credit_withdrawn BOOLEAN NOT NULL DEFAULT false",
        "ALTER TABLE cases ADD COLUMN consent_changed_at TEXT",
    ]),
    # Each full tile's interior (heights 1..7, proofs.pyramid): a proof reads one row per tile it crosses.
    (8, "each full tile's interior", [
        """CREATE TABLE audit_inner(level INTEGER NOT NULL, idx BIGINT NOT NULL, interior BYTEA NOT NULL,
             PRIMARY KEY(level, idx))""",
    ]),
    # Each case's view of its borrower's erasure: pending until erase_due, or done (gateway/core/usecases/lifecycle.py).
    (9, "erasure, pending and done; closure time; data keys by KEK version", [
        "ALTER TABLE cases ADD COLUMN erasure TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE cases ADD COLUMN erase_due TEXT",
        "ALTER TABLE cases ADD COLUMN closed_at TEXT",
        "UPDATE cases SET closed_at = updated_at WHERE status <> 'open'",
        "CREATE INDEX cases_erase_due ON cases(erase_due) WHERE erase_due IS NOT NULL",
        "CREATE INDEX borrowers_kek ON borrowers(kek_version)",
        # A rewrap (KEK rotation) changes only the wrapping of a data key: it leaves the caches alone.
        "DROP TRIGGER borrowers_gen ON borrowers",
        f"""CREATE TRIGGER borrowers_gen AFTER INSERT OR DELETE OR TRUNCATE OR UPDATE OF {', '.join(BORROWER_GEN_COLUMNS)}
               ON borrowers FOR EACH STATEMENT EXECUTE FUNCTION bump_generation()""",
    ]),
    # The work lists' change feed (gateway/core/usecases/worklists.py), every existing case numbered once.
    (10, "the work lists' change feed; mandates' lapse time", [
        "CREATE TABLE feed_counter(id INTEGER PRIMARY KEY CHECK (id = 1), n BIGINT NOT NULL)",
        """CREATE TABLE case_feed(lender_id TEXT NOT NULL, case_id TEXT NOT NULL, seq BIGINT NOT NULL,
             PRIMARY KEY(lender_id, case_id))""",
        "CREATE INDEX case_feed_seq ON case_feed(seq, lender_id, case_id)",
        """INSERT INTO case_feed(lender_id, case_id, seq)
             SELECT lender_id, case_id, row_number() OVER (ORDER BY lender_id, case_id) FROM cases""",
        "INSERT INTO feed_counter(id, n) SELECT 1, count(*) FROM case_feed",
        "ALTER TABLE mandates ADD COLUMN lapsed_at TEXT",
        "CREATE INDEX mandates_open_until ON mandates(until) WHERE recalled_at IS NULL AND lapsed_at IS NULL",
        _feed_function("feed_case", ""),
        _feed_function("feed_borrower", "borrower_id = NEW.borrower_id"),
        _feed_function("feed_loan", "loan_id = NEW.loan_id"),
        "CREATE TRIGGER cases_feed_insert AFTER INSERT ON cases FOR EACH ROW EXECUTE FUNCTION feed_case()",
        f"""CREATE TRIGGER cases_feed_update AFTER UPDATE OF {', '.join(_CASE_RELEASE_V10)} ON cases
              FOR EACH ROW WHEN ({_changed(_CASE_RELEASE_V10)}) EXECUTE FUNCTION feed_case()""",
        "CREATE TRIGGER mandates_feed AFTER INSERT OR UPDATE ON mandates FOR EACH ROW EXECUTE FUNCTION feed_case()",
        f"""CREATE TRIGGER borrowers_feed AFTER UPDATE OF {', '.join(BORROWER_RELEASE_COLUMNS)} ON borrowers
              FOR EACH ROW WHEN ({_changed(BORROWER_RELEASE_COLUMNS)}) EXECUTE FUNCTION feed_borrower()""",
        f"""CREATE TRIGGER loans_feed AFTER UPDATE OF {', '.join(LOAN_RELEASE_COLUMNS)} ON loans
              FOR EACH ROW WHEN ({_changed(LOAN_RELEASE_COLUMNS)}) EXECUTE FUNCTION feed_loan()""",
    ]),
    # A lender's postal address and telephone: the header of its Metro 2 file (gateway/formats/metro2.py).
    (11, "orgs' address and telephone", [
        "ALTER TABLE orgs ADD COLUMN address TEXT",
        "ALTER TABLE orgs ADD COLUMN telephone TEXT",
    ]),
    # The living account (gateway/core/usecases/account.py): the as-of time and digest of the last update applied
    # per case. A loan's interest and fees are in its sealed terms, which need no column.
    (12, "the last account update applied per case", [
        "ALTER TABLE cases ADD COLUMN account_as_of TEXT",
        "ALTER TABLE cases ADD COLUMN update_digest BYTEA",
    ]),
    # Per-case row-cache invalidation (issue 24): each change to a cached table records the cases it is of in
    # `cache_scope` at the counter value it moved the counter to, so a replica drops only those cases' entries
    # (vault/rowcache.py); ('', '') is a change of no one case (an org, a deletion, a retired KEK): all go.
    (13, "the scope of each change to cached rows (per-case row-cache invalidation)", [
        """CREATE TABLE cache_scope(lender_id TEXT NOT NULL, case_id TEXT NOT NULL, n BIGINT NOT NULL,
             PRIMARY KEY(lender_id, case_id))""",
        "CREATE INDEX cache_scope_n ON cache_scope(n)",
        """CREATE FUNCTION cache_bump() RETURNS BIGINT LANGUAGE plpgsql AS $$ DECLARE v BIGINT; BEGIN
             UPDATE generation SET n = n + 1 WHERE id = 1 RETURNING n INTO v; RETURN v; END $$""",
        f"""CREATE FUNCTION cache_whole() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
             INSERT INTO cache_scope(lender_id, case_id, n) VALUES ('', '', cache_bump()){_UPSERT};
             RETURN NULL; END $$""",
        _scope_function("cache_case", "VALUES (NEW.lender_id, NEW.case_id, v)",
                        ("lender_id", "case_id", "borrower_id", "loan_id")),
        _scope_function("cache_mandate", "VALUES (NEW.lender_id, NEW.case_id, v)", ("lender_id", "case_id")),
        _scope_function("cache_borrower", _OF_CASES.format(match="borrower_id = NEW.borrower_id"),
                        ("lender_id", "borrower_id")),
        _scope_function("cache_loan", _OF_CASES.format(match=_LOAN_MATCH),
                        ("lender_id", "loan_id", "borrower_id")),
        *(f"DROP TRIGGER {table}_gen ON {table}" for table in CACHED_TABLES),
        """CREATE TRIGGER orgs_gen AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON orgs
             FOR EACH STATEMENT EXECUTE FUNCTION cache_whole()""",
        *(f"""CREATE TRIGGER {table}_gen_gone AFTER DELETE OR TRUNCATE ON {table}
               FOR EACH STATEMENT EXECUTE FUNCTION cache_whole()""" for table in CACHED_TABLES if table != "orgs"),
        "CREATE TRIGGER cases_gen AFTER INSERT OR UPDATE ON cases FOR EACH ROW EXECUTE FUNCTION cache_case()",
        "CREATE TRIGGER mandates_gen AFTER INSERT OR UPDATE ON mandates FOR EACH ROW EXECUTE FUNCTION cache_mandate()",
        f"""CREATE TRIGGER borrowers_gen AFTER INSERT OR UPDATE OF {', '.join(BORROWER_GEN_COLUMNS)} ON borrowers
              FOR EACH ROW EXECUTE FUNCTION cache_borrower()""",
        "CREATE TRIGGER loans_gen AFTER INSERT OR UPDATE ON loans FOR EACH ROW EXECUTE FUNCTION cache_loan()",
        f"INSERT INTO cache_scope(lender_id, case_id, n) VALUES ('', '', cache_bump()){_UPSERT}",
        # The change feed finds a loan's cases through the (lender, borrower) index, not by a scan of the lender's.
        _feed_function("feed_loan", _LOAN_MATCH).replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1),
    ]),
    # Payments reported by those who collect (gateway/core/usecases/payments.py): one row per (lender, org,
    # reference), the rejection's reason sealed under the borrower's data key; a mandate's commission (fee term).
    (14, "payments reported by those who collect; mandates' commission", [
        "ALTER TABLE mandates ADD COLUMN commission TEXT",
        """CREATE TABLE payments(
             id TEXT PRIMARY KEY, lender_id TEXT NOT NULL, case_id TEXT NOT NULL, borrower_id TEXT NOT NULL,
             org_id TEXT NOT NULL, amount TEXT NOT NULL, currency TEXT NOT NULL, paid_on TEXT NOT NULL,
             reference TEXT NOT NULL, status TEXT NOT NULL, reported_at TEXT NOT NULL, decided_at TEXT,
             commission TEXT, reason BYTEA, UNIQUE(lender_id, org_id, reference))""",
        "CREATE INDEX payments_lender ON payments(lender_id, reported_at)",
        "CREATE INDEX payments_decided ON payments(status, decided_at)",
    ]),
    # ---- promises and plans (gateway/core/usecases/plans.py): a promise's terms on its contact; repayment plans
    # (instalments as JSON in the borrower's calendar, a rejection reason sealed under the borrower's data key);
    # each case's accepted plan, a release column (it sets amount_due), so the change feed follows it.
    (15, "promises' terms, repayment plans, each case's accepted plan", [
        "ALTER TABLE contacts ADD COLUMN promise_amount TEXT",
        "ALTER TABLE contacts ADD COLUMN promise_on TEXT",
        "ALTER TABLE cases ADD COLUMN active_plan TEXT",
        """CREATE TABLE plans(
             id TEXT PRIMARY KEY, lender_id TEXT NOT NULL, case_id TEXT NOT NULL, borrower_id TEXT NOT NULL,
             org_id TEXT NOT NULL, status TEXT NOT NULL, instalments TEXT NOT NULL, proposed_at TEXT NOT NULL,
             decided_at TEXT, reason BYTEA)""",
        "CREATE INDEX plans_case ON plans(lender_id, case_id, proposed_at)",
        "DROP TRIGGER cases_feed_update ON cases",
        f"""CREATE TRIGGER cases_feed_update AFTER UPDATE OF {', '.join(_CASE_RELEASE_V15)} ON cases
              FOR EACH ROW WHEN ({_changed(_CASE_RELEASE_V15)}) EXECUTE FUNCTION feed_case()""",
    ]),
    # ---- audit stats (gateway/core/rules/auditstats.py): what it groups by, derived from each leaf so SQL counts
    # without parsing JSON per call; every commit crossing a multiple of FACTS_EVERY derives up to it
    # (PgAuditLog), this migration derives the log so far. A convenience: `audit stats --verify` recounts leaves.
    (16, "the facts audit stats counts, derived from the leaves", [
        """CREATE TABLE audit_facts(
             seq BIGINT PRIMARY KEY, time TEXT NOT NULL, org TEXT NOT NULL, code TEXT NOT NULL,
             method TEXT NOT NULL, purpose TEXT NOT NULL, channel TEXT NOT NULL, decision TEXT NOT NULL,
             lender TEXT NOT NULL, agent TEXT NOT NULL)""",
        "CREATE INDEX audit_facts_time ON audit_facts(time)",
        DERIVE_FACTS.replace("%s", "0", 1).replace("%s", "(SELECT COALESCE(MAX(seq) + 1, 0) FROM audit_events)", 1),
    ]),
    # ---- opt-outs and call recordings (issue 26): a recording's opaque reference on its contact (never content),
    # kept past the borrower's erasure until recording_until (the conduct file's [recordings] keep_years).
    (17, "call recordings' references on contacts", [
        "ALTER TABLE contacts ADD COLUMN recording TEXT",
        "ALTER TABLE contacts ADD COLUMN recording_until TEXT",
    ]),
    # ---- licences, artificial voices, notices (issue 26): regional licences as JSON in the org's row (a cached
    # table, so a change drops remembered grants); a case's region, artificial-voice consent, notices, verification.
    (18, "regional licences; a case's region, artificial-voice consent, notices and verification", [
        "ALTER TABLE orgs ADD COLUMN licences TEXT",
        "ALTER TABLE cases ADD COLUMN region TEXT",
        "ALTER TABLE cases ADD COLUMN consent_artificial_voice BOOLEAN NOT NULL DEFAULT false",
        "ALTER TABLE cases ADD COLUMN validation_notice_on TEXT",
        "ALTER TABLE cases ADD COLUMN outsourcing_notice_on TEXT",
        "ALTER TABLE cases ADD COLUMN verification_sent_on TEXT",
    ]),
    # ---- EU (issue 26): forbearance measures before escalation (CCD (EU) 2023/2225 Art. 35); no personal data.
    (19, "EU: forbearance measures", [
        """CREATE TABLE forbearance(
             lender_id TEXT NOT NULL, case_id TEXT NOT NULL, measure TEXT NOT NULL, on_date TEXT NOT NULL,
             recorded_at TEXT NOT NULL)""",
        "CREATE INDEX forbearance_case ON forbearance(lender_id, case_id)",
    ]),
    # ---- mandates (issue 26): a debt that must not be collected nor furnished (flags), and the records before
    # sharing named by a mandate (PIPL Art. 21 agreement, Art. 55-56 impact assessment).
    (20, "identity-theft and discharged flags; cross-border consent and transfer mechanism; mandates' agreement and"
         " impact-assessment references", [
        "ALTER TABLE cases ADD COLUMN identity_theft BOOLEAN NOT NULL DEFAULT false",
        "ALTER TABLE cases ADD COLUMN discharged BOOLEAN NOT NULL DEFAULT false",
        "ALTER TABLE cases ADD COLUMN consent_cross_border BOOLEAN NOT NULL DEFAULT false",
        "ALTER TABLE cases ADD COLUMN transfer_mechanism TEXT",
        "ALTER TABLE cases ADD COLUMN transfer_reference TEXT",
        "ALTER TABLE cases ADD COLUMN transfer_valid_until TEXT",
        "ALTER TABLE mandates ADD COLUMN agreement TEXT",
        "ALTER TABLE mandates ADD COLUMN pia TEXT",
        "DROP TRIGGER cases_feed_update ON cases",  # made again: a change of these moves the work lists' feed
        f"""CREATE TRIGGER cases_feed_update AFTER UPDATE OF {', '.join(CASE_RELEASE_COLUMNS)} ON cases
              FOR EACH ROW WHEN ({_changed(CASE_RELEASE_COLUMNS)}) EXECUTE FUNCTION feed_case()""",
    ]),
]

LATEST = MIGRATIONS[-1][0]


def migrate(conn: Any) -> list[int]:
    """Apply every migration the database lacks, in order; return the versions applied now."""
    applied: list[int] = []
    conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version("
                     "version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        conn.commit()
        have = {int(r[0]) for r in conn.execute("SELECT version FROM schema_version").fetchall()}
        conn.commit()
        for version, description, statements in MIGRATIONS:
            if version in have:
                continue
            with conn.transaction():
                for statement in statements:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version(version, description) VALUES (%s, %s)",
                             (version, description))
            applied.append(version)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
        conn.commit()
    return applied


def version(conn: Any) -> int:
    row = conn.execute("SELECT to_regclass('schema_version')").fetchone()
    if row is None or row[0] is None:
        return 0
    found = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
    return int(found[0]) if found else 0
