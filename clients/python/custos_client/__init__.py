"""Typed client for the Custos gateway; callers never need to import grpc.

Every failure is a `CustosClientError` (`.code`, `.status`, `.message`, and
`.progress` for a broken stream); its codes are `Code` (the gateway's) and
`ClientCode` (what only the client raises), StrEnums that `.code` compares equal
to. Every call returns a frozen dataclass of `results` (exported here too), read
by attribute, with `to_dict()` for the CLI's JSON shape. `CustosError` is the old
name of `CustosClientError`: it still works, with a DeprecationWarning, for one
release; so does reading a result like a dict (`rec["fields"]`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import results
from .codes import ClientCode, Code
from .results import *  # noqa: F403  (every result class, named once in results.__all__)

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

__all__ = ["AuditVerifyError", "ClientCode", "Code", "CustosClient", "CustosClientError", "EventPage", "Identity", "results"]
__all__ += results.__all__
