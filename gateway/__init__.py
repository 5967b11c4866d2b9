"""Custos gateway: transport, core use cases and the operator CLI.

Importing the package sets nothing: gRPC's TLS policy is set by `gateway.transport`, which every
module importing grpc on the server side (and the CLI, before the client) imports first.
"""
