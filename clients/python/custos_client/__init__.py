"""Typed client for the Custos gateway; callers never need to import grpc.

Every failure is a `CustosClientError` (`.code`, `.status`, `.message`, and
`.progress` for a broken stream); its codes are `codes.Code`. The most used
calls return the TypedDicts of `results`. `CustosError` is the old name of
`CustosClientError`: it still works, with a DeprecationWarning, for one release.
"""

from __future__ import annotations

from . import results
from .client import AuditVerifyError, CustosClient, CustosClientError, Identity
from .client import __getattr__ as __getattr__  # `CustosError`: the old name, warned, for one release
from .codes import ClientCode, Code

__all__ = ["AuditVerifyError", "ClientCode", "Code", "CustosClient", "CustosClientError", "Identity", "results"]
