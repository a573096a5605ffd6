"""Roster versions (RFC 6121 §2.6) under concurrent changes, on SQLite and on PostgreSQL.

Changes of one account's roster made at once (roster sets and subscription requests of the account,
in threads with their own database connections, as several serving processes would make them) each
get a version of their own, and the roster's version afterwards is the last of them. Two changes with
one version would let a client that holds it skip the other change for good (§2.6.3 answers it empty).
Each test gets a fresh database, SQLite and PostgreSQL in turn (tests/races.py says how).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from accounts.models import User
from tests.races import AT_ONCE, VENDORS, fresh_database, in_threads
from xmppauth import subscriptions
from xmppauth.features import rfc6121_roster as roster
from xmppauth.proto.jid import JID

CHANGES = 5 * AT_ONCE
CONTACTS = [f"contact{i}" for i in range(CHANGES)]


@pytest.fixture(params=VENDORS)
def database(request: pytest.FixtureRequest, tmp_path: Path, django_db_blocker: Any) -> Iterator[str]:
    """A fresh, migrated database with ``alice`` and her would-be contacts; yields its vendor."""
    with fresh_database(request.param, tmp_path, django_db_blocker) as vendor:
        User.objects.bulk_create([User(username=name) for name in ("alice", *CONTACTS)])
        yield vendor


def change(alice: int, i: int) -> str:
    """One change of alice's roster; the version it made. Even: a roster set; odd: alice asks a local
    account for its presence (the request lists it in her roster, §3.1.2)."""
    if i % 2 == 0:
        _, ver = roster._apply_set(alice, roster._SetRequest(f"friend{i}@example.net", False, f"n{i}", ()))
        return ver
    domain = settings.XMPP_DOMAIN
    done = subscriptions._apply_sync(JID("alice", domain), JID(CONTACTS[i], domain), "subscribe")
    assert done is not None
    assert done.user.ver is not None
    return done.user.ver


def test_concurrent_changes_of_one_roster_each_get_a_version_of_their_own(database: str) -> None:
    alice = User.objects.get(username="alice").pk
    before = subscriptions.roster_version(alice)
    versions = in_threads(CHANGES, lambda i: change(alice, i))
    assert len(set(versions)) == CHANGES, sorted(versions)
    assert before not in versions
    counters = sorted(int(ver.split("-")[0]) for ver in versions)
    assert counters == list(range(1, CHANGES + 1))  # one step each, none lost, none taken twice
    assert subscriptions.roster_version(alice) == max(versions, key=lambda ver: int(ver.split("-")[0]))


def test_a_request_that_only_waits_for_the_account_leaves_its_version(database: str) -> None:
    domain = settings.XMPP_DOMAIN
    alice = User.objects.get(username="alice").pk
    _, listed = roster._apply_set(alice, roster._SetRequest("friend@example.net", False, "", ()))
    asked = subscriptions._apply_sync(JID(CONTACTS[0], domain), JID("alice", domain), "subscribe")
    assert asked is not None
    assert asked.contact is not None
    assert asked.contact.ver is None  # a pending request in an unlisted row is no roster item (§3.1.3)
    assert subscriptions.roster_version(alice) == listed
