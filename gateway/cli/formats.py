"""The output formats of `custos bureau pull --format`: one entry each in BUREAU_FORMATS.

A format says which jurisdictions' records it can carry, whether it needs
--out (a binary file cannot share stdout with the cursor), and how the pulled
feed is written and reported. The parser offers exactly these names; adding a
bureau's format is a writer in `gateway/formats/` and one entry here.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.core.errors import Code

from .outfiles import write_private
from .output import CliError, emit

Feed = Mapping[str, Any]  # the client's pull_feed (custos_client.results.Feed): {"records", "withheld", "cursor"}
Writer = Callable[[argparse.Namespace, Feed, "Path | None"], None]


@dataclass(frozen=True)
class BureauFormat:
    name: str
    title: str
    write: Writer
    jurisdictions: frozenset[str] | None = None  # None: records of any jurisdiction
    needs_out: bool = False

    def check(self, records: list[dict[str, Any]], out: Path | None) -> None:
        """Refuse a feed this format cannot carry, before anything is written (the cursor is not taken)."""
        if self.jurisdictions is not None:
            other = sorted({r["jurisdiction"] for r in records} - self.jurisdictions)
            if other:
                raise CliError(Code.INVALID_ARGUMENT, f"the feed holds records of {', '.join(other)}, which "
                                                      f"{self.title} does not carry: pull them with --format json "
                                                      f"(same --since)")
        if self.needs_out and out is None:
            raise CliError(Code.INVALID_ARGUMENT, f"--format {self.name} needs --out FILE (the cursor goes to stdout)")


def _write_json(args: argparse.Namespace, feed: Feed, out: Path | None) -> None:
    if out is None:
        print(json.dumps(feed, ensure_ascii=False))
        return
    write_private(out, (json.dumps(feed, ensure_ascii=False) + "\n").encode(), args.force)
    emit(args, {"records": len(feed["records"]), "cursor": feed["cursor"], "out": str(out), "format": "json"},
         lambda d: f"{d['records']} records written to {d['out']}; next --since {d['cursor']}")


def _write_metro2(args: argparse.Namespace, feed: Feed, out: Path | None) -> None:
    from gateway.formats import metro2

    assert out is not None  # needs_out
    records = feed["records"]
    by_lender, unfit = metro2.files(records, datetime.now(UTC))
    withheld = feed["withheld"] + unfit
    # One file per lender (a Metro 2 file has one header, one furnisher): FILE itself when the pull holds one
    # lender's records (or none), FILE.LENDER next to it for each when it holds several.
    if len(by_lender) <= 1:
        written = {lender: out for lender in by_lender} or {"": out}
        contents = by_lender or {"": metro2.file([], datetime.now(UTC))}
    else:
        written = {lender: out.with_name(f"{out.name}.{lender}") for lender in by_lender}
        contents = by_lender
    for lender, data in contents.items():
        write_private(written[lender], data, args.force)
    doc = {"records": len(records) - len(unfit), "cursor": feed["cursor"], "out": str(out), "format": "metro2",
           "files": [{"lender": lender, "out": str(path), "records": (len(contents[lender]) // metro2.RECORD) - 2}
                     for lender, path in written.items()],
           "withheld": withheld}
    emit(args, doc, lambda d: f"{d['records']} records written to {', '.join(f['out'] for f in d['files'])} "
                              f"(Metro 2); {len(d['withheld'])} withheld"
                              + "".join(f"\n  withheld {w['case_id']}: {w['code']}" for w in d["withheld"])
                              + f"\nnext --since {d['cursor']}")


BUREAU_FORMATS: dict[str, BureauFormat] = {f.name: f for f in (
    BureauFormat("json", "JSON", _write_json),
    BureauFormat("metro2", "Metro 2", _write_metro2, jurisdictions=frozenset({"US"}), needs_out=True),
)}
