"""No page behind sign-in without the second factor: every URL of the portal that is not public
(``accounts.urls.PUBLIC``), taken from the URLconf so that a new page is covered without a new test,
sends an anonymous visitor, a pending sign-in and a password-only session to the sign-in page."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import User
from accounts.urls import PUBLIC
from tests.web.conftest import (
    PORTAL_URLS,
    PROTECTED,
    app_of,
    password_step,
    redirects_to_sign_in,
    signed_in_as,
    text,
    url,
)


def test_the_url_list_is_the_portal() -> None:
    assert "accounts:security" in PROTECTED
    assert "security-log" in PROTECTED
    assert "accounts:key-remove" in PROTECTED
    assert {f"accounts:{name}" for name in PUBLIC} <= set(PORTAL_URLS)  # the public list names real pages
    assert len(PROTECTED) >= 15


@pytest.fixture
def pending(client: Client, alice: User) -> Client:
    """A client between the password and the second factor."""
    app_of(alice)
    assert password_step(client)["Location"] == "/signin/verify/"
    return client


@pytest.fixture
def password_only(client: Client, alice: User) -> Client:
    """A session signed in with the password alone (the admin's login) of an account with a factor."""
    app_of(alice)
    client.force_login(alice)
    return client


@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize("name", PROTECTED)
def test_an_anonymous_visitor_is_sent_to_sign_in(client: Client, db: None, name: str, method: str) -> None:
    assert redirects_to_sign_in(getattr(client, method)(url(name)))


@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize("name", PROTECTED)
def test_a_pending_sign_in_is_sent_to_sign_in(pending: Client, name: str, method: str) -> None:
    assert redirects_to_sign_in(getattr(pending, method)(url(name)))


@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize("name", PROTECTED)
def test_a_password_only_session_is_sent_to_sign_in(password_only: Client, name: str, method: str) -> None:
    assert redirects_to_sign_in(getattr(password_only, method)(url(name)))
    assert redirects_to_sign_in(password_only.get(reverse("accounts:security")))  # signed out


def test_a_get_comes_back_after_sign_in(client: Client, alice: User) -> None:
    response = client.get("/account/security/keys/add/")
    assert response["Location"] == "/signin/?next=/account/security/keys/add/"


def test_the_root_shows_a_visitor_the_sign_in_page_and_nothing_else(pending: Client) -> None:
    page = text(pending.get("/"))
    assert "Sign in" in page
    assert "Signed in as" not in page
    assert "Security log" not in page


def test_a_verified_session_sees_the_pages(client: Client, alice: User) -> None:
    signed_in_as(client, alice, device=app_of(alice))
    for name in ("accounts:home", "accounts:security", "security-log"):
        response = client.get(reverse(name))
        assert response.status_code == 200, name
        assert "no-store" in response["Cache-Control"]
