"""Signed litigation packets: what a law firm receives, how anyone checks it, and when it is refused."""

from __future__ import annotations

import base64
import io
import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from custos_client import CustosClientError

from gateway import cli, packets, synth
from gateway.core.errors import Code
from gateway.core.errors import CustosError as CoreError
from gateway.core.usecases.litigation import ledger_summary, released_loan
from gateway.tlog.merkle import canonical_json, verifier_key
from gateway.transport.server import build
from tests.conftest import Env


def packet(env: Env, case: str, org: str = "lawfirm-1") -> bytes:
    _, data = env.client(org).get_packet(case)
    return data


def vkey(env: Env) -> str:
    return (env.data / "packet.vkey").read_text()


def refused(env: Env, case: str, org: str = "lawfirm-1") -> str:
    with pytest.raises(CustosClientError) as info:
        env.client(org).get_packet(case)
    return info.value.code


def resign(data: bytes, key: str, signer: Ed25519PrivateKey, **changes: Any) -> bytes:
    """The packet `data` (which verifies under `key`) with its manifest changed and signed by `signer` instead."""
    genuine = packets.verify(data, key)
    items = [packets.Item(i["name"], i["type"], genuine.items[i["name"]]) for i in genuine.manifest["items"]]
    meta = {k: v for k, v in genuine.manifest.items() if k not in ("format", "key", "items")} | changes
    return packets.assemble(meta, items, signer, "custos.invalid/other/packets")


def verify_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str, str]:
    """`custos packet verify ARGV`: exit code, the --json document (or None), stdout and stderr; never a traceback."""
    capsys.readouterr()
    rc = cli.main(["packet", "verify", *argv])
    out = capsys.readouterr()
    assert "Traceback" not in out.err and "Traceback" not in out.out
    doc = json.loads(out.out) if "--json" in argv else None
    return rc, doc, out.out, out.err


def failure(data: bytes, key: str) -> str:
    with pytest.raises(CoreError) as info:
        packets.verify(data, key)
    assert info.value.code == Code.PACKET_INVALID
    return str(info.value.message)


def test_a_packet_round_trip_holds_every_item_and_verifies(escalated: Env) -> None:
    data = packet(escalated, "C-1")
    result = packets.verify(data, vkey(escalated))
    m = result.manifest
    assert m["recipient"] == "lawfirm-1" and m["case_id"] == "C-1" and m["lender"] == "lender-a"
    names = [i["name"] for i in m["items"]]
    assert names == ["record.json", "ledger.json", "contract.txt", "contacts.json", "service_address.json",
                     "summary.pdf"]
    line = synth.case_line(1, jurisdiction="CN", borrower=1)
    record = json.loads(result.items["record.json"])
    assert record["full_name"] == line["borrower"]["full_name"]
    assert record["national_id"] == line["borrower"]["national_id"]
    assert "bank_account" not in record and "emergency_contacts" not in record  # not in the litigation field set
    ledger = json.loads(result.items["ledger.json"])
    assert ledger["principal"] == line["loan"]["principal"] and ledger["repayments"] == line["loan"]["repayments"]
    assert ledger["summary"] == ledger_summary(released_loan(line["loan"], line["loan"]["repayments"]))
    assert result.items["contract.txt"].decode() == line["loan"]["contract_text"]
    contacts = json.loads(result.items["contacts.json"])
    assert [(c["channel"], c["result"]) for c in contacts] == [("call", "promise_to_pay")]
    assert json.loads(result.items["service_address.json"])["service_address"] == line["borrower"]["home_address"]
    # The release is one audit event with every field and the packet id.
    events = [e for e in escalated.events(case_id="C-1") if e.method == "GetPacket"]
    assert len(events) == 1 and events[0].decision == "allow"
    assert events[0].data["fields"] == m["fields"] and m["packet_id"] in events[0].data["rule"]
    assert "contract_text" in m["fields"] and "contact_history" in m["fields"]


def test_the_pdf_summary_states_the_ledger_totals(escalated: Env) -> None:
    from pypdf import PdfReader

    result = packets.verify(packet(escalated, "C-1"), vkey(escalated))
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(result.items["summary.pdf"])).pages)
    summary = json.loads(result.items["ledger.json"])["summary"]
    for key in ("principal", "repaid", "outstanding", "amount_due", "expected", "difference"):
        assert summary[key] in text, key
    assert result.manifest["packet_id"] in text and "lawfirm-1" in text


def test_one_flipped_byte_anywhere_fails_and_names_the_part(escalated: Env) -> None:
    data = packet(escalated, "C-1")
    key = vkey(escalated)
    line_end = data.index(b"\n")
    size = int(data[:line_end].split(b" ")[1])
    manifest = json.loads(data[line_end + 1:line_end + 1 + size])
    regions: list[tuple[int, int, str]] = [(0, line_end + 1, "header"), (line_end + 1, line_end + 1 + size, "manifest")]
    offset = line_end + 1 + size
    for item in manifest["items"]:
        regions.append((offset, offset + item["size"], item["name"]))
        offset += item["size"]
    assert offset == len(data)
    rnd = random.Random(5)
    for start, end, name in regions:
        positions = {start, end - 1, *(rnd.randrange(start, end) for _ in range(6))}
        for pos in positions:
            flipped = bytearray(data)
            flipped[pos] ^= 0x01
            message = failure(bytes(flipped), key)
            if name in ("header", "manifest"):
                assert any(w in message for w in ("header", "manifest", "signature")), (pos, message)
            else:
                assert f"item {name} is altered" in message, (pos, name, message)
    assert "truncated" in failure(data[:-10], key)
    assert "after the last item" in failure(data + b"x", key)


def test_a_packet_signed_by_another_key_fails(escalated: Env, tmp_path: Path) -> None:
    data = packet(escalated, "C-1")
    other = Ed25519PrivateKey.generate()
    assert "another key" in failure(data, verifier_key("custos.invalid/other/packets", other.public_key()))
    # Re-signed by someone else with their own key named inside: self-consistent, but not the gateway's key.
    resigned = resign(data, vkey(escalated), other, recipient="lawfirm-2")
    assert "another key" in failure(resigned, vkey(escalated))
    assert packets.verify(resigned, verifier_key("custos.invalid/other/packets", other.public_key())).manifest
    # The audit key is not the packet key either.
    assert "another key" in failure(data, (escalated.data / "audit.vkey").read_text())


def test_packet_cli_get_and_verify(escalated: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ids = escalated.root / "ids" / "lawfirm-1"
    out = tmp_path / "C-1.packet"
    argv = ["--gateway", escalated.addr, "--identity", str(ids), "--json"]
    assert cli.main(["packet", "get", "C-1", "--out", str(out), *argv]) == 0
    got = json.loads(capsys.readouterr().out)
    assert out.stat().st_mode & 0o777 == 0o600 and got["bytes"] == out.stat().st_size
    assert cli.main(["packet", "verify", str(out), "--key", str(escalated.data / "packet.vkey"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["verified"] and doc["key_pinned"] and doc["packet_id"] == got["packet_id"]
    assert doc["recipient"] == "lawfirm-1" and len(doc["items"]) == 6
    assert cli.main(["packet", "verify", str(out), "--identity", str(ids)]) == 0
    assert "verified" in capsys.readouterr().out
    raw = bytearray(out.read_bytes())
    raw[-100] ^= 0xFF  # inside the PDF, the last item
    out.write_bytes(bytes(raw))
    assert cli.main(["packet", "verify", str(out), "--key", str(escalated.data / "packet.vkey"), "--json"]) != 0
    err = json.loads(capsys.readouterr().out)["error"]
    assert err["code"] == "PACKET_INVALID" and "summary.pdf" in err["message"]
    assert cli.main(["packet", "verify", str(tmp_path / "missing"), "--json"]) != 0
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "INVALID_ARGUMENT"


def test_the_packet_is_refused_exactly_where_the_litigation_read_is(seeded: Env) -> None:
    lender = seeded.client("lender-a")
    cases: list[tuple[str, str, dict[str, Any]]] = []
    assert refused(seeded, "C-1") == "NO_MANDATE"  # before escalation
    lender.escalate("C-1", "lawfirm-1")
    assert refused(seeded, "C-1", "lawfirm-2") == "NO_MANDATE"  # another firm's case
    assert refused(seeded, "C-1", "agency-1") == "WRONG_ORG_KIND"
    lender.set_flags("C-1", disputed=True)
    cases.append(("C-1", "DISPUTED", {}))
    us = synth.case_line(50, jurisdiction="US")
    us["loan"]["limitation_date"] = "2026-11-01"
    seeded.import_cases("lender-a", [us])
    lender.escalate("C-50", "lawfirm-1")
    cases.append(("C-50", "LIMITATION_EXPIRED", {}))
    lender.escalate("C-3", "lawfirm-1")
    lender.recall("C-3", "lawfirm-1")
    cases.append(("C-3", "MANDATE_RECALLED", {}))
    for case, code, _ in cases:
        assert refused(seeded, case) == code
        with pytest.raises(CustosClientError) as info:
            seeded.client("lawfirm-1").get_case(case, "litigation")
        assert info.value.code == code
        denial = [e for e in seeded.events(case_id=case) if e.method == "GetPacket"][-1]
        assert (denial.decision, denial.code) == ("deny", code)
    lender.set_flags("C-1", disputed=False)
    assert packets.verify(packet(seeded, "C-1"), vkey(seeded)).manifest["case_id"] == "C-1"


@pytest.mark.sqlite_only  # the key is made at start-up only for the embedded store (replicas must share one)
def test_a_data_directory_from_before_packets_gets_its_key_at_start_up(env_dir: Path) -> None:
    data = env_dir / "data"
    (data / "keys" / "packet.key").unlink()
    (data / "packet.vkey").unlink()
    gw = build(data, "127.0.0.1:0")
    try:
        assert (data / "keys" / "packet.key").stat().st_mode & 0o777 == 0o600
        assert (data / "packet.vkey").read_text().split("+")[0].endswith("/packets")
    finally:
        gw.stop(0)


@pytest.mark.postgresql_only
def test_a_replica_without_the_packet_key_refuses_packets_rather_than_sign_with_its_own(env_dir: Path) -> None:
    from custos_client import CustosClient

    second = env_dir.parent / "replica-without-key"
    shutil.copytree(env_dir, second)
    (second / "data" / "keys" / "packet.key").unlink()
    gw = build(second / "data", "127.0.0.1:0")
    try:
        assert not (second / "data" / "keys" / "packet.key").exists()
        with CustosClient(f"127.0.0.1:{gw.port}", second / "ids" / "lawfirm-1", timeout=20) as firm, \
                pytest.raises(CustosClientError) as info:
            firm.get_packet("C-1")
        assert info.value.code == "KEYS_UNAVAILABLE"
    finally:
        gw.stop(0)


# ---------------------------------------------------------------- the key is pinned, the recipient named


def test_verify_without_a_pinned_key_verifies_nothing(escalated: Env, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A packet names its own key: a forger's packet, re-signed with a key of theirs, must not come out verified."""
    monkeypatch.delenv("CUSTOS_IDENTITY", raising=False)
    data = packet(escalated, "C-1")
    forged = tmp_path / "forged.packet"
    forged.write_bytes(resign(data, vkey(escalated), Ed25519PrivateKey.generate(), recipient="lawfirm-2"))
    genuine = tmp_path / "genuine.packet"
    genuine.write_bytes(data)
    for path in (forged, genuine):
        rc, doc, _, _ = verify_cli(capsys, str(path), "--json")
        assert rc != 0 and set(doc) == {"error"} and doc["error"]["code"] == "PACKET_KEY_REQUIRED"
        rc, _, out, err = verify_cli(capsys, str(path))
        assert rc != 0 and "verified" not in out and err.startswith("error: PACKET_KEY_REQUIRED:")
    # An identity bundle without packet.vkey (one made before bundles carried it) pins nothing either.
    bare = tmp_path / "bare-bundle"
    shutil.copytree(escalated.identity("lawfirm-1"), bare)
    (bare / "packet.vkey").unlink()
    rc, doc, _, _ = verify_cli(capsys, str(genuine), "--identity", str(bare), "--json")
    assert rc != 0 and doc["error"]["code"] == "PACKET_KEY_REQUIRED" and "packet.vkey" in doc["error"]["message"]


def test_the_identity_bundle_carries_and_pins_the_gateway_packet_key(escalated: Env, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    ids = escalated.identity("lawfirm-1")
    assert (ids / "packet.vkey").read_text() == vkey(escalated)  # written by `custos org add --out`
    data = packet(escalated, "C-1")
    genuine = tmp_path / "genuine.packet"
    genuine.write_bytes(data)
    forged = tmp_path / "forged.packet"
    forged.write_bytes(resign(data, vkey(escalated), Ed25519PrivateKey.generate()))
    rc, doc, _, _ = verify_cli(capsys, str(genuine), "--identity", str(ids), "--json")
    assert rc == 0 and doc["verified"] is True and doc["key_pinned"] is True
    assert doc["key_source"] == str(ids / "packet.vkey") and doc["recipient"] == "lawfirm-1"
    rc, doc, _, _ = verify_cli(capsys, str(forged), "--identity", str(ids), "--json")
    assert rc != 0 and doc["error"]["code"] == "PACKET_INVALID" and "another key" in doc["error"]["message"]
    monkeypatch.setenv("CUSTOS_IDENTITY", str(ids))
    rc, _, out, _ = verify_cli(capsys, str(genuine))
    assert rc == 0 and "verified" in out and f"pinned: {ids / 'packet.vkey'}" in out
    rc, _, out, err = verify_cli(capsys, str(forged))
    assert rc != 0 and out == "" and err.startswith("error: PACKET_INVALID:")
    # --key wins over the bundle: a wrong --key is not rescued by a right bundle.
    rc, doc, _, _ = verify_cli(capsys, str(genuine), "--key", str(escalated.data / "audit.vkey"), "--json")
    assert rc != 0 and doc["error"]["code"] == "PACKET_INVALID"


def test_recipient_is_named_and_checked(escalated: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ids = str(escalated.identity("lawfirm-1"))
    path = tmp_path / "C-1.packet"
    path.write_bytes(packet(escalated, "C-1"))
    rc, doc, _, _ = verify_cli(capsys, str(path), "--identity", ids, "--json")
    assert rc == 0 and doc["recipient"] == "lawfirm-1" and doc["recipient_checked"] is False
    rc, doc, _, _ = verify_cli(capsys, str(path), "--identity", ids, "--recipient", "lawfirm-1", "--json")
    assert rc == 0 and doc["verified"] and doc["recipient_checked"] is True
    rc, _, out, _ = verify_cli(capsys, str(path), "--identity", ids, "--recipient", "lawfirm-1")
    assert rc == 0 and "recipient lawfirm-1 checked" in out
    rc, doc, _, _ = verify_cli(capsys, str(path), "--identity", ids, "--recipient", "lawfirm-2", "--json")
    assert rc != 0 and set(doc) == {"error"} and doc["error"]["code"] == "PACKET_RECIPIENT_MISMATCH"
    rc, _, out, err = verify_cli(capsys, str(path), "--identity", ids, "--recipient", "lawfirm-2")
    assert rc != 0 and out == "" and err.startswith("error: PACKET_RECIPIENT_MISMATCH:")
    with pytest.raises(CoreError) as info:
        packets.verify(path.read_bytes(), vkey(escalated), "lawfirm-2")
    assert info.value.code == Code.PACKET_RECIPIENT_MISMATCH


def test_ca_issue_puts_the_packet_key_into_the_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = verifier_key("custos.invalid/test/packets", Ed25519PrivateKey.generate().public_key())
    (tmp_path / "packet.vkey").write_text(key + "\n")
    assert cli.main(["ca", "init", str(tmp_path / "ca")]) == 0
    assert cli.main(["ca", "issue", str(tmp_path / "ca"), "--org", "lawfirm-9", "--packet-key",
                     str(tmp_path / "packet.vkey"), "--out", str(tmp_path / "bundle")]) == 0
    assert (tmp_path / "bundle" / "packet.vkey").read_text() == key + "\n"
    (tmp_path / "junk.vkey").write_bytes(b"\xff not a key")
    capsys.readouterr()
    assert cli.main(["ca", "issue", str(tmp_path / "ca"), "--org", "lawfirm-8", "--packet-key",
                     str(tmp_path / "junk.vkey"), "--out", str(tmp_path / "bundle-8"), "--json"]) != 0
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "INVALID_ARGUMENT"


# ---------------------------------------------------------------- malformed manifests: PACKET_INVALID, never more

TEST_KEY_NAME = "custos.invalid/test/packets"


def _item(m: dict[str, Any], **changes: Any) -> dict[str, Any]:
    m["items"][0] |= changes
    return m


def _drop_item_key(m: dict[str, Any], key: str) -> dict[str, Any]:
    del m["items"][0][key]
    return m


def _set(m: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    m[key] = value
    return m


def _drop(m: dict[str, Any], key: str) -> dict[str, Any]:
    del m[key]
    return m


MANIFEST_KEYS = ("format", "key", "packet_id", "recipient", "lender", "case_id", "jurisdiction", "issued_at",
                 "fields", "items")

# Each takes the genuine manifest and returns another one (signed canonically) or raw manifest bytes (signed as they
# are): every one is signed by the pinned key, so only the manifest's shape can make it fail.
MALFORMED: dict[str, Any] = {
    "items not a list (object)": lambda m: _set(m, "items", {"record.json": 3}),
    "items not a list (string)": lambda m: _set(m, "items", "record.json"),
    "items null": lambda m: _set(m, "items", None),
    "item not an object (string)": lambda m: _set(m, "items", ["record.json", *m["items"][1:]]),
    "item not an object (list)": lambda m: _set(m, "items", [[1, 2], *m["items"][1:]]),
    "size missing": lambda m: _drop_item_key(m, "size"),
    "size negative": lambda m: _item(m, size=-1),
    "size a string": lambda m: _item(m, size=str(m["items"][0]["size"])),
    "size a bool": lambda m: _item(m, size=True),
    "size null": lambda m: _item(m, size=None),
    "size a float": lambda m: json.dumps(_item(m, size=float(m["items"][0]["size"])), sort_keys=True,
                                         separators=(",", ":")).encode(),
    "size beyond the file": lambda m: _item(m, size=10 ** 30),
    "name missing": lambda m: _drop_item_key(m, "name"),
    "name not a string": lambda m: _item(m, name=7),
    "name empty": lambda m: _item(m, name=""),
    "sha256 missing": lambda m: _drop_item_key(m, "sha256"),
    "sha256 not a string": lambda m: _item(m, sha256=12),
    "sha256 not hex": lambda m: _item(m, sha256="z" * 64),
    "type missing": lambda m: _drop_item_key(m, "type"),
    "duplicate item names": lambda m: _item(m, name=m["items"][1]["name"]),
    "fields not a list": lambda m: _set(m, "fields", "full_name"),
    "fields holds a number": lambda m: _set(m, "fields", ["full_name", 3]),
    "names another key": lambda m: _set(m, "key", verifier_key(
        "custos.invalid/elsewhere/packets", Ed25519PrivateKey.generate().public_key())),
    "manifest a list": lambda m: b"[]",
    "manifest a string": lambda m: b'"custos-packet/1"',
    "duplicate JSON keys": lambda m: canonical_json(m).replace(b'"recipient":', b'"recipient":"lawfirm-2","recipient":'),
    "not canonical JSON": lambda m: json.dumps(m, sort_keys=True).encode(),
    "nested too deep to parse": lambda m: b"[" * 100_000 + b"]" * 100_000,
    "not UTF-8": lambda m: canonical_json(m).replace(b'"lawfirm-1"', b'"lawfirm-\xff"'),
    **{f"{key} missing": (lambda k: lambda m: _drop(m, k))(key) for key in MANIFEST_KEYS},
    **{f"{key} a {type(bad).__name__}": (lambda k, v: lambda m: _set(m, k, v))(key, bad)
       for key in MANIFEST_KEYS for bad in (5, None, True, [], {}) if not (key in ("fields", "items") and bad == [])},
    **{f"{key} empty": (lambda k: lambda m: _set(m, k, ""))(key)
       for key in ("packet_id", "recipient", "case_id", "lender")},
}

# Whole-file damage, with the manifest untouched.
DAMAGED: dict[str, Any] = {
    "empty file": lambda d: b"",
    "header only": lambda d: d[:d.index(b"\n") + 1],
    "truncated in the manifest": lambda d: d[:d.index(b"\n") + 5],
    "truncated in the last item": lambda d: d[:-3],
    "trailing garbage": lambda d: d + b"\x00garbage",
    "header length not a number": lambda d: d.replace(b"CUSTOS-PACKET/1 ", b"CUSTOS-PACKET/1 x", 1),
    "no header line": lambda d: d.replace(b"\n", b" ", 1),
}


def _genuine(signer: Ed25519PrivateKey) -> bytes:
    meta = {"packet_id": "P-0011223344556677", "recipient": "lawfirm-1", "lender": "lender-a", "case_id": "C-1",
            "jurisdiction": "CN", "issued_at": "2026-12-01T03:00:00Z", "fields": ["full_name", "national_id"]}
    items = [packets.Item("record.json", "application/json", b'{"full_name":"x"}'),
             packets.Item("ledger.json", "application/json", b'{"principal":"1.00"}')]
    return packets.assemble(meta, items, signer, TEST_KEY_NAME)


def _signed(body: bytes, tail: bytes, signer: Ed25519PrivateKey) -> bytes:
    signature = base64.b64encode(signer.sign(packets.DOMAIN + body)).decode()
    return packets.MAGIC + f" {len(body)} {signature}\n".encode() + body + tail


def _malformed(case: str, signer: Ed25519PrivateKey) -> bytes:
    data = _genuine(signer)
    if case in DAMAGED:
        return bytes(DAMAGED[case](data))
    line_end = data.index(b"\n")
    size = int(data[:line_end].split(b" ")[1])
    manifest = json.loads(data[line_end + 1:line_end + 1 + size])
    changed = MALFORMED[case](manifest)
    body = changed if isinstance(changed, bytes) else canonical_json(changed)
    return _signed(body, data[line_end + 1 + size:], signer)


def test_the_genuine_test_packet_verifies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The control for the cases below: unchanged, the packet they start from verifies."""
    signer = Ed25519PrivateKey.generate()
    key = tmp_path / "test.vkey"
    key.write_text(verifier_key(TEST_KEY_NAME, signer.public_key()) + "\n")
    path = tmp_path / "p.packet"
    path.write_bytes(_genuine(signer))
    rc, doc, _, _ = verify_cli(capsys, str(path), "--key", str(key), "--json")
    assert rc == 0 and doc["verified"] and [i["name"] for i in doc["items"]] == ["record.json", "ledger.json"]
    line_end = path.read_bytes().index(b"\n")
    assert _signed(path.read_bytes()[line_end + 1:line_end + 1 + int(path.read_bytes()[:line_end].split(b" ")[1])],
                   b'{"full_name":"x"}{"principal":"1.00"}', signer) == path.read_bytes()


@pytest.mark.parametrize("case", [*MALFORMED, *DAMAGED])
def test_a_malformed_packet_is_packet_invalid_in_both_forms(case: str, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    signer = Ed25519PrivateKey.generate()
    key = verifier_key(TEST_KEY_NAME, signer.public_key())
    (tmp_path / "test.vkey").write_text(key + "\n")
    data = _malformed(case, signer)
    path = tmp_path / "p.packet"
    path.write_bytes(data)
    failure(data, key)
    rc, doc, _, _ = verify_cli(capsys, str(path), "--key", str(tmp_path / "test.vkey"), "--json")
    assert rc != 0 and set(doc) == {"error"} and doc["error"]["code"] == "PACKET_INVALID", doc
    rc, _, out, err = verify_cli(capsys, str(path), "--key", str(tmp_path / "test.vkey"))
    assert rc != 0 and out == "" and err.startswith("error: PACKET_INVALID:"), err
