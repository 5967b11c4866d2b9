"""Synthetic borrowers and cases: obviously fake, deterministic per seed.

Used by `make run`'s demo data, the tests and the benchmark; never real data.
Names and addresses carry a `Synth`/`合成` marker so a stray value is easy to
spot, and every value is unique per index so tests can search raw bytes.
"""

from __future__ import annotations

import json
import random
from datetime import date, timedelta
from typing import Any

CN_SURNAMES = "赵钱孙李周吴郑王冯陈褚卫蒋沈韩杨"
CN_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明"
US_FIRST = ["Avery", "Jordan", "Riley", "Morgan", "Casey", "Quinn", "Rowan", "Emery"]
US_LAST = ["Synthwood", "Fakeley", "Mockford", "Placeton", "Dummer", "Samplin"]


def case_line(i: int, *, seed: int = 7, jurisdiction: str | None = None, borrower: int | None = None,
              stage: str = "reminder", lender_prefix: str = "") -> dict[str, Any]:
    """One import line (DESIGN.md §9 format) for synthetic case number i."""
    rnd = random.Random(seed * 1_000_003 + i)
    juris = jurisdiction or ("CN" if i % 3 else "US")
    b = borrower if borrower is not None else i
    brnd = random.Random(seed * 7_919 + b)
    if juris == "CN":
        name = f"合成{brnd.choice(CN_SURNAMES)}{brnd.choice(CN_GIVEN)}{b:05d}"
        nid = f"9{b:08d}{brnd.randrange(10**8, 10**9)}X"[:18]
        phone = f"+86139{b:08d}"
        home = f"合成市测试区示例路{b}号{brnd.randrange(1, 30)}栋"
        work = f"合成市样本区科技园{b}号"
        tz = "Asia/Shanghai"
        currency = "CNY"
        ec_phone = f"+86137{b:08d}"
    elif juris == "EU":
        # Synthetic only: a made-up identity number and a number in the +49 range that no plan assigns.
        name = f"{brnd.choice(US_FIRST)} Synth{b:05d} Beispiel"
        nid = f"EU{b:08d}"
        phone = f"+4915{b:09d}"
        home = f"Synthstrasse {b}, 10999 Musterstadt, DE"
        work = f"Attrappenplatz {b}, 10999 Musterstadt, DE"
        tz = "Europe/Berlin"
        currency = "EUR"
        ec_phone = f"+4916{b:09d}"
    else:
        name = f"{brnd.choice(US_FIRST)} Synth{b:05d} {brnd.choice(US_LAST)}"
        nid = f"9{b:08d}"
        phone = f"+1555{b:07d}"
        home = f"{b} Synthetic Ave, Testville, NY"
        work = f"{b} Mock Plaza, Sampleton, NY"
        tz = "America/New_York"
        currency = "USD"
        ec_phone = f"+1556{b:07d}"
    principal = rnd.randrange(1000, 50000)
    outstanding = rnd.randrange(500, principal)
    originated = date(2025, 1, 1) + timedelta(days=rnd.randrange(0, 300))
    due = originated + timedelta(days=365)
    return {
        "case_id": f"{lender_prefix}C-{i}",
        "jurisdiction": juris,
        "timezone": tz,
        "stage": stage,
        "consent": {"third_party_sharing": True, "credit_reporting": True},
        "borrower": {
            "borrower_id": f"{lender_prefix}B-{b}",
            "full_name": name,
            "national_id": nid,
            "date_of_birth": f"19{70 + b % 30}-0{1 + b % 9}-1{b % 10}",
            "phone": phone,
            "email": f"synth{b}@example.invalid",
            "home_address": home,
            "work_address": work,
            "employer": f"Synthetic Employer {b}",
            "bank_account": f"SYNTHACCT{b:010d}",
            "emergency_contacts": [{"name": f"Contact Synth{b:05d}", "relation": "sibling", "phone": ec_phone}],
        },
        "loan": {
            "loan_id": f"{lender_prefix}L-{i}",
            "product": "consumer loan",
            "currency": currency,
            "principal": f"{principal}.00",
            "outstanding": f"{outstanding}.00",
            "amount_due": f"{rnd.randrange(100, outstanding)}.00",
            "originated_on": originated.isoformat(),
            "due_on": due.isoformat(),
            "first_delinquency_on": (due + timedelta(days=1)).isoformat(),
            "last_payment_on": None,
            "repayments": [{"on": (originated + timedelta(days=30)).isoformat(), "amount": "100.00"}],
            "contract_text": f"Synthetic agreement {lender_prefix}L-{i} for {name}.",
        },
    }


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line, ensure_ascii=False).encode() + b"\n" for line in lines)


def pi_values(line: dict[str, Any]) -> list[str]:
    """Every PI value of a line, for tests that search raw bytes."""
    b = line["borrower"]
    out = [b["full_name"], b["national_id"], b["phone"], b["home_address"], b["work_address"], b["email"],
           b["bank_account"]]
    out += [c["phone"] for c in b["emergency_contacts"]] + [c["name"] for c in b["emergency_contacts"]]
    return out
