"""Offline verification: checks that need no gateway, only a file and a pinned key.

`packet verify` (a litigation packet against the gateway's packet key),
`audit verify --bundle` (an exported tlog-tiles bundle against audit.vkey) and
`audit cosigner-key` (a regulator's own key, made on its own machine). Nothing
here reaches a gateway: this room imports no client.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from gateway.core.errors import Code, CustosError

from .output import CliError, b64, emit, key_text


def cmd_audit_cosigner_key(args: argparse.Namespace) -> None:
    from gateway.tlog.cosign import Cosigner

    out = Path(args.out)
    try:
        signer = Cosigner.generate(args.name)
    except ValueError as exc:
        raise CliError(Code.INVALID_ARGUMENT, str(exc)) from None
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(signer.private_text() + "\n")
    vkey_path = out.with_name(out.name + ".vkey")
    vkey_path.write_text(signer.vkey() + "\n")
    emit(args, {"key": str(out), "vkey": str(vkey_path), "verifier_key": signer.vkey()},
         lambda d: f"cosigner key in {d['key']} (0600, keep it offline); publish {d['vkey']}")


def _pinned_packet_key(args: argparse.Namespace) -> tuple[str, str]:
    """The packet key to verify against, and where it came from: --key, else the identity bundle's packet.vkey.

    Never the key the packet names for itself: anyone can sign a packet with a
    key of their own and name it, so without a pinned key nothing is verified.
    """
    from gateway import pki

    if args.key:
        return key_text(args.key), str(args.key)
    identity = args.identity or os.environ.get("CUSTOS_IDENTITY")
    if not identity:
        raise CustosError(Code.PACKET_KEY_REQUIRED)
    path = Path(identity) / pki.PACKET_VKEY
    try:
        return path.read_text(), str(path)
    except (OSError, ValueError):
        raise CustosError(Code.PACKET_KEY_REQUIRED, "the identity bundle holds no readable packet.vkey: "
                                                    "copy the gateway's DATA_DIR/packet.vkey into it") from None


def cmd_packet_verify(args: argparse.Namespace) -> None:
    from gateway import packets

    try:
        data = Path(args.file).read_bytes()
    except OSError:
        raise CliError(Code.INVALID_ARGUMENT, "the packet file is not readable") from None
    vkey, source = _pinned_packet_key(args)
    m = packets.verify(data, vkey, args.recipient).manifest
    doc = {"verified": True, "key_pinned": True, "key_source": source, "key": m["key"],
           "recipient_checked": args.recipient is not None,
           **{k: m[k] for k in ("packet_id", "recipient", "lender", "case_id", "jurisdiction", "issued_at",
                                "fields")},
           "items": [{"name": i["name"], "type": i["type"], "size": i["size"], "sha256": i["sha256"]}
                     for i in m["items"]]}

    def human(d: dict[str, Any]) -> str:
        lines = [f"packet {d['packet_id']} verified: case {d['case_id']} of {d['lender']}, released to "
                 f"{d['recipient']} at {d['issued_at']}",
                 f"fields: {', '.join(d['fields'])}"]
        lines += [f"  {i['name']:<22} {i['size']:>8} bytes  sha256 {i['sha256']}" for i in d["items"]]
        lines.append(f"signed by {d['key'].split('+')[0]} (pinned: {d['key_source']})")
        lines.append(f"recipient {d['recipient']} " + ("checked" if d["recipient_checked"] else
                     "not checked (give --recipient ORG to require it)"))
        return "\n".join(lines)

    emit(args, doc, human)


def verify_bundle(args: argparse.Namespace, vkey: str) -> None:
    """`audit verify --bundle DIR`: an exported bundle checked against the pinned key, offline."""
    from gateway.tlog import tiles

    try:
        check = tiles.verify_bundle(Path(args.bundle), vkey)
    except tiles.BundleError as exc:
        raise CustosError(Code.AUDIT_VERIFY_FAILED, str(exc)) from None
    emit(args, {"verified": True, "bundle": args.bundle, "size": check.size, "origin": check.origin,
               "root": b64(check.root)},
        lambda d: f"bundle verified: {d['size']} events, root {d['root']}")
