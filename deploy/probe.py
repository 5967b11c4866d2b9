"""A gRPC health probe for the image's HEALTHCHECK and compose's healthcheck: exit 0 only when SERVING.

Kubernetes has its own (`grpc:` probes); Docker, Podman and compose run a command inside the
container, and grpcurl/grpc_health_probe are not in the image, so this asks the plaintext
`custos serve --health` port with the grpcio and grpc_health modules the gateway already ships.
Usage: python probe.py [HOST:PORT] [SERVICE]   (default 127.0.0.1:7444, "" = the whole gateway)
"""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main(argv: list[str]) -> int:
    target = argv[1] if len(argv) > 1 else "127.0.0.1:7444"
    service = argv[2] if len(argv) > 2 else ""
    try:
        with grpc.insecure_channel(target) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=3)
    except grpc.RpcError as exc:
        print(f"health {target}: {exc.code().name}", file=sys.stderr)
        return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"health {target}: {status}")
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
