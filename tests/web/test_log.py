"""The security log page: the account's own events, newest first, fifty to a page."""

from __future__ import annotations

from datetime import timedelta

from django.test import Client
from django.utils import timezone

from accounts.models import User
from sessions_acl.models import AuthEvent
from sessions_acl.securitylog import log_event
from tests.web.conftest import signed_in_as, text


def test_it_shows_the_accounts_own_events(client: Client, alice: User, bob: User) -> None:
    log_event(
        alice, AuthEvent.Kind.PASSWORD_CHANGED, "password changed", actor="the operator", address="192.0.2.7"
    )
    log_event(bob, AuthEvent.Kind.PASSWORD_CHANGED, "bob's secret business", address="198.51.100.1")
    signed_in_as(client, alice)
    page = text(client.get("/account/log/"))
    assert "Password changed password changed , by the operator 192.0.2.7" in page
    assert "Logged in web sign-in: password 127.0.0.1" in page
    assert page.index("web sign-in: password") < page.index("password changed ,")  # newest first
    assert "bob" not in page
    assert "198.51.100.1" not in page


def test_it_says_when_there_is_nothing(client: Client, alice: User) -> None:
    signed_in_as(client, alice)
    AuthEvent.objects.all().delete()
    assert "Nothing has been logged for your account yet." in text(client.get("/account/log/"))


def test_it_shows_fifty_events_a_page(client: Client, alice: User) -> None:
    signed_in_as(client, alice)
    AuthEvent.objects.all().delete()
    start = timezone.now() - timedelta(days=1)
    AuthEvent.objects.bulk_create(
        AuthEvent(
            user=alice,
            kind=AuthEvent.Kind.LOGIN_FAILED,
            detail=f"attempt {n}",
            created=start + timedelta(minutes=n),
        )
        for n in range(120)
    )
    first = text(client.get("/account/log/"))
    assert "attempt 119" in first
    assert "attempt 70" in first
    assert "attempt 69" not in first
    assert "Page 1 of 3" in first
    assert "Older" in first
    assert "Newer" not in first
    last = text(client.get("/account/log/?page=3"))
    assert "attempt 19" in last
    assert "attempt 0" in last
    assert "attempt 20" not in last
    assert "Newer" in last
    assert "Older" not in last
    assert "Page 3 of 3" in text(client.get("/account/log/?page=99"))
