"""One ASGI application for HTTP (portal, admin), WebSocket (XMPP over RFC 7395) and raw XMPP over TCP."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "xmppauth.settings")
django_asgi_app = get_asgi_application()

from asgiref.sync import sync_to_async  # noqa: E402
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.core.exceptions import SuspiciousOperation  # noqa: E402
from django.core.handlers.exception import response_for_exception  # noqa: E402
from django.http import HttpRequest, HttpResponseBase  # noqa: E402
from django.urls import path, re_path  # noqa: E402

from sessions_acl.portal_live import SessionsLiveConsumer  # noqa: E402
from xmppauth.consumer import StreamConsumer  # noqa: E402
from xmppauth.listeners import AdminGate  # noqa: E402
from xmppauth.security_headers import SecurityHeadersASGI  # noqa: E402
from xmppauth.transport.websocket import WebSocketTransport  # noqa: E402


class NoSuchWebSocket(AsyncWebsocketConsumer):  # type: ignore[misc]  # channels ships no type hints
    """A WebSocket to a path nobody serves: refused at the handshake (HTTP 403), where Channels' router
    would raise and log an internal error for each one (found by an outside attack)."""

    async def connect(self) -> None:
        await self.close()


class StaticFiles(ASGIStaticFilesHandler):
    """Django's static-file handler, answering a path that leaves the static directories (``/static/..``)
    with 400 Bad Request instead of an internal error (it lets only Http404 through as an answer)."""

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        try:
            return await super().get_response_async(request)
        except SuspiciousOperation as exc:
            return await sync_to_async(response_for_exception, thread_sensitive=False)(request, exc)


stream_application = StreamConsumer.as_asgi()  # the ``xmpp`` scope, whatever transport carries it

# The sessions page's live updates (sessions_acl/portal_live.py): the portal's session cookie says who
# it is; only from a page of this site (Origin against ALLOWED_HOSTS).
sessions_live = AllowedHostsOriginValidator(AuthMiddlewareStack(SessionsLiveConsumer.as_asgi()))

application = ProtocolTypeRouter(
    {
        # Static files are served by the app itself so the embedded default needs no web server in front.
        # The admin's paths are 404 but on the admin listener (XMPP_ADMIN_HTTP, xmppauth/listeners.py).
        "http": SecurityHeadersASGI(AdminGate(StaticFiles(django_asgi_app))),  # type: ignore[arg-type]  # Django types its ASGI callables apart
        # RFC 7395: the WebSocket transport turns the route's WebSockets into ``xmpp`` scopes.
        # (Channels' URLRouter takes ASGI applications where django-stubs' path() expects views.)
        "websocket": URLRouter(
            [
                path("xmpp-websocket", WebSocketTransport(stream_application)),  # type: ignore[arg-type]
                path("account/sessions/live", sessions_live),
                re_path(r"", NoSuchWebSocket.as_asgi()),  # anything else: refused, not an error
            ]
        ),
        "xmpp": stream_application,
    }
)
