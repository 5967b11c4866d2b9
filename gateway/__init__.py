"""Custos gateway: transport, core use cases and the operator CLI."""
