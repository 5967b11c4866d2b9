"""The baseline: a bare sync `grpc.server` with the gateway's mTLS set-up and nothing else.

One unary method (`ECHO_METHOD`) answers every request with the same pre-serialised
bytes, sized like a typical `GetCase` response. Same thread pool size (16), same
server certificate and key, same client CA with `require_client_auth=True`, same
server options as the gateway, so the difference to the gateway is the controls.

    python -m bench.echo_server DATA_DIR --listen 127.0.0.1:0 --size 700
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from gateway.core.rules.limits import ConnectionLimits
from gateway.transport.server import server_credentials, server_options  # the very same set-up as the gateway
from vault.datadir import Layout

ECHO_SERVICE = "bench.Echo"
ECHO_METHOD = f"/{ECHO_SERVICE}/Call"
WORKERS = 128  # the gateway's ThreadPoolExecutor size


def build(data_dir: Path, listen: str, size: int, workers: int = WORKERS,
          reuse_port: bool = False) -> tuple[grpc.Server, int]:
    """Start the echo server; returns it and the bound port."""
    response = b"e" * size

    def call(request: bytes, context: Any) -> bytes:
        return response

    handler = grpc.method_handlers_generic_handler(
        ECHO_SERVICE,
        {"Call": grpc.unary_unary_rpc_method_handler(call, request_deserializer=None, response_serializer=None)},
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rpc"),
        handlers=[handler],
        options=server_options(ConnectionLimits(), workers, 3600.0, reuse_port),
    )
    port = server.add_secure_port(listen, server_credentials(Layout.of(data_dir)))
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    server.start()
    return server, port


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.echo_server")
    ap.add_argument("data_dir", type=Path, help="a `custos init` data directory (for its TLS material)")
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--size", type=int, default=700, help="response size in bytes")
    ap.add_argument("--workers", type=int, default=WORKERS)
    ap.add_argument("--reuse-port", action="store_true", help="share the port with other echo processes")
    args = ap.parse_args(argv)
    server, port = build(args.data_dir, args.listen, args.size, args.workers, args.reuse_port)
    print(f"echo listening on {args.listen.rsplit(':', 1)[0]}:{port}", flush=True)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    server.stop(1.0).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
