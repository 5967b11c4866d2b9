"""Typed client for the Custos gateway; callers never need to import grpc.

Every failure is a `CustosClientError` (`.code`, `.status`, `.message`, and
`.progress` for a broken stream); its codes are `codes.Code`. The most used
calls return the TypedDicts of `results`. `CustosError` is the old name of
`CustosClientError`: it still works, with a DeprecationWarning, for one release.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import results
from .codes import ClientCode, Code

if TYPE_CHECKING:
    from .client import AuditVerifyError, CustosClient, CustosClientError, EventPage, Identity

_CLIENT = {"AuditVerifyError", "CustosClient", "CustosClientError", "EventPage", "Identity", "CustosError"}


def __getattr__(name: str) -> Any:
    """The client (and grpc with it) is loaded on first use, so `custos_client.codes` alone imports no grpc: the
    gateway's error catalogue keys on those codes. `CustosError` is the old name, warned, for one release."""
    if name in _CLIENT:
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["AuditVerifyError", "ClientCode", "Code", "CustosClient", "CustosClientError", "EventPage", "Identity",
           "results"]
