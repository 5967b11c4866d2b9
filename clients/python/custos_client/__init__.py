"""Typed client for the Custos gateway; callers never need to import grpc."""

from .client import AuditVerifyError, CustosClient, CustosError, Identity

__all__ = ["AuditVerifyError", "CustosClient", "CustosError", "Identity"]
