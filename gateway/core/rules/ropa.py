"""The record of processing activities (GDPR Art. 30(1)), generated from a lender's mandates. Pure.

Each mandate is a disclosure of borrowers' data to a recipient for a purpose, so the record is the
mandates grouped by (recipient, purpose): the categories of data are the release rules' field sets for
that recipient's kind at the stages of the cases it holds (after the jurisdiction's `[[withhold]]`
minimisation), the recipients' own jurisdiction says whether data leave the EU (Art. 30(1)(e)), the
retention rule is the conduct file's (Art. 30(1)(f)), and the legal basis is the conduct file's
`[processing.legal_basis]` (Art. 6(1)), so a lender states its own without a code change.

Only jurisdictions whose conduct file has a `[processing]` table are covered (the shipped bundle: EU),
and only mandates in force on the day: not recalled, not past `until`, on an open case.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from ..model import CaseRow, MandateRow, Org
from .policy import PolicyBundle

# Art. 28: an `entrusted` mandate makes the recipient a processor; `provided` hands data to another controller.
ROLES = {"entrusted": "processor", "provided": "controller"}


def covered(bundle: PolicyBundle) -> tuple[str, ...]:
    """The jurisdictions whose processing the record states: those whose conduct file names legal bases."""
    return tuple(j for j in bundle.jurisdictions if bundle.conduct[j].legal_basis)


def build(bundle: PolicyBundle, lender: Org, mandates: Sequence[MandateRow], cases: Mapping[str, CaseRow],
          orgs: Mapping[str, Org | None], today: date) -> dict[str, Any]:
    """The record as one JSON-ready document; `cases` by case id, `orgs` by org id (None: gone)."""
    scope = covered(bundle)
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for m in mandates:
        case = cases.get(m.case_id)
        org = orgs.get(m.org_id)
        if case is None or org is None or case.jurisdiction not in scope:
            continue
        if m.recalled_at is not None or m.until < today or case.status != "open":
            continue
        g = groups.setdefault((m.org_id, m.purpose), {"org": org, "cases": set(), "stages": set(), "labels": set(),
                                                      "jurisdictions": set(), "mechanisms": set()})
        if case.jurisdiction != org.jurisdiction:  # Art. 30(1)(e): the safeguards of a transfer, documented
            g["mechanisms"].add(case.transfer_mechanism or "none")
        g["cases"].add(m.case_id)
        g["stages"].add((case.stage, case.jurisdiction))
        g["labels"].add(m.label)
        g["jurisdictions"].add(case.jurisdiction)
    activities = []
    for (org_id, purpose), g in sorted(groups.items()):
        org = g["org"]
        fields: dict[str, str] = {}
        rules: set[str] = set()
        for stage, jurisdiction in sorted(g["stages"]):
            decision = bundle.release(org.kind, purpose, stage, jurisdiction)
            fields.update({name: t.describe() for name, t in decision.fields.items()})
            rules.update(decision.rules if decision.allowed else ())
        jurisdictions = sorted(g["jurisdictions"])
        conduct = [bundle.conduct[j] for j in jurisdictions]
        activities.append({
            "recipient": {"org_id": org_id, "name": org.name, "kind": org.kind, "jurisdiction": org.jurisdiction},
            "purpose": purpose,
            "roles": sorted(ROLES.get(label, label) for label in g["labels"]),
            "legal_basis": {c.jurisdiction: c.legal_basis.get(purpose, "not stated") for c in conduct},
            "data_subjects": "borrowers of the cases mandated",
            "cases": len(g["cases"]),
            "stages": sorted({s for s, _ in g["stages"]}),
            "categories": sorted(fields),
            "fields": dict(sorted(fields.items())),
            "release_rules": sorted(rules),
            "transfer": {"outside": org.jurisdiction not in jurisdictions, "to": org.jurisdiction,
                         "from": jurisdictions, "mechanisms": sorted(g["mechanisms"])},
            "retention": {c.jurisdiction: {"years": c.retention.years, "start": c.retention.start,
                                           "rule": f"{c.jurisdiction}.retention:{c.retention.years}y_after_"
                                                   f"{c.retention.start}"} for c in conduct},
        })
    return {
        "controller": {"org_id": lender.id, "name": lender.name, "jurisdiction": lender.jurisdiction},
        "jurisdictions": list(scope),
        "as_of": today.isoformat(),
        "policy_revision": bundle.revision,
        "activities": activities,
    }
