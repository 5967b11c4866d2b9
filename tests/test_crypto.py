"""vault/crypto.py: sealing, associated-data binding, the file KEK provider, field ciphers and blind indexes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from vault.crypto import (
    NONCE,
    BlindIndex,
    DecryptionError,
    FieldCipher,
    FileKekProvider,
    open_sealed,
    read_key_file,
    seal,
    write_key_file,
)

KEY = bytes(range(32))


def test_seal_then_open_with_the_same_key_and_ad() -> None:
    blob = seal(KEY, b"synthetic value", b"ad")
    assert len(blob) == NONCE + len(b"synthetic value") + 16
    assert open_sealed(KEY, blob, b"ad") == b"synthetic value"
    assert seal(KEY, b"synthetic value", b"ad") != blob  # a fresh nonce each time


@pytest.mark.parametrize("change", ["ad", "key", "bit", "short"])
def test_every_failure_to_open_is_the_same_bare_error(change: str) -> None:
    blob = seal(KEY, b"synthetic value", b"ad")
    key, ad = KEY, b"ad"
    if change == "ad":
        ad = b"da"
    elif change == "key":
        key = bytes(32)
    elif change == "bit":
        blob = blob[:-1] + bytes([blob[-1] ^ 1])
    else:
        blob = blob[:NONCE + 15]
    with pytest.raises(DecryptionError) as info:
        open_sealed(key, blob, ad)
    assert str(info.value) == "decryption failed" and info.value.__cause__ is None


def _kek_dir(tmp_path: Path, *versions: int) -> Path:
    keys = tmp_path / "keys"
    keys.mkdir(exist_ok=True)
    for v in versions:
        write_key_file(keys / f"kek-{v}.key", os.urandom(32))
    return keys


def test_key_files_are_owner_only_never_overwritten_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    write_key_file(path, KEY)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_key_file(path) == KEY
    with pytest.raises(FileExistsError):
        write_key_file(path, KEY)
    short = tmp_path / "short.key"
    short.write_text("abcd\n")
    with pytest.raises(ValueError, match="256-bit"):
        read_key_file(short)


def test_the_highest_kek_is_primary_and_old_ones_still_unwrap(tmp_path: Path) -> None:
    keys = _kek_dir(tmp_path, 1, 2)
    kek = FileKekProvider(keys)
    assert kek.versions() == [1, 2] and kek.primary_version() == 2
    version, wrapped = kek.wrap(b"d" * 32, b"ad")
    assert version == 2 and kek.unwrap(2, wrapped, b"ad") == b"d" * 32
    with pytest.raises(DecryptionError):
        kek.unwrap(1, wrapped, b"ad")   # a wrap names its version in the AD
    with pytest.raises(DecryptionError):
        kek.unwrap(9, wrapped, b"ad")   # no such version
    (tmp_path / "none").mkdir()
    with pytest.raises(FileNotFoundError):
        FileKekProvider(tmp_path / "none")  # a directory without a KEK file


def test_a_field_ciphertext_opens_only_in_its_own_place(tmp_path: Path) -> None:
    cipher = FieldCipher(FileKekProvider(_kek_dir(tmp_path, 1)))
    dek, version, wrapped = cipher.new_dek("lender-a", "B-1")
    assert cipher.unwrap_dek("lender-a", "B-1", version, wrapped) == dek
    with pytest.raises(DecryptionError):
        cipher.unwrap_dek("lender-a", "B-2", version, wrapped)  # a wrapped key moved to another borrower
    blob = cipher.encrypt(dek, "lender-a", "B-1", "name", 1, "Synthetic Name")
    assert cipher.decrypt(dek, "lender-a", "B-1", "name", 1, blob) == "Synthetic Name"
    for lender, borrower, field, dek_version in [("lender-b", "B-1", "name", 1), ("lender-a", "B-2", "name", 1),
                                                 ("lender-a", "B-1", "phone", 1), ("lender-a", "B-1", "name", 2)]:
        with pytest.raises(DecryptionError):
            cipher.decrypt(dek, lender, borrower, field, dek_version, blob)


def test_the_sealer_and_the_opener_are_the_same_bytes_as_field_by_field(tmp_path: Path) -> None:
    cipher = FieldCipher(FileKekProvider(_kek_dir(tmp_path, 1)))
    dek, _, _ = cipher.new_dek("lender-a", "B-1")
    seal_field = cipher.sealer(dek, "lender-a", "B-1", 3)
    name, phone = seal_field("name", "Synthetic Name"), seal_field("phone", "5550000000")
    assert cipher.decrypt(dek, "lender-a", "B-1", "name", 3, name) == "Synthetic Name"
    opener = cipher.opener(dek, "lender-a", "B-1", 3)
    assert opener("phone", phone) == "5550000000"
    assert opener.open_all([("n", "name", name), ("p", "phone", phone)]) == {"n": "Synthetic Name", "p": "5550000000"}
    with pytest.raises(DecryptionError):
        opener("phone", name)  # the name's ciphertext moved into the phone field
    with pytest.raises(DecryptionError):
        opener("name", name[:NONCE])


def test_rewrap_moves_a_data_key_to_the_primary_kek(tmp_path: Path) -> None:
    keys = _kek_dir(tmp_path, 1)
    cipher = FieldCipher(FileKekProvider(keys))
    dek, version, wrapped = cipher.new_dek("lender-a", "B-1")
    assert cipher.rewrap_dek("lender-a", "B-1", version, wrapped) is None  # already on the primary
    write_key_file(keys / "kek-2.key", os.urandom(32))
    fresh = FieldCipher(FileKekProvider(keys))
    moved = fresh.rewrap_dek("lender-a", "B-1", version, wrapped)
    assert moved is not None and moved[0] == 2
    assert fresh.unwrap_dek("lender-a", "B-1", *moved) == dek


def test_blind_indexes_normalise_values_and_are_scoped_by_lender_and_field() -> None:
    bidx = BlindIndex(KEY)
    value = bidx("lender-a", "nid", "ab 12 cd")
    assert len(value) == 16
    assert bidx("lender-a", "nid", "AB12CD") == value
    assert bidx("lender-b", "nid", "AB12CD") != value
    assert bidx("lender-a", "phone", "AB12CD") != value
    assert BlindIndex(bytes(32))("lender-a", "nid", "AB12CD") != value
    assert bidx.digest("lender-a", "import", b"line") != bidx.digest("lender-a", "import", b"line2")
    assert bidx.digest("lender-a", "import", b"line") == bidx.digest("lender-a", "import", b"line")
