"""The sign-in pages: the password step, the second step with an authenticator app or a recovery
code, cancel and back, expiry, ``next=``, the password throttle, sign-out, and the security log."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from accounts import guessing, recovery, totp
from accounts.models import User
from accounts.views import password as password_step_module
from sessions_acl.models import AuthEvent
from tests.helpers import account
from tests.races import fresh_database
from tests.web.conftest import (
    Clock,
    _fast,
    app_of,
    code_of,
    code_step,
    password_step,
    redirects_to_sign_in,
    text,
)

HOME = "/"
VERIFY = "/signin/verify/"


def events(user: User) -> list[tuple[str, str, str]]:
    return [(e.kind, e.detail, e.address) for e in AuthEvent.objects.filter(user=user).order_by("id")]


def dashboard(client: Client) -> str:
    return text(client.get(HOME))


# -- without a second factor ----------------------------------------------------------------------


def test_it_shows_the_sign_in_page_at_the_root(client: Client, alice: User) -> None:
    page = text(client.get(HOME))
    assert "Sign in" in page
    assert "Username" in page
    assert "Password" in page
    assert "Sign in with a passkey" in page
    assert "Signed in as" not in page


def test_it_signs_in_an_account_without_a_second_factor(client: Client, alice: User) -> None:
    response = password_step(client)
    assert response.status_code == 302
    assert response["Location"] == HOME
    page = dashboard(client)
    assert "Signed in as alice@localhost" in page
    assert "no second factor" in page
    assert events(alice) == [(AuthEvent.Kind.LOGIN, "web sign-in: password", "127.0.0.1")]


def test_it_accepts_the_whole_address_as_the_username(client: Client, alice: User) -> None:
    assert password_step(client, "alice@localhost").status_code == 302
    assert "Signed in as alice@localhost" in dashboard(client)


def test_it_refuses_a_wrong_password_and_logs_it(client: Client, alice: User) -> None:
    response = password_step(client, password="looking-glass")
    assert response.status_code == 200
    assert "Wrong username or password." in text(response)
    assert "Signed in as" not in dashboard(client)
    assert events(alice) == [
        (AuthEvent.Kind.LOGIN_FAILED, "web sign-in: password: wrong password", "127.0.0.1")
    ]


def test_it_says_the_same_for_an_unknown_name(client: Client, alice: User) -> None:
    response = password_step(client, "nobody", "wonderland")
    assert "Wrong username or password." in text(response)
    assert not AuthEvent.objects.exists()


def test_it_refuses_an_inactive_account(client: Client, db: None) -> None:
    account("carol", is_active=False)
    assert "Wrong username or password." in text(password_step(client, "carol", "wonderland"))


def test_signing_out_needs_a_post_and_ends_the_session(client: Client, alice: User) -> None:
    password_step(client)
    assert client.get("/signout/").status_code == 405
    response = client.post("/signout/", follow=True)
    assert "You are signed out." in text(response)
    assert redirects_to_sign_in(client.get("/account/security/"))


# -- with an authenticator app --------------------------------------------------------------------


def test_the_password_alone_does_not_sign_in_an_account_with_an_app(client: Client, alice: User) -> None:
    app_of(alice)
    response = password_step(client)
    assert response.status_code == 302
    assert response["Location"] == VERIFY
    page = text(client.get(VERIFY))
    assert "To finish signing in as alice@localhost" in page
    assert "Code from your authenticator app" in page
    assert "Recovery code" not in page  # alice has none
    assert "Signed in as" not in dashboard(client)
    assert redirects_to_sign_in(client.get("/account/security/"))


def test_it_refuses_a_wrong_code_with_its_text(client: Client, alice: User) -> None:
    device = app_of(alice)
    password_step(client)
    wrong = "000000" if code_of(device) != "000000" else "111111"
    response = code_step(client, "totp", wrong)
    assert response.status_code == 200
    assert "Wrong code" in text(response)
    assert "Signed in as" not in dashboard(client)
    assert events(alice)[-1] == (
        AuthEvent.Kind.LOGIN_FAILED,
        "web sign-in: password+totp: Wrong code",
        "127.0.0.1",
    )
    # the next wrong code waits (accounts.totp's throttle), and the page says how long
    assert "try again in" in text(code_step(client, "totp", wrong))


def test_the_right_code_signs_in_verified(client: Client, alice: User) -> None:
    device = app_of(alice)
    password_step(client, next="/account/security/")
    response = code_step(client, "totp", code_of(device))
    assert response.status_code == 302
    assert response["Location"] == "/account/security/"
    assert "Security" in text(client.get("/account/security/"))
    assert events(alice)[-1] == (AuthEvent.Kind.LOGIN, "web sign-in: password+totp", "127.0.0.1")


def test_wrong_codes_from_someone_with_the_password_do_not_hold_the_owners_browser(
    client: Client, alice: User, settings: Any
) -> None:
    """The wait after wrong codes holds a new browser, not one that completed a sign-in to the account
    before (its signed cookie): someone who has the password cannot keep the owner out."""
    settings.XMPP_TOTP_THROTTLE_FACTOR = 60
    device = app_of(alice)
    password_step(client)
    assert code_step(client, "totp", code_of(device)).status_code == 302  # the owner, once
    assert password_step_module.KNOWN_BROWSER_COOKIE in client.cookies
    client.post("/signout/")
    thief = Client(REMOTE_ADDR="203.0.113.5")
    password_step(thief)
    wrong = "000000" if code_of(device) != "000000" else "111111"
    assert "Wrong code" in text(code_step(thief, "totp", wrong))
    assert "try again in 60 s" in text(code_step(thief, "totp", wrong))  # the thief waits

    device.refresh_from_db()
    device.last_t = -1  # (the owner's earlier code was of this very step)
    device.save(update_fields=["last_t"])
    password_step(client)
    assert code_step(client, "totp", code_of(device)).status_code == 302  # the owner does not


def test_a_code_is_accepted_once(alice: User) -> None:
    device = app_of(alice)
    code = code_of(device)
    first, second = Client(), Client()
    password_step(first)
    password_step(second)
    assert code_step(first, "totp", code).status_code == 302
    response = code_step(second, "totp", code)
    assert response.status_code == 200
    assert "This code was already used: wait for the next one" in text(response)
    assert "Signed in as" not in dashboard(second)


def test_the_session_key_changes_at_each_step(client: Client, alice: User) -> None:
    device = app_of(alice)
    client.get(HOME)
    before = client.cookies["csrftoken"].value, client.session.session_key
    password_step(client)
    pending = client.session.session_key
    code_step(client, "totp", code_of(device))
    assert len({before[1], pending, client.session.session_key}) == 3


# -- with recovery codes --------------------------------------------------------------------------


def test_a_recovery_code_signs_in_once(alice: User) -> None:
    app_of(alice)
    codes = recovery.generate(alice)
    first = Client()
    password_step(first)
    assert "Recovery code" in text(first.get(VERIFY))
    response = code_step(first, "recovery", codes[0].upper())
    assert response.status_code == 302
    assert "You have 9 unused recovery codes left." in dashboard(first)
    assert events(alice)[-1][:2] == (AuthEvent.Kind.LOGIN, "web sign-in: password+recovery code")

    second = Client()
    password_step(second)
    response = code_step(second, "recovery", codes[0])
    assert "This recovery code was already used" in text(response)
    assert "Signed in as" not in dashboard(second)


def test_recovery_codes_alone_are_a_second_factor(client: Client, alice: User) -> None:
    recovery.generate(alice)
    assert password_step(client)["Location"] == VERIFY
    page = text(client.get(VERIFY))
    assert "Recovery code" in page
    assert "authenticator app" not in page


def test_used_up_recovery_codes_are_no_second_factor(client: Client, alice: User) -> None:
    codes = recovery.generate(alice, count=1)
    assert recovery.use_code(alice.pk, codes[0]).ok
    assert password_step(client)["Location"] == HOME


# -- no way around the second step ----------------------------------------------------------------


def test_cancel_ends_the_pending_sign_in(client: Client, alice: User) -> None:
    app_of(alice)
    password_step(client)
    assert client.get("/signin/cancel/").status_code == 405
    response = client.post("/signin/cancel/", follow=True)
    assert "Sign-in cancelled." in text(response)
    assert redirects_to_sign_in(client.get(VERIFY))
    assert redirects_to_sign_in(client.get("/account/security/"))


def test_the_second_step_without_a_password_step_leads_to_the_sign_in_page(
    client: Client, alice: User
) -> None:
    app_of(alice)
    assert redirects_to_sign_in(client.get(VERIFY))
    assert redirects_to_sign_in(code_step(client, "totp", "123456"))


def test_back_to_the_second_step_after_signing_in_goes_home(client: Client, alice: User) -> None:
    device = app_of(alice)
    password_step(client)
    code_step(client, "totp", code_of(device))
    response = client.get(VERIFY)
    assert redirects_to_sign_in(response)
    assert client.get(response["Location"])["Location"] == HOME  # signed in: the sign-in page sends home


def test_back_after_signing_out_shows_no_page_behind_sign_in(client: Client, alice: User) -> None:
    device = app_of(alice)
    password_step(client)
    code_step(client, "totp", code_of(device))
    page = client.get("/account/security/")
    assert "no-store" in page["Cache-Control"]  # the browser keeps no copy to go back to
    client.post("/signout/")
    assert redirects_to_sign_in(client.get("/account/security/"))
    assert "Signed in as" not in dashboard(client)


def test_the_pending_sign_in_expires(client: Client, alice: User, clock: Clock) -> None:
    device = app_of(alice)
    password_step(client)
    clock.advance(301)
    response = code_step(client, "totp", code_of(device))
    assert redirects_to_sign_in(response)
    assert "took too long" in text(client.get(response["Location"]))
    assert redirects_to_sign_in(client.get(VERIFY))  # and it is gone


def test_a_pending_sign_in_whose_factors_went_starts_again(client: Client, alice: User) -> None:
    app_of(alice)
    password_step(client)
    totp.remove_all(alice, actor="the operator")
    response = client.get(VERIFY)
    assert redirects_to_sign_in(response)
    assert "no second factor any more" in text(client.get(response["Location"]))
    assert password_step(client)["Location"] == HOME


def test_a_password_change_voids_the_pending_sign_in(client: Client, alice: User) -> None:
    device = app_of(alice)
    password_step(client)
    alice.set_password("through the looking glass")
    alice.save()
    assert redirects_to_sign_in(code_step(client, "totp", code_of(device)))
    assert "Signed in as" not in dashboard(client)


def test_a_session_signed_in_with_the_password_only_is_sent_back(client: Client, alice: User) -> None:
    """The admin's login, or a session from before the account got its factor: not verified."""
    client.force_login(alice)
    app_of(alice)
    response = client.get("/account/security/")
    assert redirects_to_sign_in(response)
    assert "please sign in with it" in text(client.get(response["Location"]))
    assert redirects_to_sign_in(client.get("/account/security/"))  # and it was signed out


# -- next= ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    ["https://evil.example/", "//evil.example/", "http://testserver.evil.example/", "javascript:alert(1)"],
)
def test_it_ignores_a_next_of_another_site(client: Client, alice: User, target: str) -> None:
    assert password_step(client, next=target)["Location"] == HOME


def test_it_ignores_a_next_of_another_site_after_the_second_step(client: Client, alice: User) -> None:
    device = app_of(alice)
    password_step(client, next="https://evil.example/")
    assert code_step(client, "totp", code_of(device))["Location"] == HOME


def test_it_follows_a_next_of_this_site(client: Client, alice: User) -> None:
    response = client.get("/account/log/")
    assert redirects_to_sign_in(response)
    page = client.get(response["Location"])
    assert 'name="next" value="/account/log/"' in page.content.decode()
    assert password_step(client, next="/account/log/")["Location"] == "/account/log/"


# -- the guessing limits (accounts/guessing.py: the same door as XMPP logins) --------------------------

FREE_PER_ACCOUNT = 3
FREE_PER_ADDRESS = 10


@pytest.fixture
def small_limits(settings: Any) -> None:
    """3 free attempts per name, 10 per address, waits of at most 2 s (real seconds: the waits are the
    cache's expiry times)."""
    settings.XMPP_GUESS_FREE_PER_ACCOUNT = FREE_PER_ACCOUNT
    settings.XMPP_GUESS_FREE_PER_ADDRESS = FREE_PER_ADDRESS
    settings.XMPP_GUESS_LONGEST_WAIT = 2


def test_failed_passwords_make_the_next_attempts_wait(
    client: Client, alice: User, small_limits: None
) -> None:
    for _ in range(FREE_PER_ACCOUNT + 1):  # the free ones, and the first that starts a wait
        assert "Wrong username or password." in text(password_step(client, password="nope"))
    response = password_step(client)  # right, but refused unchecked
    assert "Too many failed attempts: try again in 1 s." in text(response)
    assert "Signed in as" not in dashboard(client)
    time.sleep(1.1)
    assert password_step(client).status_code == 302


def test_the_wait_grows_with_each_failure(client: Client, alice: User, small_limits: None) -> None:
    for _ in range(FREE_PER_ACCOUNT):
        password_step(client, password="nope")
    for wait in (1, 2, 2):  # doubling, up to the longest (2 s here)
        password_step(client, password="nope")
        assert f"try again in {wait} s." in text(password_step(client))
        time.sleep(wait + 0.1)
    assert password_step(client).status_code == 302


def test_the_limit_counts_per_username(alice: User, bob: User, small_limits: None) -> None:
    for _ in range(FREE_PER_ACCOUNT + 1):
        password_step(Client(REMOTE_ADDR="192.0.2.1"), password="nope")
    other_address = Client(REMOTE_ADDR="192.0.2.2")
    assert "Too many failed attempts" in text(password_step(other_address))
    assert password_step(other_address, "bob", "builder").status_code == 302


def test_the_limit_counts_per_address(alice: User, bob: User, small_limits: None) -> None:
    names = [f"user{n}" for n in range(FREE_PER_ADDRESS + 1)]
    for name in names:
        password_step(Client(REMOTE_ADDR="192.0.2.1"), name, "nope")
    assert "Too many failed attempts" in text(
        password_step(Client(REMOTE_ADDR="192.0.2.1"), "bob", "builder")
    )
    assert password_step(Client(REMOTE_ADDR="192.0.2.9"), "bob", "builder").status_code == 302


def test_a_right_password_gives_its_turn_back(client: Client, alice: User, small_limits: None) -> None:
    for _ in range(FREE_PER_ACCOUNT - 1):
        password_step(client, password="nope")
    for _ in range(5):  # the owner signing in again and again is never held
        assert password_step(client).status_code == 302
        client.post("/signout/")
    assert "Wrong username or password." in text(password_step(client, password="nope"))  # the last free one


def test_throttled_attempts_are_not_checked(
    client: Client, alice: User, monkeypatch: Any, small_limits: None
) -> None:
    for _ in range(FREE_PER_ACCOUNT + 1):
        password_step(client, password="nope")
    checked: list[str] = []
    monkeypatch.setattr(password_step_module, "authenticate", lambda *a, **k: checked.append("x"))
    password_step(client)
    assert checked == []


def test_web_and_xmpp_guesses_count_together(client: Client, alice: User, small_limits: None) -> None:
    """One door: wrong passwords over XMPP hold the portal's sign-in too (and the other way round)."""
    for _ in range(FREE_PER_ACCOUNT + 1):
        verdict = guessing.claim("198.51.100.7", "alice")  # what a failed XMPP login leaves
        assert not verdict.refused
    assert "Too many failed attempts" in text(password_step(client))
    assert guessing.claim("198.51.100.8", "alice").scope == "account"


def test_a_browser_that_signed_in_before_is_not_held_by_the_account(
    client: Client, alice: User, small_limits: None
) -> None:
    assert password_step(client).status_code == 302  # alice signs in once (no second factor)
    assert password_step_module.KNOWN_BROWSER_COOKIE in client.cookies
    client.post("/signout/")
    attacker = Client(REMOTE_ADDR="203.0.113.5")
    for _ in range(FREE_PER_ACCOUNT + 1):
        password_step(attacker, password="guess")
    assert "Too many failed attempts" in text(
        password_step(Client(REMOTE_ADDR="203.0.113.6"))
    )  # a new browser
    assert password_step(client).status_code == 302  # hers is not held
    forged = Client()
    forged.cookies[password_step_module.KNOWN_BROWSER_COOKIE] = "1:forged:signature"
    assert "Too many failed attempts" in text(password_step(forged))


def test_wrong_passwords_sent_at_once_take_turns(
    small_limits: None, tmp_path: Path, django_db_blocker: Any
) -> None:
    """Found by an outside attack: 40 wrong passwords posted at once were all checked. Now attempts on
    one name are counted as they come in: the burst gets no more checks than the free ones and one more.
    (A SQLite file that every thread opens, tests/races.py: the in-memory test database locks whole tables
    and does not wait.)"""
    import threading

    from django.db import connections

    with fresh_database("sqlite", tmp_path, django_db_blocker):
        _fast(account("alice"), "wonderland")
        replies = _burst(16, threading, connections)
    checked = sum("Wrong username or password" in reply for reply in replies)
    assert len(replies) == 16
    assert 1 <= checked <= FREE_PER_ACCOUNT + 1, checked
    assert checked + sum("Too many failed attempts" in reply for reply in replies) == 16


def _burst(count: int, threading: Any, connections: Any) -> list[str]:
    barrier = threading.Barrier(count)
    replies: list[str] = []

    def attempt(n: int) -> None:
        client = Client(REMOTE_ADDR=f"10.0.0.{n}")  # one address each: only the name's count applies
        barrier.wait(timeout=30)
        replies.append(text(password_step(client, "alice", f"guess-{n}")))
        connections.close_all()

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return replies


@pytest.mark.parametrize(("value", "secure"), [("", False), ("true", True), ("0", False)])
def test_the_cookies_travel_only_over_https_when_told_to(value: str, secure: bool) -> None:
    """XMPP_WEB_SECURE_COOKIES, read at start-up (a fresh interpreter per value); the CSRF cookie is never
    readable by scripts (the page carries the token)."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("XMPP_")} | {
        "XMPP_WEB_SECURE_COOKIES": value
    }
    code = (
        "from xmppauth import settings as s; "
        "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.CSRF_COOKIE_HTTPONLY, s.SESSION_COOKIE_HTTPONLY)"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(secure), str(secure), "True", "True"]
