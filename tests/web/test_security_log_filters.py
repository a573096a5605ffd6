"""The security log's filters (/account/log/): by kind and by a range of days (UTC, both ends included),
together and with the pages (the query string kept); wrong input says what is wrong, never a 500."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client

from accounts.models import User
from sessions_acl.models import AuthEvent
from tests.web.conftest import signed_in_as, text


@pytest.fixture
def signed_in(client: Client, alice: User) -> Client:
    signed_in_as(client, alice)
    AuthEvent.objects.all().delete()  # the sign-in's own entry
    return client


def event(user: User, kind: str, detail: str, when: datetime) -> None:
    AuthEvent.objects.create(user=user, kind=kind, detail=detail, created=when)


def day(d: int, hour: int = 12) -> datetime:
    return datetime(2026, 11, d, hour, tzinfo=UTC)


@pytest.fixture
def history(signed_in: Client, alice: User, bob: User) -> None:
    event(alice, AuthEvent.Kind.LOGIN, "phone logged in", day(1))
    event(alice, AuthEvent.Kind.LOGIN_FAILED, "wrong password from the café", day(2, 0))
    event(alice, AuthEvent.Kind.REVOKED, "client old phone", day(3, 23))
    event(alice, AuthEvent.Kind.LOGIN, "laptop logged in", day(4))
    event(bob, AuthEvent.Kind.REVOKED, "bob's revocation", day(3))


def log(client: Client, query: str) -> str:
    response = client.get(f"/account/log/?{query}")
    assert response.status_code == 200, text(response)
    return text(response)


@pytest.mark.usefixtures("history")
def test_it_filters_by_kind(signed_in: Client) -> None:
    shown = log(signed_in, "kind=login")
    assert "phone logged in" in shown
    assert "laptop logged in" in shown
    assert "wrong password" not in shown
    assert "old phone" not in shown


@pytest.mark.usefixtures("history")
def test_it_filters_by_days_both_included(signed_in: Client) -> None:
    shown = log(signed_in, "since=2026-11-02&until=2026-11-03")
    assert "wrong password from the café" in shown  # at 00:00 on the first day
    assert "client old phone" in shown  # at 23:00 on the last day
    assert "phone logged in" not in shown
    assert "laptop logged in" not in shown
    assert "bob" not in shown
    assert "laptop logged in" in log(signed_in, "since=2026-11-04")
    assert "phone logged in" not in log(signed_in, "since=2026-11-04")
    assert "phone logged in" in log(signed_in, "until=2026-11-01")
    assert "laptop logged in" not in log(signed_in, "until=2026-11-01")


@pytest.mark.usefixtures("history")
def test_kind_and_days_combine(signed_in: Client) -> None:
    shown = log(signed_in, "kind=login&since=2026-11-02")
    assert "laptop logged in" in shown
    assert "phone logged in" not in shown
    assert "client old phone" not in shown


@pytest.mark.usefixtures("history")
def test_nothing_matching_says_so(signed_in: Client) -> None:
    shown = log(signed_in, "kind=password-changed")
    assert "No event of your account matches these filters." in shown
    assert "Show everything" in shown


def test_the_pages_keep_the_filters(signed_in: Client, alice: User) -> None:
    start = day(10)
    for n in range(120):
        event(alice, AuthEvent.Kind.LOGIN_FAILED, f"attempt {n}", start + timedelta(minutes=n))
        event(alice, AuthEvent.Kind.LOGIN, f"success {n}", start + timedelta(minutes=n, seconds=30))
    first = signed_in.get("/account/log/?kind=login-failed")
    assert "Page 1 of 3" in text(first)
    assert 'href="?kind=login-failed&amp;page=2"' in first.content.decode()
    second = log(signed_in, "kind=login-failed&page=2")
    assert "Page 2 of 3" in second
    assert "attempt 69" in second
    assert "attempt 20" in second
    assert "attempt 70" not in second
    assert "success" not in second


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("since=yesterday", "Enter the first day as a date, for example 2026-12-01."),
        ("until=2026-02-30", "Enter the last day as a date, for example 2026-12-31."),
        ("kind=everything", "“everything” is not a kind of event: choose one from the list."),
        ("since=2026-11-04&until=2026-11-01", "The first day is after the last day: swap them."),
    ],
)
@pytest.mark.usefixtures("history")
def test_wrong_input_says_what_is_wrong(signed_in: Client, query: str, message: str) -> None:
    response = signed_in.get(f"/account/log/?{query}")
    assert response.status_code == 400
    shown = text(response)
    assert message in shown
    assert "Correct the filter above to see the log." in shown
    assert "logged in" not in shown


@pytest.mark.usefixtures("history")
def test_without_filters_it_shows_everything(signed_in: Client) -> None:
    shown = log(signed_in, "")
    for detail in ("phone logged in", "wrong password", "client old phone", "laptop logged in"):
        assert detail in shown
    assert "Show everything" not in shown


def test_the_last_day_of_the_calendar_is_a_last_day_like_any_other(client: Client, alice: User) -> None:
    """Found by an outside attack: until=9999-12-31 was an internal error (the day after it overflowed)."""
    signed_in_as(client, alice)
    for query in ("until=9999-12-31", "since=9999-12-31&until=9999-12-31", "since=0001-01-01"):
        assert client.get(f"/account/log/?{query}").status_code == 200, query
