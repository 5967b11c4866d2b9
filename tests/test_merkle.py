"""gateway/tlog/merkle.py: canonical leaves, RFC 6962 hashing, the frontier, verifier keys and signed checkpoints."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.tlog.merkle import (
    EMPTY_ROOT,
    Frontier,
    canonical_json,
    leaf_hash,
    node_hash,
    parse_verifier_key,
    root_of,
    sign_checkpoint,
    verifier_key,
    verify_checkpoint,
)


def test_canonical_json_sorts_keys_drops_whitespace_and_keeps_unicode() -> None:
    assert canonical_json({"b": 1, "a": [True, None, "x"]}) == b'{"a":[true,null,"x"],"b":1}'
    assert canonical_json({"k": "é\n"}) == '{"k":"é\\n"}'.encode()
    assert canonical_json({"z": {"y": 2, "x": 1}}) == b'{"z":{"x":1,"y":2}}'


@pytest.mark.parametrize("value", [1.5, {"a": 0.0}, [1, [2.0]], {"é": 1}, {1: "x"}])
def test_canonical_json_refuses_floats_and_non_ascii_or_non_string_keys(value: object) -> None:
    with pytest.raises(ValueError):
        canonical_json(value)


def test_hashes_are_domain_separated_as_rfc_6962_says() -> None:
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert node_hash(b"L", b"R") == hashlib.sha256(b"\x01LR").digest()
    assert EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert root_of([]) == EMPTY_ROOT


def test_the_root_of_three_leaves_splits_at_two() -> None:
    a, b, c = (leaf_hash(x) for x in (b"a", b"b", b"c"))
    assert root_of([a]) == a
    assert root_of([a, b, c]) == node_hash(node_hash(a, b), c)


def test_the_frontier_agrees_with_the_recursive_root_at_every_size_and_survives_a_round_trip() -> None:
    hashes = [leaf_hash(str(i).encode()) for i in range(70)]
    frontier = Frontier()
    assert frontier.root() == EMPTY_ROOT
    for n, h in enumerate(hashes, start=1):
        frontier.append(h)
        assert frontier.size == n and frontier.root() == root_of(hashes[:n])
    again = Frontier.loads(frontier.size, frontier.dumps())
    assert again.root() == frontier.root() and again.size == 70
    copy = frontier.copy()
    copy.append(hashes[0])
    assert frontier.size == 70 and copy.size == 71  # a copy does not share its edge


def test_a_verifier_key_round_trips_and_is_checked() -> None:
    key = Ed25519PrivateKey.generate()
    text = verifier_key("custos.test/log", key.public_key())
    name, hexhash, b64 = text.split("+", 2)  # base64 may hold "+" too
    assert name == "custos.test/log" and len(hexhash) == 8
    raw = base64.b64decode(b64)
    assert raw[:1] == b"\x01" and len(raw) == 33
    verifier = parse_verifier_key(text + "\n")
    assert verifier.name == name and verifier.key_hash.hex() == hexhash
    with pytest.raises(ValueError, match="bad verifier key"):
        parse_verifier_key(f"other.name+{hexhash}+{b64}")  # the hash binds the name
    with pytest.raises(ValueError, match="bad verifier key"):
        parse_verifier_key(f"{name}+{hexhash}+" + base64.b64encode(b"\x02" + raw[1:]).decode())
    with pytest.raises(ValueError, match="bad verifier key"):
        parse_verifier_key("no-plus-signs")


def test_a_checkpoint_verifies_with_its_key_only_and_unaltered() -> None:
    key = Ed25519PrivateKey.generate()
    origin = "custos.test/log"
    root = root_of([leaf_hash(b"x"), leaf_hash(b"y")])
    note = sign_checkpoint(origin, 2, root, key)
    assert note.startswith(f"{origin}\n2\n{base64.b64encode(root).decode()}\n\n\u2014 {origin} ")
    data = verify_checkpoint(note, parse_verifier_key(verifier_key(origin, key.public_key())))
    assert (data.origin, data.size, data.root) == (origin, 2, root)
    other = parse_verifier_key(verifier_key(origin, Ed25519PrivateKey.generate().public_key()))
    with pytest.raises(ValueError, match="not signed by the pinned key"):
        verify_checkpoint(note, other)
    mine = parse_verifier_key(verifier_key(origin, key.public_key()))
    with pytest.raises(ValueError, match="does not verify"):
        verify_checkpoint(note.replace(f"{origin}\n2\n", f"{origin}\n3\n", 1), mine)
    with pytest.raises(ValueError, match="no signature block"):
        verify_checkpoint(note.split("\n\n")[0], mine)
