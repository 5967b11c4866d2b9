"""`custos lender consent`: a withdrawal takes effect at once (issue 12, the consent part)."""

from __future__ import annotations

import json

import pytest
from custos_client import CustosClientError

from gateway import cli
from tests.conftest import Env


def test_withdrawing_third_party_sharing_ends_the_provided_mandates_only(seeded: Env) -> None:
    lender = seeded.client("lender-a")
    lender.assign("C-3", "agency-2", "collection", "2026-12-31", "provided")
    lender.assign("C-3", "bureau-1", "credit_reporting", "2026-12-31", "provided")
    lender.assign("C-3", "agency-1", "collection", "2026-12-31", "entrusted")
    done = lender.set_consent("C-3", third_party_sharing=False)
    assert done.third_party_sharing is False and done.credit_reporting is True
    assert sorted(done.mandates_ended) == ["agency-2", "bureau-1"]
    with pytest.raises(CustosClientError) as info:
        seeded.client("agency-2").get_case("C-3", "collection")
    assert info.value.code == "MANDATE_RECALLED"
    assert seeded.client("agency-1").get_case("C-3", "collection").case_id == "C-3"  # entrusted: kept
    with pytest.raises(CustosClientError) as info:  # and no new provided mandate without the consent
        lender.assign("C-3", "agency-2", "collection", "2026-12-31", "provided")
    assert info.value.code == "CONSENT_REQUIRED"
    rules = [e.data["rule"] for e in seeded.events(case_id="C-3") if e.method == "SetConsent"]
    assert rules[0] == "consent:third_party_sharing=no" and len(rules) == 3
    assert json.loads(lender.get_case("C-3", "servicing").fields["consent"]) == \
        {"credit_reporting": True, "third_party_sharing": False}


@pytest.mark.parametrize("case", ["C-3", "C-4"])  # CN, which requires the consent; US, which does not
def test_withdrawing_credit_reporting_withholds_the_case_from_every_bureau(seeded: Env, case: str) -> None:
    lender = seeded.client("lender-a")
    lender.assign(case, "bureau-1", "credit_reporting", "2026-12-31")
    lender.set_consent(case, credit_reporting=False)
    with pytest.raises(CustosClientError) as info:
        seeded.client("bureau-1").get_case(case, "credit_reporting")
    assert info.value.code == "CONSENT_WITHDRAWN"
    feed = seeded.client("bureau-1").pull_feed("")
    assert feed.records == []
    withheld = [e for e in seeded.events(case_id=case) if e.method == "PullFeed"]
    assert [(e.decision, e.code) for e in withheld] == [("deny", "CONSENT_WITHDRAWN")]
    # Given again: the case is decided on its other preconditions again (here: notice, contact).
    lender.set_consent(case, credit_reporting=True)
    with pytest.raises(CustosClientError) as info:
        seeded.client("bureau-1").get_case(case, "credit_reporting")
    assert info.value.code in ("NO_PRIOR_NOTICE", "NO_PRIOR_CONTACT")


def test_the_cli_and_its_errors(seeded: Env, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--gateway", seeded.addr, "--identity", str(seeded.identity("lender-a")), "--json"]
    assert cli.main(["lender", "consent", "C-5", "--credit-reporting", "no", *argv]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["credit_reporting"] is False and doc["changed_at"]
    assert cli.main(["lender", "consent", "C-5", *argv]) != 0
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "INVALID_ARGUMENT"
    for org, case, code in (("lender-a", "BC-1", "CASE_NOT_FOUND"), ("agency-1", "C-1", "WRONG_ORG_KIND")):
        with pytest.raises(CustosClientError) as info:
            seeded.client(org).set_consent(case, third_party_sharing=False)
        assert info.value.code == code
