"""The core: its vocabulary here, the pure decisions in rules/, the use cases in usecases/, their composition in app. No grpc."""
