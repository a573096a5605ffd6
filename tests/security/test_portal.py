"""Catalogue row 22 (docs/security.md) over real HTTP to the running server: no page behind sign-in is
served through a path variant (``%2e%2e``, ``;``, ``//``, ``..;/``, percent-encoded letters ...) to a
visitor or to someone who has only the password; every POST without the CSRF token is refused, for a
signed-in account too; and the admin is not on the public listener: it has one of its own (XMPP_ADMIN_HTTP,
xmppauth/listeners.py), which serves the portal too.

The URL list comes from the URLconf (tests/web/conftest.py), so a new page is crawled without a new test.
"""

from __future__ import annotations

import http.client
import re
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

import pytest
from django.contrib import admin
from django.urls import reverse

from tests.integration.server import Server
from tests.integration.test_grants import manage
from tests.integration.test_mfa import secret_of, totp_code
from tests.web.conftest import PORTAL_URLS, PROTECTED, url

pytestmark = pytest.mark.integration


@dataclass
class Browser:
    """A cookie jar over http.client; paths are sent exactly as written (no normalisation)."""

    port: int
    cookies: dict[str, str] = field(default_factory=dict)

    def on(self, port: int) -> Browser:
        """The same browser on another port of the host (a browser's cookies are the host's, any port)."""
        return Browser(port, self.cookies)

    def request(
        self,
        method: str,
        path: str,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        for header, value in response.getheaders():
            if header.lower() == "set-cookie":
                name, _, rest = value.partition("=")
                self.cookies[name] = rest.split(";", 1)[0]
        conn.close()
        return response.status, response.getheader("Location") or "", data

    def csrf_token(self, path: str) -> str:
        status, _, page = self.request("GET", path)
        assert status == 200, (status, page[:200])
        match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert match, page[:500]
        return match.group(1).decode()


@dataclass
class Visitors:
    anonymous: Browser
    pending: Browser  # passed the password, not the second factor
    verified: Browser  # password and authenticator app
    operator: Browser  # a staff account, password and authenticator app, signed in on the admin listener
    public: int  # the public listener's port
    admin: int  # the admin listener's


def signed_in(browser: Browser, name: str = "pat") -> bool:
    status, _, page = browser.request("GET", "/")
    return status == 200 and f"Signed in as <strong>{name}@localhost</strong>".encode() in page


def sign_in(browser: Browser, password: str, name: str = "pat") -> int:
    token = browser.csrf_token("/signin/")
    status, location, _ = browser.request(
        "POST", "/signin/", {"username": name, "password": password, "csrfmiddlewaretoken": token}
    )
    assert status == 302, status
    assert location == "/signin/verify/", location
    return status


def verify(browser: Browser, secret: bytes) -> None:
    """The second step of a sign-in, with a code of the authenticator app."""
    if time.time() % 30 > 27:  # a code of a step that ends before it arrives would be refused
        time.sleep(30 - time.time() % 30 + 0.2)
    token = browser.csrf_token("/signin/verify/")
    status, location, _ = browser.request(
        "POST",
        "/signin/verify/",
        {"factor": "totp", "totp-code": totp_code(secret, time.time()), "csrfmiddlewaretoken": token},
    )
    assert (status, location) == (302, "/"), (status, location)


def totp_secret(server: Server, name: str) -> bytes:
    out = manage(server, "totp", "add", name)
    uri = re.search(r"otpauth://totp/\S+", out)
    assert uri, out
    return secret_of(uri.group(0))


@pytest.fixture(scope="module")
def visitors(server: Server) -> Visitors:
    assert server.admin_http is not None
    secret = totp_secret(server, "pat")
    pending = Browser(server.http)
    sign_in(pending, "pat-pw-1")
    verified = Browser(server.http)
    sign_in(verified, "pat-pw-1")
    verify(verified, secret)
    assert signed_in(verified)  # the positive control: this session sees the account
    manage(server, "adduser", "olga", "olga-pw-1", "--staff")  # an operator, for this module only
    operator_secret = totp_secret(server, "olga")
    operator = Browser(server.admin_http)
    sign_in(operator, "olga-pw-1", "olga")
    verify(operator, operator_secret)
    assert signed_in(operator, "olga")
    return Visitors(Browser(server.http), pending, verified, operator, server.http, server.admin_http)


def admin_urls() -> list[str]:
    paths = [reverse("admin:index")]
    for model in admin.site._registry:
        meta = model._meta
        paths.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
        paths.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[1]))
    return paths


PROTECTED_PATHS = sorted({url(name) for name in PROTECTED} | set(admin_urls()))
ADMIN_PREFIX = reverse("admin:index")  # /admin/


def listener(visitors: Visitors, path: str) -> int:
    """The port that serves ``path``: the admin listener for the admin's, else the public one."""
    return visitors.admin if path.startswith(ADMIN_PREFIX) else visitors.public


def variants(path: str) -> list[str]:
    """Spellings of ``path`` that a normalising proxy, servlet container or static handler might map
    onto it (or that might slip past a prefix check)."""
    segments = path.strip("/").split("/")
    first = segments[0]
    return [
        path,
        "/" + path,  # //account/...
        path.replace("/", "//", 2),
        path + ";x",
        f"/{first};x/" + "/".join(segments[1:]) + ("/" if len(segments) > 1 else ""),
        "/static/%2e%2e" + path,
        "/static/.." + path,
        "/static/..%2f" + path.lstrip("/"),
        "/%2e" + path,
        "/./" + path.lstrip("/"),
        path + "%2e/",
        path + "..;/",
        path + "%2e%2e/",
        "/" + "%" + f"{ord(first[0]):02x}" + path[2:],  # the first letter percent-encoded
        path.upper(),
        path + "%00",
        path.rstrip("/"),  # APPEND_SLASH redirects, then the page itself answers
        path + "?next=/",
        path + "#x",
    ]


def assert_not_served(browser: Browser, path: str, *, follow: bool = True) -> None:
    status, location, body = browser.request("GET", path)
    assert status < 500, (path, status, body[:300])
    assert not 200 <= status < 300, (path, status, body[:300])
    assert b"Signed in as" not in body
    if status == 302:
        assert location.startswith(("/signin/", "/admin/login/")), (path, location)
    elif status == 301 and follow:
        assert_not_served(browser, location, follow=False)
    else:
        assert status in (301, 400, 404, 405), (path, status)


@pytest.mark.parametrize("who", ["anonymous", "pending"])
@pytest.mark.parametrize(
    ("path", "on"),
    [(path, "public") for path in PROTECTED_PATHS]
    + [(path, "admin") for path in PROTECTED_PATHS if path.startswith(ADMIN_PREFIX)],
)
def test_no_page_behind_sign_in_is_served_through_any_spelling_of_its_path(
    visitors: Visitors, path: str, who: str, on: str
) -> None:
    """On the public listener, and the admin's pages on the admin listener too (where they are served)."""
    browser: Browser = getattr(visitors, who).on(getattr(visitors, on))
    for variant in variants(path):
        assert_not_served(browser, variant)


def post_paths() -> list[str]:
    return sorted({url(name) for name in PORTAL_URLS} | set(admin_urls()) | {reverse("admin:logout")})


@pytest.mark.parametrize("path", post_paths())
def test_every_post_without_the_csrf_token_is_refused(visitors: Visitors, path: str) -> None:
    """On the listener that serves each (the admin's pages on the admin listener)."""
    browser = visitors.verified.on(listener(visitors, path))
    status, _, body = browser.request("POST", path, {"name": "x", "action": "delete_selected"})
    assert status == 403, (path, status, body[:300])
    assert b"CSRF" in body or b"csrf" in body
    assert signed_in(visitors.verified)  # and the session is untouched by it


def test_a_post_with_the_csrf_token_is_accepted(visitors: Visitors) -> None:
    """The control of the test above: the same session's POST with its token gets through."""
    token = visitors.verified.csrf_token("/account/policy/")
    status, location, _ = visitors.verified.request(
        "POST", "/account/policy/", {"csrfmiddlewaretoken": token, "xmpp_password_login": "allowed"}
    )
    assert status in (200, 302), status
    assert not location.startswith("/signin/")


def test_the_admin_is_not_on_the_public_listener(visitors: Visitors) -> None:
    """Every admin path is 404 on the public listener, for a signed-in operator too, with the page of a path
    that does not exist (nothing tells that an admin exists elsewhere), and however it is spelt."""
    _, _, unknown = visitors.anonymous.request("GET", "/no-such-page/")
    operator = visitors.operator.on(visitors.public)
    assert signed_in(operator, "olga")  # the operator's session works on the public listener
    paths = ["/admin/", "/admin/login/", admin_urls()[1], reverse("admin:logout"), "/admin", "/%61dmin/"]
    for browser in (visitors.anonymous, operator):
        for path in paths:
            for method in ("GET", "POST"):
                status, _, body = browser.request(method, path)
                assert (status, body) == (404, unknown), (path, method, status, body[:200])
    # the script prefix a client may name (Daphne's header) is taken off before Django resolves the path
    status, _, _ = operator.request("GET", "/x/admin/", headers={"Daphne-Root-Path": "/x"})
    assert status == 404, status


def test_the_admin_listener_serves_the_admin_and_the_portal(visitors: Visitors) -> None:
    anonymous = visitors.anonymous.on(visitors.admin)
    # an anonymous visitor is sent to the portal's sign-in, as before
    assert anonymous.request("GET", "/admin/")[:2] == (302, "/admin/login/?next=/admin/")
    status, location, _ = anonymous.request("GET", "/admin/login/?next=/admin/")
    assert (status, location) == (302, "/signin/?next=%2Fadmin%2F"), (status, location)
    status, _, page = anonymous.request("GET", "/signin/")
    assert status == 200
    assert b'name="password"' in page
    # the same spellings the public listener refuses are the admin here
    assert anonymous.request("GET", "/%61dmin/")[:2] == (302, "/admin/login/?next=/admin/")
    assert anonymous.request("GET", "/x/admin/", headers={"Daphne-Root-Path": "/x"})[0] == 302
    # the operator (signed in here) sees the admin and the portal
    status, _, page = visitors.operator.request("GET", "/admin/")
    assert status == 200, (status, page[:300])
    assert b"Site administration" in page
    status, _, page = visitors.operator.request("GET", admin_urls()[1])
    assert status == 200, (status, page[:300])
    assert signed_in(visitors.operator, "olga")
    # a portal account that is no operator is let into the portal here, and not into the admin
    verified = visitors.verified.on(visitors.admin)
    assert signed_in(verified)
    status, location, _ = verified.request("GET", "/admin/")
    assert (status, location) == (302, "/admin/login/?next=/admin/"), (status, location)
