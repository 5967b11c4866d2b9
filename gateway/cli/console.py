"""`custos console --identity DIR [--gateway HOST:PORT] [--listen 127.0.0.1:PORT] [--key VKEY]`: the command
around the console's server (gateway/console), which knows no command line."""

from __future__ import annotations

import argparse
import os
import sys

from gateway.console import ConsoleError
from gateway.console.launch import open_console
from gateway.core.errors import Code

from .output import CliError

DEFAULT_LISTEN = "127.0.0.1:8443"


def cmd_console(args: argparse.Namespace) -> None:
    gateway = args.gateway or os.environ.get("CUSTOS_GATEWAY")
    identity = args.identity or os.environ.get("CUSTOS_IDENTITY")
    if not gateway or not identity:
        raise CliError(Code.INVALID_ARGUMENT, "give --gateway HOST:PORT and --identity DIR (or CUSTOS_GATEWAY, "
                                              "CUSTOS_IDENTITY)")
    try:
        console = open_console(gateway, identity, args.listen or DEFAULT_LISTEN, args.key)
    except ConsoleError as err:
        raise CliError(err.code, err.message) from None
    except OSError:
        raise CliError(Code.INVALID_ARGUMENT, "--listen: the address cannot be bound (in use?)") from None
    key = console.api.info["key_source"] or "none: nothing can be verified (give --key audit.vkey)"
    print(f"custos console for {console.api.info['identity']} at {gateway}\npinned key: {key}\n"
          f"open (once; the link works one time): {console.url}", flush=True)
    try:
        console.serve_forever()
    except KeyboardInterrupt:
        print("console stopped", file=sys.stderr)
    finally:
        console.server.server_close()
        console.api.client.close()
