"""Concurrent logins of one client, on SQLite and on PostgreSQL (issue 8): FAST token promotion and
rotation, a client's first password logins, token requests and a revocation race in threads that
each have their own database connection, as the logins of several serving processes would. At the
end, two interleavings that threads hit rarely are replayed step by step on the test database.

Each test gets a fresh database, SQLite and PostgreSQL in turn (tests/races.py says how).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import User
from sessions_acl import app_passwords, credentials, login, revocation
from sessions_acl.models import Client, FastToken, Grant
from tests.races import AT_ONCE, VENDORS, fresh_database, in_threads

UA = "9d7c6a52-2b8e-4f7d-a0c1-3e5f2d4b6a18"
LOGINS = 40
ROUNDS = 4


@pytest.fixture(params=VENDORS)
def database(request: pytest.FixtureRequest, tmp_path: Path, django_db_blocker: Any) -> Iterator[str]:
    """A fresh, migrated database for this test, with the account ``alice``; yields its vendor."""
    with fresh_database(request.param, tmp_path, django_db_blocker) as vendor:
        User.objects.create(username="alice")
        yield vendor


def password_login(**kwargs: Any) -> login.Authorization:
    result = login.authorize("alice", credential_id="", mechanism="SCRAM-SHA-256", user_agent_id=UA, **kwargs)
    assert isinstance(result, login.Authorization), result
    return result


def fast_login(token: str, **kwargs: Any) -> login.Authorization | login.Refusal:
    """What the stream consumer does for an HT-SHA-256-NONE login: the client's candidate tokens,
    the one whose HMAC matches, then the authorization."""
    initiator = hmac.new(token.encode(), b"Initiator", hashlib.sha256).digest()
    for candidate in credentials.fast_candidates("alice", UA):
        if hmac.compare_digest(hmac.new(candidate.key, b"Initiator", hashlib.sha256).digest(), initiator):
            return login.authorize(
                "alice",
                credential_id=candidate.credential_id,
                mechanism="HT-SHA-256-NONE",
                user_agent_id=UA,
                **kwargs,
            )
    return login.Refusal(condition="credentials-expired", text="no such token (the mechanism failed)")


def fast_logins(count: int, token: str) -> list[login.Authorization | login.Refusal]:
    """``count`` logins with ``token``, AT_ONCE at a time."""
    return in_threads(count, lambda _: fast_login(token))


def failures(results: list[login.Authorization | login.Refusal]) -> list[str]:
    return [result.condition for result in results if isinstance(result, login.Refusal)]


def test_concurrent_first_uses_of_a_new_token_all_succeed_and_keep_it(database: str) -> None:
    """XEP-0484: the first use of a new token retires the older one; when several logins use the
    new token at once, none of them may retire the new token itself. A few rounds, each with a
    fresh token, because a race is a matter of luck."""
    old = password_login(fast_request="HT-SHA-256-NONE").token
    assert old is not None
    assert isinstance(fast_login(old.token), login.Authorization)  # 'old' becomes the current token
    for _ in range(ROUNDS):
        new = password_login(fast_request="HT-SHA-256-NONE").token  # a new one waits in 'new'
        assert new is not None
        assert sorted(FastToken.objects.values_list("slot", flat=True)) == ["current", "new"]

        results = fast_logins(LOGINS, new.token)

        assert failures(results) == []
        assert list(FastToken.objects.values_list("slot", flat=True)) == ["current"]
        assert isinstance(fast_login(new.token), login.Authorization)
        assert isinstance(fast_login(old.token), login.Refusal)  # retired by the new one's first use
        old = new


def test_concurrent_logins_with_a_token_due_for_rotation_all_succeed(database: str) -> None:
    """A token due for rotation brings a new one; with many logins at once, every login succeeds,
    the token they used still works, and every token handed out works afterwards."""
    issued = password_login(fast_request="HT-SHA-256-NONE").token
    assert issued is not None
    assert isinstance(fast_login(issued.token), login.Authorization)  # now 'current'
    FastToken.objects.update(issued=timezone.now() - timedelta(days=2))  # due for rotation

    results = fast_logins(LOGINS, issued.token)

    assert failures(results) == []
    handed_out = [r.token.token for r in results if isinstance(r, login.Authorization) and r.token]
    assert handed_out, "a login with a token due for rotation brings a new one"
    assert FastToken.objects.count() == 2  # the one in use and one new one
    assert isinstance(fast_login(issued.token), login.Authorization)
    for token in handed_out:
        assert isinstance(fast_login(token), login.Authorization), "a token handed out does not work"


def test_concurrent_first_password_logins_of_one_client_make_one_client_and_one_grant(database: str) -> None:
    """Two (or more) first logins of the same user-agent id at once: one client, one grant, every
    login holds it, none fails."""
    results = in_threads(AT_ONCE, lambda _: password_login(software="Chat", device="phone"))

    assert Client.objects.count() == 1
    assert Grant.objects.count() == 1
    client = Client.objects.get()
    assert {(r.client_id, r.grant_id) for r in results} == {(client.pk, client.grant_id)}


def test_concurrent_password_logins_after_a_revocation_make_one_new_grant(database: str) -> None:
    """A revoked client's next password logins get a fresh grant: one, held by all of them."""
    first = password_login()
    revocation.revoke_client(first.client_id or 0, actor="test")

    results = in_threads(AT_ONCE, lambda _: password_login())

    live = Grant.objects.filter(revoked__isnull=True)
    assert live.count() == 1
    assert {r.grant_id for r in results} == {live.get().pk}
    assert Client.objects.get().grant_id == live.get().pk


def test_concurrent_token_requests_leave_the_client_a_working_token(database: str) -> None:
    """Several password logins of a known client asking for a token at once: each gets one (a
    request replaces the client's unused new token), none fails, and the last one works."""
    password_login()
    results = in_threads(AT_ONCE, lambda _: password_login(fast_request="HT-SHA-256-NONE"))

    handed_out = [r.token.token for r in results if r.token is not None]
    assert len(handed_out) == AT_ONCE
    assert FastToken.objects.count() == 1
    working = [token for token in handed_out if isinstance(fast_login(token), login.Authorization)]
    assert len(working) == 1


def test_a_revocation_racing_with_a_login_leaves_no_token_behind(database: str) -> None:
    """XEP-0494: revoking a client kills its tokens. A login racing with the revocation comes
    either before it (and the token it brings dies with the others) or after it (and fails): no
    token of a revoked client survives, to come back to life at the client's next password login."""
    client_id = password_login().client_id
    assert client_id is not None
    for _ in range(ROUNDS):
        issued = password_login(fast_request="HT-SHA-256-NONE").token  # the client is live again
        assert issued is not None
        assert isinstance(fast_login(issued.token), login.Authorization)
        FastToken.objects.update(issued=timezone.now() - timedelta(days=2))  # a login brings a new one

        def login_or_revoke(i: int, token: str = issued.token) -> object:
            if i:
                return revocation.revoke_client(client_id, actor="test")
            return fast_login(token)

        in_threads(2, login_or_revoke)

        assert list(FastToken.objects.values_list("slot", flat=True)) == []
        password_login()  # the client starts afresh, with a new grant
        assert credentials.fast_candidates("alice", UA) == []


# ---------------------------------------------------------------------- one interleaving, replayed
@pytest.mark.django_db
def test_an_app_password_revoked_after_the_login_read_it_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The login reads the app password's grant, a revocation commits, then the login would mark it
    used: it must be refused instead (the revocation may already have been applied to the streams)."""
    alice = User.objects.create(username="alice")
    alice.set_password("wonderland")
    alice.save()
    app = app_passwords.create_app_password(alice, "bot", ["messages.send"]).app_password
    is_live = Grant.is_live

    def revoked_meanwhile(grant: Grant, now: Any = None) -> bool:
        live = is_live(grant, now)  # what the login read...
        monkeypatch.setattr(Grant, "is_live", is_live)
        revocation.revoke_app_password(app.pk, actor="operator")  # ...and what committed since
        return live

    monkeypatch.setattr(Grant, "is_live", revoked_meanwhile)
    result = login.authorize("alice", credential_id=f"app:{app.pk}", mechanism="PLAIN", user_agent_id=None)

    assert isinstance(result, login.Refusal), result
    assert result.condition == "credentials-expired"
    assert Grant.objects.get(pk=app.grant_id).last_used is None  # never used


@pytest.mark.django_db
def test_of_two_revocations_of_one_grant_the_first_says_who() -> None:
    """Two revocations that both read the grant live: the second neither overwrites who revoked it
    and why nor its time."""
    User.objects.create(username="alice")
    grant_id = password_login().grant_id
    stale = Grant.objects.get(pk=grant_id)  # read by the second revocation before the first commits
    revocation.revoke_grant(grant_id, actor="alice@localhost/phone", reason="lost")
    first = Grant.objects.get(pk=grant_id)

    revocation._revoke_grant_rows(stale, actor="operator", reason="cleanup")

    again = Grant.objects.get(pk=grant_id)
    assert (again.revoked, again.revoked_by, again.revoke_reason) == (
        first.revoked,
        "alice@localhost/phone",
        "lost",
    )
    assert (stale.revoked_by, stale.revoke_reason) == ("alice@localhost/phone", "lost")
