"""After an erasure the wrapped data key is in no page of the embedded store: not the database, not its WAL.

The files are SQLCipher's, so a byte search of them proves nothing. This test
decrypts every page itself (SQLCipher 4, raw key: AES-256-CBC, the page's IV in
its reserved tail) and searches the plaintext of each, including the free
space inside pages and freed pages, which SQL cannot see.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from tests.conftest import Env
from vault.crypto import read_key_file

pytestmark = pytest.mark.sqlite_only

PAGE = 4096
RESERVE = 80  # IV (16) + HMAC-SHA512 (64)
SALT = 16
WAL_HEADER, FRAME_HEADER = 32, 24


def _open_page(key: bytes, page: bytes, number: int) -> bytes:
    start = SALT if number == 1 else 0
    iv = page[PAGE - RESERVE:PAGE - RESERVE + 16]
    dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return dec.update(page[start:PAGE - RESERVE]) + dec.finalize()


def plaintext_pages(key: bytes, db: Path) -> list[bytes]:
    """Every page of the database file and every frame of its WAL, decrypted."""
    out = []
    raw = db.read_bytes()
    for i in range(0, len(raw) - PAGE + 1, PAGE):
        out.append(_open_page(key, raw[i:i + PAGE], i // PAGE + 1))
    wal = db.with_name(db.name + "-wal")
    if wal.exists():
        raw = wal.read_bytes()
        for i in range(WAL_HEADER, len(raw) - FRAME_HEADER - PAGE + 1, FRAME_HEADER + PAGE):
            number = int.from_bytes(raw[i:i + 4], "big")
            out.append(_open_page(key, raw[i + FRAME_HEADER:i + FRAME_HEADER + PAGE], number))
    return out


def _found(key: bytes, db: Path, needle: bytes) -> int:
    return sum(page.count(needle) for page in plaintext_pages(key, db))


def test_the_wrapped_key_and_the_ciphertexts_are_in_no_page_after_erasure(seeded: Env) -> None:
    data = seeded.data
    key = read_key_file(data / "keys" / "db.key")
    db = data / "custos.db"
    assert _found(key, db, b"CREATE TABLE borrowers") >= 1  # the decryption itself works
    conn = seeded.gw.vault.writer.conn
    wrapped, name_ct = (bytes(v) for v in conn.execute(
        "SELECT wrapped_dek, full_name FROM borrowers WHERE lender_id = 'lender-a' AND borrower_id = 'B-1'"
    ).fetchone())
    other = bytes(conn.execute("SELECT wrapped_dek FROM borrowers WHERE borrower_id = 'B-3'").fetchone()[0])
    assert _found(key, db, wrapped) >= 1 and _found(key, db, name_ct) >= 1  # the control: the scan sees them
    receipt = seeded.client("lender-a").erase("B-1")
    assert receipt.state == "erased"
    assert _found(key, db, wrapped) == 0
    assert _found(key, db, name_ct) == 0
    assert _found(key, db, other) >= 1  # another borrower's key is still there (the scan still works)
    assert not (data / "custos.db-wal").exists() or (data / "custos.db-wal").stat().st_size == 0


def test_freed_pages_keep_nothing_of_an_erased_contract(seeded: Env) -> None:
    """A long contract text fills overflow pages; the erasure frees them, and secure_delete zeroes them."""
    from gateway import synth

    line = synth.case_line(50, jurisdiction="CN")
    line["loan"]["contract_text"] = "合成合同条款。" * 3000  # about 63 KB: sixteen overflow pages
    assert seeded.import_cases("lender-a", [line]).imported == 1
    data = seeded.data
    key = read_key_file(data / "keys" / "db.key")
    db = data / "custos.db"
    conn = seeded.gw.vault.writer.conn
    sealed = bytes(conn.execute("SELECT contract_text FROM loans WHERE borrower_id = 'B-50'").fetchone()[0])
    chunks = [sealed[i:i + 48] for i in range(1000, len(sealed) - 48, 4000)]
    assert seeded.gw.vault.forget()  # into the database file proper, so the pages freed next are the ones holding it
    assert all(_found(key, db, c) >= 1 for c in chunks)  # the control
    assert seeded.client("lender-a").erase("B-50").state == "erased"
    assert [c for c in chunks if _found(key, db, c)] == []
