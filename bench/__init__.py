"""Benchmark: audited `GetCase` against a bare gRPC + mTLS echo, measured in the same run (`make bench`)."""

# First, before anything imports grpc: importing gateway sets gRPC's TLS 1.2
# cipher list (TLS 1.3 only, see gateway/__init__.py), so the echo and every
# in-process gateway here have the very TLS set-up `custos serve` has.
import gateway  # noqa: F401
