"""Reading policy files so that every problem names its file and line."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from .errors import PolicyError


def load_toml(path: Path) -> tuple[dict[str, Any], str]:
    """Parse a TOML policy file; a syntax error becomes a PolicyError with its line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(str(path), None, f"cannot read file ({type(exc).__name__})") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        line = int(match.group(1)) if match else None
        problem = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise PolicyError(str(path), line, f"TOML syntax: {problem}") from None


def line_of(text: str, key: str, occurrence: int = 0) -> int | None:
    """Best-effort line of the `occurrence`-th assignment or header naming `key`.

    tomllib keeps no positions, so semantic errors locate themselves by
    searching the text for the key they concern.
    """
    pattern = re.compile(
        rf"^\s*(\[\[?\s*[\w.\"-]*{re.escape(key)}[\w.\"-]*\s*\]\]?|\"?{re.escape(key)}\"?\s*=)", re.M
    )
    for i, match in enumerate(pattern.finditer(text)):
        if i == occurrence:
            return text.count("\n", 0, match.start()) + 1
    return None


class FileCtx:
    """Raises PolicyErrors located in one file."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text

    def fail(self, problem: str, key: str | None = None, occurrence: int = 0) -> PolicyError:
        line = line_of(self.text, key, occurrence) if key else None
        return PolicyError(str(self.path), line, problem)
