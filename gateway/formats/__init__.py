"""File formats other tools read: Metro 2 for US credit bureaus (`metro2`)."""
