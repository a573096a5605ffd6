"""The XMPP login policy page: the three choices explained, a change stored and in the security log,
the note when the account has no factor for "second factor", and the re-authentication it needs."""

from __future__ import annotations

import re

from django.test import Client

from accounts.models import PasswordLogin, User
from accounts.views import guard
from sessions_acl.models import AuthEvent
from tests.web.conftest import Clock, app_of, signed_in_as, text

PAGE = "/account/policy/"


def policy_of(user: User) -> str:
    return str(User.objects.values_list("xmpp_password_login", flat=True).get(pk=user.pk))


def test_it_explains_each_choice_and_marks_the_current_one(client: Client, alice: User) -> None:
    signed_in_as(client, alice)
    response = client.get(PAGE)
    page = text(response)
    assert "Allowed (current) XMPP clients log in with your password alone" in page
    assert "Allowed only with a second factor XMPP" not in page
    assert (
        "Allowed only with a second factor An XMPP login with your password must also pass a second factor"
        in page
    )
    assert "Off: app passwords and FAST tokens only Your password does not log in over XMPP at all" in page
    checked = re.findall(r'value="([a-z-]+)"\s+aria-describedby="[^"]+" checked', response.content.decode())
    assert checked == ["allowed"]


def test_it_changes_the_policy_and_logs_it(client: Client, alice: User) -> None:
    device = app_of(alice)
    signed_in_as(client, alice, device=device)
    response = client.post(PAGE, {"xmpp_password_login": "off"}, follow=True)
    page = text(response)
    assert "Password logins over XMPP: Off: app passwords and FAST tokens only." in page
    assert "Off: app passwords and FAST tokens only (current)" in page
    assert policy_of(alice) == PasswordLogin.OFF
    event = AuthEvent.objects.get(kind=AuthEvent.Kind.POLICY_CHANGED)
    assert (event.detail, event.actor) == ("XMPP password logins: allowed → off", "alice@localhost (web)")
    assert "will ask you to set up an authenticator app" not in page  # alice has a factor
    assert "Login policy changed" in text(client.get("/account/log/"))


def test_second_factor_without_a_factor_says_what_the_next_login_does(client: Client, alice: User) -> None:
    signed_in_as(client, alice)
    assert "your next XMPP login with the password will ask you to set up an authenticator app" in text(
        client.get(PAGE)
    )
    response = client.post(PAGE, {"xmpp_password_login": "second-factor"}, follow=True)
    assert (
        "Your account has no second factor yet: your next XMPP login with the password will ask you to "
        "set up an authenticator app first (TOTP-INIT)." in text(response)
    )
    assert policy_of(alice) == PasswordLogin.SECOND_FACTOR
    assert "Its policy asks for one" in text(client.get("/"))


def test_the_same_choice_changes_and_logs_nothing(client: Client, alice: User) -> None:
    signed_in_as(client, alice)
    assert "Nothing changed." in text(client.post(PAGE, {"xmpp_password_login": "allowed"}, follow=True))
    assert not AuthEvent.objects.filter(kind=AuthEvent.Kind.POLICY_CHANGED).exists()


def test_an_unknown_choice_is_refused(client: Client, alice: User) -> None:
    signed_in_as(client, alice)
    response = client.post(PAGE, {"xmpp_password_login": "whatever"})
    assert "Select a valid choice. whatever is not one of the available choices." in text(response)
    assert policy_of(alice) == PasswordLogin.ALLOWED


def test_it_needs_a_recent_reauthentication(client: Client, alice: User, clock: Clock) -> None:
    signed_in_as(client, alice)
    clock.advance(301)
    for method in ("get", "post"):
        response = getattr(client, method)(PAGE, {"xmpp_password_login": "off"})
        assert response["Location"] == "/account/reauth/?next=%2Faccount%2Fpolicy%2F"
    assert policy_of(alice) == PasswordLogin.ALLOWED
    assert not AuthEvent.objects.filter(kind=AuthEvent.Kind.POLICY_CHANGED).exists()


def test_a_post_without_the_csrf_token_is_refused(alice: User) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)  # alice has no second factor: a password sign-in is all she needs
    session = browser.session
    session[guard.REAUTH_AT] = guard.clock()
    session.save()
    assert browser.post(PAGE, {"xmpp_password_login": "off"}).status_code == 403
    assert policy_of(alice) == PasswordLogin.ALLOWED
