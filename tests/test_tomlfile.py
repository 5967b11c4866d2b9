"""gateway/core/rules/tomlfile.py: reading a policy file safely, and locating a problem by file and line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.core.errors import PolicyError
from gateway.core.rules.tomlfile import MAX_POLICY_FILE_BYTES, FileCtx, line_of, load_toml, read_policy_file


def test_a_regular_file_and_a_link_to_one_are_read(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_bytes(b"a = 1\n")
    link = tmp_path / "link.toml"
    link.symlink_to(path)
    assert read_policy_file(path) == b"a = 1\n"
    assert load_toml(link) == ({"a": 1}, "a = 1\n")


def test_what_is_not_a_small_regular_file_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(PolicyError, match="not a regular file"):
        read_policy_file(fifo)  # refused at once: never waits for a writer
    with pytest.raises(PolicyError, match="not a regular file"):
        read_policy_file(tmp_path)
    big = tmp_path / "big.toml"
    big.write_bytes(b"#" * (MAX_POLICY_FILE_BYTES + 1))
    with pytest.raises(PolicyError, match="larger than"):
        read_policy_file(big)
    with pytest.raises(PolicyError, match=r"cannot read file \(FileNotFoundError\)") as info:
        read_policy_file(tmp_path / "absent.toml")
    assert info.value.line is None


def test_bad_utf8_and_bad_toml_are_policy_errors_with_a_line(tmp_path: Path) -> None:
    raw = tmp_path / "raw.toml"
    raw.write_bytes(b"a = \"\xff\"\n")
    with pytest.raises(PolicyError, match="UnicodeDecodeError"):
        load_toml(raw)
    bad = tmp_path / "bad.toml"
    bad.write_text("a = 1\nb = \n", encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_toml(bad)
    assert info.value.line == 2 and info.value.problem.startswith("TOML syntax:")
    assert "line 2" not in info.value.problem  # the position is in `line`, not repeated in the words


def test_line_of_finds_assignments_and_headers() -> None:
    text = "[calls]\nmax = 1\n[[rule]]\nname = \"a\"\n[[rule]]\nname = \"b\"\n"
    assert line_of(text, "calls") == 1
    assert line_of(text, "max") == 2
    assert line_of(text, "name") == 4 and line_of(text, "name", 1) == 6
    assert line_of(text, "name", 2) is None and line_of(text, "absent") is None


def test_line_of_a_key_after_a_blank_line_is_the_key_s_own_line() -> None:
    # Policy files separate their keys with blank lines; a problem must point at the key, not the gap above it.
    assert line_of("[calls]\n\nmax = 1\n", "max") == 3
    assert line_of("[calls]\nmax = 1\n\n\n  min = 2\n", "min") == 5


def test_a_context_within_one_block_locates_keys_in_that_block() -> None:
    text = "x = 0\n[[rule]]\nname = \"a\"\n[[rule]]\nkind = 1\nname = \"b\"\n"
    ctx = FileCtx(Path("/policies/p.toml"), text)
    second = ctx.within("rule", 1)
    assert second.first_line == 4
    err = second.fail("bad name", "name")
    assert (err.path, err.line, err.problem) == ("/policies/p.toml", 6, "bad name")
    assert ctx.within("rule", 5) is ctx
    assert ctx.fail("whole file").line is None


def test_a_key_not_found_in_a_block_points_at_the_block_s_header() -> None:
    text = "x = 0\n[[rule]]\nname = \"a\"\n[[rule]]\nkind = 1\nname = \"b\"\n"
    second = FileCtx(Path("/policies/p.toml"), text).within("rule", 1)
    assert second.fail("missing key", "absent").line == 4  # the `[[rule]]` line of the second block
