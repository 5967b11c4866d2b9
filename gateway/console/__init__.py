"""`custos console`: a web console on loopback for the holder of one identity (a regulator, a compliance officer).

It is a client like the CLI: every answer comes from the gateway through the
typed client with that identity, so the gateway gains no new way in. The page
verifies what it shows itself (checkpoint signature, each event's inclusion
proof) against a key pinned here, never one the gateway names. Stdlib only.
"""

from __future__ import annotations

from .server import Console, ConsoleError, check_listen, pinned_key

__all__ = ["Console", "ConsoleError", "check_listen", "pinned_key"]
