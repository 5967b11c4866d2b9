"""The gateway's logs: `text` for a person, `json` (one object per line) for a log pipeline (issue 27).

Every line of ours names a stable `event` (snake_case, given as
`extra={"event": ...}` with any numbers or codes beside it), and, inside a
call, the calling organisation, the method and the trace id (`CALL`, set by
the call gate). Nothing else free-form goes out:

- a library's message is withheld, in both formats: its text is not ours to
  vouch for (fpdf names the glyphs a font lacks, which are the characters of
  a borrower's name; fontTools lists the glyphs it subsets). Its logger and
  level are kept, so an operator sees that something happened, and where;
- tracebacks are dropped: an exception's text can carry a value. A line
  names the exception's type when it matters (`error`);
- libraries log at WARNING and above only (their INFO is noise: about 50
  font-subsetting lines per litigation packet).

gRPC core logs outside Python (absl, to stderr); `gateway.transport` sets its
verbosity before grpc is imported, so the start-up TLS check's refused
handshake is reported once, by us (event `tls_self_check`).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

FORMATS = ("text", "json")
ENV = "CUSTOS_LOG_FORMAT"

# (org, method, trace_id) of the call this thread is serving; None outside a call.
CALL: ContextVar[tuple[str, str, str] | None] = ContextVar("custos_call", default=None)

# Loggers whose lines are ours; everything else is a library.
OURS = "custos"

# Libraries that log below WARNING in the gateway's path; the root level (CUSTOS_LOG_LEVEL) governs ours.
QUIET = ("grpc", "fontTools", "fpdf", "PIL", "urllib3", "psycopg", "opentelemetry", "asyncio", "charset_normalizer")

# The attributes every LogRecord has; any other attribute came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
_KEYS = ("time", "level", "event", "org", "method", "trace_id", "logger")


def _ours(record: logging.LogRecord) -> bool:
    return record.name == OURS or record.name.startswith(OURS + ".")


def _text(record: logging.LogRecord) -> str:
    """The message if the line is ours, else a fixed sentence: a library's text may quote data."""
    if _ours(record):
        return record.getMessage()
    return "(a library's message, withheld: it may quote data)"


def _event(record: logging.LogRecord) -> str:
    event = getattr(record, "event", None)
    if isinstance(event, str) and event:
        return event
    return "log" if _ours(record) else "library_" + record.levelname.lower()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (RFC 3339, UTC), level, event, org, method, trace_id, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        org, method, trace_id = CALL.get() or (None, None, None)
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "event": _event(record),
            "org": org or None,
            "method": method or None,
            "trace_id": trace_id or None,
            "logger": record.name,
            "message": _text(record),
        }
        if _ours(record):
            for key, value in vars(record).items():
                if key not in _STANDARD and key != "event" and key not in line:
                    line[key] = value if isinstance(value, int | float | bool | str) or value is None else str(value)
        if record.exc_info and record.exc_info[0] is not None:
            line.setdefault("error", record.exc_info[0].__name__)
        return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """The human format; a library's message withheld, no traceback."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = f"{self.formatTime(record)} {record.levelname} {record.name}: {_text(record)}"
        call = CALL.get()
        if call is not None:
            line += f" [org={call[0] or '-'} method={call[1]} trace_id={call[2]}]"
        if record.exc_info and record.exc_info[0] is not None:
            line += f" ({record.exc_info[0].__name__})"
        return line


def chosen(flag: str | None = None) -> str | None:
    """The format asked for: the flag, else CUSTOS_LOG_FORMAT, else text; None if that is no format."""
    value = flag or os.environ.get(ENV) or "text"
    return value if value in FORMATS else None


class _Handler(logging.StreamHandler[TextIO]):
    """Ours, so that configuring again replaces it and leaves anyone else's alone."""


def configure(fmt: str = "text") -> None:
    """Route every logger to stderr in `fmt`, ours at CUSTOS_LOG_LEVEL (default INFO), libraries at WARNING.

    As `logging.basicConfig`: if the process's logging is already someone
    else's (a program embedding the CLI, pytest), it is left as it is.
    """
    root = logging.getLogger()
    mine = [h for h in root.handlers if isinstance(h, _Handler)]
    if len(mine) < len(root.handlers):
        return
    for old in mine:
        root.removeHandler(old)
    handler = _Handler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    logging.captureWarnings(True)  # Python's warnings as lines too (logger py.warnings, a library's: withheld)
    level = os.environ.get("CUSTOS_LOG_LEVEL", "INFO").upper()
    root.setLevel(level if level in logging.getLevelNamesMapping() else "INFO")
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
