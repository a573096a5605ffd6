"""Unknown account names look like existing ones in every spelling (SECURITY.md A5 row 11).

An existing account is looked up by its prepared localpart (case-folded), so ``Alice`` and ``alice`` get
its one salt; an unknown name got fake keys from the name as typed, so ``ZED`` and ``zed`` got two different
salts, which told existing names from the others (found by a black-box attack, issue 12). Full-width letters are written as escapes below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sessions_acl import credentials
from tests.helpers import account
from tests.races import VENDORS, fresh_database
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


@pytest.mark.parametrize("vendor", VENDORS)
def test_after_the_iteration_count_is_raised_unknown_names_answer_with_the_counts_in_use(
    vendor: str, tmp_path: Path, django_db_blocker: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by a black-box attack: accounts keep the iteration count their keys were made with, so once
    XMPP_SCRAM_ITERATIONS was raised, old accounts answered 4096 and unknown names the new count: one
    client-first message told them apart. Unknown names now get the counts the accounts have, each name
    always the same one, as often as among the accounts."""
    from accounts import scram

    with fresh_database(vendor, tmp_path, django_db_blocker):
        for name in ("ann", "bea", "cid"):
            account(name, "old-keys-4096")  # keyed at 4096, the count then
        monkeypatch.setattr(scram, "_MIX", {})  # this test's database's counts, forgotten after it
        monkeypatch.setattr(scram, "_mix_read", float("-inf"))
        settings.XMPP_SCRAM_ITERATIONS = 8192  # raised: the next keys are made with 8192
        counts = {name: iterations_of(name) for name in (f"nobody{n}" for n in range(200))}
        assert set(counts.values()) == {4096}  # every account has 4096: so does every unknown name

        from accounts.models import User

        newer = User.objects.create(username="dan")
        newer.set_password("new-keys-8192")
        newer.save()
        assert iterations_of("dan") == 8192
        monkeypatch.setattr(scram, "_mix_read", float("-inf"))  # read again (hourly on a server)
        counts = {name: iterations_of(name) for name in counts}
        assert set(counts.values()) == {4096, 8192}
        assert 20 <= sum(1 for count in counts.values() if count == 8192) <= 80  # about a quarter
        assert all(iterations_of(name) == count for name, count in list(counts.items())[:20])  # stable


def iterations_of(name: str) -> int:
    creds, _ = credentials.scram_lookup(name, name, "SHA-256")
    return creds.iterations
