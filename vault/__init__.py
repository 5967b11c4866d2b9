"""The vault: encrypted storage. It stores and encrypts; it decides nothing."""
