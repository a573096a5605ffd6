"""The sessions page, live: a WebSocket (``/account/sessions/live``) that tells the page which sessions
of the account started or ended and which of its clients came online or went offline
(docs/portal-sessions.md).

Nothing is added to the XMPP login or stanza path, which is measured and kept lean: no message is
published when a session starts or ends. Instead, while a page is open, its consumer looks at the
account's live sessions itself every ``XMPP_PORTAL_LIVE_SECONDS`` (default 2): one indexed query for
the ids (and one primary-key read that the browser's portal session still exists), and only when
something changed, the changed rows, rendered with the page's own templates. A session record is
written when a stream binds and closed when it ends, on whatever process serves it, so the database is
what every process agrees on.

Who may connect: the portal session (the cookie, through Channels' session and auth middleware) of a
signed-in account that passed its second factor in that session, as for every portal page
(``accounts.views.guard.second_factor_passed``), from a page of this site (the ``Origin`` checked
against ``ALLOWED_HOSTS``). Anyone else is refused at the handshake; a page whose portal session ends
(signed out, or "sign out everywhere else" from another browser) is closed with code 4401.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import django_otp
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.base import SessionBase
from django.http import HttpRequest
from django.template.loader import render_to_string
from django_otp.models import Device

from accounts.models import User
from accounts.views import guard
from xmppauth import tasks
from xmppauth.offloop import off_loop

from .models import Session
from .views import clients_of, live_seconds, row_context, sessions_of

log = logging.getLogger("xmppauth.portal")

#: Close codes the page understands: the portal session ended (sign in again; no retry).
SIGNED_OUT = 4401


@dataclass(frozen=True)
class Look:
    """One look at the account: its live sessions (id → client id, None for an app password's) and
    whether the browser's portal session still exists."""

    live: dict[int, int | None]
    signed_in: bool

    @property
    def online(self) -> set[int]:
        return {client for client in self.live.values() if client is not None}


def verified_user(user: Any, session: SessionBase) -> User | None:
    """The account a WebSocket's portal session is signed in as, if it passed its second factor in
    that session (or has none): what ``accounts.views.guard.signed_in`` lets through, read the way
    django-otp's middleware reads it for a request."""
    if not isinstance(user, User) or not user.is_active:
        return None
    device = None
    persistent_id = session.get(django_otp.DEVICE_ID_SESSION_KEY)
    if isinstance(persistent_id, str):
        found = Device.from_persistent_id(persistent_id)
        if found is not None and found.user_id == user.pk and found.confirmed:
            device = found
    user.otp_device = device  # type: ignore[attr-defined]  # django-otp's attribute
    request = HttpRequest()
    request.user = user
    return user if guard.second_factor_passed(request) else None


def look(user_id: int, session: SessionBase) -> Look:
    key = session.session_key
    return Look(
        live=dict(Session.objects.filter(user_id=user_id, ended__isnull=True).values_list("id", "client_id")),
        signed_in=key is not None and session.exists(key),  # a read of that row; changes nothing
    )


def changes(user_id: int, before: Look | None, now: Look) -> dict[str, Any] | None:
    """The message for the page: sessions started and ended, clients online and offline, the new rows
    rendered; None when nothing changed. Without ``before`` (the first look) it is a snapshot: every
    live session and online client, and the page ends what it shows beyond them."""
    shown = before.live if before is not None else {}
    started = sorted(set(now.live) - set(shown))
    ended = sorted(set(shown) - set(now.live))
    was_online = before.online if before is not None else set()
    online = sorted(now.online - was_online)
    offline = sorted(was_online - now.online)
    if before is not None and not (started or ended or online or offline):
        return None
    context = row_context()
    sessions = sessions_of(user_id).filter(pk__in=started) if started else []
    clients = clients_of(user_id).filter(pk__in=online) if online else []
    return {
        "type": "changes",
        "snapshot": before is None,
        "started": [
            {
                "id": s.pk,
                "client": s.client_id,
                "html": render_to_string("sessions_acl/_session_row.html", {"session": s, **context}),
            }
            for s in sessions
        ],
        "ended": ended,
        "online": [
            {
                "id": c.pk,
                "html": render_to_string(
                    "sessions_acl/_client_row.html", {"client": c, "online": now.online, **context}
                ),
            }
            for c in clients
        ],
        "offline": offline,
    }


#: Open live pages per account in this process, and the most one account may hold open at once.
_open: dict[int, int] = {}
MAX_PAGES_PER_ACCOUNT = 10


class SessionsLiveConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]  # channels ships no type hints
    """One open sessions page: refused unless signed in and verified; then pushes what changes. The page
    sends nothing: whatever it sends is ignored. Its watcher is cancelled however the socket ends (an outside
    attack found that a frame the JSON decoder refused crashed the consumer and left the watcher polling)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.watchers: set[asyncio.Task[Any]] = set()
        self.user_id: int | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._stop()

    async def connect(self) -> None:
        session = self.scope.get("session")
        user = self.scope.get("user", AnonymousUser())
        verified = await off_loop(verified_user)(user, session) if session is not None else None
        if verified is None or _open.get(verified.pk, 0) >= MAX_PAGES_PER_ACCOUNT:
            await self.close()  # before accept(): the handshake is refused (HTTP 403)
            return
        self.user_id = verified.pk
        _open[verified.pk] = _open.get(verified.pk, 0) + 1
        await self.accept()
        tasks.start(
            self.watch(session),
            name=f"portal live sessions of {verified.username}",
            group=self.watchers,
        )

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """The page has nothing to say: frames are ignored, never decoded."""

    async def disconnect(self, code: int) -> None:
        self._stop()

    def _stop(self) -> None:
        tasks.cancel(self.watchers)
        if self.user_id is not None:
            left = _open.get(self.user_id, 1) - 1
            if left > 0:
                _open[self.user_id] = left
            else:
                _open.pop(self.user_id, None)
            self.user_id = None

    async def watch(self, session: SessionBase) -> None:
        """Look, push what changed, wait; until the socket closes (the task is cancelled) or the portal
        session ends. A failed look is logged and the next one tried."""
        before: Look | None = None
        while True:
            try:
                user_id = self.user_id
                if user_id is None:
                    return
                now = await off_loop(look)(user_id, session)
                if not now.signed_in:
                    await self.close(code=SIGNED_OUT)
                    return
                message = await off_loop(changes)(user_id, before, now)
                if message is not None:
                    await self.send_json(message)
                before = now
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("live sessions page of user %s: a look failed; trying again", self.user_id)
            await asyncio.sleep(live_seconds())
