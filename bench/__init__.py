"""Benchmark: audited `GetCase` against a bare gRPC + mTLS echo, measured in the same run (`make bench`)."""
