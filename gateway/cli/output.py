"""What every room of the CLI shares: its errors, exit codes and printing (DESIGN.md §9).

A command prints one document: with --json one line of JSON, else the
command's own human text (or, for a command without one, the document as
indented `key: value` lines: never JSON without --json). Every failure prints
`error: CODE: message` on stderr (with --json also `{"error": {...}}` on
stdout) and exits with the status `exit_status` gives its code; no traceback.
This module imports no other room of the CLI, so every room may use it.

Exit statuses (README "Exit codes"; one place, so a script can tell them apart):
0 done; 1 any other failure (a data directory, a file, the gateway's answer unreadable);
2 usage: the command line is wrong (code USAGE from the parser, INVALID_ARGUMENT from the command);
3 the gateway refused with a stable code; 4 the gateway unreachable or unavailable (retry later);
5 a verification failed (the log, a report's or the stats' recount, a packet); 130 interrupted;
141 the reader of stdout went away.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from custos_client.codes import ClientCode
from custos_client.results import jsonable

from gateway.core.errors import CATALOGUE, Category, Code

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2  # what argparse itself exits with, so every usage error is one status
EXIT_REFUSED = 3
EXIT_UNAVAILABLE = 4
EXIT_VERIFY_FAILED = 5
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a pipeline cut short

USAGE = ClientCode.USAGE  # a command line the parser refuses (the gateway never sends it)
VERIFY_CODES = frozenset({Code.AUDIT_VERIFY_FAILED, Code.STATS_MISMATCH, ClientCode.REPORT_MISMATCH,
                          Code.PACKET_INVALID, Code.PACKET_RECIPIENT_MISMATCH})
# gRPC status names a client reports as the code when no gateway described the failure (connection refused, ...)
_UNREACHED = frozenset({Code.UNAVAILABLE, "DEADLINE_EXCEEDED", "CANCELLED"})


def exit_status(code: str, status: str = "") -> int:
    """The exit status of a failure: `status` is the gRPC status name when the gateway (or the way to it)
    answered, "" when the CLI failed on its own side. A verification outranks where it failed."""
    if code in VERIFY_CODES:
        return EXIT_VERIFY_FAILED
    spec = CATALOGUE.get(code)
    if code in _UNREACHED or (status and spec is not None and spec.category is Category.UNAVAILABLE):
        return EXIT_UNAVAILABLE
    if status:
        return EXIT_REFUSED
    if code in (USAGE, Code.INVALID_ARGUMENT):
        return EXIT_USAGE
    return EXIT_ERROR


class CliError(Exception):
    """A refusal of the command line itself (a bad flag, a missing file), with its code."""

    def __init__(self, code: str, message: str, status: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status  # the gRPC status when this wraps the gateway's answer, so the exit status says so


class ImportBroken(CliError):
    """The import stream broke: the error says so, and what the gateway had confirmed as stored."""

    def __init__(self, code: str, message: str, progress: dict[str, Any], status: str = "") -> None:
        stored = {k: progress[k] for k in ("through_line", "imported", "already_imported", "rejected_total")}
        if stored["through_line"]:
            what = (f"lines 1-{stored['through_line']} are decided and stored ({stored['imported']} imported, "
                    f"{stored['already_imported']} already there, {stored['rejected_total']} rejected)")
        else:
            what = "nothing was stored"
        super().__init__(code, f"{message} ({what}; sending the file again is safe)", status)
        self.stored = stored


def emit(args: argparse.Namespace, doc: Any, human: Callable[[Any], str] | None = None) -> None:
    """Print a command's answer: JSON with --json, else its text. `doc` may hold the client's typed results: they
    are turned into their JSON shape here, once, so `human` and --json read the same dicts."""
    doc = jsonable(doc)
    if getattr(args, "json", False):
        print(json.dumps(doc, ensure_ascii=False))
    elif human is not None:
        print(human(doc))
    else:
        print(plain(doc))


def plain(doc: Any, indent: str = "") -> str:
    """A document as `key: value` lines, nested ones indented: the text of a command with no text of its own
    (JSON is printed only when --json asks for it)."""
    if isinstance(doc, dict):
        lines = []
        for key, value in doc.items():
            if isinstance(value, (dict, list)) and value:
                lines += [f"{indent}{key}:", plain(value, indent + "  ")]
            else:
                lines.append(f"{indent}{key}: {_scalar(value)}")
        return "\n".join(lines)
    if isinstance(doc, list):
        if all(not isinstance(v, (dict, list)) for v in doc):
            return f"{indent}{', '.join(_scalar(v) for v in doc)}"
        out = []
        for value in doc:
            text = plain(value, indent + "  ")
            out.append(f"{indent}- {text.lstrip()}")
        return "\n".join(out)
    return f"{indent}{_scalar(doc)}"


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None or value == [] or value == {} or value == "":
        return "-"
    return str(value)


def fail(args: argparse.Namespace | None, code: str, message: str, extra: dict[str, Any] | None = None,
         status: str = "", json_out: bool | None = None) -> int:
    """Report a failure (stderr; with --json a document on stdout) and return its exit status (`exit_status`)."""
    wants_json = json_out if json_out is not None else args is not None and getattr(args, "json", False)
    if wants_json:
        print(json.dumps({"error": {"code": code, "message": message, **(extra or {})}}, ensure_ascii=False))
    print(f"error: {code}: {message}", file=sys.stderr)
    return exit_status(code, status)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def key_text(path: str) -> str:
    """A --key file's text (a verifier key: the client and the offline checks both pin one)."""
    try:
        return Path(path).read_text()
    except (OSError, ValueError):  # ValueError: not UTF-8 text
        raise CliError(Code.INVALID_ARGUMENT, "--key file not readable") from None
