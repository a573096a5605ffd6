"""Self sign-up (``XMPP_WEB_SIGNUP``): off, no page and no link; on, a visitor makes an account that
logs in over XMPP at once and is signed in here; names checked as ``manage.py adduser`` checks them,
passwords as XMPP and Django's validators need them; throttled per address; in the security log."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts.models import User
from accounts.views import signup
from sessions_acl import credentials
from sessions_acl.models import AuthEvent
from tests.web.conftest import signed_in_as, text

PAGE = "/signup/"
PASSWORD = "curiouser and curiouser"


@pytest.fixture
def signup_on(settings: Any, db: None) -> None:
    settings.XMPP_WEB_SIGNUP = True


def sign_up(
    client: Client, username: str = "carol", password: str = PASSWORD, again: str | None = None
) -> Any:
    return client.post(
        PAGE, {"username": username, "password1": password, "password2": password if again is None else again}
    )


def usernames() -> set[str]:
    return set(User.objects.values_list("username", flat=True))


# -- off ------------------------------------------------------------------------------------------


def test_it_is_off_by_default(client: Client, db: None) -> None:
    from django.conf import settings

    assert settings.XMPP_WEB_SIGNUP is False
    assert client.get(PAGE).status_code == 404
    assert sign_up(client).status_code == 404
    assert not User.objects.filter(username="carol").exists()
    page = client.get("/").content.decode()
    assert PAGE not in page
    assert "Create one" not in text(client.get("/signin/"))


def test_it_reads_the_setting_at_each_request(client: Client, settings: Any, db: None) -> None:
    settings.XMPP_WEB_SIGNUP = True
    assert client.get(PAGE).status_code == 200
    settings.XMPP_WEB_SIGNUP = False
    assert client.get(PAGE).status_code == 404


# -- on -------------------------------------------------------------------------------------------


def test_the_sign_in_page_links_to_it(client: Client, signup_on: None) -> None:
    assert f'href="{PAGE}"' in client.get("/").content.decode()
    assert "No account yet? Create one" in text(client.get("/signin/"))


def test_it_shows_the_form(client: Client, signup_on: None) -> None:
    page = text(client.get(PAGE))
    assert "Create an account" in page
    assert "Username" in page
    assert "Password again" in page
    assert "@localhost" in page
    assert 'name="csrfmiddlewaretoken"' in client.get(PAGE).content.decode()


def test_it_creates_the_account_and_signs_in(client: Client, signup_on: None) -> None:
    response = sign_up(client)
    assert response.status_code == 302
    assert response["Location"] == "/"
    home = text(client.get("/"))
    assert "Signed in as carol@localhost" in home
    assert "Your account carol@localhost is ready" in home
    assert "add a second factor on the security page" in home
    user = User.objects.get(username="carol")
    assert user.check_password(PASSWORD)
    assert set(user.scram) >= {"SHA-256"}
    # the account logs in over XMPP with that password at once
    assert credentials.check_plain("carol", "carol", PASSWORD) == ""
    assert credentials.check_plain("carol", "carol", "wrong") is None
    # a page behind sign-in opens: nothing else to pass
    assert client.get("/account/security/").status_code == 200


def test_the_security_log_has_it(client: Client, signup_on: None) -> None:
    sign_up(client)
    user = User.objects.get(username="carol")
    assert [(e.kind, e.detail, e.address) for e in AuthEvent.objects.filter(user=user)] == [
        (AuthEvent.Kind.LOGIN, "web sign-up", "127.0.0.1")
    ]


def test_the_name_is_prepared_as_adduser_does(client: Client, signup_on: None) -> None:
    assert sign_up(client, "  Carol@localhost ").status_code == 302
    assert "Signed in as carol@localhost" in text(client.get("/"))
    assert User.objects.filter(username="carol").exists()


@pytest.mark.parametrize("name", ["alice", "ALICE", "alice@localhost"])
def test_a_taken_name_is_refused(client: Client, signup_on: None, alice: User, name: str) -> None:
    before = usernames()
    response = sign_up(client, name)
    assert response.status_code == 200
    page = text(response)
    assert "That username is taken." in page
    assert "Signed in as" not in text(client.get("/"))
    assert usernames() == before
    stored = User.objects.get(pk=alice.pk)
    assert stored.last_login is None
    assert stored.check_password("wonderland")
    assert not AuthEvent.objects.exists()


def test_a_name_taken_meanwhile_is_refused(
    client: Client, signup_on: None, alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The form found the name free; another sign-up took it before this one was stored."""
    monkeypatch.setattr("accounts.forms.SignUpForm.clean_username", lambda form: "alice")
    response = sign_up(client, "alice")
    assert "That username is taken." in text(response)
    assert User.objects.get(username="alice").check_password("wonderland")


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("a b", "Invalid username 'a b'"),
        ("ali<ce", "Invalid username 'ali<ce'"),
        ("carol@elsewhere.example", "This server serves localhost, not elsewhere.example"),
        ("   ", "This field is required."),
        ("x" * 151, "at most 150 characters"),
    ],
)
def test_an_invalid_name_is_refused(client: Client, signup_on: None, name: str, says: str) -> None:
    response = sign_up(client, name)
    assert response.status_code == 200
    assert says in text(response)
    assert not User.objects.exists()


def test_the_passwords_must_match(client: Client, signup_on: None) -> None:
    response = sign_up(client, again="curiouser and curiousest")
    assert "The two passwords differ." in text(response)
    assert not User.objects.exists()


def test_an_empty_password_is_refused(client: Client, signup_on: None) -> None:
    response = sign_up(client, password="")
    assert "This field is required." in text(response)
    assert not User.objects.exists()


def test_a_password_xmpp_cannot_use_is_refused(client: Client, signup_on: None) -> None:
    response = sign_up(client, password="bell\x07rings")
    assert "This password cannot be used over XMPP" in text(response)
    assert not User.objects.exists()


def test_djangos_validators_apply_when_configured(client: Client, signup_on: None, settings: Any) -> None:
    settings.AUTH_PASSWORD_VALIDATORS = [
        {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
        {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    ]
    assert "This password is too short" in text(sign_up(client, password="short"))
    assert "too similar to the username" in text(sign_up(client, "carolina", password="carolina1"))
    assert not User.objects.exists()
    assert sign_up(client, password=PASSWORD).status_code == 302


def test_the_post_needs_the_csrf_token(signup_on: None) -> None:
    client = Client(enforce_csrf_checks=True)
    assert sign_up(client).status_code == 403
    assert not User.objects.exists()


def test_a_signed_in_account_goes_to_its_dashboard(client: Client, signup_on: None, alice: User) -> None:
    signed_in_as(client, alice)
    response = client.get(PAGE)
    assert response.status_code == 302
    assert response["Location"] == "/"


# -- the throttle ---------------------------------------------------------------------------------


def test_accounts_per_address_are_limited(signup_on: None) -> None:
    limit = signup.LIMITS["account"]
    for n in range(limit):
        assert sign_up(Client(), f"user{n}").status_code == 302
    response = sign_up(Client(), "onemore")
    assert response.status_code == 429
    assert "Too many sign-ups from your address: try again in an hour." in text(response)
    assert not User.objects.filter(username="onemore").exists()
    # another address is counted apart
    assert sign_up(Client(REMOTE_ADDR="192.0.2.7"), "onemore").status_code == 302


def test_sent_forms_per_address_are_limited(client: Client, signup_on: None, alice: User) -> None:
    """Each form tells whether a name is taken: they are counted too, checked or not."""
    for _ in range(signup.LIMITS["attempt"]):
        assert "That username is taken." in text(sign_up(client, "alice"))
    response = sign_up(client, "alice")
    assert response.status_code == 429
    page = text(response)
    assert "Too many sign-ups" in page
    assert "taken" not in page  # refused unchecked
    assert sign_up(client, "carol").status_code == 429
    assert not User.objects.filter(username="carol").exists()


def test_the_window_ends(signup_on: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from django.core.cache import cache

    monkeypatch.setitem(signup.LIMITS, "account", 1)
    assert sign_up(Client(), "user1").status_code == 302
    assert sign_up(Client(), "user2").status_code == 429
    cache.clear()  # what the end of the window does to the counts
    assert sign_up(Client(), "user2").status_code == 302
