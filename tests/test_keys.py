"""Keys apart from data (issue 8, finding 8): an offline CA, and every key outside DATA_DIR on request.

Before: the CA key and the audit signing key sat in DATA_DIR/keys beside the
database and its key, so whoever could read the directory could mint any
organisation's certificate and re-sign a rewritten log. Now `custos ca` keeps
the CA in a directory that never has to be on the gateway host, and
`custos init --key-dir` keeps every key file (database, KEKs, blind index,
audit signing, server TLS) out of DATA_DIR.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from custos_client import CustosClient, CustosClientError

from gateway import cli, synth
from gateway.transport.server import build


def custos(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    rc = cli.main([*argv, "--json"])
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    lines = [ln for ln in out.out.splitlines() if ln.strip()]
    return rc, json.loads(lines[-1]) if lines else {}


def all_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def test_an_offline_ca_issues_everything_and_never_touches_the_data_directory(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ca, data, ids = tmp_path / "ca", tmp_path / "data", tmp_path / "ids"
    assert custos(capsys, "ca", "init", str(ca))[0] == 0
    assert (ca / "ca.key").stat().st_mode & 0o777 == 0o600
    # On the CA host: the server's certificate and an organisation's; only certificates travel.
    assert custos(capsys, "ca", "issue", str(ca), "--server", "--hostname", "gw.example.internal",
                  "--out", str(tmp_path / "tls"))[0] == 0
    assert custos(capsys, "ca", "issue", str(ca), "--org", "lender-a", "--out", str(ids / "lender-a"))[0] == 0
    # On the gateway host.
    rc, doc = custos(capsys, "init", str(data), "--tls", str(tmp_path / "tls"))
    assert rc == 0 and doc["ca"] == "offline"
    assert not (data / "keys" / "ca.key").exists()
    ca_key = (ca / "ca.key").read_bytes()
    assert ca_key not in all_bytes(data)
    rc, doc = custos(capsys, "org", "add", str(data), "--id", "lender-a", "--kind", "lender", "--name", "A",
                     "--cert", str(ids / "lender-a" / "client.crt"))
    assert rc == 0, doc
    # Without the CA the gateway cannot mint a certificate, and says why.
    rc, doc = custos(capsys, "org", "add", str(data), "--id", "lender-b", "--kind", "lender", "--name", "B",
                     "--out", str(ids / "lender-b"))
    assert rc != 0 and doc["error"]["code"] == "CA_OFFLINE"
    assert not (ids / "lender-b").exists()
    gw = build(data, "127.0.0.1:0")
    try:
        with CustosClient(f"127.0.0.1:{gw.port}", ids / "lender-a") as c:
            assert c.import_lines(synth.jsonl([synth.case_line(1)]).splitlines()).imported == 1
    finally:
        gw.stop(0)


def test_org_add_refuses_a_certificate_of_another_ca_or_another_org(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    ca, other, data = tmp_path / "ca", tmp_path / "other", tmp_path / "data"
    custos(capsys, "ca", "init", str(ca))
    custos(capsys, "ca", "init", str(other))
    custos(capsys, "ca", "issue", str(ca), "--server", "--out", str(tmp_path / "tls"))
    custos(capsys, "ca", "issue", str(other), "--org", "lender-a", "--out", str(tmp_path / "rogue"))
    custos(capsys, "ca", "issue", str(ca), "--org", "lender-b", "--out", str(tmp_path / "b"))
    assert custos(capsys, "init", str(data), "--tls", str(tmp_path / "tls"))[0] == 0
    for cert in (tmp_path / "rogue" / "client.crt", tmp_path / "b" / "client.crt"):
        rc, doc = custos(capsys, "org", "add", str(data), "--id", "lender-a", "--kind", "lender", "--name", "A",
                         "--cert", str(cert))
        assert rc != 0 and doc["error"]["code"] == "CERT_MISMATCH", doc
    # A server certificate from another CA is refused before anything is created.
    custos(capsys, "ca", "issue", str(other), "--server", "--out", str(tmp_path / "tls-other"))
    mixed = tmp_path / "mixed"
    shutil.copytree(tmp_path / "tls", mixed)
    shutil.copy(tmp_path / "tls-other" / "server.crt", mixed / "server.crt")
    rc, doc = custos(capsys, "init", str(tmp_path / "data2"), "--tls", str(mixed))
    assert rc != 0 and doc["error"]["code"] == "CERT_MISMATCH"
    assert not (tmp_path / "data2").exists()


def test_with_a_key_dir_the_data_directory_holds_no_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, keys, ids = tmp_path / "data", tmp_path / "keys", tmp_path / "ids"
    rc, doc = custos(capsys, "init", str(data), "--key-dir", str(keys))
    assert rc == 0 and doc["key_dir"] == str(keys.resolve())
    assert custos(capsys, "org", "add", str(data), "--id", "lender-a", "--kind", "lender", "--name", "A", "--out",
                  str(ids / "lender-a"))[0] == 0
    assert custos(capsys, "org", "add", str(data), "--id", "regulator-1", "--kind", "regulator", "--name", "R",
                  "--out", str(ids / "regulator-1"))[0] == 0
    names = sorted(p.name for p in keys.iterdir())
    assert names == ["audit.key", "bidx.key", "ca.key", "db.key", "kek-1.key", "packet.key", "server.key"]
    assert all((keys / n).stat().st_mode & 0o777 == 0o600 for n in names)
    gw = build(data, "127.0.0.1:0")
    try:
        with CustosClient(f"127.0.0.1:{gw.port}", ids / "lender-a") as c:
            assert c.import_lines(synth.jsonl([synth.case_line(1)]).splitlines()).imported == 1
        with CustosClient(f"127.0.0.1:{gw.port}", ids / "regulator-1") as r:
            assert r.checkpoint()
    finally:
        gw.stop(0)
    # No key's bytes, in any encoding we write them, anywhere in DATA_DIR.
    everything = all_bytes(data)
    for name in names:
        raw = (keys / name).read_bytes()
        assert raw.strip() not in everything, name
    assert not (data / "keys").exists() or not any((data / "keys").iterdir())
    # A copy of the data directory alone does not serve, and says why.
    shutil.copytree(data, tmp_path / "copy")
    shutil.move(str(keys), str(tmp_path / "keys-away"))
    from gateway.core.errors import CustosError as CoreError

    with pytest.raises(CoreError) as info:
        build(tmp_path / "copy", "127.0.0.1:0")
    assert info.value.code == "KEYS_UNAVAILABLE"
    rc = cli.main(["serve", str(tmp_path / "copy"), "--listen", "127.0.0.1:0"])
    assert rc != 0 and "error: KEYS_UNAVAILABLE" in capsys.readouterr().err


def test_key_dir_inside_the_data_directory_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, doc = custos(capsys, "init", str(tmp_path / "data"), "--key-dir", str(tmp_path / "data" / "secret"))
    assert rc != 0 and doc["error"]["code"] == "INVALID_ARGUMENT"


def test_ca_issue_refuses_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ca = tmp_path / "ca"
    custos(capsys, "ca", "init", str(ca))
    for argv, code in [
        (["ca", "issue", str(ca), "--out", str(tmp_path / "x")], "INVALID_ARGUMENT"),
        (["ca", "issue", str(ca), "--org", "a b", "--out", str(tmp_path / "x")], "INVALID_ORG_ID"),
        (["ca", "issue", str(tmp_path / "nowhere"), "--org", "a", "--out", str(tmp_path / "x")], "IDENTITY_INVALID"),
        (["ca", "init", str(ca)], "DATA_DIR_EXISTS"),
    ]:
        rc, doc = custos(capsys, *argv)
        assert rc != 0 and doc["error"]["code"] == code, (argv, doc)


def test_the_client_still_sees_a_stable_code_for_an_unknown_certificate(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    ca, data = tmp_path / "ca", tmp_path / "data"
    custos(capsys, "ca", "init", str(ca))
    custos(capsys, "ca", "issue", str(ca), "--server", "--out", str(tmp_path / "tls"))
    custos(capsys, "ca", "issue", str(ca), "--org", "ghost", "--out", str(tmp_path / "ghost"))
    custos(capsys, "init", str(data), "--tls", str(tmp_path / "tls"))
    gw = build(data, "127.0.0.1:0")
    try:
        with CustosClient(f"127.0.0.1:{gw.port}", tmp_path / "ghost") as c, pytest.raises(CustosClientError) as info:
            c.list_cases()
        assert info.value.code == "UNKNOWN_ORG"
    finally:
        gw.stop(0)
