"""The human-readable summary of a litigation packet, for the firm's lawyers (PDF, made with fpdf2).

The summary restates what the signed items hold; the items are the evidence
(the summary says so on its first page). Names and addresses may be Chinese,
so TrueType fonts are embedded when found: `CUSTOS_PDF_FONT` (or DejaVu Sans)
for Latin text, with Droid Sans Fallback for the CJK glyphs it lacks (the
Debian packages below). Every character is checked against the glyphs of the
fonts embedded before it is drawn (the built-in Helvetica, used when no
TrueType font is found, draws Latin-1 only): a character no font carries
refuses the packet with PDF_FONT_MISSING, because a viewer would show a box
or a glyph index ("00016") in place of a borrower's name, silently.

`CUSTOS_PDF_FONT_DIRS` (directories, separated by ":") replaces the Debian
directories searched for DejaVuSans.ttf and DroidSansFallbackFull.ttf: for a
deployment that ships its fonts elsewhere, and for the tests.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from fontTools.ttLib import TTFont
from fpdf import FPDF

from gateway.core.errors import Code, CustosError

LATIN_FONT = "DejaVuSans.ttf"  # Debian fonts-dejavu-core
CJK_FONT = "DroidSansFallbackFull.ttf"  # Debian fonts-droid-fallback
FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/truetype/droid")
# Line breaks and tabs are layout, not glyphs: multi_cell breaks on them.
_LAYOUT = frozenset("\n\r\t")


def _dirs() -> list[Path]:
    configured = os.environ.get("CUSTOS_PDF_FONT_DIRS")
    names = configured.split(os.pathsep) if configured is not None else list(FONT_DIRS)
    return [Path(n) for n in names if n]


def _find(name: str) -> Path | None:
    return next((d / name for d in _dirs() if (d / name).is_file()), None)


def _first(*candidates: str) -> Path | None:
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


@functools.lru_cache(maxsize=8)
def _cmap(path: str, mtime_ns: int, size: int) -> frozenset[int]:
    """The code points a font has glyphs for (cached per file version: the CJK font's table is large)."""
    with TTFont(path, lazy=True, fontNumber=0) as font:
        return frozenset(font.getBestCmap() or {})


def _covered(path: Path) -> frozenset[int]:
    st = path.stat()
    return _cmap(str(path), st.st_mtime_ns, st.st_size)


class _Doc(FPDF):
    def __init__(self) -> None:
        super().__init__(format="A4")
        self.set_auto_page_break(True, margin=15)
        self.set_margins(15, 15, 15)
        latin = _first(os.environ.get("CUSTOS_PDF_FONT", "")) or _find(LATIN_FONT)
        cjk = _find(CJK_FONT)
        self.unicode = latin is not None or cjk is not None
        self.covered: frozenset[int] = frozenset().union(*(_covered(f) for f in (latin, cjk) if f is not None))
        self.family_name = "packet" if self.unicode else "helvetica"
        main = latin or cjk
        if main is not None:
            self.add_font("packet", "", str(main))
        if latin is not None and cjk is not None:
            self.add_font("packet-cjk", "", str(cjk))
            self.set_fallback_fonts(["packet-cjk"])  # glyphs the Latin font lacks (names, addresses)
        self.add_page()

    def text_of(self, value: object) -> str:
        """`value` as text, once every character has a glyph in the fonts embedded; else the packet is refused."""
        text = "" if value is None else str(value)
        if self.unicode:
            drawable = all(ord(c) in self.covered or c in _LAYOUT for c in text)
        else:
            drawable = all(ord(c) < 0x100 for c in text)  # Helvetica, a core font: Latin-1
        if not drawable:
            # Neither the character nor the field is named: either could be a borrower's personal data.
            raise CustosError(Code.PDF_FONT_MISSING)
        return text

    def heading(self, text: str) -> None:
        self.set_font(self.family_name, size=13)
        self.ln(3)
        self.cell(0, 8, self.text_of(text), new_x="LMARGIN", new_y="NEXT")
        self.set_font(self.family_name, size=9.5)

    def row(self, label: str, value: object) -> None:
        self.cell(55, 5.5, self.text_of(label))
        self.multi_cell(0, 5.5, self.text_of(value), new_x="LMARGIN", new_y="NEXT")

    def grid(self, header: list[str], rows: list[list[object]], widths: list[float]) -> None:
        self.set_font(self.family_name, size=8.5)
        lines: list[list[object]] = [list(header), *rows]
        for cells in lines:
            for w, cell in zip(widths, cells, strict=True):
                self.cell(w, 5, self.text_of(cell), border=1)
            self.ln(5)
        self.set_font(self.family_name, size=9.5)


def summary_pdf(meta: dict[str, Any], record: dict[str, Any], ledger: dict[str, Any],
                contacts: list[dict[str, Any]]) -> bytes:
    doc = _Doc()
    doc.set_font(doc.family_name, size=16)
    doc.cell(0, 10, doc.text_of(f"Litigation packet {meta['packet_id']}"), new_x="LMARGIN", new_y="NEXT")
    doc.set_font(doc.family_name, size=9.5)
    for label, key in (("Case", "case_id"), ("Lender", "lender"), ("Jurisdiction", "jurisdiction"),
                       ("Released to", "recipient"), ("Issued at (UTC)", "issued_at")):
        doc.row(label, meta.get(key, ""))
    doc.multi_cell(0, 5, doc.text_of(
        "This summary restates the signed items of the packet; the items are the evidence. "
        "Check them with: custos packet verify FILE --key PACKET_VKEY"), new_x="LMARGIN", new_y="NEXT")

    doc.heading("Borrower")
    for label, key in (("Full name", "full_name"), ("National id", "national_id"), ("Date of birth", "date_of_birth"),
                       ("Home address", "home_address"), ("Phone", "phone")):
        if key in record:
            doc.row(label, record[key])
    if "service_address" in record:
        doc.row("Service address (on file)", record["service_address"])

    doc.heading("Loan")
    for key in ("loan_id", "product", "currency", "originated_on", "due_on", "first_delinquency_on",
                "last_payment_on", "limitation_date"):
        if ledger.get(key) is not None:
            doc.row(key.replace("_", " ").capitalize(), ledger[key])

    totals = ledger["summary"]
    currency = ledger.get("currency", "")

    def amount(value: object) -> str:
        return "not recorded" if value is None else f"{value} {currency}".strip()

    doc.heading("Ledger summary")
    for label, key in (("Principal", "principal"), ("Interest (recorded)", "interest"), ("Fees (recorded)", "fees"),
                       ("Repaid (ledger entries)", "repaid"), ("Outstanding", "outstanding"),
                       ("Amount due", "amount_due"), ("Expected outstanding", "expected")):
        doc.row(label, amount(totals.get(key)))
    # Whether principal + interest + fees - repaid is the outstanding: stated either way, never made to add up.
    if totals.get("reconciles") is True:
        doc.row("Reconciliation", "reconciles: outstanding = principal + interest + fees - repaid")
    elif totals.get("reconciles") is False:
        doc.set_text_color(180, 0, 0)
        doc.row("Reconciliation", f"DOES NOT RECONCILE: outstanding - expected outstanding = "
                                  f"{amount(totals.get('difference'))} (expected = principal + interest + fees - "
                                  "repaid)")
        doc.set_text_color(0, 0, 0)
    else:
        doc.row("Reconciliation", "cannot be checked: principal or outstanding not recorded")
    repayments = ledger.get("repayments", [])
    if repayments:
        doc.ln(2)
        doc.grid(["Date", "Amount", "Collected by", "Payment id"],
                 [[r["on"], r["amount"], r.get("by") or "lender", r.get("payment_id", "")] for r in repayments],
                 [30, 35, 45, 50])

    doc.heading(f"Contact history ({len(contacts)} contacts)")
    if contacts:
        doc.grid(["Opened at (UTC)", "Organisation", "Channel", "Party", "Result"],
                  [[c.get("opened_at"), c.get("org"), c.get("channel"), c.get("party"), c.get("result") or ""]
                   for c in contacts], [50, 40, 25, 35, 30])
    return bytes(doc.output())
