"""Invariants 3 and 6: audit before release, and an append-only, verifiable log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from custos_client import CustosClientError
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import cli, synth
from gateway.tlog import merkle
from gateway.tlog.verify import VerifyError, sample_seqs, verify_log
from tests.conftest import Env
from vault.crypto import read_key_file
from vault.sqlite import db

# RFC 6962 reference vectors (certificate-transparency's merkle tree tests).
CT_LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                        "606162636465666768696a6b6c6d6e6f")]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def test_merkle_root_matches_rfc6962_vectors() -> None:
    assert merkle.root_of([]).hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    frontier = merkle.Frontier()
    for n, leaf in enumerate(CT_LEAVES, start=1):
        frontier.append(merkle.leaf_hash(leaf))
        assert merkle.root_of([merkle.leaf_hash(x) for x in CT_LEAVES[:n]]).hex() == CT_ROOTS[n - 1]
        assert frontier.root().hex() == CT_ROOTS[n - 1]


def test_frontier_equals_recursive_root_for_many_sizes() -> None:
    hashes = [merkle.leaf_hash(str(i).encode()) for i in range(70)]
    frontier = merkle.Frontier()
    for n in range(70):
        frontier.append(hashes[n])
        restored = merkle.Frontier.loads(frontier.size, frontier.dumps())
        assert restored.root() == merkle.root_of(hashes[: n + 1])


def test_canonical_json_is_rfc8785_for_event_values() -> None:
    obj = {"b": [1, True, None], "a": "é\u2028\n\"\\/", "A": "\x01", "seq": 7}
    assert merkle.canonical_json(obj) == '{"A":"\\u0001","a":"é\u2028\\n\\"\\\\/","b":[1,true,null],"seq":7}'.encode()
    with pytest.raises(ValueError):
        merkle.canonical_json({"x": 1.5})


def test_checkpoint_is_a_signed_note_the_vkey_verifies(seeded: Env) -> None:
    note = seeded.client("regulator-1").checkpoint()
    vkey = (seeded.data / "audit.vkey").read_text()
    name, keyhash, _ = vkey.strip().split("+", 2)
    assert len(keyhash) == 8 and note.startswith(name + "\n")
    lines = note.split("\n")
    assert lines[3] == "" and lines[4].startswith("\u2014 " + name + " ")
    cp = merkle.verify_checkpoint(note, merkle.parse_verifier_key(vkey))
    assert cp.size > 0
    forged = note.replace(f"\n{cp.size}\n", f"\n{cp.size + 1}\n")
    with pytest.raises(ValueError):
        merkle.verify_checkpoint(forged, merkle.parse_verifier_key(vkey))


def test_every_release_follows_its_durable_event(seeded: Env) -> None:
    before = seeded.gw.vault.audit.size
    rec = seeded.client("agency-1").get_case("C-1", "collection")
    ev = [e for e in seeded.events(case_id="C-1") if e.method == "GetCase"][-1]
    assert ev.seq >= before and ev.decision == "allow" and sorted(ev.data["fields"]) == sorted(rec.fields)
    assert set(ev.data) == {"seq", "time", "org", "method", "purpose", "case_id", "borrower_id", "fields", "decision",
                       "code", "rule", "policy_revision", "trace_id", "lender"}
    assert ev.data["lender"] == "lender-a"  # the owning lender of the case read (DESIGN.md §7)
    assert ev.data["policy_revision"] == seeded.gw.core.bundle.revision and ev.data["trace_id"]


def test_gateway_refuses_to_serve_when_the_audit_log_cannot_be_written(seeded: Env) -> None:
    audit = seeded.gw.vault.audit
    size = audit.size

    def broken() -> None:
        raise db.DbError("disk I/O error")

    audit.before_commit = broken
    agency, lender = seeded.client("agency-1"), seeded.client("lender-a")
    for call in (lambda: agency.get_case("C-1", "collection"), lambda: lender.get_case("C-1", "servicing"),
                 lambda: lender.set_stage("C-1", "letter"), lambda: agency.list_cases()):
        with pytest.raises(CustosClientError) as info:
            call()
        assert (info.value.code, info.value.status) == ("AUDIT_UNAVAILABLE", "UNAVAILABLE")
    audit.before_commit = None
    assert audit.size == size
    # Nothing of the failed batches was stored: the stage did not change.
    assert lender.get_case("C-1", "servicing").stage == "reminder"


@pytest.mark.sqlite_only  # SQLite's own files or internals
@pytest.mark.parametrize("index_every", [1, 10_000])  # every batch in an explicit transaction / one statement
def test_a_failing_insert_stores_nothing_and_the_log_goes_on(seeded: Env, tmp_path: Path, index_every: int) -> None:
    """The write itself fails (not a hook): the batch is refused, nothing is stored, the next batch continues."""
    audit = seeded.gw.vault.audit
    audit.index_every = index_every
    size = audit.size
    conn = _raw_db(seeded)
    conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'full'); END")
    with pytest.raises(CustosClientError) as info:
        seeded.client("agency-1").get_case("C-1", "collection")
    assert info.value.code == "AUDIT_UNAVAILABLE"
    assert audit.size == size
    assert conn.execute("SELECT count(*) FROM audit_events").fetchone()[0] == size
    conn.execute("DROP TRIGGER refuse")
    conn.close()
    assert seeded.client("agency-1").get_case("C-1", "collection").fields
    assert audit.size == size + 1
    assert _verify(seeded, tmp_path)[0] == 0


class _RawAudit:
    """The audit store opened directly, as an operator with the keys and the database could (SQLite or PostgreSQL)."""

    def __init__(self, env: Env) -> None:
        self.url = json.loads((env.data / "config.json").read_text()).get("database")
        if self.url:
            import psycopg

            self.conn: Any = psycopg.connect(self.url, autocommit=True)
        else:
            self.conn = db.connect(env.data / "audit.db", read_key_file(env.data / "keys" / "db.key"))

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        if not self.url:
            return self.conn.execute(sql, params)
        import psycopg

        try:
            return self.conn.execute(sql.replace("?", "%s"), params)
        except psycopg.Error as exc:
            raise db.DbError(type(exc).__name__) from None

    def drop_triggers(self) -> None:
        if self.url:
            self.execute("ALTER TABLE audit_events DISABLE TRIGGER USER")
        else:
            self.execute("DROP TRIGGER audit_no_update")
            self.execute("DROP TRIGGER audit_no_delete")

    def close(self) -> None:
        self.conn.close()


def _raw_db(env: Env) -> _RawAudit:
    return _RawAudit(env)


def _verify(env: Env, tmp_path: Path, state: str | None = "state.json", *extra: str) -> tuple[int, str, str]:
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(["audit", "verify", "--key", str(env.data / "audit.vkey"),
                       *(["--state", str(tmp_path / state)] if state else []), *extra,
                       "--gateway", env.addr, "--identity", str(env.identity("regulator-1")), "--json"])
    return rc, out.getvalue(), err.getvalue()


def rewrite_history(env: Env, seq: int) -> None:
    """Event `seq` edited and the stored tree head recomputed over the edited log: the gateway signs the forgery."""
    _tamper(env, "UPDATE audit_events SET leaf = ? WHERE seq = ?", (_edited_leaf(env, seq), seq))
    conn = _raw_db(env)
    leaves = [bytes(r[0]) for r in conn.execute("SELECT leaf FROM audit_events ORDER BY seq")]
    f = merkle.Frontier()
    for leaf in leaves:
        f.append(merkle.leaf_hash(leaf))
    conn.execute("UPDATE audit_head SET size = ?, root = ?, frontier = ? WHERE id = 1", (f.size, f.root(), f.dumps()))
    conn.close()
    env.gw.vault.audit._frontier = f  # the running gateway reloads the forged head


def _tamper(env: Env, sql: str, params: tuple[Any, ...] = ()) -> None:
    conn = _raw_db(env)
    conn.drop_triggers()
    conn.execute(sql, params)
    conn.close()


def test_append_only_triggers_refuse_edits(seeded: Env) -> None:
    conn = _raw_db(seeded)
    for sql in ("UPDATE audit_events SET leaf = ? WHERE seq = 1", "DELETE FROM audit_events WHERE seq = 1"):
        with pytest.raises(db.DbError):
            conn.execute(sql, (b"\x00",) if "?" in sql else ())
    conn.close()


def _edited_leaf(env: Env, seq: int) -> bytes:
    conn = _raw_db(env)
    leaf = bytes(conn.execute("SELECT leaf FROM audit_events WHERE seq = ?", (seq,)).fetchone()[0])
    conn.close()
    obj = json.loads(leaf)
    obj["decision"] = "deny" if obj["decision"] == "allow" else "allow"
    return merkle.canonical_json(obj)


@pytest.mark.parametrize("tamper", ["edit", "delete_last", "delete_middle", "swap", "edit_and_rehash"])
def test_tampering_makes_verify_fail(seeded: Env, tmp_path: Path, tamper: str) -> None:
    rc, out, _ = _verify(seeded, tmp_path)
    assert rc == 0 and json.loads(out)["verified"] is True
    seeded.client("agency-1").get_case("C-1", "collection")
    size = seeded.gw.vault.audit.size
    if tamper == "edit":
        _tamper(seeded, "UPDATE audit_events SET leaf = ? WHERE seq = 3", (_edited_leaf(seeded, 3),))
    elif tamper == "delete_last":
        _tamper(seeded, "DELETE FROM audit_events WHERE seq = ?", (size - 1,))
    elif tamper == "delete_middle":
        _tamper(seeded, "DELETE FROM audit_events WHERE seq = 4")
    elif tamper == "swap":
        conn = _raw_db(seeded)
        a, b = (bytes(conn.execute("SELECT leaf FROM audit_events WHERE seq = ?", (s,)).fetchone()[0]) for s in (2, 5))
        conn.close()
        _tamper(seeded, "UPDATE audit_events SET leaf = CASE seq WHEN 2 THEN ? ELSE ? END WHERE seq IN (2, 5)", (b, a))
    else:
        # An operator who rewrites an event AND recomputes the stored tree head gets the gateway to sign the
        # forged root; the regulator's saved state (the last checkpoint it verified) still catches it.
        rewrite_history(seeded, 3)
    # Without a state, and with it re-reading every event: the change is found and named. (A log rewritten
    # and re-signed with the real key is self-consistent: only a saved state, or a cosignature, shows it.)
    runs = [(None, ()), ("state.json", ("--full",))] if tamper != "edit_and_rehash" else [("state.json", ("--full",))]
    for state, extra in runs:
        rc, out, err = _verify(seeded, tmp_path, state, *extra)
        assert rc != 0, (tamper, state)
        assert json.loads(out)["error"]["code"] == "AUDIT_VERIFY_FAILED"
        assert err.startswith("error: AUDIT_VERIFY_FAILED: ")
        assert EXPECTED[tamper] in err, (tamper, err)
    # An incremental run reads only what was added since the state: it sees a tree that was rewritten or
    # cut short; a byte changed inside the verified part, with the tree's hashes left as they were, is for
    # a full run (above) and for any reader who checks the event against the tree (an inclusion proof).
    rc, _, err = _verify(seeded, tmp_path)
    if tamper in ("delete_last", "edit_and_rehash"):
        assert rc != 0 and INCREMENTAL[tamper] in err, (tamper, err)


EXPECTED = {"edit": "event 3 altered", "delete_last": "events missing", "delete_middle": "events missing",
            "swap": "event 2 altered", "edit_and_rehash": "inconsistent tree"}
INCREMENTAL = {"delete_last": "events missing", "edit_and_rehash": "inconsistent tree"}


def _query(env: Env, *extra: str) -> tuple[int, str, str]:
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(["audit", "query", *extra, "--gateway", env.addr, "--identity",
                       str(env.identity("regulator-1")), "--json"])
    return rc, out.getvalue(), err.getvalue()


def test_audit_query_with_a_pinned_key_refuses_an_event_edited_in_place(seeded: Env, tmp_path: Path) -> None:
    # Verified once (the regulator's state pins it), then edited in place: the stored tree is untouched.
    assert _verify(seeded, tmp_path)[0] == 0
    seeded.client("agency-1").get_case("C-1", "collection")
    _tamper(seeded, "UPDATE audit_events SET leaf = ? WHERE seq = 3", (_edited_leaf(seeded, 3),))
    vkey = str(seeded.data / "audit.vkey")
    rc, out, _ = _query(seeded)
    assert rc == 0 and any(e["seq"] == 3 for e in json.loads(out)["events"])  # without a key it is served
    rc, out, err = _query(seeded, "--key", vkey)
    assert rc != 0
    error = json.loads(out)["error"]
    assert error["code"] == "AUDIT_VERIFY_FAILED" and error["seq"] == 3
    assert err.startswith("error: AUDIT_VERIFY_FAILED: event 3 altered")
    assert "events" not in json.loads(out)  # nothing printed, not even the events that do verify
    # The typed client refuses the same way.
    with pytest.raises(CustosClientError) as caught:
        seeded.client("regulator-1").verified_audit_query(Path(vkey).read_text())
    assert caught.value.code == "AUDIT_VERIFY_FAILED" and getattr(caught.value, "seq", None) == 3
    # An event outside the edit still verifies when the query does not reach the edited one.
    rc, out, _ = _query(seeded, "--key", vkey, "--case", "C-1")
    assert rc == 0 and all(e["seq"] != 3 for e in json.loads(out)["events"])


def test_audit_query_with_a_pinned_key_passes_on_an_honest_log(seeded: Env) -> None:
    seeded.client("agency-1").get_case("C-1", "collection")
    vkey = str(seeded.data / "audit.vkey")
    rc, out, err = _query(seeded, "--key", vkey)
    assert rc == 0, err
    keyed = json.loads(out)["events"]
    plain = {e["seq"]: e for e in json.loads(_query(seeded)[1])["events"]}
    # Every event up to the checkpoint (its own query event included), each as the plain query serves it.
    assert [e["seq"] for e in keyed] == list(range(len(keyed))) and len(keyed) >= 5
    assert all(plain[e["seq"]] == e for e in keyed)
    rc, out, _ = _query(seeded, "--key", vkey, "--case", "C-1")
    assert rc == 0 and any(e.get("method") != "supervision.query" for e in json.loads(out)["events"])
    # A key that is not the log's: nothing verifies.
    other = seeded.data / "other.vkey"
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    origin = Path(vkey).read_text().split("+", 1)[0]
    other.write_text(merkle.verifier_key(origin, Ed25519PrivateKey.generate().public_key()) + "\n")
    rc, out, _ = _query(seeded, "--key", str(other))
    assert rc != 0 and json.loads(out)["error"]["code"] == "AUDIT_VERIFY_FAILED"


def test_incremental_verify_rechecks_a_random_sample_of_earlier_events(seeded: Env, tmp_path: Path) -> None:
    assert _verify(seeded, tmp_path)[0] == 0
    seeded.client("agency-1").get_case("C-1", "collection")
    _tamper(seeded, "UPDATE audit_events SET leaf = ? WHERE seq = 3", (_edited_leaf(seeded, 3),))
    # Reading only the new events, with no sample: the edit inside the verified part goes unseen.
    rc, out, _ = _verify(seeded, tmp_path, "state.json", "--sample", "0")
    assert rc == 0 and json.loads(out)["sampled"] == 0
    verified = json.loads(out)["size"]
    # A sample as large as the verified part re-reads every earlier event by proof: the edit is found.
    rc, out, err = _verify(seeded, tmp_path, "state.json", "--sample", str(verified))
    assert rc != 0
    error = json.loads(out)["error"]
    assert error["code"] == "AUDIT_VERIFY_FAILED" and error["seq"] == 3
    assert "event 3 altered" in err


def test_incremental_verify_samples_by_default_and_passes_on_an_honest_log(seeded: Env, tmp_path: Path) -> None:
    assert _verify(seeded, tmp_path)[0] == 0
    seeded.import_cases("lender-a", [synth.case_line(50)])
    rc, out, _ = _verify(seeded, tmp_path)
    doc = json.loads(out)
    assert rc == 0 and 0 < doc["sampled"] <= min(cli.DEFAULT_SAMPLE, doc["size"])
    rc, out, _ = _verify(seeded, tmp_path, "state.json", "--sample", "-1")
    assert rc != 0 and json.loads(out)["error"]["code"] == "INVALID_ARGUMENT"
    # A sample names only events of the verified tree.
    with pytest.raises(CustosClientError) as caught:
        seeded.client("regulator-1").check_sample([doc["size"]], doc["size"], b"\0" * 32)
    assert caught.value.code == "PROOF_OUT_OF_RANGE"


def test_sample_is_uniform_without_replacement_and_capped() -> None:
    assert sample_seqs(10, 64) == list(range(10))
    assert sample_seqs(0, 64) == []
    drawn = sample_seqs(10_000, 64)
    assert len(set(drawn)) == 64 and all(0 <= s < 10_000 for s in drawn) and drawn == sorted(drawn)
    assert sample_seqs(10_000, 64) != drawn  # not a fixed choice an operator could learn


def test_verify_passes_on_an_honest_growing_log(seeded: Env, tmp_path: Path) -> None:
    rc, out, _ = _verify(seeded, tmp_path)
    first = json.loads(out)
    assert rc == 0 and first["read"] == first["size"]  # the first run reads every event
    seeded.import_cases("lender-a", [synth.case_line(50)])
    rc, out, _ = _verify(seeded, tmp_path)
    later = json.loads(out)
    # Later runs read only what was added since (a consistency proof stands for the rest).
    assert rc == 0 and later["size"] > first["size"] and later["read"] == later["size"] - first["size"]
    rc, out, _ = _verify(seeded, tmp_path)
    # Nothing new but the verifier's own audited queries (events, proofs, its sample of earlier events).
    assert rc == 0 and json.loads(out)["read"] <= 3


def test_verify_log_detects_reordering_without_a_gateway() -> None:
    leaves = [merkle.canonical_json({"seq": i, "x": str(i)}) for i in range(5)]
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    f = merkle.Frontier()
    for leaf in leaves:
        f.append(merkle.leaf_hash(leaf))
    note = merkle.sign_checkpoint("test.invalid/log", 5, f.root(), key)
    vkey = merkle.verifier_key("test.invalid/log", key.public_key())
    assert verify_log(enumerate(leaves), note, vkey).size == 5
    swapped = [leaves[1], leaves[0], *leaves[2:]]
    with pytest.raises(VerifyError):
        verify_log(enumerate(swapped), note, vkey)
    other = Ed25519PrivateKey.generate()
    with pytest.raises(VerifyError):
        verify_log(enumerate(leaves), note, merkle.verifier_key("test.invalid/log", other.public_key()))


def test_audit_query_filters(seeded: Env) -> None:
    seeded.client("agency-2").list_cases()
    seeded.clock.advance(hours=1)
    since = "2026-11-30T02:30:00Z"
    seeded.client("agency-1").get_case("C-1", "collection")
    by_org = seeded.events(org="agency-2")
    assert by_org and all(e.org == "agency-2" for e in by_org)
    by_case = seeded.events(case_id="C-2")
    assert by_case and all(e.case_id == "C-2" for e in by_case)
    by_borrower = seeded.events(borrower_id="B-1")
    assert {e.case_id for e in by_borrower} >= {"C-1", "C-2"}
    recent = seeded.events(since=since)
    assert recent and all(e.time >= since for e in recent)
    with pytest.raises(CustosClientError) as info:
        seeded.events(since="yesterday")
    assert info.value.code == "INVALID_TIME"


@pytest.mark.sqlite_only  # SQLite's own files or internals
@pytest.mark.parametrize(("index_every", "fanout"), [(1, 2), (1, 3), (4, 2), (10_000, 16)])
def test_audit_query_same_answer_from_index_and_tail(seeded: Env, index_every: int, fanout: int) -> None:
    """Filtered queries read the index runs up to `indexed_upto` and scan the tail: together exactly the matches."""
    seeded.gw.vault.audit.index_every = index_every
    seeded.gw.vault.audit.run_fanout = fanout
    for i in range(7):
        seeded.client("agency-1" if i % 2 else "agency-2").list_cases()
        seeded.client("agency-1").get_case("C-1", "collection")
        seeded.client("lender-a").get_case(f"C-{1 + i % 2}", "servicing")
    everything = seeded.events()
    indexed = seeded.gw.vault.audit.tables.audit_indexed_upto()
    if index_every == 1:
        assert indexed >= len(everything) - 1  # only the query's own event may be past the mark
        levels = {lv for (lv,) in seeded.gw.vault.audit.tables.audit_conn.execute("SELECT level FROM audit_runs")}
        assert db.TOP_LEVEL in levels  # merged all the way up
    if index_every == 10_000:
        assert indexed == 0
    for filters, match in (
        ({"case_id": "C-2"}, lambda e: e.case_id == "C-2"),
        ({"org": "agency-2"}, lambda e: e.org == "agency-2"),
        ({"borrower_id": "B-1"}, lambda e: e.data["borrower_id"] == "B-1"),
        ({"case_id": "C-1", "org": "agency-1"}, lambda e: e.case_id == "C-1" and e.org == "agency-1"),
    ):
        # Each query records itself (with its filters); compare over the log as `everything` saw it.
        got = [e.seq for e in seeded.events(**filters) if e.seq < len(everything)]
        want = [e.seq for e in everything if match(e)]
        assert got == want and want, filters


def _runs_are_sound(conn: db.Connection, upto: int, fanout: int) -> list[tuple[int, int, int, int]]:
    """The runs partition [0, upto) in order, each holds exactly its events' keys, levels below the top are short."""
    runs = [tuple(r) for r in conn.execute("SELECT run, level, first, upto FROM audit_runs ORDER BY first")]
    assert [r[2] for r in runs] == [0, *[r[3] for r in runs]][:len(runs)]
    assert (runs[-1][3] if runs else 0) == upto
    for run, level, first, end in runs:
        want = sorted(
            (f"{p}:{v}", seq)
            for seq, case_id, org, borrower_id in conn.execute(
                "SELECT seq, case_id, org, borrower_id FROM audit_events WHERE seq >= ? AND seq < ?", (first, end))
            for p, v in (("c", case_id), ("o", org), ("b", borrower_id)) if v)
        got = [tuple(r) for r in conn.execute("SELECT key, seq FROM audit_runix WHERE run = ? ORDER BY key, seq",
                                              (run,))]
        assert got == want
        assert 0 <= level <= db.TOP_LEVEL
    for level in range(db.TOP_LEVEL):
        assert sum(1 for r in runs if r[1] == level) < fanout
    orphans = conn.execute("SELECT count(*) FROM audit_runix WHERE run NOT IN (SELECT run FROM audit_runs)")
    assert orphans.fetchone()[0] == 0
    return runs  # type: ignore[return-value]


@pytest.mark.sqlite_only  # SQLite's own files or internals
def test_audit_index_is_filled_in_bulk_not_per_event(seeded: Env) -> None:
    audit = seeded.gw.vault.audit
    tables = audit.tables
    audit.index_every = 5
    marks = set()
    for _ in range(12):
        seeded.client("agency-1").get_case("C-1", "collection")
        upto, size = tables.audit_indexed_upto(), audit.size
        marks.add(upto)
        assert size - upto < 5  # the backlog never reaches the mark
        beyond = tables.audit_conn.execute("SELECT count(*) FROM audit_runix WHERE seq >= ?", (upto,)).fetchone()[0]
        assert beyond == 0  # nothing is indexed one event at a time
        _runs_are_sound(tables.audit_conn, upto, audit.run_fanout)
    assert len(marks) >= 2  # the index moved in jumps of >= 5 events


def _spread_draft(i: int) -> Any:
    from gateway.core.model import EventDraft

    return EventDraft(org=f"agency-{i % 3}", method="GetCase", purpose="collection", case_id=f"C-{i * 7919 % 997}",
                      borrower_id=f"B-{i * 104729 % 991}", decision="allow", code="OK", rule="r",
                      time="2026-11-30T00:00:00.000000Z", trace_id="ab", fields=["phone"], policy_revision="x")


def test_index_runs_merge_level_by_level(tmp_path: Path) -> None:
    from vault.backends import create
    from vault.sqlite import SqliteVault as Vault

    create(tmp_path / "data")
    vault = Vault(tmp_path / "data")
    try:
        vault.audit.index_every, vault.audit.run_fanout = 3, 3
        seen_levels: set[int] = set()
        for i in range(0, 150, 2):
            vault.audit.append([_spread_draft(i), _spread_draft(i + 1)])
            runs = _runs_are_sound(vault.audit.tables.audit_conn, vault.audit.tables.audit_indexed_upto(), 3)
            seen_levels |= {r[1] for r in runs}
        assert seen_levels == set(range(db.TOP_LEVEL + 1))
        tops = [r for r in runs if r[1] == db.TOP_LEVEL]
        assert len(tops) >= 2  # the top level keeps its runs
        for col, key in (("case_id", _spread_draft(10).case_id), ("borrower_id", _spread_draft(140).borrower_id),
                         ("org", "agency-1")):
            want = [seq for seq, leaf in vault.audit.reads().audit_query() if json.loads(leaf)[col] == key]
            got = [seq for seq, _ in vault.audit.reads().audit_query(**{col: key})]
            assert got == want and want
    finally:
        vault.close()


def test_indexing_writes_few_pages_per_event_however_big_the_log(tmp_path: Path) -> None:
    """Deterministic page count, not a timing: a big log must not make each event touch index pages all over.

    With one (key, seq) index over the whole log, each indexed event touched a
    leaf page per key at a random place; sorted runs write fresh pages at one edge.
    """
    from vault.backends import create
    from vault.sqlite import SqliteVault as Vault

    create(tmp_path / "data")
    vault = Vault(tmp_path / "data")
    try:
        audit = vault.audit
        audit.index_every = 64
        for i in range(0, 30_000, 500):  # a log whose index is far bigger than one commit's pages
            audit.append([_spread_draft(j) for j in range(i, i + 500)])
        conn = vault.audit.tables.audit_conn
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        page = int(conn.execute("PRAGMA page_size").fetchone()[0])
        wal = tmp_path / "data" / "audit.db-wal"
        before = wal.stat().st_size if wal.exists() else 0
        events = 0
        for i in range(30_000, 33_200, 8):  # the usual group commit: a few events each
            audit.append([_spread_draft(j) for j in range(i, i + 8)])
            events += 8
        frames = (wal.stat().st_size - before) / (page + 24)
        # Measured here: 0.63 frames per event with runs, 2.0 with one big (key, seq)
        # index, 0.39 with no index at all (the events' own pages).
        assert frames / events < 1.0, frames / events
    finally:
        vault.close()


def test_event_leaf_fast_path_is_canonical() -> None:
    from gateway.core.model import EventDraft

    draft = EventDraft(org="agency-1", method="GetCase", purpose="collection", case_id="C-1", borrower_id="B-1",
                       decision="allow", code="OK", rule="r", time="2026-11-30T00:00:00.000000Z", trace_id="ab",
                       fields=["phone", "full_name"], policy_revision="sha256:x")
    assert draft.leaf_bytes(3) == merkle.canonical_json(draft.leaf_object(3))


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(st.text(), min_size=14, max_size=14), fields=st.lists(st.text(), max_size=5),
       seq=st.integers(min_value=0, max_value=2**62))
def test_event_leaf_is_jcs_for_any_text(texts: list[str], fields: list[str], seq: int) -> None:
    from gateway.core.model import EventDraft

    names = ("org", "method", "purpose", "case_id", "borrower_id", "decision", "code", "rule", "time", "trace_id",
             "policy_revision", "lender", "channel", "contact_id")  # empty: the key is left out (the old shape)
    draft = EventDraft(**dict(zip(names, texts, strict=False)), fields=fields)  # type: ignore[arg-type]
    assert draft.leaf_bytes(seq) == merkle.canonical_json(draft.leaf_object(seq))
    assert json.loads(draft.leaf_bytes(seq)) == draft.leaf_object(seq)


def test_free_text_from_a_request_never_reaches_the_log(seeded: Env) -> None:
    junk = "+8613900000001 Synth Person"
    lender = seeded.client("lender-a")
    for call in (lambda: lender.assign("C-1", "agency-1", junk, "2026-12-31"),
                 lambda: lender.explain("agency-1", "C-1", junk),
                 lambda: seeded.client("agency-1").get_case("C-1", junk),
                 lambda: lender.get_case("C-999", junk)):
        with pytest.raises(CustosClientError) as info:
            call()
        assert info.value.code == "UNKNOWN_PURPOSE"
    raw = b"".join(leaf for _, leaf in seeded.client("regulator-1").audit_events())
    assert junk.encode() not in raw and b"Synth Person" not in raw
    assert {e.purpose for e in seeded.events() if e.code == "UNKNOWN_PURPOSE"} == {"invalid"}


def test_a_data_dir_with_per_event_audit_indexes_is_upgraded_on_open(tmp_path: Path) -> None:
    from vault.backends import create
    from vault.sqlite import SqliteVault as Vault

    layout = create(tmp_path / "data")
    conn = db.connect(layout.audit_db, read_key_file(layout.keys / "db.key"))
    conn.executescript("DROP TABLE audit_runix; DROP TABLE audit_runs;"
                       "CREATE INDEX audit_case ON audit_events(case_id); CREATE INDEX audit_org ON audit_events(org);")
    conn.close()
    vault = Vault(layout.root)
    try:
        names = {r[0] for r in vault.audit.tables.audit_conn.execute("SELECT name FROM sqlite_master")}
        assert {"audit_runix", "audit_runs"} <= names and not names & {"audit_case", "audit_org", "audit_borrower"}
    finally:
        vault.close()


def test_opening_a_current_data_dir_takes_no_write_lock_on_the_log(tmp_path: Path) -> None:
    """A CLI command opening the data directory must not stall a serving gateway's commits."""
    import time

    from vault.backends import create
    from vault.sqlite import SqliteVault as Vault

    layout = create(tmp_path / "data")
    other = db.connect(layout.audit_db, read_key_file(layout.keys / "db.key"))
    other.execute("BEGIN IMMEDIATE")  # as a gateway mid-commit holds it
    try:
        t = time.monotonic()
        vault = Vault(layout.root)
        vault.close()
        assert time.monotonic() - t < 5  # busy_timeout is 10 s: waiting for the lock would show
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_a_single_key_seq_index_is_moved_into_one_top_run_on_open(tmp_path: Path) -> None:
    """The layout before runs: audit_ix(key, seq) filled up to `indexed_upto`."""
    from vault.backends import create
    from vault.sqlite import SqliteVault as Vault

    layout = create(tmp_path / "data")
    vault = Vault(layout.root)
    vault.audit.index_every = 10_000
    for i in range(40):
        vault.audit.append([_spread_draft(i)])
    vault.close()
    conn = db.connect(layout.audit_db, read_key_file(layout.keys / "db.key"))
    conn.executescript(
        "DROP TABLE audit_runix; DROP TABLE audit_runs;"
        "CREATE TABLE audit_ix(key TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY(key, seq)) WITHOUT ROWID;"
        "INSERT INTO audit_ix SELECT 'c:' || case_id, seq FROM audit_events WHERE seq < 30;"
        "INSERT INTO audit_ix SELECT 'o:' || org, seq FROM audit_events WHERE seq < 30;"
        "INSERT INTO audit_ix SELECT 'b:' || borrower_id, seq FROM audit_events WHERE seq < 30;"
        "INSERT INTO meta(key, value) VALUES ('indexed_upto', '30');")
    conn.close()
    vault = Vault(layout.root)
    try:
        conn = vault.audit.tables.audit_conn
        assert not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'audit_ix'").fetchone()
        runs = _runs_are_sound(conn, 30, vault.audit.run_fanout)
        assert [r[1:] for r in runs] == [(db.TOP_LEVEL, 0, 30)]
        for org in ("agency-0", "agency-2"):
            want = [seq for seq, leaf in vault.audit.reads().audit_query() if json.loads(leaf)["org"] == org]
            assert [seq for seq, _ in vault.audit.reads().audit_query(org=org)] == want and want
    finally:
        vault.close()


def _draft(i: int) -> Any:
    from gateway.core.model import EventDraft

    return EventDraft(org="agency-1", method="GetCase", purpose="collection", case_id=f"C-{i % 7}",
                      borrower_id=f"B-{i % 5}", decision="allow", code="OK", rule="r",
                      time="2026-11-30T00:00:00.000000Z", trace_id="ab", fields=["phone"], policy_revision="x")


@pytest.mark.parametrize("events", [0, 3, 10, 23])
def test_reopened_log_brings_its_head_forward_over_the_leaves(tmp_path: Path, events: int) -> None:
    """The head is stored only every `index_every` events; on open the rest comes from the leaf hashes."""
    from vault.backends import create
    from vault.sqlite import SqliteVault as Vault

    create(tmp_path / "data")
    vault = Vault(tmp_path / "data")
    vault.audit.index_every = 8
    for i in range(events):
        vault.audit.append([_draft(i)])
    head = vault.audit.head()
    stored = vault.audit.tables.audit_head()
    vault.close()
    assert (stored[0] if stored else 0) == events - events % 8  # stored at the marks only

    reopened = Vault(tmp_path / "data")
    try:
        assert reopened.audit.head() == head
        f = merkle.Frontier()
        for _, leaf in reopened.audit.reads().audit_query():
            f.append(merkle.leaf_hash(leaf))
        assert (f.size, f.root()) == head
        reopened.audit.append([_draft(99)])  # and it goes on from there
        assert reopened.audit.size == events + 1
    finally:
        reopened.close()


def test_a_log_with_a_gap_after_the_stored_head_does_not_open(tmp_path: Path) -> None:
    from gateway.core.errors import CustosError as CoreError
    from vault.backends import create
    from vault.sqlite import SqliteVault as Vault

    create(tmp_path / "data")
    vault = Vault(tmp_path / "data")
    for i in range(5):
        vault.audit.append([_draft(i)])
    vault.close()
    conn = db.connect(tmp_path / "data" / "audit.db", read_key_file(tmp_path / "data" / "keys" / "db.key"))
    conn.execute("DROP TRIGGER audit_no_delete")
    conn.execute("DELETE FROM audit_events WHERE seq = 2")
    conn.close()
    with pytest.raises(CoreError) as info:
        Vault(tmp_path / "data")
    assert info.value.code == "AUDIT_UNAVAILABLE"


def test_every_leaf_is_canonical_and_names_what_was_released(seeded: Env) -> None:
    """Reads build their leaf from a per-grant head; each must still be exactly RFC 8785 and match the release."""
    released = []
    for _ in range(3):  # first read decides the grant, the next ones reuse it
        released.append(("agency-1", seeded.client("agency-1").get_case("C-1", "collection")))
        released.append(("lender-a", seeded.client("lender-a").get_case("C-2", "servicing")))
    seeded.client("agency-1").open_contact("C-1", "sms")  # contact history is read live
    released.append(("lender-a", seeded.client("lender-a").get_case("C-1", "servicing")))
    conn = _raw_db(seeded)
    leaves = [bytes(r[0]) for r in conn.execute("SELECT leaf FROM audit_events ORDER BY seq")]
    conn.close()
    for leaf in leaves:
        assert merkle.canonical_json(json.loads(leaf)) == leaf
    reads = [json.loads(leaf) for leaf in leaves if json.loads(leaf)["method"] == "GetCase"]
    assert len(reads) == len(released)
    for ev, (org, rec) in zip(reads, released, strict=True):
        assert ev["org"] == org and ev["fields"] == sorted(rec.fields) and ev["case_id"] == rec.case_id


def test_contact_history_is_read_live_under_a_remembered_grant(seeded: Env) -> None:
    lender = seeded.client("lender-a")
    seeded.clock.current = seeded.clock.current.replace(hour=3)  # 11:00 in Shanghai: inside the window
    before = [json.loads(lender.get_case("C-1", "servicing").fields["contact_history"]) for _ in range(3)][-1]
    seeded.client("agency-1").open_contact("C-1", "sms")
    after = json.loads(lender.get_case("C-1", "servicing").fields["contact_history"])
    assert len(after) == len(before) + 1
