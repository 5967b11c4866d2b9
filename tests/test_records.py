"""vault/records.py: rows to the core's records, sealed fields, import digests and the `Sealed` unsealer."""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import date
from pathlib import Path

import pytest

from gateway.core.errors import Code, CustosError
from gateway.core.importer import parse_line
from gateway.core.model import JURISDICTIONS
from gateway.synth import case_line
from vault.crypto import BlindIndex, FieldCipher, FileKekProvider, write_key_file
from vault.records import (
    NOTHING,
    Sealed,
    case_row,
    contract_ad,
    import_digest,
    mandate_row,
    org_row,
    payment_row,
    seal_fields,
    terms_ad,
)


def test_rows_become_records_with_types_the_core_uses() -> None:
    raw = ("lender-a", "C-1", "B-1", "L-1", "CN", "Asia/Shanghai", "letter", "open",
           1, 0, 0, 0, 1, 1, 1, 0, None, None, None, 1, 0, 1, "standard_contract", "SC-1", "2027-01-31",
           "US-CA", 1, "2026-11-01", None, None)
    case = case_row(raw)
    assert (case.disputed, case.legal_hold, case.credit_withdrawn) == (True, True, False)
    assert case.erasure == "" and case.closed_at is None and case.active_plan is None
    assert (case.region, case.consent_artificial_voice, case.validation_notice_on) == ("US-CA", True, "2026-11-01")
    assert (case.identity_theft, case.discharged, case.consent_cross_border) == (True, False, True)
    assert (case.transfer_mechanism, case.transfer_valid_until) == ("standard_contract", "2027-01-31")
    assert case_row((*raw[:25], None, 0, None, None, None)).region == ""  # a case imported without one
    org = org_row(("agency-x", "agency", "Synthetic Agency", "CN", "LIC-1", "2027-01-31", 0, None, None,
                   '{"US-CA": ["CA-1", "2027-06-30"]}'))
    assert org.licence_expires == date(2027, 1, 31) and org.disabled is False
    held = org.licence_in("US-CA")
    assert held is not None and (held.licence_no, held.expires) == ("CA-1", date(2027, 6, 30))
    assert org.licence_in("US-NY") is None
    assert org_row(("bureau-x", "bureau", "Synthetic Bureau", "US", None, None, 1, None, None,
                    None)).licence_expires is None
    mandate = mandate_row(("7", "lender-a", "C-1", "agency-x", "collection", "entrusted", "2026-01-01T00:00:00Z",
                           "2026-12-31", None, "0.18", "AG-1", None))
    assert (mandate.agreement, mandate.pia) == ("AG-1", None)
    assert mandate.id == 7 and mandate.until == date(2026, 12, 31) and mandate.commission == "0.18"
    payment = payment_row(("P-1", "lender-a", "C-1", "B-1", "agency-x", "10.00", "CNY", "2026-11-29", "R-1",
                           "rejected", "2026-11-30T02:00:00.000000Z", "2026-11-30T03:00:00.000000Z", None,
                           memoryview(b"sealed")))
    assert payment.reason == b"sealed" and payment.decided_at == "2026-11-30T03:00:00.000000Z"


def test_the_ad_names_of_a_loan_bind_it() -> None:
    assert contract_ad("L-1") == "loan:L-1:contract_text" and terms_ad("L-1") == "loan:L-1:terms"


def test_import_digests_match_equal_lines_only_and_depend_on_the_lender() -> None:
    bidx = BlindIndex(bytes(range(32)))
    line = parse_line(json.dumps(case_line(1), ensure_ascii=False).encode(), jurisdictions=JURISDICTIONS)
    same = parse_line(json.dumps(case_line(1), ensure_ascii=False).encode(), jurisdictions=JURISDICTIONS)
    other = dataclasses.replace(line, stage="litigation")
    assert import_digest(bidx, "lender-a", line) == import_digest(bidx, "lender-a", same)
    assert import_digest(bidx, "lender-a", line) != import_digest(bidx, "lender-a", other)
    assert import_digest(bidx, "lender-a", line) != import_digest(bidx, "lender-b", line)
    assert len(import_digest(bidx, "lender-a", line)) == 16


def test_sealed_fields_open_afresh_and_a_failure_is_decryption_failed(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    write_key_file(tmp_path / "keys" / "kek-1.key", os.urandom(32))
    cipher = FieldCipher(FileKekProvider(tmp_path / "keys"))
    dek, _, _ = cipher.new_dek("lender-a", "B-1")
    blobs = seal_fields(cipher, dek, "lender-a", "B-1", 1, {"full_name": "Synthetic Name", "phone": "5550000001"})
    assert set(blobs) == {"full_name", "phone"}
    opener = cipher.opener(dek, "lender-a", "B-1", 1)
    sealed = Sealed(("full_name", "phone"), (("full_name", "full_name", blobs["full_name"]),
                                             ("phone", "phone", blobs["phone"])), opener)
    assert sealed() == {"full_name": "Synthetic Name", "phone": "5550000001"}
    assert NOTHING() == {} and NOTHING.fields == ()
    moved = Sealed(("phone",), (("phone", "phone", blobs["full_name"]),), opener)  # one field's ciphertext in another
    with pytest.raises(CustosError) as info:
        moved()
    assert info.value.code == Code.DECRYPTION_FAILED
    assert "Synthetic" not in str(info.value)
