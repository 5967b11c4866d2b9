"""The KEK rotation use case's pure part (gateway/core/usecases/keys.py): what `keys status` reports and
when `keys retire` refuses, decided from the versions on disk and the data keys each wraps."""

from __future__ import annotations

import pytest

from gateway.core.errors import Code, CustosError
from gateway.core.usecases.keys import KeyStatus


def test_status_counts_what_is_left_to_rewrap_and_names_missing_key_files() -> None:
    status = KeyStatus(primary=3, usage={1: 4, 3: 10, 5: 2}, versions=[1, 2, 3])
    assert status.rows == [(1, 4, False), (2, 0, False), (3, 10, True), (5, 2, False)]
    assert status.to_rewrap == 6
    assert status.missing == [5]


@pytest.mark.parametrize(("version", "code"), [
    (7, Code.KEY_VERSION_NOT_FOUND),  # no such version
    (3, Code.KEY_IN_USE),  # the primary, even though it wraps nothing yet
    (1, Code.KEY_IN_USE),  # still wraps a data key
])
def test_a_version_in_use_or_unknown_is_not_retirable(version: int, code: Code) -> None:
    status = KeyStatus(primary=3, usage={1: 1}, versions=[1, 2, 3])
    with pytest.raises(CustosError) as info:
        status.retirable(version)
    assert info.value.code == code


def test_an_unused_older_version_is_retirable() -> None:
    KeyStatus(primary=3, usage={3: 5}, versions=[1, 2, 3]).retirable(2)
