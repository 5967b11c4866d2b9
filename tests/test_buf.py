"""The API's guard against breaking changes (issue 27): proto/ passes `buf lint` (STANDARD, custos.v1's released rpcs
excepted one by one), a new rpc must follow the standard names, `buf breaking` (FILE) finds no change against the
released custos.v1 and refuses a deleted, renumbered or renamed field or message; and tools/buf.py, which fetches
buf from the npm lock, refuses a download whose sha512 is not the lock's."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROTO = Path("proto/custos/v1/custos.proto")


def _load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("custos_buf_tool", ROOT / "tools" / "buf.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


tool = _load_tool()


@pytest.fixture(scope="module")
def buf() -> Path:
    """The locked buf; `make test` fetched it already (proto-lint), so this is the cached binary."""
    return Path(tool.ensure())


def _copy(tmp_path: Path) -> Path:
    """proto/ and buf.yaml in a scratch directory, to be changed there and never in the repository."""
    shutil.copytree(ROOT / "proto", tmp_path / "proto", ignore=shutil.ignore_patterns("released"))
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    return tmp_path


def _buf(buf: Path, cwd: Path, *args: str) -> tuple[int, list[dict[str, Any]]]:
    out = subprocess.run([str(buf), *args, "--error-format=json"], cwd=cwd, capture_output=True, text=True,
                         timeout=120)
    findings = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    assert out.returncode == 0 or findings, out.stderr
    return out.returncode, findings


def _edit(root: Path, old: str, new: str, count: int = 1) -> None:
    path = root / PROTO
    text = path.read_text()
    assert text.count(old) == count, old
    path.write_text(text.replace(old, new))


def _against() -> str:
    return str(tool.baseline())


# ---------------------------------------------------------------- lint


def test_proto_passes_buf_lint(buf: Path) -> None:
    assert _buf(buf, ROOT, "lint") == (0, [])


def test_lint_exceptions_are_named_per_rpc_never_blanket() -> None:
    config = (ROOT / "buf.yaml").read_text()
    assert re.search(r"^\s*use:\s*\n\s*- STANDARD$", config, flags=re.M)
    assert not re.search(r"^\s*(except|ignore|ignore_only)\s*:", config, flags=re.M)
    lines = (ROOT / PROTO).read_text().splitlines()
    ignores = [i for i, line in enumerate(lines) if "buf:lint:ignore" in line]
    assert ignores
    for i in ignores:
        after = next(line for line in lines[i + 1:] if "buf:lint:ignore" not in line)
        assert after.lstrip().startswith("rpc "), lines[i]
        assert lines[i].split("buf:lint:ignore ")[1] in {
            "RPC_REQUEST_STANDARD_NAME", "RPC_RESPONSE_STANDARD_NAME", "RPC_REQUEST_RESPONSE_UNIQUE"}
    for service in re.findall(r"^service (\w+)", "\n".join(lines), flags=re.M):
        i = lines.index(f"service {service} {{")
        start = i
        while lines[start - 1].startswith("//"):
            start -= 1
        assert lines[start].startswith("// Lint exceptions: released custos.v1 rpcs keep their messages"), service


NEW_MESSAGES = "\nmessage Bar {\n  string x = 1;\n}\n\nmessage Baz {\n  string y = 1;\n}\n"


@pytest.mark.parametrize(("rpc", "rules"), [
    ("rpc Foo(Bar) returns (Baz);", {"RPC_REQUEST_STANDARD_NAME", "RPC_RESPONSE_STANDARD_NAME"}),
    # A message an excepted rpc answers with may not be shared by a new one either.
    ("rpc GetPacketAgain(GetPacketAgainRequest) returns (Packet);",
     {"RPC_RESPONSE_STANDARD_NAME", "RPC_REQUEST_RESPONSE_UNIQUE"}),
])
def test_new_rpc_with_non_standard_names_fails_lint(buf: Path, tmp_path: Path, rpc: str, rules: set[str]) -> None:
    root = _copy(tmp_path)
    _edit(root, "  rpc GetPacket(GetPacketRequest) returns (Packet);\n",
          f"  rpc GetPacket(GetPacketRequest) returns (Packet);\n  {rpc}\n")
    path = root / PROTO
    path.write_text(path.read_text() + NEW_MESSAGES + "\nmessage GetPacketAgainRequest {\n  string z = 1;\n}\n")
    rc, findings = _buf(buf, root, "lint")
    assert rc != 0
    line = path.read_text().splitlines().index(f"  {rpc}") + 1
    assert rules <= {f["type"] for f in findings if f["start_line"] == line}
    # Nothing else is found, but that a shared message is now shared with the rpc that had it alone.
    assert {f["type"] for f in findings if f["start_line"] != line} <= {"RPC_REQUEST_RESPONSE_UNIQUE"}


def test_new_rpc_with_standard_names_passes_lint(buf: Path, tmp_path: Path) -> None:
    root = _copy(tmp_path)
    _edit(root, "  rpc GetPacket(GetPacketRequest) returns (Packet);\n",
          "  rpc GetPacket(GetPacketRequest) returns (Packet);\n  rpc Foo(FooRequest) returns (FooResponse);\n")
    path = root / PROTO
    path.write_text(path.read_text() + "\nmessage FooRequest {}\n\nmessage FooResponse {}\n")
    assert _buf(buf, root, "lint") == (0, [])


def test_make_proto_lint_command_passes(buf: Path) -> None:
    """The command `make proto-lint` runs (and docs/api-compatibility.md shows): both checks, exit 0."""
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "buf.py"), "check"], capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout == "buf lint clean; no breaking change against proto/released/custos.v1-0.1.0.json\n"


# ---------------------------------------------------------------- breaking


def test_no_breaking_change_against_the_released_custos_v1(buf: Path) -> None:
    assert _buf(buf, ROOT, "breaking", "--against", _against()) == (0, [])


@pytest.mark.parametrize(("old", "new", "count", "rules"), [
    ("  bytes data = 2;", "", 1, {"FIELD_NO_DELETE"}),                                   # a removed field
    ("  bytes data = 2;", "  bytes data = 3;", 1, {"FIELD_NO_DELETE"}),                  # a renumbered field
    ("Packet)", "PacketFile)", 1, {"MESSAGE_NO_DELETE", "RPC_SAME_RESPONSE_TYPE"}),      # a renamed message
    # Wire-compatible, but every generated client's source breaks: why FILE and not WIRE.
    ("  bytes data = 2;", "  bytes content = 2;", 1, {"FIELD_SAME_NAME", "FIELD_SAME_JSON_NAME"}),
])
def test_breaking_change_fails_the_check(buf: Path, tmp_path: Path, old: str, new: str, count: int,
                                         rules: set[str]) -> None:
    root = _copy(tmp_path)
    _edit(root, old, new, count)
    if "PacketFile" in new:
        _edit(root, "message Packet {", "message PacketFile {")
    rc, findings = _buf(buf, root, "breaking", "--against", _against())
    assert rc != 0
    assert rules <= {f["type"] for f in findings}


def test_the_baseline_is_the_newest_release_by_number(tmp_path: Path) -> None:
    for version in ("0.9.0", "0.10.0", "0.2.1"):
        (tmp_path / f"custos.v1-{version}.json").write_text("{}")
    (tmp_path / "custos.v1-draft.json").write_text("{}")
    assert tool.baseline(tmp_path).name == "custos.v1-0.10.0.json"
    assert tool.baseline().name == "custos.v1-0.1.0.json"
    with pytest.raises(tool.BufError, match="make proto-release"):
        tool.baseline(tmp_path / "none")


def test_release_records_proto_and_never_rewrites_a_release(buf: Path, tmp_path: Path) -> None:
    written = tool.release(buf, "0.1.0", released=tmp_path)
    # proto/ has not changed since 0.1.0: the image made now is the committed one, byte for byte.
    assert written.read_bytes() == (ROOT / "proto" / "released" / "custos.v1-0.1.0.json").read_bytes()
    assert tool.release(buf, "0.1.0", released=tmp_path) == written  # the same content again is no change
    written.write_text(written.read_text().replace('"name": "data"', '"name": "content"'))
    before = written.read_bytes()
    with pytest.raises(tool.BufError, match="never changes"):
        tool.release(buf, "0.1.0", released=tmp_path)
    assert written.read_bytes() == before


# ---------------------------------------------------------------- fetching buf


def _package(tmp_path: Path, script: str = "#!/bin/sh\necho 1.75.0\n") -> tuple[Path, str]:
    """A platform package as npm serves it (package/bin/buf in a .tgz), and its integrity string."""
    data = script.encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("package/bin/buf")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    tgz = tmp_path / "buf-linux-x64-1.75.0.tgz"
    tgz.write_bytes(buffer.getvalue())
    return tgz, "sha512-" + base64.b64encode(hashlib.sha512(tgz.read_bytes()).digest()).decode()


def _lock_copy(tmp_path: Path, url: str, integrity: str, name: str = "package-lock.json") -> Path:
    lock = json.loads((ROOT / "tools" / "buf" / "package-lock.json").read_text())
    entry = lock["packages"]["node_modules/@bufbuild/buf-linux-x64"]
    entry["resolved"], entry["integrity"] = url, integrity
    path = tmp_path / name
    path.write_text(json.dumps(lock))
    return path


def test_fetcher_extracts_the_binary_when_the_integrity_matches(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUSTOS_BUF", raising=False)
    tgz, integrity = _package(tmp_path)
    lock, cache = _lock_copy(tmp_path, tgz.as_uri(), integrity), tmp_path / "cache"
    binary = tool.ensure(lock=lock, cache=cache, package="@bufbuild/buf-linux-x64")
    assert binary == cache / "buf-linux-x64-1.75.0" / "buf"
    assert subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout == "1.75.0\n"
    assert sorted(p.name for p in binary.parent.iterdir()) == ["buf", "integrity"]
    tgz.unlink()  # cached: no second download
    assert tool.ensure(lock=lock, cache=cache, package="@bufbuild/buf-linux-x64") == binary


def test_fetcher_refuses_a_wrong_integrity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUSTOS_BUF", raising=False)
    tgz, integrity = _package(tmp_path)
    wrong = "sha512-" + base64.b64encode(hashlib.sha512(b"another tarball").digest()).decode()
    lock, cache = _lock_copy(tmp_path, tgz.as_uri(), wrong), tmp_path / "cache"
    with pytest.raises(tool.BufError, match="does not match the lock's sha512 integrity"):
        tool.ensure(lock=lock, cache=cache, package="@bufbuild/buf-linux-x64")
    home = cache / "buf-linux-x64-1.75.0"
    assert list(home.iterdir()) == []  # nothing extracted, the download removed
    # A binary cached under another integrity is not trusted either: the changed lock fetches again.
    good = _lock_copy(tmp_path, tgz.as_uri(), integrity, name="good-lock.json")
    tool.ensure(lock=good, cache=cache, package="@bufbuild/buf-linux-x64")
    with pytest.raises(tool.BufError, match="integrity"):
        tool.ensure(lock=lock, cache=cache, package="@bufbuild/buf-linux-x64")
    assert list(home.iterdir()) == []


def test_fetcher_command_line_refuses_without_a_traceback(tmp_path: Path) -> None:
    tgz, _ = _package(tmp_path)
    env = {"PATH": "/usr/bin:/bin", "CUSTOS_BUF": str(tgz)}  # not a binary that runs
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "buf.py"), "path"], capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.returncode == 1
    assert out.stderr.startswith("buf: CUSTOS_BUF=") and "Traceback" not in out.stderr


def test_platform_packages_are_pinned_and_others_refused() -> None:
    assert tool.platform_package("Linux", "x86_64") == "@bufbuild/buf-linux-x64"
    assert tool.platform_package("Linux", "aarch64") == "@bufbuild/buf-linux-aarch64"
    with pytest.raises(tool.BufError, match=r"no buf package on npm for Linux riscv64.*CUSTOS_BUF"):
        tool.platform_package("Linux", "riscv64")
    version = tool.locked_version()
    for package in set(tool.PACKAGES.values()):
        pin = tool.pinned(package)
        assert pin.version == version
        assert pin.url.startswith(f"https://registry.npmjs.org/{package}/-/")
        assert re.fullmatch(r"sha512-[A-Za-z0-9+/]{86}==", pin.integrity)


def test_the_cached_binary_is_the_locked_version(buf: Path) -> None:
    out = subprocess.run([str(buf), "--version"], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == tool.locked_version() == "1.75.0"


def test_registry_mirror_and_proxy_are_taken_as_npm_takes_them(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "https://registry.npmjs.org/@bufbuild/buf-linux-x64/-/buf-linux-x64-1.75.0.tgz"
    monkeypatch.delenv("npm_config_registry", raising=False)
    monkeypatch.delenv("NPM_CONFIG_REGISTRY", raising=False)
    assert tool.registry_url(url) == url
    monkeypatch.setenv("npm_config_registry", "https://mirror.example/npm/")
    assert tool.registry_url(url) == "https://mirror.example/npm/@bufbuild/buf-linux-x64/-/buf-linux-x64-1.75.0.tgz"
    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "npm_config_https_proxy",
                 "NPM_CONFIG_HTTPS_PROXY", "NPM_CONFIG_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("npm_config_proxy", "http://proxy.example:3128")
    handler = next(h for h in tool._opener().handlers if hasattr(h, "proxies"))
    assert handler.proxies["https"] == handler.proxies["http"] == "http://proxy.example:3128"
