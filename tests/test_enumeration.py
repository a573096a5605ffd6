"""Unknown account names look like existing ones in every spelling (SECURITY.md A5 row 11).

An existing account is looked up by its prepared localpart (case-folded), so ``Alice`` and ``alice`` get
its one salt; an unknown name got fake keys from the name as typed, so ``ZED`` and ``zed`` got two different
salts, which told existing names from the others (found by a black-box attack, issue 12). Full-width letters are written as escapes below.
"""

from __future__ import annotations

import pytest

from sessions_acl import credentials
from tests.helpers import account
from xmppauth.proto.jid import prep_localpart


def salt_for(typed: str) -> bytes:
    creds, _alternatives = credentials.scram_lookup(prep_localpart(typed), typed, "SHA-256")
    return creds.salt


@pytest.mark.django_db
@pytest.mark.parametrize(
    "spellings",
    [
        ("zed", "ZED", "Zed", "\uff5a\uff45\uff44"),
        ("alice", "ALICE", "Alice", "\uff41\uff4c\uff49\uff43\uff45"),
    ],
)
def test_every_spelling_of_a_name_gets_one_salt_whether_it_exists_or_not(spellings: tuple[str, ...]) -> None:
    account("alice", "wonderland")
    assert len({salt_for(name) for name in spellings}) == 1


@pytest.mark.django_db
def test_two_unknown_names_get_different_salts() -> None:
    assert salt_for("zed") != salt_for("zee")
