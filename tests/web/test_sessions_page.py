"""The clients and sessions page (/account/sessions/): what it lists, the revocations it offers (each a
POST with CSRF behind re-authentication, through sessions_acl.revocation, in the security log), and its
live WebSocket (/account/sessions/live, sessions_acl/portal_live.py).

Clients and sessions are made the way the server makes them: ``sessions_acl.login.authorize`` for the
login, ``records.open_session`` for the bound stream, ``records.close_session`` for its end.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client
from django.utils import timezone

from accounts.models import User
from sessions_acl import app_passwords, records
from sessions_acl.login import Authorization, authorize
from sessions_acl.models import AuthEvent, FastToken, Grant, Revocation, Session
from sessions_acl.models import Client as XmppClient
from tests.web.conftest import Clock, app_of, password_step, redirects_to_sign_in, signed_in_as, text

PHONE = "5b0f3c2e-1111-4c2e-9d3b-5f1e2a7c9b10"
LAPTOP = "0d5c7a9e-2222-4b1a-8c3d-6e2f1a0b9c21"


def login(
    user: User, ua: str | None = PHONE, software: str = "Conversations", device: str = "Pixel 8", **kw: Any
) -> Authorization:
    """A password login of the client ``ua`` (SASL2 user agent), as the server authorizes it."""
    result = authorize(
        user.username,
        credential_id=kw.pop("credential_id", ""),
        mechanism="SCRAM-SHA-256",
        user_agent_id=ua,
        software=software,
        device=device,
        **kw,
    )
    assert isinstance(result, Authorization), result
    return result


def bind(auth: Authorization, resource: str, **kw: str) -> int:
    """The bound stream's session record, as the server writes it."""
    fields = {
        "transport": "tcp-tls",
        "address": "192.0.2.10",
        "mechanism": "SCRAM-SHA-256+TOTP",
        "node": "n1",
    }
    fields.update(kw)
    return records.open_session(auth, jid=f"{auth.username}@localhost/{resource}", **fields)


@pytest.fixture
def phone(alice: User) -> int:
    """alice's phone, online: its live session's id."""
    return bind(login(alice, fast_request="HT-SHA-256-NONE"), "phone")


@pytest.fixture
def signed_in(client: Client, alice: User) -> Client:
    return signed_in_as(client, alice)


def page(client: Client, query: str = "") -> str:
    response = client.get(f"/account/sessions/{query}")
    assert response.status_code == 200
    return text(response)


# -- what the page shows ------------------------------------------------------------------------------


def test_it_lists_the_clients_and_the_live_and_past_sessions(
    signed_in: Client, alice: User, bob: User, phone: int
) -> None:
    laptop = login(alice, LAPTOP, software="Gajim", device="laptop")
    records.close_session(
        bind(laptop, "laptop", transport="websocket", address="198.51.100.4", mechanism="PLAIN"),
        "closed by the client",
    )
    bind(login(bob, software="Bob's secret client"), "bobphone", address="203.0.113.99")

    shown = page(signed_in)
    assert "Conversations on Pixel 8 Online" in shown
    assert "Gajim on laptop Offline" in shown
    when = r"\d+ \w+ \d{4}, \d\d:\d\d UTC \(just now\)"
    assert re.search(
        rf"Conversations on Pixel 8 Online {when} {when} password clients.manage messages.receive "
        "messages.send pep.write presence roster.read roster.write Revoke Conversations on Pixel 8",
        shown,
    ), shown
    live = shown[shown.index("Online now") : shown.index("Past sessions")]
    assert "alice@localhost/phone Conversations on Pixel 8 Online TCP, direct TLS 192.0.2.10" in live
    assert "SCRAM-SHA-256+TOTP with the password n1" in live
    assert "(just now)" in live
    assert "laptop" not in live
    past = shown[shown.index("Past sessions") :]
    assert "alice@localhost/laptop Gajim on laptop WebSocket 198.51.100.4 PLAIN with the password" in past
    assert "closed by the client" in past
    assert "bob" not in shown.lower()
    assert "203.0.113.99" not in shown


def test_times_carry_their_utc_moment_and_how_long_ago(signed_in: Client, alice: User) -> None:
    auth = login(alice)
    session_id = bind(auth, "phone")
    Session.objects.filter(pk=session_id).update(started=timezone.now() - timedelta(minutes=3, seconds=5))
    response = signed_in.get("/account/sessions/")
    started = Session.objects.get(pk=session_id).started
    assert f'<time datetime="{started.isoformat()}">' in response.content.decode()
    assert "UTC (3 minutes ago)" in text(response)


def test_it_says_when_there_is_nothing_yet(signed_in: Client) -> None:
    shown = page(signed_in)
    assert "No XMPP client has logged in to your account yet." in shown
    assert "No XMPP session of your account is online right now." in shown
    assert "No past sessions yet." in shown


def test_a_revoked_client_is_shown_revoked_without_a_button(signed_in: Client, alice: User) -> None:
    auth = login(alice)
    signed_in.post(f"/account/sessions/clients/{auth.client_id}/revoke/")
    shown = page(signed_in)
    assert "Conversations on Pixel 8 Revoked" in shown
    assert "nothing: revoked" in shown
    assert "Revoke Conversations on Pixel 8" not in shown


def test_an_app_password_session_says_which_app_password(signed_in: Client, alice: User) -> None:
    app = app_passwords.create_app_password(alice, "backup bot", ["messages.send"]).app_password
    auth = login(alice, credential_id=f"app:{app.pk}")
    bind(auth, "bot", mechanism="SCRAM-SHA-256")
    assert (
        "alice@localhost/bot Online TCP, direct TLS 192.0.2.10 SCRAM-SHA-256 with the app password “backup bot”"
        in page(signed_in)
    )


def test_past_sessions_come_25_a_page_keeping_the_query(signed_in: Client, alice: User) -> None:
    auth = login(alice)
    start = timezone.now() - timedelta(days=2)
    Session.objects.bulk_create(
        Session(
            user=alice, grant_id=auth.grant_id, client_id=auth.client_id, jid=f"alice@localhost/past{n}",
            transport="tcp-tls", mechanism="PLAIN", credential="password", node="n1",
            started=start + timedelta(minutes=n), ended=start + timedelta(minutes=n, seconds=30),
            end_reason=f"reason {n}",
        )
        for n in range(60)
    )  # fmt: skip
    first = page(signed_in)
    assert "alice@localhost/past59 " in first
    assert "alice@localhost/past35 " in first
    assert "alice@localhost/past34 " not in first
    assert "Page 1 of 3" in first
    assert 'href="?page=2#past"' in signed_in.get("/account/sessions/").content.decode()
    last = signed_in.get("/account/sessions/?page=3&x=y").content.decode()
    assert 'href="?page=2&amp;x=y#past"' in last
    assert "alice@localhost/past9 " in text_of(last)
    assert "alice@localhost/past10 " not in text_of(last)
    assert "Page 3 of 3" in page(signed_in, "?page=99")


def text_of(html: str) -> str:
    class Page:
        content = html.encode()

    return text(Page())


def test_the_page_costs_a_bounded_number_of_queries_with_500_past_sessions(
    signed_in: Client, alice: User, django_assert_max_num_queries: Any
) -> None:
    phone, laptop = login(alice), login(alice, LAPTOP, software="Gajim", device="laptop")
    bind(phone, "phone")
    bind(laptop, "laptop")
    app = app_passwords.create_app_password(alice, "bot", ["messages.send"]).app_password
    bind(login(alice, credential_id=f"app:{app.pk}"), "bot")
    start = timezone.now() - timedelta(days=30)
    Session.objects.bulk_create(
        Session(
            user=alice, grant_id=auth.grant_id, client_id=auth.client_id, jid=f"alice@localhost/old{n}",
            transport="tcp-tls", mechanism="PLAIN", credential="password", node="n1",
            started=start + timedelta(minutes=n), ended=start + timedelta(minutes=n + 1), end_reason="gone",
        )
        for n, auth in zip(range(500), [phone, laptop] * 250, strict=True)
    )  # fmt: skip
    # 5 for the sign-in guard (session, account, its factors) and 4 for the page: live sessions, clients,
    # the past sessions' count and one page of them; none per row.
    with django_assert_max_num_queries(10):
        shown = page(signed_in)
    assert "Page 1 of 20" in shown
    assert shown.count("alice@localhost/old") == 25


# -- revocations ----------------------------------------------------------------------------------


def test_it_ends_one_session(signed_in: Client, alice: User, phone: int) -> None:
    response = signed_in.post(f"/account/sessions/{phone}/end/", follow=True)
    assert response.redirect_chain == [("/account/sessions/", 302)]
    assert "The session alice@localhost/phone is being ended: its connection closes now." in text(response)
    revoked = Revocation.objects.get()
    assert (revoked.session_ids, revoked.grant_ids) == ([phone], [])
    assert revoked.text == "this session was ended by alice@localhost (web): ended in the portal"
    event = AuthEvent.objects.get(kind=AuthEvent.Kind.REVOKED)
    assert (event.detail, event.actor) == (
        "session alice@localhost/phone: ended in the portal",
        "alice@localhost (web)",
    )
    assert "Revoked session alice@localhost/phone: ended in the portal , by alice@localhost (web)" in text(
        signed_in.get("/account/log/")
    )
    assert XmppClient.objects.get().revoked is None  # the client may log in again


def test_ending_a_session_that_already_ended_changes_nothing(signed_in: Client, phone: int) -> None:
    records.close_session(phone, "closed by the client")
    response = signed_in.post(f"/account/sessions/{phone}/end/", follow=True)
    assert "The session alice@localhost/phone had already ended." in text(response)
    assert not Revocation.objects.exists()


def test_it_revokes_a_client_its_grant_and_its_tokens(signed_in: Client, alice: User, phone: int) -> None:
    client = XmppClient.objects.get()
    assert FastToken.objects.filter(client=client).exists()
    response = signed_in.post(f"/account/sessions/clients/{client.pk}/revoke/", follow=True)
    shown = text(response)
    assert (
        "Revoked Conversations on Pixel 8: its sessions end now, and it must log in with your password again."
        in shown
    )
    assert "It has used your password" in shown
    client.refresh_from_db()
    assert client.revoked is not None
    assert client.grant is not None
    assert client.grant.revoked_by == "alice@localhost (web)"
    assert not FastToken.objects.exists()
    revoked = Revocation.objects.get()
    assert revoked.session_ids == [phone]
    assert revoked.text == "this client was revoked by alice@localhost (web)"
    event = AuthEvent.objects.get(kind=AuthEvent.Kind.REVOKED)
    assert (event.detail, event.actor) == ("client Conversations on Pixel 8", "alice@localhost (web)")
    assert "Conversations on Pixel 8 Revoked" in shown


def test_it_signs_out_everything_else_but_this_browser(
    client: Client, alice: User, bob: User, phone: int
) -> None:
    laptop = login(alice, LAPTOP, software="Gajim", device="laptop")
    bind(laptop, "laptop")
    app = app_passwords.create_app_password(alice, "bot", ["messages.send"]).app_password
    bind(login(alice, credential_id=f"app:{app.pk}"), "bot")
    other_browser = signed_in_as(Client(), alice)
    bobs_browser = signed_in_as(Client(), bob)
    pending_elsewhere = Client()
    app_of(alice)  # from now on a password alone is only a pending sign-in
    assert password_step(pending_elsewhere)["Location"] == "/signin/verify/"
    this_browser = signed_in_as(client, alice, device=app_of(alice))

    response = this_browser.post("/account/sessions/sign-out-others/", follow=True)
    shown = text(response)
    assert (
        "Signed out everywhere else: every XMPP session ends now, 2 clients must log in with your password "
        "again, and 2 other web sessions ended. This browser stays signed in." in shown
    )
    assert XmppClient.objects.filter(user=alice, revoked__isnull=True).count() == 0
    assert Grant.objects.get(app_password=app).revoked is None  # app passwords stay
    assert Revocation.objects.filter(username="alice", all_sessions=True, except_session=None).exists()
    details = set(
        AuthEvent.objects.filter(user=alice, kind=AuthEvent.Kind.REVOKED).values_list("detail", flat=True)
    )
    assert details == {
        "client Conversations on Pixel 8: signed out everywhere else",
        "client Gajim on laptop: signed out everywhere else",
        "all sessions and FAST tokens: signed out everywhere else (2 other web sessions ended too)",
    }
    assert redirects_to_sign_in(other_browser.get("/account/sessions/"))
    assert pending_elsewhere.get("/signin/verify/")["Location"] == "/signin/"
    assert this_browser.get("/account/sessions/").status_code == 200
    assert bobs_browser.get("/account/sessions/").status_code == 200


@pytest.mark.parametrize("action", ["end", "revoke"])
def test_another_accounts_id_is_not_found(signed_in: Client, bob: User, action: str) -> None:
    auth = login(bob)
    session_id = bind(auth, "bobphone")
    url = (
        f"/account/sessions/{session_id}/end/"
        if action == "end"
        else f"/account/sessions/clients/{auth.client_id}/revoke/"
    )
    assert signed_in.post(url).status_code == 404
    assert (
        signed_in.post(
            url.replace(str(session_id if action == "end" else auth.client_id), "987654")
        ).status_code
        == 404
    )
    assert not Revocation.objects.exists()
    assert not AuthEvent.objects.filter(kind=AuthEvent.Kind.REVOKED).exists()
    assert XmppClient.objects.get(user=bob).revoked is None


@pytest.mark.parametrize(
    "url",
    [
        "/account/sessions/{s}/end/",
        "/account/sessions/clients/{c}/revoke/",
        "/account/sessions/sign-out-others/",
    ],
)
def test_each_revocation_needs_a_recent_reauthentication(
    signed_in: Client, clock: Clock, phone: int, url: str
) -> None:
    clock.advance(301)
    target = url.format(s=phone, c=XmppClient.objects.get().pk)
    response = signed_in.post(target)
    assert response.status_code == 302
    assert response["Location"] == "/account/reauth/?next=%2Faccount%2Fsessions%2F"
    assert not Revocation.objects.exists()
    assert XmppClient.objects.get().revoked is None


@pytest.mark.parametrize(
    "url",
    [
        "/account/sessions/{s}/end/",
        "/account/sessions/clients/{c}/revoke/",
        "/account/sessions/sign-out-others/",
    ],
)
def test_each_revocation_is_a_post(signed_in: Client, phone: int, url: str) -> None:
    assert signed_in.get(url.format(s=phone, c=XmppClient.objects.get().pk)).status_code == 405
    assert not Revocation.objects.exists()


def test_a_revocation_without_the_csrf_token_is_refused(alice: User, phone: int) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.cookies = signed_in_as(Client(), alice).cookies
    assert browser.get("/account/sessions/").status_code == 200  # signed in
    assert browser.post(f"/account/sessions/{phone}/end/").status_code == 403
    assert not Revocation.objects.exists()


# -- live: the WebSocket --------------------------------------------------------------------------

ORIGIN = (b"origin", b"http://localhost")


def socket(cookie: str = "", origin: tuple[bytes, bytes] = ORIGIN) -> WebsocketCommunicator:
    from xmppauth.asgi import application

    headers = [origin] + ([(b"cookie", f"sessionid={cookie}".encode())] if cookie else [])
    return WebsocketCommunicator(application, "/account/sessions/live", headers=headers)


@pytest.fixture
def live_settings(settings: Any) -> None:
    settings.XMPP_PORTAL_LIVE_SECONDS = 0.05


def cookie_of(client: Client) -> str:
    return str(client.cookies["sessionid"].value)


db = sync_to_async


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_settings")
async def test_an_anonymous_socket_is_refused(alice: User) -> None:
    for communicator in (socket(), socket(str(uuid.uuid4()))):
        connected, _ = await communicator.connect()
        assert not connected


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_settings")
async def test_a_session_without_its_second_factor_is_refused(alice: User) -> None:
    def password_only() -> str:
        app_of(alice)
        browser = Client()
        browser.force_login(alice)  # the admin's password-only login
        return cookie_of(browser)

    connected, _ = await socket(await db(password_only)()).connect()
    assert not connected


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_settings")
async def test_a_socket_from_another_site_is_refused(alice: User) -> None:
    cookie = await db(lambda: cookie_of(signed_in_as(Client(), alice)))()
    connected, _ = await socket(cookie, (b"origin", b"https://evil.example")).connect()
    assert not connected


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_settings")
async def test_it_pushes_sessions_as_they_start_and_end(alice: User, bob: User) -> None:
    cookie = await db(lambda: cookie_of(signed_in_as(Client(), alice)))()
    old = await db(lambda: bind(login(alice, LAPTOP, software="Gajim", device="laptop"), "laptop"))()
    communicator = socket(cookie)
    connected, _ = await communicator.connect()
    assert connected
    snapshot = await communicator.receive_json_from(timeout=5)
    assert snapshot["snapshot"] is True
    assert [item["id"] for item in snapshot["started"]] == [old]
    assert "alice@localhost/laptop" in snapshot["started"][0]["html"]

    phone = await db(lambda: bind(login(alice, software="Conversations", device="Pixel 8"), "phone"))()
    await db(lambda: bind(login(bob), "bobphone"))()  # not alice's: never pushed
    started = await communicator.receive_json_from(timeout=5)
    assert started["snapshot"] is False
    assert [item["id"] for item in started["started"]] == [phone]
    assert "alice@localhost/phone" in started["started"][0]["html"]
    assert "SCRAM-SHA-256+TOTP" in started["started"][0]["html"]
    client_id = await db(lambda: XmppClient.objects.get(user=alice, user_agent_id=PHONE).pk)()
    assert [item["id"] for item in started["online"]] == [client_id]
    assert "Conversations on Pixel 8" in started["online"][0]["html"]
    assert started["ended"] == started["offline"] == []

    await db(records.close_session)(phone, "closed by the client")
    ended = await communicator.receive_json_from(timeout=5)
    assert (ended["started"], ended["ended"], ended["online"], ended["offline"]) == (
        [],
        [phone],
        [],
        [client_id],
    )
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_settings")
async def test_it_closes_when_the_portal_session_ends(alice: User) -> None:
    cookie = await db(lambda: cookie_of(signed_in_as(Client(), alice)))()
    communicator = socket(cookie)
    connected, _ = await communicator.connect()
    assert connected
    assert (await communicator.receive_json_from(timeout=5))["snapshot"] is True
    await db(lambda: SessionStore(session_key=cookie).delete())()
    assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}


def _watchers() -> list[asyncio.Task[Any]]:
    return [
        t for t in asyncio.all_tasks() if t.get_name().startswith("portal live sessions") and not t.done()
    ]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_settings")
async def test_whatever_the_page_sends_its_watcher_ends_with_the_socket(alice: User) -> None:
    """Found by an outside attack: a frame the JSON decoder refused crashed the consumer and left its
    watcher polling the database for as long as the portal session lived (thousands of them pinned the
    server). Frames are ignored now, and the watcher ends however the socket does."""
    cookie = await db(lambda: cookie_of(signed_in_as(Client(), alice)))()
    communicator = socket(cookie)
    assert (await communicator.connect())[0]
    assert (await communicator.receive_json_from(timeout=5))["snapshot"] is True
    assert len(_watchers()) == 1
    await communicator.send_to(text_data="not json")
    await communicator.send_to(bytes_data=b"\x00\xff")
    assert await communicator.receive_nothing(timeout=0.2)  # ignored: still open, nothing said
    await communicator.disconnect()
    await asyncio.sleep(0.05)
    assert _watchers() == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_settings")
async def test_an_account_holds_a_bounded_number_of_live_pages(alice: User) -> None:
    from sessions_acl.portal_live import MAX_PAGES_PER_ACCOUNT

    cookie = await db(lambda: cookie_of(signed_in_as(Client(), alice)))()
    pages = [socket(cookie) for _ in range(MAX_PAGES_PER_ACCOUNT)]
    for page in pages:
        assert (await page.connect())[0]
    extra = socket(cookie)
    assert not (await extra.connect())[0]  # one more is refused
    await pages[0].disconnect()
    await asyncio.sleep(0.05)
    again = socket(cookie)
    assert (await again.connect())[0]  # a closed page frees its place
    for page in [*pages[1:], again]:
        await page.disconnect()
    await asyncio.sleep(0.05)
    assert _watchers() == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/nope", "/account/sessions/live/../../x", "/xmpp-websocket/extra", "/"])
async def test_a_websocket_to_a_path_nobody_serves_is_refused_not_an_error(path: str, caplog: Any) -> None:
    from xmppauth.asgi import application

    communicator = WebsocketCommunicator(application, path, headers=[ORIGIN])
    connected, _ = await communicator.connect()
    assert not connected
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
