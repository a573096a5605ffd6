"""Security headers (issue 11, item 5; docs/deploy.md): every answer of the site carries a
Content-Security-Policy without 'unsafe-inline', X-Frame-Options DENY, nosniff and a Referrer-Policy; no page
of the portal carries inline script or style, which that policy would refuse; and ``manage.py check --deploy``
is clean under the production settings (``XMPP_WEB_HTTPS``).

Every URL comes from the URLconf (as in test_guard.py), so a new page is covered without a new test; every
template under templates/ must be rendered by :func:`test_no_page_of_the_portal_has_inline_code`, so a new
one is scanned too."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import lxml.html
import pytest
from django.contrib import admin
from django.test import Client
from django.test.utils import override_settings
from django.urls import reverse

from accounts import recovery
from accounts.models import User
from sessions_acl import app_passwords, records
from sessions_acl.login import Authorization, authorize
from tests.integration.server import ROOT, server_env
from tests.web.asgi_call import call, http_scope
from tests.web.conftest import PORTAL_URLS, app_of, key_of, password_step, signed_in_as, url
from xmppauth.security_headers import SecurityHeadersASGI, policy_header

TEMPLATES = ROOT / "templates"
#: The policy this site sends (settings.XMPP_WEB_CSP).
POLICY = policy_header()
EXPECTED = {
    "Content-Security-Policy": POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def missing_headers(response: Any) -> dict[str, str | None]:
    """The expected headers the answer lacks or sends otherwise: {name: what it sent}."""
    return {name: response.get(name) for name, value in EXPECTED.items() if response.get(name) != value}


def inline_code(html: str) -> list[str]:
    """What a strict Content-Security-Policy refuses in the page: inline <script> and <style>, style
    attributes, on* event handlers, javascript: URLs."""
    found = []
    for element in lxml.html.fromstring(html).iter():
        if not isinstance(element.tag, str):
            continue  # comments, processing instructions
        tag = element.tag.rsplit("}", 1)[-1].lower()
        if tag == "script" and not element.get("src"):
            found.append(f"inline <script>: {(element.text or '').strip()[:80]!r}")
        if tag == "style":
            found.append(f"<style>: {(element.text or '').strip()[:80]!r}")
        for raw_name, raw_value in element.attrib.items():
            name, value = str(raw_name).lower(), str(raw_value)
            script_url = name in {"href", "src", "action", "formaction"} and value.strip().lower().startswith(
                "javascript:"
            )
            if name == "style" or name.startswith("on") or script_url:
                found.append(f"<{tag} {name}={value[:60]!r}>")
    return found


# -- the policy -----------------------------------------------------------------------------------


def test_the_policy_allows_nothing_inline_and_nothing_from_elsewhere() -> None:
    directives = {part.split()[0]: part.split()[1:] for part in POLICY.split("; ")}
    assert "'unsafe-inline'" not in POLICY
    assert "'unsafe-eval'" not in POLICY
    assert "*" not in POLICY.split()
    assert directives["default-src"] == ["'self'"]
    assert directives["script-src"] == ["'self'"]
    assert directives["style-src"] == ["'self'"]
    assert directives["connect-src"] == ["'self'"]  # the pages' own WebSockets: tests/browser/test_csp.py
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["base-uri"] == ["'none'"]
    assert directives["object-src"] == ["'none'"]
    assert directives["form-action"] == ["'self'"]


def test_the_inline_code_scanner_finds_what_the_policy_refuses() -> None:
    page = """<html><head><style>p{}</style><script>alert(1)</script><script src="/x.js"></script></head>
      <body><p style="color:red" onclick="go()">x</p><a href="javascript:go()">y</a>
      <svg width="5" fill="#fff"><path d="M0 0"/></svg></body></html>"""
    assert len(inline_code(page)) == 5
    assert inline_code('<p class="a"><script src="/a.js"></script></p>') == []


# -- every URL of the portal ----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize("name", sorted(PORTAL_URLS))
def test_every_portal_url_answers_a_visitor_with_the_headers(
    client: Client, db: None, name: str, method: str
) -> None:
    response = getattr(client, method)(url(name))
    assert not missing_headers(response), (name, response.status_code)


@pytest.fixture
def world(client: Client, alice: User) -> dict[str, Any]:
    """alice with every kind of factor, an app password, a client online and past sessions, signed in
    with her authenticator app (which also counts as a recent re-authentication)."""
    auth = authorize(
        "alice",
        credential_id="",
        mechanism="SCRAM-SHA-256",
        user_agent_id="5b0f3c2e-1111-4c2e-9d3b-5f1e2a7c9b10",
        software="Conversations",
        device="Pixel 8",
    )
    assert isinstance(auth, Authorization), auth
    fields = {"transport": "tcp-tls", "address": "192.0.2.10", "mechanism": "SCRAM-SHA-256", "node": "n1"}
    records.open_session(auth, jid="alice@localhost/phone", **fields)
    ended = records.open_session(auth, jid="alice@localhost/old", **fields)
    records.close_session(ended, "the client closed the stream")
    bot = app_passwords.create_app_password(alice, "backup bot", ["messages.send"], actor="alice")
    device = app_of(alice)
    recovery.generate(alice)
    _key, credential = key_of(alice)
    signed_in_as(client, alice, device=device)
    return {"key": credential.pk, "app-password": bot.app_password.pk}


def test_every_portal_url_answers_a_signed_in_account_with_the_headers(
    client: Client, world: dict[str, Any]
) -> None:
    for name in sorted(PORTAL_URLS):
        if name == "accounts:sign-out":
            continue  # would end the session the other pages need
        response = client.get(url(name))
        assert not missing_headers(response), (name, response.status_code, missing_headers(response))


def test_no_page_of_the_portal_has_inline_code(client: Client, world: dict[str, Any], settings: Any) -> None:
    """Every page a person reaches, its forms sent, scanned; every template of templates/ rendered."""
    settings.XMPP_WEB_SIGNUP = True  # the sign-up page, off by default, is a page too
    pages: dict[str, Any] = {}
    rendered: set[str] = set()

    def visit(label: str, response: Any) -> None:
        assert response.status_code in (200, 302, 400, 405), (label, response.status_code)  # 405: POST only
        assert not missing_headers(response), label
        rendered.update(t.name for t in response.templates if t.name)
        if response.status_code == 200 and response["Content-Type"].startswith("text/html"):
            pages[label] = response

    for name in sorted(PORTAL_URLS):
        if name in {"accounts:sign-out", "accounts:signin-cancel"}:
            continue
        kwargs = {}
        if name in {"accounts:key-rename", "accounts:key-remove"}:
            kwargs = {"pk": world["key"]}
        elif name == "accounts:app-password-revoke":
            kwargs = {"pk": world["app-password"]}
        visit(name, client.get(reverse(name, kwargs=kwargs) if kwargs else url(name)))
    visit("recovery codes", client.post(reverse("accounts:recovery-generate")))
    visit("totp add", client.post(reverse("accounts:totp-add"), {"name": "tablet"}, follow=True))
    form = client.get(reverse("accounts:app-password-create")).content.decode()
    once = lxml.html.fromstring(form).xpath("//input[@name='once']/@value")[0]
    created = {"label": "bot", "role": "bot", "once": once}
    visit("app password created", client.post(reverse("accounts:app-password-create"), created))
    visit("password form errors", client.post(reverse("accounts:password"), {"current": "wrong"}))
    visit("security log filtered", client.get(reverse("security-log"), {"kind": "nonsense"}))

    visitor = Client()
    visit("sign in", visitor.get(reverse("accounts:sign-in")))
    visit("sign in refused", password_step(visitor, password="wrong"))
    password_step(visitor)
    visit("second step", visitor.get(reverse("accounts:signin-verify")))
    newcomer = Client()
    visit("sign up", newcomer.get(reverse("accounts:sign-up")))
    visit("sign up refused", newcomer.post(reverse("accounts:sign-up"), {"username": "alice"}))
    strict = Client(enforce_csrf_checks=True)
    csrf = strict.post(reverse("accounts:sign-in"), {"username": "alice", "password": "wonderland"})
    assert csrf.status_code == 403
    assert not missing_headers(csrf)
    pages["CSRF failure"] = csrf
    rendered.add("403_csrf.html")

    problems = {
        label: found for label, response in pages.items() if (found := inline_code(response.content.decode()))
    }
    assert not problems, problems
    templates = {str(path.relative_to(TEMPLATES)) for path in TEMPLATES.rglob("*.html")}
    assert templates - rendered == set(), "templates no test here renders (add them to this test)"


def test_the_csrf_failure_page_is_the_portals(db: None) -> None:
    strict = Client(enforce_csrf_checks=True)
    response = strict.post(reverse("accounts:sign-in"), {"username": "alice", "password": "x"})
    assert response.status_code == 403
    assert b"The form could not be sent" in response.content
    assert inline_code(response.content.decode()) == []


def test_a_page_not_found_has_the_headers(client: Client, db: None) -> None:
    response = client.get("/no/such/page/")
    assert response.status_code == 404
    assert not missing_headers(response)


def test_a_view_may_send_its_own_policy(rf: Any) -> None:
    from django.http import HttpResponse

    from xmppauth.security_headers import SecurityHeadersMiddleware

    own = HttpResponse()
    own["Content-Security-Policy"] = "default-src 'none'"
    middleware = SecurityHeadersMiddleware(lambda request: own)
    assert middleware(rf.get("/"))["Content-Security-Policy"] == "default-src 'none'"
    plain = SecurityHeadersMiddleware(lambda request: HttpResponse())(rf.get("/"))
    assert plain["Content-Security-Policy"] == POLICY


# -- the admin ------------------------------------------------------------------------------------


def test_the_admin_has_the_headers_and_no_inline_code(admin_client: Client, world: dict[str, Any]) -> None:
    """Django 5.2's admin uses external scripts only: the portal's policy holds there too."""
    pages = [reverse("admin:index"), reverse("admin:password_change")]
    for model in admin.site._registry:
        changelist = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        pages += [changelist, f"{changelist}?q=alice"]
        first = model._default_manager.values_list("pk", flat=True).first()
        if first is not None:
            pages.append(
                reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[first])
            )
    problems = {}
    for page in pages:
        response = admin_client.get(page)
        assert response.status_code == 200, page
        assert not missing_headers(response), page
        if found := inline_code(response.content.decode()):
            problems[page] = found
    assert not problems, problems
    anonymous = Client().get(reverse("admin:index"))
    assert anonymous.status_code == 302
    assert not missing_headers(anonymous)


# -- static files ---------------------------------------------------------------------------------


def asgi_get(app: Any, path: str) -> tuple[int, dict[str, str], bytes]:
    """One GET through an ASGI application: status, headers, body."""
    return call(app, http_scope(path))


STATIC_PAGES = [
    "/static/xmppauth/webclient.html",
    "/static/xmppauth/webclient.js",
    "/static/accounts/portal.css",
]


@pytest.mark.parametrize("path", STATIC_PAGES)
def test_static_files_get_the_headers_through_the_asgi_wrapper(db: None, path: str) -> None:
    from xmppauth.asgi import StaticFiles, django_asgi_app

    status, headers, body = asgi_get(SecurityHeadersASGI(StaticFiles(django_asgi_app)), path)
    assert status == 200
    assert {name: headers.get(name.lower()) for name in EXPECTED} == EXPECTED
    if path.endswith(".html"):
        assert inline_code(body.decode()) == []


@pytest.mark.parametrize("path", STATIC_PAGES)
def test_the_sites_application_serves_static_files_with_the_headers(db: None, path: str) -> None:
    from xmppauth.asgi import application

    status, headers, _body = asgi_get(application, path)
    assert status == 200
    assert {name: headers.get(name.lower()) for name in EXPECTED} == EXPECTED


# -- HTTPS and check --deploy -------------------------------------------------------------------------


@override_settings(XMPP_WEB_HTTPS=True, SECURE_HSTS_SECONDS=31536000, SECURE_HSTS_INCLUDE_SUBDOMAINS=True)
def test_behind_a_tls_proxy_hsts_is_sent_though_the_request_looks_plain(client: Client, db: None) -> None:
    response = client.get(reverse("accounts:sign-in"))
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


def test_without_https_no_hsts_is_sent(client: Client, db: None) -> None:
    assert "Strict-Transport-Security" not in client.get(reverse("accounts:sign-in"))


def manage(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=server_env(tmp_path, **env),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


SETTINGS_DUMP = (
    "import json; from django.conf import settings as s; print(json.dumps({k: getattr(s, k, None) for k in "
    "['SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'SECURE_HSTS_SECONDS', 'SECURE_HSTS_INCLUDE_SUBDOMAINS', "
    "'SECURE_SSL_REDIRECT', 'SECURE_PROXY_SSL_HEADER', 'CSRF_TRUSTED_ORIGINS', 'SILENCED_SYSTEM_CHECKS', "
    "'DEBUG', 'X_FRAME_OPTIONS']}))"
)


def test_check_deploy_is_clean_with_the_production_switch(tmp_path: Path) -> None:
    done = manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING", XMPP_WEB_HTTPS="true")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout
    shown = json.loads(manage(tmp_path, "shell", "-v0", "-c", SETTINGS_DUMP, XMPP_WEB_HTTPS="true").stdout)
    assert shown["SESSION_COOKIE_SECURE"] is shown["CSRF_COOKIE_SECURE"] is True
    assert shown["SECURE_HSTS_SECONDS"] == 365 * 24 * 3600
    assert shown["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert shown["SECURE_SSL_REDIRECT"] is False  # plain HTTP behind the proxy: it redirects, not us
    assert shown["SECURE_PROXY_SSL_HEADER"] is None
    assert set(shown["SILENCED_SYSTEM_CHECKS"]) == {"security.W008", "security.W021"}
    assert "https://localhost" in shown["CSRF_TRUSTED_ORIGINS"]
    assert shown["DEBUG"] is False
    assert shown["X_FRAME_OPTIONS"] == "DENY"


def test_check_deploy_is_clean_with_the_proxy_header(tmp_path: Path) -> None:
    env = {"XMPP_WEB_HTTPS": "true", "XMPP_WEB_PROXY_SSL_HEADER": "X-Forwarded-Proto"}
    done = manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING", **env)
    assert done.returncode == 0, done.stdout + done.stderr
    shown = json.loads(manage(tmp_path, "shell", "-v0", "-c", SETTINGS_DUMP, **env).stdout)
    assert shown["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert shown["SECURE_SSL_REDIRECT"] is True
    assert shown["SILENCED_SYSTEM_CHECKS"] == ["security.W021"]


def test_check_deploy_warns_without_the_production_switch(tmp_path: Path) -> None:
    done = manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING")
    assert done.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in done.stderr, done.stderr
    debug = manage(
        tmp_path, "check", "--deploy", "--fail-level", "WARNING", XMPP_WEB_HTTPS="true", DJANGO_DEBUG="true"
    )
    assert debug.returncode != 0
    assert "security.W018" in debug.stderr
