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


@pytest.mark.django_db
def test_an_unknown_names_lookup_lasts_longer_by_the_difference_of_the_medians(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Row 11's timing: reading an account costs more than finding none, and the server-first message of
    an existing account came 66 µs later (docs/performance.md). An unknown name's lookup now waits for
    the difference of the recent medians; the figures are bench/hardening.py's, this is the mechanism:
    lookups of existing accounts said to take 3 ms make an unknown name's take more than 1 ms (the wait's
    bound), and without any lookup of an account yet, nothing is waited for."""
    import time

    monkeypatch.setattr(credentials, "_ACCOUNT_LOOKUPS", type(credentials._ACCOUNT_LOOKUPS)(maxlen=63))
    monkeypatch.setattr(credentials, "_UNKNOWN_LOOKUPS", type(credentials._UNKNOWN_LOOKUPS)(maxlen=63))

    def lookup_of_unknown() -> float:
        began = time.perf_counter()
        credentials.scram_lookup("nobody-here", "nobody-here", "SHA-256")
        return time.perf_counter() - began

    quick = min(lookup_of_unknown() for _ in range(5))  # no account looked up yet: no wait
    account("alice", "Passw0rd-alice")
    credentials.scram_lookup("alice", "alice", "SHA-256")
    assert len(credentials._ACCOUNT_LOOKUPS) == 1  # an existing account's lookup is timed
    credentials._ACCOUNT_LOOKUPS.extend([0.003] * 62)
    waited = lookup_of_unknown()
    assert waited >= credentials.LOOKUP_PAD_AT_MOST > quick
