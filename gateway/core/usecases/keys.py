"""KEK rotation on the data directory: what each key version wraps, and when one may be destroyed.

`custos keys status` and `custos keys retire` run here. The key files
themselves are the vault's (`vault/keys.py`); this feature only reads which
versions exist and how many data keys each wraps, decides, and for a
retirement invalidates every row cache in the store before the file goes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import Code, CustosError
from ..model import EventDraft
from ..ports import AuditLog, CaseReader, KeyVersions, UnitOfWork


@dataclass(frozen=True)
class KeyStatus:
    """Data keys per KEK version; `missing` are versions data keys use whose key file is gone."""

    primary: int
    usage: dict[int, int]
    versions: list[int]

    @property
    def rows(self) -> list[tuple[int, int, bool]]:
        """(version, data keys, primary) for every version that exists or is used, in order."""
        return [(v, self.usage.get(v, 0), v == self.primary) for v in sorted(set(self.versions) | set(self.usage))]

    @property
    def to_rewrap(self) -> int:
        return sum(n for v, n in self.usage.items() if v != self.primary)

    @property
    def missing(self) -> list[int]:
        return sorted(set(self.usage) - set(self.versions))

    def retirable(self, version: int) -> None:
        """Raise unless `version` exists, is not primary and wraps no data key."""
        if version not in self.versions:
            raise CustosError(Code.KEY_VERSION_NOT_FOUND, f"no KEK version {version}")
        if version == self.primary or self.usage.get(version, 0):
            raise CustosError(Code.KEY_IN_USE, f"KEK version {version} is primary or still wraps "
                                               f"{self.usage.get(version, 0)} data keys (custos keys status)")


class KeyRotation:
    def __init__(self, kek: KeyVersions, reader: Callable[[], CaseReader], audit: AuditLog) -> None:
        self.kek = kek
        self.reader = reader
        self.audit = audit

    def status(self) -> KeyStatus:
        return KeyStatus(self.kek.primary_version(), self.reader().kek_usage(), self.kek.versions())

    def prepare_retirement(self, version: int) -> None:
        """Check `version` may go, then drop every row cache: the caller destroys the key file after this.

        The caches go first (a cached row may still show a rewrapped key's
        older wrapping), in the database, so no process opens a key with this
        version once its file is gone.
        """
        self.status().retirable(version)
        self.audit.run(_touch_generation)


def _touch_generation(repo: UnitOfWork) -> tuple[None, list[EventDraft]]:
    repo.touch_generation()
    return None, []
