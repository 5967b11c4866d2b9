"""The pure decisions and the policy files they are compiled from: no storage, no clock of their own, no use case."""
