"""The admin on a listener of its own (XMPP_ADMIN_HTTP; xmppauth/listeners.py; docs/security.md row 22): the
HTTP application's gate, driven directly with ASGI scopes (no server, no sockets).

A scope's ``server`` is the local address the connection reached, as Daphne sets it; the gate serves the
admin's paths only when that is the admin listener's. The same over real sockets, with ``manage.py serve``:
tests/security/test_portal.py and tests/integration/test_admin_listener.py.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib import admin
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from django.urls import Resolver404, resolve, reverse

from tests.web.asgi_call import call, http_scope
from tests.web.conftest import PORTAL_URLS, url
from xmppauth import listeners
from xmppauth.listeners import NOT_FOUND_PAGE, AdminGate, admin_http_setting, serve_admin_on
from xmppauth.security_headers import security_headers

PUBLIC = ("127.0.0.1", 8000)
ADMIN = ("127.0.0.1", 8001)


def admin_paths() -> list[str]:
    """The admin's index, login, logout and each model's list, change and history page."""
    paths = [
        reverse(name) for name in ("admin:index", "admin:login", "admin:logout", "admin:password_change")
    ]
    for model in admin.site._registry:
        meta = model._meta
        paths.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
        paths.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[1]))
        paths.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_history", args=[1]))
    return paths


ADMIN_PATHS = admin_paths()
PORTAL_PATHS = sorted({url(name) for name in PORTAL_URLS} | {"/", "/healthz", "/static/admin/css/base.css"})


def scope(path: str, server: tuple[str, int] | None = PUBLIC, **extra: Any) -> dict[str, Any]:
    return http_scope(path, server, **extra)


async def inner(scope: Any, receive: Any, send: Any) -> None:
    """What the gate passes requests to: answers 200 "passed"."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"passed"})


def status_of(app: Any, request: dict[str, Any]) -> int:
    return call(app, request)[0]


# -- the setting ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("127.0.0.1:8001", ("127.0.0.1", 8001)),
        (" 0.0.0.0:9000 ", ("0.0.0.0", 9000)),
        ("[::1]:8001", ("::1", 8001)),
        ("8001", ("127.0.0.1", 8001)),
        ("admin.internal:8001", ("admin.internal", 8001)),
        ("public", "public"),
        ("Public", "public"),
        ("off", "off"),
        ("OFF", "off"),
    ],
)
def test_the_setting_takes_an_address_public_or_off(value: str, parsed: object) -> None:
    assert admin_http_setting(value) == parsed


@pytest.mark.parametrize("value", ["", "on", "yes", "admin", "127.0.0.1", "127.0.0.1:", "::1:8001", ":8001",
                                   "127.0.0.1:65536", "127.0.0.1:http", "[::1]8001", "private"])  # fmt: skip
def test_any_other_value_is_an_error_naming_the_setting_and_the_forms(value: str) -> None:
    with pytest.raises(ImproperlyConfigured) as raised:
        admin_http_setting(value)
    message = str(raised.value)
    assert message.startswith(f"XMPP_ADMIN_HTTP is {value!r}: expected HOST:PORT"), message
    assert "'public'" in message
    assert "'off'" in message


def test_a_gate_will_not_start_with_a_bad_setting(settings: Any) -> None:
    settings.XMPP_ADMIN_HTTP = "everywhere"
    with pytest.raises(ImproperlyConfigured, match="XMPP_ADMIN_HTTP is 'everywhere'"):
        AdminGate(inner)


# -- the gate ------------------------------------------------------------------------------------------


def test_the_admin_is_404_on_every_listener_but_its_own() -> None:
    gate = AdminGate(inner, ADMIN)
    for path in ADMIN_PATHS:
        assert status_of(gate, scope(path, PUBLIC)) == 404, path
        assert status_of(gate, scope(path, ("127.0.0.1", 8002))) == 404, path
        assert status_of(gate, scope(path, ("192.0.2.7", 8001))) == 404, path  # its port, another address
        assert status_of(gate, scope(path, None)) == 404, path  # a listener with no address (a Unix socket)
        assert status_of(gate, scope(path, ADMIN)) == 200, path
    status, headers, body = call(gate, scope("/admin/", PUBLIC))
    assert (status, body) == (404, NOT_FOUND_PAGE)
    assert headers["content-type"] == "text/html; charset=utf-8"


def test_everything_else_passes_on_every_listener() -> None:
    gate = AdminGate(inner, ADMIN)
    for path in [*PORTAL_PATHS, "/administrator/", "/adminx", "/account/admin/", "/static/admin/js/core.js"]:
        for server in (PUBLIC, ADMIN, None):
            assert status_of(gate, scope(path, server)) == 200, (path, server)
    websocket = {"type": "websocket", "path": "/admin/", "server": PUBLIC}
    passed: list[object] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        passed.append(scope)

    async_to_sync(AdminGate(app, ADMIN))(websocket, None, None)
    assert passed == [websocket]


def test_the_admin_without_its_slash_is_404_too() -> None:
    """Django's APPEND_SLASH would redirect /admin to /admin/ (which is 404 there): no redirect at all."""
    gate = AdminGate(inner, ADMIN)
    assert status_of(gate, scope("/admin", PUBLIC)) == 404
    assert status_of(gate, scope("/admin", ADMIN)) == 200


def test_a_script_prefix_named_by_the_client_is_taken_off_as_django_does() -> None:
    """Daphne takes the scope's root_path from a ``Daphne-Root-Path`` request header, and Django takes it off
    the path before resolving: /x/admin/ with root_path /x is the admin."""
    gate = AdminGate(inner, ADMIN)
    assert status_of(gate, scope("/x/admin/", PUBLIC, root_path="/x")) == 404
    assert status_of(gate, scope("/x/admin/", ADMIN, root_path="/x")) == 200
    with override_settings(FORCE_SCRIPT_NAME="/site"):
        assert status_of(gate, scope("/site/admin/login/", PUBLIC)) == 404
        assert status_of(gate, scope("/site/account/", PUBLIC)) == 200


def test_a_listener_on_every_address_is_known_by_its_port() -> None:
    for wildcard in ("0.0.0.0", "::"):
        gate = AdminGate(inner, (wildcard, 8001))
        for host in ("127.0.0.1", "192.0.2.7", "::1", "::ffff:192.0.2.7"):
            assert status_of(gate, scope("/admin/", (host, 8001))) == 200, (wildcard, host)
            assert status_of(gate, scope("/admin/", (host, 8000))) == 404, (wildcard, host)


def test_addresses_are_compared_normalised_and_host_names_resolved() -> None:
    gate = AdminGate(inner, ("0:0:0:0:0:0:0:1", 8001))
    assert status_of(gate, scope("/admin/", ("::1", 8001))) == 200
    assert status_of(gate, scope("/admin/", ("127.0.0.1", 8001))) == 404
    gate = AdminGate(inner, ("localhost", 8001))
    assert status_of(gate, scope("/admin/", ("127.0.0.1", 8001))) == 200
    assert status_of(gate, scope("/admin/", ("192.0.2.7", 8001))) == 404
    gate = AdminGate(inner, ("no-such-host.invalid", 8001))  # serves the admin nowhere
    assert status_of(gate, scope("/admin/", ("127.0.0.1", 8001))) == 404


def test_public_serves_the_admin_everywhere() -> None:
    gate = AdminGate(inner, "public")
    for path in ADMIN_PATHS:
        for server in (PUBLIC, ADMIN, None):
            assert status_of(gate, scope(path, server)) == 200, (path, server)


def test_off_serves_the_admin_nowhere() -> None:
    gate = AdminGate(inner, "off")
    for path in ADMIN_PATHS:
        for server in (PUBLIC, ADMIN, ("0.0.0.0", 8001), None):
            assert status_of(gate, scope(path, server)) == 404, (path, server)
    for path in PORTAL_PATHS:
        assert status_of(gate, scope(path, PUBLIC)) == 200, path


def test_serve_tells_every_gate_where_the_admin_listener_is() -> None:
    """``serve`` binds port 0 or a host name and says the address it got."""
    gate = AdminGate(inner, ("127.0.0.1", 0))
    assert status_of(gate, scope("/admin/", ("127.0.0.1", 41234))) == 404
    serve_admin_on(("127.0.0.1", 41234))
    assert status_of(gate, scope("/admin/", ("127.0.0.1", 41234))) == 200
    assert status_of(gate, scope("/admin/", PUBLIC)) == 404
    serve_admin_on("off")
    assert status_of(gate, scope("/admin/", ("127.0.0.1", 41234))) == 404


# -- what reaches the admin's views --------------------------------------------------------------------


def reaches_the_admin(path: str) -> bool:
    """Whether Django's resolver gives ``path`` (the path Django resolves) to a view of the admin site."""
    try:
        match = resolve(path)
    except Resolver404:
        return False
    return "admin" in match.namespaces


BEFORE = ["", "/", "//", "/.", "/./", "/%2e/", "/Admin", "/ADMIN", "/admin;x", "/x/..", "/static/.."]
SPELLINGS = ["admin", "Admin", "ADMIN", "admin;", "admin%2f", "admin%00", "adm%69n", "admin.", "%61dmin"]
SLASHES = ["/", "//", ";/", "%2f", "/./", "/../", ""]
TAILS = [
    "",
    "login/",
    "logout/",
    ADMIN_PATHS[-3].removeprefix("/admin/"),
    ADMIN_PATHS[-2].removeprefix("/admin/"),
]


def test_every_spelling_that_reaches_the_admin_is_refused_on_the_public_listener() -> None:
    """The gate looks at the path as Django resolves it: whatever Django would give to an admin view, it
    refuses (what it lets through, Django gives to no admin view). Percent-encoded letters arrive decoded
    (Daphne unquotes the path), so the encoded spellings here are what a client sends encoded twice."""
    gate = AdminGate(inner, ADMIN)
    reached = 0
    for before, spelling, slash, tail in itertools.product(BEFORE, SPELLINGS, SLASHES, TAILS):
        path = before.rstrip("/") + "/" + spelling + slash + tail
        if reaches_the_admin(path):
            reached += 1
            assert status_of(gate, scope(path, PUBLIC)) == 404, path
    assert reached >= len(TAILS)  # the oracle found the plain spellings at least


def test_every_admin_url_reaches_the_admin_and_no_portal_url_does() -> None:
    """The control of the test above: its oracle tells the admin's paths from the portal's."""
    assert all(reaches_the_admin(path) for path in ADMIN_PATHS)
    assert not any(reaches_the_admin(path) for path in PORTAL_PATHS if not path.startswith("/static/"))


# -- the site's application ----------------------------------------------------------------------------


@pytest.fixture
def admin_on_8001() -> Iterator[None]:
    """The site's gate (built at import from the settings) serves the admin on 127.0.0.1:8001 for the test."""
    gates = list(listeners._gates)
    before = [gate.where for gate in gates]
    serve_admin_on(ADMIN)
    yield
    for gate, where in zip(gates, before, strict=True):
        gate.serve_on(where)


def test_the_sites_application_answers_the_admin_on_the_public_listener_as_an_unknown_page(
    db: None, admin_on_8001: None
) -> None:
    """The same status and page as a path that does not exist, with the security headers of every answer."""
    from xmppauth.asgi import application

    status, headers, body = call(application, scope("/admin/", PUBLIC))
    unknown_status, _unknown_headers, unknown_body = call(application, scope("/no-such-page/", PUBLIC))
    assert (status, body) == (unknown_status, unknown_body) == (404, NOT_FOUND_PAGE)
    for name, value in security_headers().items():
        assert headers.get(name.lower()) == value, name
    status, headers, _ = call(application, scope("/admin/", ADMIN))
    assert status == 302
    assert headers["location"] == "/admin/login/?next=/admin/"
    status, _, _ = call(application, scope("/signin/", PUBLIC))
    assert status == 200


def test_the_test_client_sees_the_admin_as_before(admin_client: Any) -> None:
    """tests/web drives Django without the listeners: the gate is not in its way."""
    response = admin_client.get("/admin/")
    assert response.status_code == 200
    assert b"Site administration" in response.content
