"""gateway/core/rules/access.py: the pure standing and mandate verdicts that enforcement and `policy explain` share.

(tests/test_access.py is the integration suite of invariants 2 and 4; this file documents the verdicts alone.)
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from gateway.core.errors import Code
from gateway.core.model import CaseRow, MandateRow, Org
from gateway.core.rules.access import RESTRICTED, blocked, erasure, mandate, placement_problem, standing
from gateway.core.rules.capabilities import Capabilities, load_capabilities
from policies import BUNDLE_DIR

TODAY = date(2026, 6, 1)


@pytest.fixture(scope="module")
def table() -> Capabilities:
    return load_capabilities(BUNDLE_DIR / "capabilities.toml")


def _org(kind: str, *, expires: date | None = date(2027, 1, 1), disabled: bool = False) -> Org:
    return Org("org-x", kind, "Synthetic Org", "CN", "LIC-1" if expires else None, expires, disabled)


def _case(**kw: object) -> CaseRow:
    base = CaseRow("lender-a", "C-1", "B-1", "L-1", "CN", "Asia/Shanghai", "collection", "open",
                   False, False, False, False, False, True, True)
    return replace(base, **kw)  # type: ignore[arg-type]


def _mandate(mid: int = 1, purpose: str = "collection", until: date = date(2026, 12, 31),
             recalled_at: str | None = None) -> MandateRow:
    return MandateRow(mid, "lender-a", "C-1", "org-x", purpose, "entrusted", "2026-01-01T00:00:00Z", until, recalled_at)


def test_standing_in_order_of_its_checks(table: Capabilities) -> None:
    assert standing(None, TODAY, table).code == Code.UNKNOWN_ORG
    assert standing(_org("agency", disabled=True), TODAY, table).code == Code.ORG_DISABLED
    assert standing(_org("agency", expires=date(2026, 5, 31)), TODAY, table).code == Code.LICENCE_EXPIRED
    assert standing(_org("agency", expires=None), TODAY, table).code == Code.LICENCE_EXPIRED
    assert standing(_org("agency", expires=TODAY), TODAY, table).ok  # in force through its last day
    assert standing(_org("bureau", expires=None), TODAY, table).ok   # a kind that needs no licence
    verdict = standing(_org("agency"), TODAY, table, action="import_cases")
    assert (verdict.code, verdict.rule) == (Code.WRONG_ORG_KIND, "identity.kind")
    assert standing(_org("agency"), TODAY, table, action="open_contact").ok


def test_a_live_mandate_for_the_purpose_is_found() -> None:
    verdict, row = mandate([_mandate(7)], "collection", _case(), TODAY)
    assert verdict.ok and verdict.rule == "mandate:7" and row is not None and row.id == 7
    # The last day is inclusive.
    assert mandate([_mandate(until=TODAY)], "collection", _case(), TODAY)[0].ok


@pytest.mark.parametrize(("mandates", "case", "code"), [
    ([], _case(), Code.NO_MANDATE),
    ([_mandate(purpose="litigation")], _case(), Code.PURPOSE_NOT_MANDATED),
    ([_mandate(recalled_at="2026-02-01T00:00:00Z")], _case(), Code.MANDATE_RECALLED),
    ([_mandate(until=date(2026, 5, 31))], _case(), Code.MANDATE_EXPIRED),
    ([_mandate()], _case(status="closed"), Code.CASE_CLOSED),
    ([_mandate()], _case(erasure="pending"), Code.ERASURE_PENDING),
    ([_mandate()], _case(erasure="erased"), Code.ERASED),
    ([_mandate()], _case(erasure=RESTRICTED), Code.PROCESSING_RESTRICTED),
])
def test_each_way_a_mandate_fails_has_its_code(mandates: list[MandateRow], case: CaseRow, code: Code) -> None:
    verdict, row = mandate(mandates, "collection", case, TODAY)
    assert verdict.code == code and row is None


def test_a_closed_case_still_allows_the_one_read_after_closure() -> None:
    verdict, row = mandate([_mandate(purpose="credit_reporting")], "credit_reporting", _case(status="closed"),
                           TODAY, after_close=True)
    assert verdict.ok and row is not None


def test_a_restricted_borrower_keeps_only_counsel_s_litigation_under_a_litigation_hold() -> None:
    held = _case(erasure=RESTRICTED, legal_hold=True, stage="litigation")
    assert blocked(held, "litigation").ok
    assert blocked(held, "collection").code == Code.PROCESSING_RESTRICTED
    assert blocked(replace(held, stage="collection"), "litigation").code == Code.PROCESSING_RESTRICTED
    assert blocked(_case(), "collection").ok
    assert erasure(_case(erasure="erased")).rule == "erasure"


def test_placement_problems(table: Capabilities) -> None:
    agency = _org("agency")
    until = date(2026, 12, 31)
    assert placement_problem(_case(), agency, "collection", "entrusted", until, TODAY, table) is None
    assert placement_problem(_case(), agency, "collection", "entrusted", date(2026, 5, 31), TODAY,
                             table)[0] == Code.UNTIL_IN_PAST  # type: ignore[index]
    assert placement_problem(_case(), None, "collection", "entrusted", until, TODAY,
                             table)[0] == Code.ORG_NOT_FOUND  # type: ignore[index]
    assert placement_problem(_case(), agency, "litigation", "entrusted", until, TODAY,
                             table)[0] == Code.PURPOSE_KIND_MISMATCH  # type: ignore[index]
    assert placement_problem(_case(erasure="pending"), agency, "collection", "entrusted", until, TODAY,
                             table)[0] == Code.ERASURE_PENDING  # type: ignore[index]
    no_consent = _case(consent_third_party=False)
    assert placement_problem(no_consent, agency, "collection", "provided", until, TODAY,
                             table)[0] == Code.CONSENT_REQUIRED  # type: ignore[index]
    assert placement_problem(no_consent, agency, "collection", "entrusted", until, TODAY, table) is None
