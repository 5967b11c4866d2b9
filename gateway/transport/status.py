"""The one place where error categories become gRPC status codes.

The stable code rides in the status details as a google.rpc.ErrorInfo
(reason = code, domain = custos.v1); the message is the catalogue's fixed
text, so no status ever carries a value from a request or from storage.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from gateway.core.errors import Category, CustosError

DOMAIN = "custos.v1"

GRPC_CODE: dict[Category, grpc.StatusCode] = {
    Category.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    Category.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    Category.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    Category.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Category.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    Category.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    Category.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Category.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    Category.CANCELLED: grpc.StatusCode.CANCELLED,
    Category.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Category.INTERNAL: grpc.StatusCode.INTERNAL,
}


def to_status(err: CustosError) -> grpc.Status:
    code = GRPC_CODE[err.spec.category]
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason=err.code, domain=DOMAIN))
    proto = status_pb2.Status(code=getattr(code_pb2, code.name), message=err.message, details=[detail])
    return rpc_status.to_status(proto)
