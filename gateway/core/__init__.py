"""The core: use cases and pure decisions. Nothing here imports grpc."""
