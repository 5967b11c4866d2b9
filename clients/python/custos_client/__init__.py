"""Typed client for the Custos gateway; callers never need to import grpc."""

from .client import CustosClient, CustosError, Identity

__all__ = ["CustosClient", "CustosError", "Identity"]
