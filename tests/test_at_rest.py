"""Invariant 1: no PI in plaintext at rest, in logs, in spans, or in error messages."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
from custos_client import CustosClientError

from gateway import synth
from tests.conftest import Env
from vault.crypto import BlindIndex, DecryptionError, FieldCipher, FileKekProvider, read_key_file
from vault.sqlite import db

# The embedded store's files; PostgreSQL's data directory and dumps are scanned in test_postgres.py.
pytestmark = pytest.mark.sqlite_only

LINES = [synth.case_line(i, jurisdiction="CN" if i % 2 else "US") for i in range(1, 9)]
SECRETS = [v for line in LINES for v in synth.pi_values(line)]


def leaks(blob: bytes) -> list[str]:
    """The PI values found in raw bytes (UTF-8, and UTF-16 for good measure)."""
    return [v for v in SECRETS if v.encode("utf-8") in blob or v.encode("utf-16-le") in blob]


def test_the_leak_check_can_fail(tmp_path: Path) -> None:
    # The same scan over a plain SQLite file holding the values does find them.
    plain = tmp_path / "plain.db"
    conn = sqlite3.connect(plain)
    conn.execute("CREATE TABLE t(v TEXT)")
    conn.executemany("INSERT INTO t VALUES (?)", [(v,) for v in SECRETS])
    conn.commit()
    conn.close()
    assert set(leaks(plain.read_bytes())) == set(SECRETS)


def test_no_pi_in_the_data_directory_logs_or_spans(env: Env, caplog: pytest.LogCaptureFixture,
                                                   capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    assert env.import_cases("lender-a", LINES).imported == len(LINES)
    lender, agency = env.client("lender-a"), env.client("agency-1")
    lender.assign("C-1", "agency-1", "collection", "2026-12-31")
    lender.set_stage("C-1", "field_visit")
    served = agency.get_case("C-1", "collection").fields
    assert any(v in served.values() for v in SECRETS)  # PI did travel, to the right party
    lender.get_case("C-2", "servicing")
    lender.list_cases(national_id=LINES[2]["borrower"]["national_id"])
    for bad in (lambda: agency.get_case("C-2", "collection"), lambda: lender.get_case("C-1", "nosuch")):
        with pytest.raises(CustosClientError) as info:
            bad()
        assert not leaks(str(info.value).encode())
    rejected = lender.import_lines([b'{"case_id": "C-99", "borrower": {"full_name": "' +
                                    SECRETS[0].encode() + b'"}}'])
    assert not leaks(repr(rejected).encode())
    live = [p for p in env.data.rglob("*") if p.is_file()]
    assert any(p.name == "custos.db-wal" for p in live)  # scanned while the WAL holds recent pages
    for path in live:
        assert not leaks(path.read_bytes()), path.name
    env.gw.stop(0)
    env.gw.provider.force_flush()  # type: ignore[union-attr]

    files = [p for p in env.data.rglob("*") if p.is_file()]
    assert any(p.name == "custos.db" for p in files)
    for path in files:
        assert not leaks(path.read_bytes()), path.name
    assert not (env.data / "custos.db").read_bytes().startswith(b"SQLite format 3")

    out, err = capfd.readouterr()
    assert not leaks((out + err + caplog.text).encode())

    spans = env.spans.get_finished_spans()
    assert {s.name for s in spans} >= {"ImportCases", "GetCase", "AssignCase", "ListCases"}
    for s in spans:
        dumped = s.to_json()
        assert not leaks(dumped.encode()), s.name


def _cipher(env: Env) -> FieldCipher:
    return FieldCipher(FileKekProvider(env.data / "keys"))


def test_ciphertext_moved_to_another_row_or_field_fails_generically(env: Env) -> None:
    env.import_cases("lender-a", LINES[:3])
    conn = db.connect(env.data / "custos.db", read_key_file(env.data / "keys" / "db.key"))
    row = conn.execute("SELECT full_name, phone FROM borrowers WHERE borrower_id = 'B-1'").fetchone()
    # B-1's encrypted name pasted into B-2's row, and B-1's phone pasted into B-1's name.
    conn.execute("UPDATE borrowers SET full_name = ? WHERE borrower_id = 'B-2'", (row[0],))
    conn.execute("UPDATE borrowers SET home_address = ? WHERE borrower_id = 'B-1'", (row[1],))
    conn.close()
    lender = env.client("lender-a")
    for case in ("C-2", "C-1"):
        with pytest.raises(CustosClientError) as info:
            lender.get_case(case, "servicing")
        assert (info.value.code, info.value.status) == ("DECRYPTION_FAILED", "INTERNAL")
        assert info.value.message == "stored data failed an integrity check"
    assert lender.get_case("C-3", "servicing").fields["full_name"] == LINES[2]["borrower"]["full_name"]


def test_field_cipher_binds_borrower_field_and_version(env: Env) -> None:
    cipher = _cipher(env)
    dek, version, wrapped = cipher.new_dek("lender-a", "B-1")
    blob = cipher.encrypt(dek, "lender-a", "B-1", "phone", 1, "+8613900000000")
    assert cipher.decrypt(dek, "lender-a", "B-1", "phone", 1, blob) == "+8613900000000"
    for args in (("lender-a", "B-2", "phone", 1), ("lender-a", "B-1", "full_name", 1), ("lender-a", "B-1", "phone", 2),
                 ("lender-b", "B-1", "phone", 1)):
        with pytest.raises(DecryptionError) as info:
            cipher.decrypt(dek, *args, blob)  # type: ignore[arg-type]
        assert str(info.value) == "decryption failed"
    with pytest.raises(DecryptionError):
        cipher.unwrap_dek("lender-a", "B-2", version, wrapped)
    with pytest.raises(DecryptionError):
        cipher.decrypt(dek, "lender-a", "B-1", "phone", 1, blob[:-1] + bytes([blob[-1] ^ 1]))


def test_key_files_are_owner_only(env: Env) -> None:
    for path in (env.data / "keys").iterdir():
        assert path.stat().st_mode & 0o077 == 0, path.name
    assert (env.identity("agency-1") / "client.key").stat().st_mode & 0o077 == 0


def test_blind_index_is_keyed_and_scoped(env: Env) -> None:
    key = read_key_file(env.data / "keys" / "bidx.key")
    idx = BlindIndex(key)
    assert idx("lender-a", "phone", "+86 139 0000 0001") == idx("lender-a", "phone", "+8613900000001")
    assert idx("lender-a", "phone", "+8613900000001") != idx("lender-b", "phone", "+8613900000001")
    assert idx("lender-a", "phone", "x") != BlindIndex(b"\x00" * 32)("lender-a", "phone", "x")


def test_wrong_database_key_does_not_open(env: Env) -> None:
    with pytest.raises(db.DbError):
        db.connect(env.data / "custos.db", b"\x01" * 32)


def test_blind_index_values_are_never_memoised() -> None:
    """The AD memo holds ids and field names only; a PI value hashed for the blind index stays out of it."""
    import os

    from vault import crypto

    before = crypto._ad.cache_info().currsize
    bidx = crypto.BlindIndex(os.urandom(32))
    for i in range(50):
        bidx("lender-a", "phone", f"+86139{i:08d}")
    assert crypto._ad.cache_info().currsize == before


def test_no_pi_at_rest_from_the_living_account(env: Env, caplog: pytest.LogCaptureFixture,
                                               capfd: pytest.CaptureFixture[str]) -> None:
    """Issue 24's new ways in for PI: a lender's correction of borrower fields, and the free-text reasons a lender
    gives when it rejects a payment or a plan (which may name a person). None of them is in the data directory,
    its WAL, the logs or the spans; each reached the party it was for."""
    import json

    caplog.set_level(logging.DEBUG)
    assert env.import_cases("lender-a", LINES[:2]).imported == 2
    lender, agency = env.client("lender-a"), env.client("agency-1")
    lender.assign("C-1", "agency-1", "collection", "2026-12-31")
    corrected = {"home_address": "Corrected Street 24, Flat 7", "employer": "Corrected Employer Ltd",
                 "email": "corrected.person@example.invalid"}
    reason = "Borrower Corrected-Name-Zhang says it was paid in cash"
    secret = [*corrected.values(), reason]
    update = {"case_id": "C-1", "as_of": "2026-11-29T10:00:00+08:00", "borrower": corrected}
    assert lender.update_lines([json.dumps(update).encode()]).updated == 1
    assert lender.get_case("C-1", "servicing").fields["home_address"] == corrected["home_address"]
    payment = agency.report_payment("C-1", "10.00", "2026-11-28", "AT-REST-1")
    lender.reject_payment(payment.payment_id, reason)
    plan = agency.propose_plan("C-1", [("2026-12-20", "50.00")])
    lender.reject_plan(plan.plan_id, reason)
    assert [p.reason for p in lender.payments("rejected")] == [reason]  # opened for the lender only

    def found(blob: bytes) -> list[str]:
        return [v for v in secret if v.encode("utf-8") in blob]

    live = [p for p in env.data.rglob("*") if p.is_file()]
    assert any(p.name == "custos.db-wal" for p in live)
    for path in live:
        assert not found(path.read_bytes()), path.name
    env.gw.stop(0)
    env.gw.provider.force_flush()  # type: ignore[union-attr]
    for path in (p for p in env.data.rglob("*") if p.is_file()):
        assert not found(path.read_bytes()), path.name
    out, err = capfd.readouterr()
    assert not found((out + err + caplog.text).encode())
    for s in env.spans.get_finished_spans():
        assert not found(s.to_json().encode()), s.name
