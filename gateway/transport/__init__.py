"""gRPC transport: converts requests and results; decides nothing."""
