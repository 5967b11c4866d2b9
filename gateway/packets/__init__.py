"""Signed litigation packets: one file a law firm keeps as evidence, checkable by anyone with the packet key.

Layout of a packet file (every byte belongs to exactly one part, so any
changed byte is named by what it broke):

    CUSTOS-PACKET/1 <manifest length> <base64 Ed25519 signature>\\n
    <manifest: canonical JSON, that many bytes>
    <item 1 bytes><item 2 bytes>...          (in manifest order, sizes in the manifest)

The signature covers "custos-packet/1\\n" + the manifest, and the manifest
names the packet id, the recipient organisation, the lender, the case, the
time, the fields released, the signing key and every item with its size and
SHA-256. So a packet that leaks names who received it, and no item, field
or recipient can be changed without the signature or a hash failing.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature

from gateway.core.errors import Code, CustosError
from gateway.core.usecases.litigation import PacketContent
from gateway.tlog.merkle import CheckpointSigner, canonical_json, parse_verifier_key, verifier_key

MAGIC = b"CUSTOS-PACKET/1"
DOMAIN = b"custos-packet/1\n"
FORMAT = "custos-packet/1"
MAX_MANIFEST = 1 << 20


@dataclass(frozen=True)
class Item:
    name: str
    media_type: str
    data: bytes


def assemble(meta: dict[str, Any], items: list[Item], signer: CheckpointSigner, key_name: str) -> bytes:
    """The packet file: `meta` (packet id, recipient, case, time, fields...) plus the items' hashes, signed."""
    manifest = dict(meta, format=FORMAT, key=verifier_key(key_name, signer.public_key()),
                    items=[{"name": i.name, "type": i.media_type, "size": len(i.data),
                            "sha256": hashlib.sha256(i.data).hexdigest()} for i in items])
    body = canonical_json(manifest)
    signature = base64.b64encode(signer.sign(DOMAIN + body)).decode()
    head = MAGIC + f" {len(body)} {signature}\n".encode()
    return head + body + b"".join(i.data for i in items)


def packet_id(data: bytes) -> str:
    """The id the manifest of a packet just assembled names (no verification: for the response only)."""
    line_end = data.index(b"\n")
    size = int(data[:line_end].split(b" ")[1])
    return str(json.loads(data[line_end + 1:line_end + 1 + size])["packet_id"])


@dataclass(frozen=True)
class Verified:
    manifest: dict[str, Any]
    items: dict[str, bytes]


def _bad(what: str) -> CustosError:
    return CustosError(Code.PACKET_INVALID, what)


# Every manifest key the gateway writes, with the type it must have: a packet that lacks one, or carries one of
# another type, is not one this format describes (the signature proves who wrote it, not that it is well formed).
_TEXT_KEYS = ("format", "key", "packet_id", "recipient", "lender", "case_id", "jurisdiction", "issued_at")
_SHA256_HEX = frozenset("0123456789abcdef")


def _manifest_items(manifest: dict[str, Any]) -> list[tuple[str, int, str]]:
    """(name, size, sha256) of every item, once the whole manifest has the shape `assemble` writes."""
    for key in _TEXT_KEYS:
        if not isinstance(manifest.get(key), str) or not manifest[key]:
            raise _bad(f"the manifest's {key} is missing or not a non-empty string")
    fields = manifest.get("fields")
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        raise _bad("the manifest's fields is missing or not a list of strings")
    entries = manifest.get("items")
    if not isinstance(entries, list):
        raise _bad("the manifest's items is missing or not a list")
    items: list[tuple[str, int, str]] = []
    seen: set[str] = set()
    for n, entry in enumerate(entries, 1):
        if not isinstance(entry, dict):
            raise _bad(f"item {n} of the manifest is not an object")
        name, size, digest, media = entry.get("name"), entry.get("size"), entry.get("sha256"), entry.get("type")
        if not isinstance(name, str) or not name:
            raise _bad(f"item {n} of the manifest has no name")
        if name in seen:
            raise _bad(f"item {n} of the manifest repeats an earlier item's name")
        seen.add(name)
        if not isinstance(media, str):
            raise _bad(f"item {n} of the manifest has no media type")
        # bool is an int in Python: True must not pass as a size of 1.
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise _bad(f"item {n} of the manifest has no size, or one that is not a non-negative integer")
        if not isinstance(digest, str) or len(digest) != 64 or not set(digest) <= _SHA256_HEX:
            raise _bad(f"item {n} of the manifest has no SHA-256, or one that is not 64 lowercase hex digits")
        items.append((name, size, digest))
    return items


def verify(data: bytes, vkey: str, recipient: str | None = None) -> Verified:
    """Every hash and the signature, against the pinned key `vkey`; the first failure, named.

    There is no unpinned mode: a packet names its own key, so checking it against
    that key proves only that someone signed it. `recipient`, when given, must be
    the organisation the packet was issued to.
    """
    try:
        verifier = parse_verifier_key(vkey.strip())
    except ValueError:
        raise _bad("the verifier key is not a valid key") from None
    line_end = data.find(b"\n", 0, 256)
    if line_end < 0:
        raise _bad("not a Custos packet (no header line)")
    parts = data[:line_end].split(b" ")
    if len(parts) != 3 or parts[0] != MAGIC or not parts[1].isdigit():
        raise _bad("the header line is altered or this is not a Custos packet")
    size = int(parts[1])
    start = line_end + 1
    if size > MAX_MANIFEST or start + size > len(data):
        raise _bad("the header line is altered (manifest length) or the file is truncated")
    body = data[start:start + size]
    try:
        signature = base64.b64decode(parts[2], validate=True)
    except ValueError:
        raise _bad("the header line is altered (signature)") from None
    try:
        manifest = json.loads(body)
        # Only the bytes `assemble` would write for this value: no duplicate keys, no floats, no other spelling.
        if not isinstance(manifest, dict) or canonical_json(manifest) != body or manifest.get("format") != FORMAT:
            raise ValueError
    except (ValueError, RecursionError):
        raise _bad("the manifest is altered (it no longer parses)") from None
    named_key = manifest.get("key")
    try:
        verifier.key.verify(signature, DOMAIN + body)
    except InvalidSignature:
        if isinstance(named_key, str) and named_key.strip() != vkey.strip():
            raise _bad("the packet is signed by another key than the one given") from None
        raise _bad("the signature does not verify: the manifest or the header line is altered") from None
    entries = _manifest_items(manifest)
    if manifest["key"].strip() != vkey.strip():
        raise _bad("the manifest names another key than the one that signed it")
    items: dict[str, bytes] = {}
    offset = start + size
    for name, length, digest in entries:
        chunk = data[offset:offset + length]
        if len(chunk) != length:
            raise _bad(f"item {name} is truncated")
        if hashlib.sha256(chunk).hexdigest() != digest:
            raise _bad(f"item {name} is altered (its SHA-256 differs from the manifest)")
        items[name] = chunk
        offset += length
    if offset != len(data):
        raise _bad(f"{len(data) - offset} bytes after the last item that the manifest does not list")
    # Last: a mismatch means a genuine, intact packet that was issued to someone else.
    if recipient is not None and manifest["recipient"] != recipient:
        raise CustosError(Code.PACKET_RECIPIENT_MISMATCH, f"issued to {manifest['recipient']}, not to {recipient}")
    return Verified(manifest, items)


def build(content: PacketContent, signer: CheckpointSigner, key_name: str) -> bytes:
    """The packet file for what the core released: the items, the PDF summary, the signed manifest."""
    from .pdf import summary_pdf

    record = dict(content.record)
    items = [Item("record.json", "application/json", canonical_json(record)),
             Item("ledger.json", "application/json", canonical_json(content.ledger))]
    if content.contract_text is not None:
        items.append(Item("contract.txt", "text/plain; charset=utf-8", content.contract_text.encode()))
    items.append(Item("contacts.json", "application/json", canonical_json(content.contacts)))
    if content.service_address is not None:
        items.append(Item("service_address.json", "application/json",
                          canonical_json({"service_address": content.service_address, "source": "home_address on file"})))
        record["service_address"] = content.service_address
    items.append(Item("summary.pdf", "application/pdf",
                      summary_pdf(content.meta, record, content.ledger, content.contacts)))
    return assemble(content.meta, items, signer, key_name)
