"""A console made ready to serve: the listen address checked, the key pinned, the typed client made."""

from __future__ import annotations

from pathlib import Path

from .server import Api, Console, check_listen, pinned_key


def open_console(gateway: str, identity: str, listen: str, key: str | None) -> Console:
    """A console ready to serve (not yet serving): the listen address checked, the key pinned, the client made."""
    from custos_client import CustosClient

    host, port = check_listen(listen)
    vkey, source = pinned_key(key, identity)
    client = CustosClient(gateway, identity)
    info = {"identity": Path(identity).name, "gateway": gateway, "vkey": vkey, "key_source": source,
            "stats": hasattr(client, "audit_stats")}
    return Console(Api(client, info), host, port)
