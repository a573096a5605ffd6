"""The listeners' addresses (``manage.py serve``'s options, ``XMPP_ADMIN_HTTP``) and the gate that keeps the
admin site off the public HTTP listener (docs/security.md, row 22).

``XMPP_ADMIN_HTTP`` (or ``serve --admin-http``) says where the Django admin is served:

- ``HOST:PORT`` (default ``127.0.0.1:8001``): on a listener of its own, for operators, which serves everything
  the public listener does plus the admin; every other listener answers the admin's paths with 404;
- ``public``: on the public listener too (the old behaviour, for an operator who restricts ``/admin/`` at a
  reverse proxy);
- ``off``: nowhere over HTTP.

:class:`AdminGate` wraps the site's HTTP application (xmppauth/asgi.py). It knows the admin listener by the
ASGI scope's ``server`` (the local address the connection reached): ``serve`` tells it the address it bound
(:func:`serve_admin_on`), port 0 and host names resolved; run under another ASGI server it takes the setting
as written. Per request it costs a prefix test of the path (the admin's prefix from the URLconf, on the path
Django resolves: the script prefix a client may send in ``Daphne-Root-Path`` taken off first, as Django does),
and a comparison of the scope's ``server`` only for an admin path. Every other spelling of the prefix
(``/Admin/``, ``//admin/``, ``/admin;x/``) resolves to no admin view in Django
(tests/web/test_admin_listener.py checks that with the resolver); percent-encoded letters reach the gate
decoded (Daphne unquotes the path). The Django test client does not go through it: tests/web sees the admin
as before.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import weakref
from typing import Any, Literal

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.asgi import get_script_prefix as asgi_script_prefix
from django.urls import NoReverseMatch, get_script_prefix, reverse
from django.views.defaults import ERROR_PAGE_TEMPLATE

from xmppauth.security_headers import ASGIApp, Receive, Scope, Send

Endpoint = tuple[str, int]
#: Where the admin is served: its own listener, the public one as well, or nowhere over HTTP.
AdminHTTP = Endpoint | Literal["public", "off"]

ADMIN_HTTP_FORMS = (
    "HOST:PORT (a listener of its own, e.g. 127.0.0.1:8001 or [::1]:8001), "
    "'public' (on the public HTTP listener) or 'off' (no admin over HTTP)"
)


def parse_endpoint(value: str) -> Endpoint | None:
    """``HOST:PORT``, ``[IPV6]:PORT``, ``PORT`` (on 127.0.0.1) or ``off``."""
    text = value.strip()
    if text.lower() == "off":
        return None
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise argparse.ArgumentTypeError(f"{value!r}: expected [IPV6]:PORT, e.g. [::1]:5222")
    elif text.isdigit():
        host, port = "127.0.0.1", text
    else:
        host, sep, port = text.rpartition(":")
        if not sep or not host:
            raise argparse.ArgumentTypeError(f"{value!r}: expected HOST:PORT, e.g. 127.0.0.1:5222, or 'off'")
        if ":" in host:
            raise argparse.ArgumentTypeError(f"{value!r}: put IPv6 addresses in brackets, e.g. [::1]:5222")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r}: the port must be a number from 0 to 65535")
    return host, int(port)


def format_endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_admin_http(value: str) -> AdminHTTP:
    """``HOST:PORT`` (as :func:`parse_endpoint`), ``public`` or ``off``; ``serve --admin-http``'s type."""
    text = value.strip().lower()
    if text in ("public", "off"):
        return "public" if text == "public" else "off"
    try:
        endpoint = parse_endpoint(value)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{exc}; expected {ADMIN_HTTP_FORMS}") from None
    assert endpoint is not None  # "off" is handled above
    return endpoint


def admin_http_setting(value: object = None) -> AdminHTTP:
    """``settings.XMPP_ADMIN_HTTP`` (or ``value``), parsed; ImproperlyConfigured naming the setting and the
    accepted forms when it is none of them."""
    raw = settings.XMPP_ADMIN_HTTP if value is None else value
    if not isinstance(raw, str):
        raise ImproperlyConfigured(f"XMPP_ADMIN_HTTP is {raw!r}: expected {ADMIN_HTTP_FORMS}")
    try:
        return parse_admin_http(raw)
    except argparse.ArgumentTypeError:
        raise ImproperlyConfigured(f"XMPP_ADMIN_HTTP is {raw!r}: expected {ADMIN_HTTP_FORMS}") from None


def admin_prefix() -> str | None:
    """Where the URLconf mounts the admin site, from the site's root (``/admin/``); None without one."""
    try:
        index = reverse("admin:index")
    except NoReverseMatch:
        return None
    return "/" + index.removeprefix(get_script_prefix()).lstrip("/")


# a listener on every address of the machine: its connections' local address is one of them
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - compared with, never bound


def _addresses(host: str) -> frozenset[str]:
    """The addresses a listener on ``host`` has (a scope's ``server`` names one of them): the address
    itself, normalised; a host name's addresses; nothing for a name that does not resolve."""
    try:
        return frozenset({str(ipaddress.ip_address(host))})
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return frozenset()
    return frozenset(str(ipaddress.ip_address(str(info[4][0]).partition("%")[0])) for info in found)


NOT_FOUND_DETAILS = "The requested resource was not found on this server."
#: Django's answer to a path it does not know (django.views.defaults.page_not_found without a 404.html)
NOT_FOUND_PAGE = (ERROR_PAGE_TEMPLATE % {"title": "Not Found", "details": NOT_FOUND_DETAILS}).encode()

_gates: weakref.WeakSet[AdminGate] = weakref.WeakSet()


class AdminGate:
    """Answers 404 to an HTTP request for the admin's paths that did not reach the admin listener (module
    docstring); passes everything else to ``app``. The answer is the page Django gives a path it does not
    know (without ``DJANGO_DEBUG``); the security headers are added by the wrapper around this one."""

    def __init__(self, app: ASGIApp, where: AdminHTTP | None = None) -> None:
        self.app = app
        self.prefix = admin_prefix()
        self.bare = self.prefix.rstrip("/") if self.prefix else None  # APPEND_SLASH would redirect it
        self.serve_on(admin_http_setting() if where is None else where)
        _gates.add(self)

    def serve_on(self, where: AdminHTTP) -> None:
        """Serve the admin ``where`` from now on (an endpoint: the listener with that local address)."""
        self.where = where
        self.everywhere = where == "public"
        self.port: int | None = None
        self.any_host = False
        self.hosts: frozenset[str] = frozenset()
        if isinstance(where, tuple):
            host, self.port = where
            self.any_host = host in WILDCARD_HOSTS
            self.hosts = frozenset() if self.any_host else _addresses(host)

    def refuses(self, scope: Scope) -> bool:
        """Whether this HTTP request is for the admin and did not reach a listener that serves it."""
        if self.everywhere or self.prefix is None:
            return False
        path: str = scope["path"]
        script = asgi_script_prefix(scope)  # what Django takes off before it resolves the path
        if script:
            path = path.removeprefix(script)
        if not (path.startswith(self.prefix) or path == self.bare):
            return False
        return not self.on_admin_listener(scope.get("server"))

    def on_admin_listener(self, server: Any) -> bool:
        if self.port is None or not server:
            return False
        host, port = server[0], server[1]
        return bool(port == self.port and (self.any_host or host in self.hosts))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.refuses(scope):
            await send(
                {
                    "type": "http.response.start",
                    "status": 404,
                    "headers": [
                        (b"content-type", b"text/html; charset=utf-8"),
                        (b"content-length", str(len(NOT_FOUND_PAGE)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": NOT_FOUND_PAGE})
            return
        await self.app(scope, receive, send)


def serve_admin_on(where: AdminHTTP) -> None:
    """Every gate of this process serves the admin ``where`` from now on: ``serve`` says so with the address
    its admin listener bound (the port it got for port 0, the address of a host name), or its
    ``--admin-http``."""
    for gate in list(_gates):
        gate.serve_on(where)
