"""gRPC transport: converts requests and results; decides nothing."""

import os

# TLS 1.3 only (DESIGN.md §8). grpcio's Python API cannot set a minimum TLS
# version (grpc/grpc#37305), but gRPC core takes its TLS 1.2 cipher list from
# this variable, read once when grpc is first imported. Listing only
# RSA-signed suites while the server key is ECDSA (all that `custos init`
# makes) leaves a TLS 1.2 client no suite to agree on; TLS 1.3 suites are not
# governed by the list. It has to be set before grpc is imported anywhere in
# the process, hence here: every module of this package that imports grpc
# runs this first, and `gateway.cli` imports this package before the client
# (custos_client imports grpc). Not in `gateway/__init__.py`: storage
# (`vault`) imports the core, and importing it must not change the
# environment. It overrides any value the environment had.
# The server checks at start-up that it took effect and refuses to serve
# otherwise (gateway.transport.server.accepts_tls12).
TLS12_CIPHER_SUITES = "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384"
os.environ["GRPC_SSL_CIPHER_SUITES"] = TLS12_CIPHER_SUITES

# gRPC core's own log (C++, absl, straight to stderr, outside Python's logging): errors only, unless the
# operator asks for more. At its default it writes an INFO line for every refused handshake, the first
# being our own start-up check's ("Handshake failed ... NO_SHARED_CIPHER"), which the server reports
# itself, as event `tls_self_check` (gateway.logs). Read when grpc is first imported, as above.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
