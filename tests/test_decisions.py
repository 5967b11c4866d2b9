"""What `policy explain` says is what `cases get` does: both come from one decision (`decide_read`).

For every organisation, purpose and a spread of case states (stage, mandate
recalled or expired, case closed, org disabled, licence expired), the
explanation's decision and code equal what a real read by that organisation
gets, and an allowed read releases only fields the explanation lists.
"""

from __future__ import annotations

import pytest
from custos_client import CustosClientError

from gateway import cli
from tests.conftest import Env

ORGS = ["lender-a", "lender-b", "agency-1", "agency-2", "agency-old", "lawfirm-1", "bureau-1"]
PURPOSES = ["collection", "litigation", "credit_reporting", "servicing"]


def _read(env: Env, org: str, case: str, purpose: str) -> tuple[str, set[str]]:
    try:
        rec = env.client(org).get_case(case, purpose)
    except CustosClientError as err:
        return err.code, set()
    return "OK", set(rec.fields)


@pytest.mark.parametrize("state", ["reminder", "letter", "field_visit", "early_warning", "litigation", "recalled",
                                   "expired", "closed", "disabled"])
def test_explain_and_enforcement_agree(seeded: Env, state: str) -> None:
    lender = seeded.client("lender-a")
    lender.assign("C-1", "lawfirm-1", "litigation", "2026-12-31")
    lender.assign("C-1", "bureau-1", "credit_reporting", "2026-12-31")
    if state in ("reminder", "letter", "field_visit", "early_warning", "litigation"):
        lender.set_stage("C-1", state)
    elif state == "recalled":
        lender.recall("C-1", "agency-1")
    elif state == "expired":
        seeded.clock.advance(days=40)
    elif state == "closed":
        lender.set_flags("C-1", status="closed")
    elif state == "disabled":
        assert cli.main(["org", "disable", str(seeded.data), "--id", "agency-1"]) == 0
    for org in ORGS:
        for purpose in PURPOSES:
            explained = lender.explain(org, "C-1", purpose)
            code, fields = _read(seeded, org, "C-1", purpose)
            if code in ("NO_MANDATE", "CASE_NOT_FOUND") and explained.code in ("NO_MANDATE", "CASE_NOT_FOUND",
                                                                                  "PURPOSE_NOT_MANDATED"):
                # The reader cannot tell a missing mandate from one for another purpose (nor another lender's
                # case from none): it addresses the case through its own mandates. Explain sees the lender's.
                assert explained.decision == "deny"
                continue
            assert (explained.decision, explained.code) == ("allow" if code == "OK" else "deny", code), \
                (state, org, purpose, explained["rules"])
            if code == "OK":
                # Released: every field the explanation lists that has a stored value (absent ones are omitted).
                assert fields and fields <= {f.field for f in explained.fields}, (state, org, purpose)
