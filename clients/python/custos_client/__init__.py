"""Typed client for the Custos gateway; callers never need to import grpc.

Every failure is a `CustosClientError` (`.code`, `.status`, `.message`, and
`.progress` for a broken stream); its codes are `codes.Code`. The most used
calls return the TypedDicts of `results`. `CustosError` is the old name of
`CustosClientError`: it still works, with a DeprecationWarning, for one release.
"""

from __future__ import annotations

import warnings

from . import results
from .client import AuditVerifyError, CustosClient, CustosClientError, Identity
from .codes import ClientCode, Code

__all__ = ["AuditVerifyError", "ClientCode", "Code", "CustosClient", "CustosClientError", "Identity", "results"]


def __getattr__(name: str) -> type[CustosClientError]:
    """`from custos_client import CustosError` keeps working until the next release, with a warning."""
    if name == "CustosError":
        warnings.warn("custos_client.CustosError is deprecated: use CustosClientError (same class)",
                      DeprecationWarning, stacklevel=2)
        return CustosClientError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
