"""vault/datadir.py: the data directory's layout, its creation (owner-only, never over a non-empty one) and config."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from gateway.core.errors import Code, CustosError
from vault.datadir import Layout, create, load_config, packet_key_name


def test_create_makes_owner_only_dirs_keys_and_config(tmp_path: Path) -> None:
    calls: list[int] = []
    layout = create(tmp_path / "data", {"origin": "custos.test"}, preflight=lambda: calls.append(1))
    assert calls == [1]
    assert stat.S_IMODE(layout.root.stat().st_mode) == 0o700 and stat.S_IMODE(layout.keys.stat().st_mode) == 0o700
    names = sorted(p.name for p in layout.keys.iterdir())
    assert names == ["audit.key", "bidx.key", "db.key", "kek-1.key", "packet.key"]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in layout.keys.iterdir())
    assert layout.tls.is_dir() and layout.db == layout.root / "custos.db"
    assert load_config(layout) == {"origin": "custos.test"}
    assert Layout.of(layout.root) == Layout(layout.root)


def test_keys_elsewhere_and_a_database_are_remembered_in_config(tmp_path: Path) -> None:
    layout = create(tmp_path / "data", key_dir=tmp_path / "keys", database="postgresql://example.invalid/db")
    assert layout.keys == (tmp_path / "keys").resolve() and (layout.keys / "kek-1.key").is_file()
    assert not (layout.root / "keys").exists()
    again = Layout.of(layout.root)
    assert (again.key_dir, again.database) == (layout.keys, "postgresql://example.invalid/db")


def test_create_refuses_a_non_empty_directory_before_writing(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "someone's file").write_text("x")
    with pytest.raises(CustosError) as info:
        create(tmp_path / "data", preflight=lambda: pytest.fail("preflight ran"))
    assert info.value.code == Code.DATA_DIR_EXISTS
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "old.key").write_text("x")
    with pytest.raises(CustosError) as info:
        create(tmp_path / "fresh", key_dir=tmp_path / "keys")
    assert info.value.code == Code.DATA_DIR_EXISTS and not (tmp_path / "fresh").exists()


@pytest.mark.parametrize("config", [None, "not json", "[1, 2]", json.dumps({"key_dir": 3, "database": ""})])
def test_a_missing_or_odd_config_gives_the_plain_layout(tmp_path: Path, config: str | None) -> None:
    if config is not None:
        (tmp_path / "config.json").write_text(config)
    assert Layout.of(tmp_path) == Layout(tmp_path)


def test_load_config_without_a_file_is_data_dir_invalid(tmp_path: Path) -> None:
    with pytest.raises(CustosError) as info:
        load_config(Layout(tmp_path))
    assert info.value.code == Code.DATA_DIR_INVALID


def test_the_packet_key_has_its_own_name() -> None:
    assert packet_key_name("custos.test/log") == "custos.test/log/packets"


@pytest.mark.parametrize("inside", ["", "keys", "a/b"])
def test_keys_inside_the_data_directory_are_refused_before_anything_is_written(tmp_path: Path, inside: str) -> None:
    root = tmp_path / "data"
    with pytest.raises(CustosError) as info:
        create(root, key_dir=root / inside if inside else root)
    assert info.value.code == Code.INVALID_ARGUMENT and not root.exists()
