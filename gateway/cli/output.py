"""What every room of the CLI shares: its errors, exit codes and printing (DESIGN.md §9).

A command prints one document: with --json one line of JSON, else the
command's own human text (or indented JSON). Every failure prints
`error: CODE: message` on stderr (with --json also `{"error": {...}}` on
stdout) and exits non-zero; no traceback. This module imports no other room
of the CLI, so every room may use it.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.core.errors import Code

EXIT_ERROR = 1
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a pipeline cut short


class CliError(Exception):
    """A refusal of the command line itself (a bad flag, a missing file), with its code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ImportBroken(CliError):
    """The import stream broke: the error says so, and what the gateway had confirmed as stored."""

    def __init__(self, code: str, message: str, progress: dict[str, Any]) -> None:
        stored = {k: progress[k] for k in ("through_line", "imported", "already_imported", "rejected_total")}
        if stored["through_line"]:
            what = (f"lines 1-{stored['through_line']} are decided and stored ({stored['imported']} imported, "
                    f"{stored['already_imported']} already there, {stored['rejected_total']} rejected)")
        else:
            what = "nothing was stored"
        super().__init__(code, f"{message} ({what}; sending the file again is safe)")
        self.stored = stored


def emit(args: argparse.Namespace, doc: Any, human: Callable[[Any], str] | None = None) -> None:
    if getattr(args, "json", False):
        print(json.dumps(doc, ensure_ascii=False))
    elif human is not None:
        print(human(doc))
    else:
        print(json.dumps(doc, ensure_ascii=False, indent=2))


def fail(args: argparse.Namespace | None, code: str, message: str, extra: dict[str, Any] | None = None) -> int:
    if args is not None and getattr(args, "json", False):
        print(json.dumps({"error": {"code": code, "message": message, **(extra or {})}}, ensure_ascii=False))
    print(f"error: {code}: {message}", file=sys.stderr)
    return EXIT_ERROR


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def key_text(path: str) -> str:
    """A --key file's text (a verifier key: the client and the offline checks both pin one)."""
    try:
        return Path(path).read_text()
    except (OSError, ValueError):  # ValueError: not UTF-8 text
        raise CliError(Code.INVALID_ARGUMENT, "--key file not readable") from None
