"""What every backend stores the same way: sealed borrower fields, the opener of a release, import digests.

The backends differ in SQL and in what else they encrypt (PostgreSQL, having no
page encryption, also seals a loan's terms); the envelope itself, its
associated data and the keyed digest of an import line are the same in both,
so ciphertexts mean the same thing wherever they are stored.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping

from gateway.core.errors import Code, CustosError
from gateway.core.importer import ImportedCase

from .crypto import BlindIndex, DecryptionError, FieldCipher


def contract_ad(loan_id: str) -> str:
    """The field name a loan's contract text is sealed under (binds it to its loan)."""
    return f"loan:{loan_id}:contract_text"


def terms_ad(loan_id: str) -> str:
    """The field name a loan's sealed terms are bound to (PostgreSQL)."""
    return f"loan:{loan_id}:terms"


def seal_fields(cipher: FieldCipher, dek: bytes, lender: str, borrower: str, dek_version: int,
                values: Mapping[str, str]) -> dict[str, bytes]:
    return {name: cipher.encrypt(dek, lender, borrower, name, dek_version, value) for name, value in values.items()}


def import_digest(bidx: BlindIndex, lender: str, case: ImportedCase) -> bytes:
    """A keyed fingerprint of a validated import line: equal lines match, nobody without the key can guess one."""
    doc = json.dumps(dataclasses.asdict(case), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return bidx.digest(lender, "import-line", doc.encode())


class Sealed:
    """An `Unsealer`: ciphertexts and the opener of their borrower's key; decrypts afresh on every call."""

    __slots__ = ("_opener", "_sealed", "fields")

    def __init__(self, fields: tuple[str, ...], sealed: tuple[tuple[str, str, bytes], ...],
                 opener: Callable[[str, bytes], str] | None) -> None:
        self.fields = fields
        self._sealed = sealed
        self._opener = opener

    def __call__(self) -> dict[str, str]:
        opener = self._opener
        if opener is None:
            return {}
        try:
            return {name: opener(ad_name, blob) for name, ad_name, blob in self._sealed}
        except DecryptionError:
            raise CustosError(Code.DECRYPTION_FAILED) from None


NOTHING = Sealed((), (), None)
