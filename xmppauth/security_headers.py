"""Security headers on every HTTP answer of the site (issue 11, item 5; docs/deploy.md).

Django 5.2 has no Content-Security-Policy of its own. :class:`SecurityHeadersMiddleware` (first in
``MIDDLEWARE``) gives every response of the Django application (the portal, the admin, error pages) the
policy of ``XMPP_WEB_CSP`` (settings.py): no ``'unsafe-inline'`` anywhere, so the templates carry no inline
script, style attribute or event handler (tests/web/test_security_headers.py scans them). A response that
already has a ``Content-Security-Policy`` (a view that needs another policy) keeps its own.

With ``XMPP_WEB_HTTPS`` it also sends ``Strict-Transport-Security`` when Django's SecurityMiddleware did not:
behind a TLS proxy that does not pass ``X-Forwarded-Proto`` (``SECURE_PROXY_SSL_HEADER``), Django sees plain
HTTP and would never send it, though the browser is on HTTPS.

Static files never reach the middleware: Django's static-file handler (``xmppauth.asgi.StaticFiles``, and
the test server's) answers them before it. :class:`SecurityHeadersASGI` wraps an ASGI application and adds
the same headers, and the ones Django's SecurityMiddleware and XFrameOptionsMiddleware would have added, to
each HTTP answer that lacks them (the web client's page, ``/static/xmppauth/webclient.html``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def policy_header(policy: dict[str, list[str]] | None = None) -> str:
    """The header value of ``policy`` (default: ``settings.XMPP_WEB_CSP``, directive -> sources)."""
    if policy is None:
        policy = settings.XMPP_WEB_CSP
    return "; ".join(" ".join([directive, *sources]) for directive, sources in policy.items())


def hsts_header() -> str | None:
    """``Strict-Transport-Security`` as Django's SecurityMiddleware makes it, or None without HTTPS."""
    seconds = int(getattr(settings, "SECURE_HSTS_SECONDS", 0) or 0)
    if not getattr(settings, "XMPP_WEB_HTTPS", False) or seconds <= 0:
        return None
    value = f"max-age={seconds}"
    if getattr(settings, "SECURE_HSTS_INCLUDE_SUBDOMAINS", False):
        value += "; includeSubDomains"
    if getattr(settings, "SECURE_HSTS_PRELOAD", False):
        value += "; preload"
    return value


def security_headers() -> dict[str, str]:
    """Every header this site's answers carry (names as sent), from the settings."""
    headers = {"Content-Security-Policy": policy_header()}
    if getattr(settings, "SECURE_CONTENT_TYPE_NOSNIFF", True):
        headers["X-Content-Type-Options"] = "nosniff"
    referrer = getattr(settings, "SECURE_REFERRER_POLICY", None)
    if referrer:
        headers["Referrer-Policy"] = referrer if isinstance(referrer, str) else ",".join(referrer)
    coop = getattr(settings, "SECURE_CROSS_ORIGIN_OPENER_POLICY", None)
    if coop:
        headers["Cross-Origin-Opener-Policy"] = coop
    headers["X-Frame-Options"] = str(getattr(settings, "X_FRAME_OPTIONS", "DENY")).upper()
    hsts = hsts_header()
    if hsts:
        headers["Strict-Transport-Security"] = hsts
    return headers


class SecurityHeadersMiddleware:
    """The Content-Security-Policy (and, with ``XMPP_WEB_HTTPS``, HSTS) on every response that lacks it.

    First in ``MIDDLEWARE``, so that answers made by the middleware below it (the CSRF failure page, the
    SSL redirect) carry it too."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = policy_header()
        hsts = hsts_header()
        if hsts and "Strict-Transport-Security" not in response:
            response["Strict-Transport-Security"] = hsts
        return response


class SecurityHeadersASGI:
    """An ASGI application that adds :func:`security_headers` to each HTTP answer of ``app`` lacking them
    (the static files, which no Django middleware sees). Other scopes (WebSocket, XMPP) pass untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {bytes(name).lower() for name, _value in headers}
                for name, value in security_headers().items():
                    if name.lower().encode("latin-1") not in present:
                        headers.append((name.encode("latin-1"), value.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
