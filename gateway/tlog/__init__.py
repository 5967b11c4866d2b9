"""The transparency log, on its own: tree, proofs, proof checking, verification, cosignatures, tiles.

Imports only the standard library and `cryptography` (never the core, the
transport, the vault or grpc), so a regulator-side verifier or a witness can
take this package alone; tests/test_layers.py holds it to that.
"""
