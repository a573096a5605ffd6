"""The app passwords page: the list, creating one (shown once, stored hashed), scopes a person may grant,
expiry, revoking (logged, another account's is not found), re-authentication and CSRF; and, against a
real server, an app password made on the page logging a bot in over XMPP and revoked from the page."""

from __future__ import annotations

import http.cookiejar
import re
import time
import urllib.parse
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import User
from sessions_acl import app_passwords, credentials
from sessions_acl.models import AppPassword, AuthEvent, Grant, Revocation
from tests.web.conftest import Clock, signed_in_as, text

LIST = "/account/app-passwords/"
NEW = "/account/app-passwords/new/"
SECRET = re.compile(r'<code class="secret" id="app-password-secret">([a-z2-9-]+)</code>')


def form_token(client: Client) -> str:
    """The one-time token of a fresh creation form."""
    page = client.get(NEW)
    assert page.status_code == 200, page
    found = re.search(r'name="once" value="([^"]+)"', page.content.decode())
    assert found, page.content
    return found.group(1)


def create(client: Client, **fields: Any) -> Any:
    """Send the creation form as a person fills it in: a label and a role unless told otherwise."""
    data = {"label": "backup bot", "role": "bot", "once": form_token(client), **fields}
    return client.post(NEW, {k: v for k, v in data.items() if v is not None})


def secret_on(response: Any) -> str:
    found = SECRET.search(response.content.decode())
    assert found, text(response)
    return found.group(1)


# -- the list -------------------------------------------------------------------------------------


def test_it_says_when_there_are_none(client: Client, alice: User) -> None:
    page = text(signed_in_as(client, alice).get(LIST))
    assert "No app passwords yet." in page
    assert "Create an app password" in page


def test_it_lists_the_accounts_app_passwords_and_not_anothers(client: Client, alice: User, bob: User) -> None:
    app_passwords.create_app_password(alice, "notifier", ["messages.send"])
    old = app_passwords.create_app_password(
        alice, "old bot", ["presence"], expires=timezone.now() + timedelta(1)
    )
    Grant.objects.filter(pk=old.app_password.grant_id).update(
        expires=timezone.now() - timedelta(hours=1), last_used=timezone.now() - timedelta(hours=2)
    )
    app_passwords.create_app_password(bob, "bobs secret bot", ["presence"])
    page = text(signed_in_as(client, alice).get(LIST))
    assert re.search(
        r"notifier messages\.send \d+ \w+ 20\d\d, \d\d:\d\d UTC Never Never Active Revoke notifier", page
    )
    assert re.search(r"old bot presence .* UTC .* UTC .* UTC Expired Revoke old bot", page), page
    assert "bobs secret bot" not in page


# -- creating -------------------------------------------------------------------------------------


def test_it_shows_the_secret_once_and_stores_it_hashed(client: Client, alice: User) -> None:
    signed_in_as(client, alice)
    response = create(client)
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    assert "this is the only time it is shown" in text(response)
    secret = secret_on(response)
    app = AppPassword.objects.get(user=alice)
    assert (app.label, app.grant.scopes, app.grant.role) == (
        "backup bot",
        ["messages.receive", "messages.send", "presence"],
        "bot",
    )
    assert app.grant.expires is None
    # stored as SCRAM keys only: never the secret itself
    stored = str(AppPassword.objects.filter(pk=app.pk).values_list("scram", flat=True).get())
    assert secret not in stored
    assert set(app.scram) == set(alice.scram)
    # it logs in (PLAIN's check): the account's app password number app.pk
    assert credentials.check_plain("alice", "alice", secret) == f"app:{app.pk}"
    # a reload shows it nowhere, and sending the same form again makes no second one
    for page in (client.get(LIST), client.get(NEW), client.get("/")):
        assert secret not in page.content.decode()
    assert "backup bot" in text(client.get(LIST))
    again = client.post(NEW, {"label": "backup bot", "role": "bot", "once": "any"}, follow=True)
    assert "Nothing was created" in text(again)
    assert secret not in again.content.decode()
    assert AppPassword.objects.filter(user=alice).count() == 1
    event = AuthEvent.objects.get(kind=AuthEvent.Kind.APP_PASSWORD_CREATED)
    assert (event.detail, event.actor) == (
        "'backup bot' with messages.receive, messages.send, presence",
        "alice@localhost (web)",
    )


def test_a_form_is_sent_once(client: Client, alice: User) -> None:
    signed_in_as(client, alice)
    data = {"label": "bot", "role": "bot", "once": form_token(client)}
    assert SECRET.search(client.post(NEW, data).content.decode())
    assert client.post(NEW, data)["Location"] == LIST  # the browser's "send again" after a reload
    assert AppPassword.objects.count() == 1


def test_it_makes_one_with_chosen_scopes_and_an_expiry(client: Client, alice: User) -> None:
    signed_in_as(client, alice)
    response = create(client, role="", scopes=["roster.read", "messages.receive"], expires_days="7")
    secret_on(response)
    grant = AppPassword.objects.get(user=alice).grant
    assert grant.scopes == ["messages.receive", "roster.read"]
    assert grant.role == ""
    assert grant.expires is not None
    assert abs(grant.expires - (timezone.now() + timedelta(days=7))) < timedelta(minutes=1)
    assert "Expires" in text(response)
    assert re.search(r"Expires \d+ \w+ 20\d\d, \d\d:\d\d UTC", text(response))


def test_the_form_offers_only_the_scopes_an_app_password_may_carry(client: Client, alice: User) -> None:
    page = signed_in_as(client, alice).get(NEW).content.decode()
    offered = re.findall(r'name="scopes" value="([a-z.]+)"', page)
    assert offered == [
        "messages.send",
        "messages.receive",
        "presence",
        "roster.read",
        "roster.write",
        "pep.write",
    ]
    roles = re.findall(r'name="role" value="([a-z-]*)"', page)
    assert roles == ["", "bot", "notifier", "read-only"]  # "full" and "admin" hold scopes it may not carry


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        (
            {"role": "", "scopes": ["admin"]},
            "Select a valid choice. admin is not one of the available choices.",
        ),
        ({"role": "", "scopes": ["clients.manage"]}, "Select a valid choice. clients.manage is not one of"),
        ({"role": "admin"}, "Select a valid choice. admin is not one of the available choices."),
        ({"role": "full"}, "Select a valid choice. full is not one of the available choices."),
        ({"role": "bot", "scopes": ["presence"]}, "Choose a role or scopes, not both."),
        ({"role": ""}, "Choose a role or at least one scope."),
        ({"label": "  "}, "This field is required."),
        ({"expires_days": "0"}, "Ensure this value is greater than or equal to 1."),
    ],
)
def test_it_refuses_what_may_not_be_granted(
    client: Client, alice: User, fields: dict[str, Any], error: str
) -> None:
    signed_in_as(client, alice)
    response = create(client, **fields)
    assert response.status_code == 200
    assert error in text(response)
    assert not SECRET.search(response.content.decode())
    assert not AppPassword.objects.exists()


def test_staff_cannot_put_admin_in_an_app_password_either(client: Client, alice: User) -> None:
    User.objects.filter(pk=alice.pk).update(is_staff=True)
    signed_in_as(client, alice)
    assert 'value="admin"' not in client.get(NEW).content.decode()
    response = create(client, role="", scopes=["admin"])
    assert "admin is not one of the available choices" in text(response)
    assert not AppPassword.objects.exists()


# -- revoking -------------------------------------------------------------------------------------


def test_it_revokes_one(client: Client, alice: User) -> None:
    made = app_passwords.create_app_password(alice, "doomed", ["messages.send"])
    app = made.app_password
    signed_in_as(client, alice)
    url = f"/account/app-passwords/{app.pk}/revoke/"
    assert "disconnected within a second" in text(client.get(url))
    response = client.post(url, follow=True)
    assert "App password “doomed” revoked" in text(response)
    assert re.search(
        r"doomed messages\.send .* Revoked \d+ \w+ 20\d\d, \d\d:\d\d UTC by alice@localhost \(web\)",
        text(response),
    )
    grant = Grant.objects.get(pk=app.grant_id)
    assert grant.revoked is not None
    assert grant.revoked_by == "alice@localhost (web)"
    assert credentials.check_plain("alice", "alice", made.secret) is None  # it stops working
    assert Revocation.objects.get().grant_ids == [grant.pk]  # the streams using it are told
    event = AuthEvent.objects.get(kind=AuthEvent.Kind.REVOKED)
    assert (event.detail, event.actor) == ("app password 'doomed'", "alice@localhost (web)")
    # a second revocation changes nothing
    assert "already revoked" in text(client.post(url, follow=True))
    assert AuthEvent.objects.filter(kind=AuthEvent.Kind.REVOKED).count() == 1


def test_another_accounts_app_password_is_not_found(client: Client, alice: User, bob: User) -> None:
    theirs = app_passwords.create_app_password(bob, "bob's bot", ["messages.send"]).app_password
    signed_in_as(client, alice)
    for method in ("get", "post"):
        assert getattr(client, method)(f"/account/app-passwords/{theirs.pk}/revoke/").status_code == 404
        assert (
            getattr(client, method)(f"/account/app-passwords/{theirs.pk + 1000}/revoke/").status_code == 404
        )
    assert client.get("/account/app-passwords/..%2F1/revoke/").status_code == 404
    assert Grant.objects.get(pk=theirs.grant_id).revoked is None
    assert not Revocation.objects.exists()


# -- re-authentication and CSRF -------------------------------------------------------------------


def test_creating_and_revoking_need_a_recent_reauthentication(
    client: Client, alice: User, clock: Clock
) -> None:
    app = app_passwords.create_app_password(alice, "kept", ["messages.send"]).app_password
    signed_in_as(client, alice)
    clock.advance(301)
    assert client.get(LIST).status_code == 200  # reading needs none
    revoke = f"/account/app-passwords/{app.pk}/revoke/"
    for url in (NEW, revoke):
        for method in ("get", "post"):
            response = getattr(client, method)(url, {"label": "x", "role": "bot"})
            assert response["Location"] == f"/account/reauth/?next={urllib.parse.quote(url, safe='')}"
    assert AppPassword.objects.count() == 1
    assert Grant.objects.get(pk=app.grant_id).revoked is None
    # the password again, and the change goes through
    client.post("/account/reauth/", {"factor": "password", "password-password": "wonderland"})
    assert client.post(revoke)["Location"] == LIST
    assert Grant.objects.get(pk=app.grant_id).revoked is not None


def test_a_post_without_the_csrf_token_is_refused(alice: User) -> None:
    browser = Client(enforce_csrf_checks=True)
    signed_in_with_csrf(browser)
    page = browser.get(NEW).content.decode()
    once = re.search(r'name="once" value="([^"]+)"', page)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert once
    assert token
    data = {"label": "bot", "role": "bot", "once": once.group(1)}
    assert browser.post(NEW, data).status_code == 403
    assert not AppPassword.objects.exists()
    response = browser.post(NEW, {**data, "csrfmiddlewaretoken": token.group(1)})
    assert SECRET.search(response.content.decode())


def signed_in_with_csrf(browser: Client) -> None:
    """Sign in through the page as a browser does, with the form's CSRF token."""
    page = browser.get("/signin/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token
    response = browser.post(
        "/signin/", {"username": "alice", "password": "wonderland", "csrfmiddlewaretoken": token.group(1)}
    )
    assert response.status_code == 302, text(response)


# -- the dashboard ---------------------------------------------------------------------------------


def test_the_dashboard_gives_an_overview_in_a_bounded_number_of_queries(
    client: Client, alice: User, django_assert_max_num_queries: Any
) -> None:
    from sessions_acl import records
    from sessions_acl.login import Authorization, authorize

    signed_in_as(client, alice)
    page = text(client.get("/"))
    assert "No XMPP session online now." in page
    assert "Last XMPP login: never." in page
    assert "App passwords None in use" in page
    assert "Your account has no second factor" in page
    assert re.search(r"Latest sign-ins to this site: \d+ \w+ 20\d\d, \d\d:\d\d UTC from 127\.0\.0\.1", page)
    for n in range(30):  # many past sessions, two live
        auth = authorize("alice", credential_id="", mechanism="PLAIN", user_agent_id=f"ua{n}")
        assert isinstance(auth, Authorization)
        session = records.open_session(
            auth,
            jid=f"alice@localhost/{n}",
            transport="tcp-tls",
            address="192.0.2.7",
            mechanism="PLAIN",
            node="n",
        )
        if n < 28:
            records.close_session(session, "gone")
    for label in ("one", "two", "three"):
        app_passwords.create_app_password(alice, label, ["presence"])
    revoked = app_passwords.create_app_password(alice, "revoked", ["presence"]).app_password
    Grant.objects.filter(pk=revoked.grant_id).update(revoked=timezone.now())
    with django_assert_max_num_queries(15):
        page = text(client.get("/"))
    assert "2 XMPP sessions online now." in page
    assert "App passwords 3 in use" in page
    assert re.search(r"Last XMPP login: \d+ \w+ 20\d\d, \d\d:\d\d UTC from 192\.0\.2\.7\.", page)
    html = client.get("/").content.decode()
    for name in ("/account/app-passwords/", "/account/password/", "/account/policy/", "/account/security/"):
        assert f'href="{name}"' in html


# -- over XMPP, against a real server -------------------------------------------------------------


class Browser:
    """A person at the portal of a live server: cookies, and the CSRF token of each form."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), _NoRedirect()
        )

    def get(self, path: str) -> tuple[int, str]:
        with self.opener.open(self.base + path, timeout=10) as response:
            return response.status, response.read().decode()

    def submit(self, path: str, fields: dict[str, str]) -> tuple[int, str, str]:
        """GET the page, then POST its form with ``fields`` and the page's hidden values."""
        _, page = self.get(path)
        hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))
        body = urllib.parse.urlencode({**hidden, **fields}, doseq=True).encode()
        request = urllib.request.Request(self.base + path, data=body, method="POST")
        try:
            with self.opener.open(request, timeout=10) as response:
                return response.status, response.read().decode(), ""
        except urllib.error.HTTPError as redirect:
            if redirect.code != 302:
                raise
            return 302, "", str(redirect.headers["Location"])


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@pytest.mark.integration
def test_an_app_password_made_on_the_page_logs_a_bot_in_and_revoking_it_closes_the_stream(
    tmp_path: Path,
) -> None:
    from tests.integration.rawclient import Session, parse_stream_error
    from tests.integration.server import running_server

    with running_server(tmp_path / "server", accounts={"alice": "wonderland"}) as server:
        browser = Browser(f"http://127.0.0.1:{server.http}")
        status, _, where = browser.submit("/signin/", {"username": "alice", "password": "wonderland"})
        assert (status, where) == (302, "/")
        status, page, _ = browser.submit(NEW, {"label": "web bot", "role": "bot"})
        assert status == 200, page
        found = SECRET.search(page)
        assert found, page
        bot = Session(server, "alice", found.group(1))
        assert bot.ok, bot.reply
        _, listing = browser.get(LIST)
        revoke = re.search(r'href="(/account/app-passwords/\d+/revoke/)"', listing)
        assert revoke, listing
        started = time.monotonic()
        status, _, where = browser.submit(revoke.group(1), {})
        assert (status, where) == (302, LIST)
        closed = bot.raw.read_to_close(timeout=5)
        assert time.monotonic() - started < 3
        assert parse_stream_error(closed) == "policy-violation", closed
        assert b"app password was revoked by alice@localhost (web)" in closed
        assert not Session(server, "alice", found.group(1)).ok
