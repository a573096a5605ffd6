"""Django settings, read from the environment (every variable is listed in README.md)."""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

import dj_database_url
import django_stubs_ext

# Lets annotations such as UserAdmin[User] evaluate at run time (django-stubs).
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"{name}={raw!r}: expected true or false")


def _env_int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected a whole number") from None
    if value < minimum:
        raise ValueError(f"{name}={value}: must be at least {minimum}")
    return value


def _env_list(name: str, default: str) -> list[str]:
    return [part.strip() for part in os.environ.get(name, default).split(",") if part.strip()]


DATA_DIR = Path(os.environ.get("XMPP_DATA_DIR", BASE_DIR / "var")).resolve()


def _secret_key() -> str:
    """DJANGO_SECRET_KEY, else a key generated once and kept in the data directory.

    The key must survive restarts: it seeds the fake SCRAM salts given to unknown usernames, which
    must stay the same or the change would reveal which accounts exist.
    """
    configured = os.environ.get("DJANGO_SECRET_KEY")
    if configured:
        return configured
    path = DATA_DIR / "secret_key"
    if not path.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = _env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = _env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")

INSTALLED_APPS = [
    "daphne",
    "xmppauth.admin_site.SecondFactorAdminConfig",  # django.contrib.admin, behind the portal's sign-in
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_otp",  # the Device contract and throttling only; our TOTP device is accounts.TotpDevice
    "xmppauth",
    "accounts",
    "sessions_acl",
]

MIDDLEWARE = [
    "xmppauth.security_headers.SecurityHeadersMiddleware",  # Content-Security-Policy (docs/deploy.md)
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",  # request.user.is_verified(): a second factor was passed
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # a browser that completed a sign-in is not held by its account's guessing limit (accounts/views/password)
    "accounts.views.password.KnownBrowserMiddleware",
]

ROOT_URLCONF = "xmppauth.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = None
ASGI_APPLICATION = "xmppauth.asgi.application"

DATABASES = {
    "default": dj_database_url.parse(
        # an empty DATABASE_URL is the default, as an empty CHANNEL_LAYER_URL is
        os.environ.get("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'db.sqlite3'}",
        conn_max_age=600,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # One writer at a time; wait for the lock instead of failing, and keep readers unblocked. In WAL mode
    # synchronous=NORMAL syncs at checkpoints rather than at every commit: the database stays consistent
    # after a power cut, and only the last commits before it can be lost (SQLite's own advice for WAL).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    DATABASES["default"]["CONN_MAX_AGE"] = None  # one connection per thread, kept open
    # Django's SQLite backend with a cheaper "%s" -> "?" conversion (xmppauth/sqlite_backend/base.py)
    DATABASES["default"]["ENGINE"] = "xmppauth.sqlite_backend"
    # Tests: an in-memory database, said outright (what Django does unasked for SQLite), so that
    # pytest-django, which does not know this engine is SQLite, does not name a file per xdist worker
    DATABASES["default"].setdefault("TEST", {}).setdefault("NAME", ":memory:")

_channel_layer_url = os.environ.get("CHANNEL_LAYER_URL", "")
if _channel_layer_url:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # capacity: messages a channel holds before a send fails (channels_redis's default, 100, is
            # a moment's worth of stanzas for another process: xmppauth/cluster.py)
            "CONFIG": {"hosts": [_channel_layer_url], "capacity": 10_000},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# The cache holds the guessing limits' counts (accounts/guessing.py) and the portal's throttles; it must be
# shared by every process that serves: Redis when the channel layer is (CACHE_URL overrides), the database
# when several processes share one without Redis, local memory for the embedded single process.
_cache_url = os.environ.get("CACHE_URL", "").strip() or _channel_layer_url
CACHES: dict[str, dict[str, object]]
if _cache_url.startswith(("redis://", "rediss://", "unix://")):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _cache_url}}
elif _cache_url == "database" or (
    _cache_url == "" and DATABASES["default"]["ENGINE"] != "xmppauth.sqlite_backend"
):
    # the table is made by a migration (xmppauth/migrations/0003_cache_table.py)
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "xmppauth_cache",
            "OPTIONS": {"MAX_ENTRIES": 1_000_000},
        }
    }
elif _cache_url in ("", "memory"):
    CACHES = {
        "default": {
            # LocMemCache without its pickling and key checks (accounts/localcache.py)
            "BACKEND": "accounts.localcache.LocalCache",
            # beyond this many keys the oldest third goes: enough that guessing cannot flush the counts
            "OPTIONS": {"MAX_ENTRIES": 200_000},
        }
    }
else:
    raise ValueError(f"CACHE_URL={_cache_url!r}: expected redis://…, 'database' or 'memory'")

AUTH_USER_MODEL = "accounts.User"
# The portal's sign-in page (docs/web.md); pages behind sign-in send anonymous visitors there.
LOGIN_URL = "accounts:sign-in"
# A portal session lasts a working day at most, and its cookie is for this site's own pages and links.
SESSION_COOKIE_AGE = 8 * 3600
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True  # the portal's script reads the token from the page (<meta name="csrf-token">)
# Served over HTTPS (directly or behind a proxy that terminates TLS): the browser sends the session and CSRF
# cookies only over HTTPS. Off by default: the embedded default serves plain HTTP on localhost.
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = _env_bool("XMPP_WEB_SECURE_COOKIES", False)
# --- Security headers and HTTPS (docs/deploy.md) -----------------------------------------------------
# Every HTTP answer carries this Content-Security-Policy (xmppauth/security_headers.py): no 'unsafe-inline',
# so no template may carry an inline script, style attribute or event handler. 'self' in connect-src
# covers the pages' own ws:// and wss:// connections (CSP Level 3).
XMPP_WEB_CSP = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "connect-src": ["'self'"],
    "font-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
# The production switch: browsers reach the portal over HTTPS (this process serves plain HTTP; a proxy in
# front of it terminates TLS). Secure cookies, HSTS (sent even when the proxy does not say the request
# was HTTPS: the browser's side of the proxy is), and the https:// origins of ALLOWED_HOSTS trusted for
# CSRF (a proxy that does not pass X-Forwarded-Proto makes Django see http://, and the browser's Origin
# is https://).
XMPP_WEB_HTTPS = _env_bool("XMPP_WEB_HTTPS", False)
# Opt-in: the request header by which the TLS proxy says the browser used HTTPS, e.g. X-Forwarded-Proto
# (value "https"). Only when the proxy always sets it (overwriting what the client sent) and this process
# is reachable through the proxy alone: anyone who can reach it directly could claim HTTPS with it.
_proxy_ssl_header = os.environ.get("XMPP_WEB_PROXY_SSL_HEADER", "").strip()
SILENCED_SYSTEM_CHECKS: list[str] = []
if XMPP_WEB_HTTPS:
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = _env_int("XMPP_WEB_HSTS_SECONDS", 365 * 24 * 3600, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = _env_bool("XMPP_WEB_HSTS_SUBDOMAINS", True)
    CSRF_TRUSTED_ORIGINS = [
        f"https://{'*' if host.startswith('.') else ''}{host}" for host in ALLOWED_HOSTS if host != "*"
    ]
    # security.W021 (no HSTS preload): preloading is a decision for the whole registered domain (its apex
    # must send the header, and leaving the browsers' lists takes months), not one this server can make.
    SILENCED_SYSTEM_CHECKS.append("security.W021")
    if _proxy_ssl_header:
        SECURE_PROXY_SSL_HEADER = ("HTTP_" + _proxy_ssl_header.upper().replace("-", "_"), "https")
        SECURE_SSL_REDIRECT = True
    else:
        # security.W008 (no SECURE_SSL_REDIRECT): without the proxy's header every request looks like plain
        # HTTP here, so redirecting would loop; the TLS proxy redirects http:// to https:// instead.
        SILENCED_SYSTEM_CHECKS.append("security.W008")
AUTH_PASSWORD_VALIDATORS: list[dict[str, str]] = []
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"

# This process's name in session records, cluster messages and JSON log lines; give each process its own
# when several share a machine (at start-up a process marks the sessions its name left open as ended).
XMPP_NODE = os.environ.get("XMPP_NODE", "").strip() or socket.gethostname()
# plain: "time level logger message" lines; json: one JSON object a line with the node (xmppauth/logformat.py)
XMPP_LOG_FORMAT = os.environ.get("XMPP_LOG_FORMAT", "plain").strip().lower()
if XMPP_LOG_FORMAT not in ("plain", "json"):
    raise ValueError(f"XMPP_LOG_FORMAT={XMPP_LOG_FORMAT!r}: expected plain or json")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "xmppauth.logformat.JsonLines", "node": XMPP_NODE},
    },
    # what the network can make Django log (bad Host, path traversal, 4xx) is written once a minute per kind
    "filters": {"once_per_minute": {"()": "xmppauth.logfilter.OncePerMinute"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": XMPP_LOG_FORMAT,
            "filters": ["once_per_minute"],
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("XMPP_LOG_LEVEL", "INFO")},
    "loggers": {"daphne": {"level": "WARNING"}, "django.channels.server": {"level": "WARNING"}},
}

# --- XMPP -------------------------------------------------------------------------------------------
XMPP_DOMAIN = os.environ.get("XMPP_DOMAIN", "localhost").strip().lower()
XMPP_TLS_CERT = Path(os.environ.get("XMPP_TLS_CERT", DATA_DIR / "tls" / f"{XMPP_DOMAIN}.crt"))
XMPP_TLS_KEY = Path(os.environ.get("XMPP_TLS_KEY", DATA_DIR / "tls" / f"{XMPP_DOMAIN}.key"))
XMPP_SCRAM_ITERATIONS = _env_int("XMPP_SCRAM_ITERATIONS", 4096, minimum=4096)
XMPP_SASL_PLAIN = _env_bool("XMPP_SASL_PLAIN", True)
XMPP_MAX_STANZA_BYTES = _env_int("XMPP_MAX_STANZA_BYTES", 256 * 1024, minimum=10_000)
XMPP_MAX_PREAUTH_STANZA_BYTES = _env_int("XMPP_MAX_PREAUTH_STANZA_BYTES", 10_000, minimum=4096)
XMPP_MAX_DEPTH = _env_int("XMPP_MAX_DEPTH", 48, minimum=8)
XMPP_PREAUTH_TIMEOUT = _env_int("XMPP_PREAUTH_TIMEOUT", 30, minimum=1)
# Connection limits of each serving process (xmppauth/transport/limits.py; docs/security.md): open connections
# in all, open connections from one address (IPv6 by /64), and new connections from one address: a burst, then
# so many a second. A refused connection gets a policy-violation stream error (direct TLS: it is closed).
XMPP_MAX_CONNECTIONS = _env_int("XMPP_MAX_CONNECTIONS", 10_000, minimum=1)
XMPP_MAX_CONNECTIONS_PER_ADDRESS = _env_int("XMPP_MAX_CONNECTIONS_PER_ADDRESS", 100, minimum=1)
XMPP_CONNECT_BURST = _env_int("XMPP_CONNECT_BURST", 30, minimum=1)
# When the process is full and no address holds two more connections than a newcomer's, the connection
# waiting longest for its client (idle HTTP keep-alive, XMPP stream not logged in) gives its place up once
# it has waited this long (transport/limits.py).
XMPP_ROOM_AFTER_SECONDS = _env_int("XMPP_ROOM_AFTER_SECONDS", 5, minimum=1)
XMPP_CONNECTS_PER_SECOND_PER_ADDRESS = _env_int("XMPP_CONNECTS_PER_SECOND_PER_ADDRESS", 10, minimum=1)
# Reverse proxies in front of the HTTP listener (addresses or networks, comma-separated): every client behind
# one comes from its address, so its connections count in XMPP_MAX_CONNECTIONS only, not per address.
XMPP_PROXY_ADDRESSES = _env_list("XMPP_PROXY_ADDRESSES", "")
# The HTTP listeners (portal, admin, XMPP over WebSocket) count in the same limits; a refused connection gets
# 503 with the reason. A request must arrive whole (line, headers, body) within this many seconds of the
# connection opening or of the previous response (else 408, or a silent close when nothing was sent).
XMPP_HTTP_REQUEST_TIMEOUT = _env_int("XMPP_HTTP_REQUEST_TIMEOUT", 20, minimum=1)
# Where the admin site (/admin/) is served (xmppauth/listeners.py; docs/security.md row 22). "HOST:PORT": on a
# listener of its own, for operators, which serves everything the public listener does plus the admin (every
# other listener answers its paths with 404); "public": on the public listener too (restrict /admin/ at the
# reverse proxy then); "off": no admin over HTTP. `serve --admin-http` overrides it. Any other value stops
# `serve`, and the loading of the ASGI application, with an error naming this setting (ImproperlyConfigured).
XMPP_ADMIN_HTTP = os.environ.get("XMPP_ADMIN_HTTP", "").strip() or "127.0.0.1:8001"
# Floods (TCP listeners): each connection may send this many bytes a second, in bursts of
# XMPP_READ_BURST_BYTES; beyond, the server stops reading from it for a while (TCP backpressure; nothing is
# lost). A connection that does not read what it is sent is dropped once XMPP_MAX_OUTGOING_BYTES wait for it
# (stream management keeps what was not acknowledged). 0 turns a limit off.
XMPP_READ_BYTES_PER_SECOND = _env_int("XMPP_READ_BYTES_PER_SECOND", 128 * 1024, minimum=0)
XMPP_READ_BURST_BYTES = _env_int("XMPP_READ_BURST_BYTES", 1024 * 1024, minimum=0)
XMPP_MAX_OUTGOING_BYTES = _env_int("XMPP_MAX_OUTGOING_BYTES", 2 * 1024 * 1024, minimum=0)
# Guessing limits (accounts/guessing.py; docs/security.md): per client address (IPv6 by /64) and per account
# name, this many attempts pass at once, then each waits 1 s, 2 s, 4 s ... up to XMPP_GUESS_LONGEST_WAIT
# after the previous one; a count is forgotten XMPP_GUESS_FORGET seconds after its last attempt. Clients that
# logged in to the account before, FAST tokens and app passwords are not held by the account's limit.
XMPP_GUESS_FREE_PER_ADDRESS = _env_int("XMPP_GUESS_FREE_PER_ADDRESS", 20, minimum=1)
XMPP_GUESS_FREE_PER_ACCOUNT = _env_int("XMPP_GUESS_FREE_PER_ACCOUNT", 5, minimum=1)
XMPP_GUESS_LONGEST_WAIT = _env_int("XMPP_GUESS_LONGEST_WAIT", 20, minimum=1)
XMPP_GUESS_FORGET = _env_int("XMPP_GUESS_FORGET", 3600, minimum=60)
# A normal stop (SIGTERM) ends every session with <system-shutdown/> and stores what its client had not
# acknowledged (xmppauth/shutdown.py); it waits at most this many seconds for that
XMPP_SHUTDOWN_SECONDS = _env_int("XMPP_SHUTDOWN_SECONDS", 10, minimum=1)
# XEP-0198: how long a session whose connection dropped waits for the client to resume it
XMPP_SM_RESUME_SECONDS = _env_int("XMPP_SM_RESUME_SECONDS", 300, minimum=1)
# XEP-0198: ask a client for an acknowledgement once stanzas have waited this long unacknowledged
XMPP_SM_ACK_REQUEST_SECONDS = _env_int("XMPP_SM_ACK_REQUEST_SECONDS", 10, minimum=1)
# WebSocket streams that reach us as plain ws:// count as encrypted only from these networks,
# where a reverse proxy terminated TLS (RFC 7395 §3.1 says clients MUST use wss).
XMPP_WS_TLS_TERMINATED_BY = _env_list("XMPP_WS_TLS_TERMINATED_BY", "127.0.0.0/8,::1/128")
# XEP-0484 FAST: how long a token lives, and how old it gets before a login with it brings a new one
XMPP_FAST_TOKEN_SECONDS = _env_int("XMPP_FAST_TOKEN_SECONDS", 30 * 24 * 3600, minimum=60)
XMPP_FAST_ROTATE_SECONDS = _env_int("XMPP_FAST_ROTATE_SECONDS", 24 * 3600, minimum=0)
# How often each process looks in the database for revocations it may not have heard of on the
# channel layer (the in-memory layer does not cross processes), in milliseconds.
XMPP_REVOCATION_POLL_MS = _env_int("XMPP_REVOCATION_POLL_MS", 250, minimum=20)
# RFC 6121 §2: how many contacts a roster may hold
XMPP_MAX_ROSTER_ITEMS = _env_int("XMPP_MAX_ROSTER_ITEMS", 1000, minimum=1)
# Messages an account with no available resource can have waiting (XEP-0160); beyond, senders are refused.
XMPP_MAX_OFFLINE_MESSAGES = _env_int("XMPP_MAX_OFFLINE_MESSAGES", 1000, minimum=1)
# ... and at most this many bytes of them: a message beyond either bound is refused the same way.
XMPP_MAX_OFFLINE_BYTES = _env_int("XMPP_MAX_OFFLINE_BYTES", 16 * 1024 * 1024, minimum=1)
# Days a message stays in its accounts' archives (XEP-0313); 0 keeps them for good.
XMPP_ARCHIVE_DAYS = _env_int("XMPP_ARCHIVE_DAYS", 0, minimum=0)
# Bytes of messages one account's archive keeps; beyond, its oldest messages make room (0: no bound).
XMPP_ARCHIVE_MAX_BYTES = _env_int("XMPP_ARCHIVE_MAX_BYTES", 256 * 1024 * 1024, minimum=0)
# JIDs an account may block (XEP-0191); a block beyond it is refused with policy-violation.
XMPP_MAX_BLOCKLIST_ITEMS = _env_int("XMPP_MAX_BLOCKLIST_ITEMS", 1000, minimum=1)
# XEP-0386 §2.3: a client bound with Bind2 is expected to fetch what waited for it from the archive
# (XEP-0313), so stored messages the archive holds are cleared, not sent, at its first available
# presence (those it does not hold are sent as to any client). 0: send them all, as XEP-0160 does.
XMPP_BIND2_OFFLINE_FROM_ARCHIVE = _env_bool("XMPP_BIND2_OFFLINE_FROM_ARCHIVE", True)
# XEP-0163 PEP: nodes an account may have (a create or first publish beyond is refused with
# not-allowed + <max-nodes-exceeded/>), and items a node keeps at most ("max" in a node's config).
XMPP_PEP_MAX_NODES = _env_int("XMPP_PEP_MAX_NODES", 200, minimum=1)
XMPP_PEP_MAX_ITEMS = _env_int("XMPP_PEP_MAX_ITEMS", 256, minimum=1)
# Bytes of published items an account's PEP nodes hold together (avatars, OMEMO bundles, bookmarks: a
# few hundred KiB for most); a publish beyond is refused with policy-violation and stores nothing.
XMPP_PEP_MAX_BYTES = _env_int("XMPP_PEP_MAX_BYTES", 8 * 1024 * 1024, minimum=1)
# RFC 6120 §8.2.3 (sessions_acl/access.py): a session's routed iq requests awaiting an answer, per
# direction, are remembered up to this many and this long; a later answer is dropped.
XMPP_PENDING_REQUESTS = _env_int("XMPP_PENDING_REQUESTS", 256, minimum=8)
XMPP_PENDING_REQUEST_SECONDS = _env_int("XMPP_PENDING_REQUEST_SECONDS", 120, minimum=5)
# Privacy (XEP-0494, Privacy Considerations): how long ended session records (the login history) and
# security-log entries are kept, in days; 0 keeps them for ever. Pruned hourly by each serving process.
XMPP_SESSION_RECORD_DAYS = _env_int("XMPP_SESSION_RECORD_DAYS", 90, minimum=0)
XMPP_SECURITY_LOG_DAYS = _env_int("XMPP_SECURITY_LOG_DAYS", 365, minimum=0)
# Second factors (XEP-0400). TOTP secrets are stored encrypted (accounts/secretbox.py) with a key kept
# apart from the database: XMPP_FACTOR_KEY (a Fernet key: urlsafe base64 of 32 bytes), else the file
# XMPP_FACTOR_KEY_FILE, created (mode 0600) when the first secret is sealed. Back the key up apart from
# the database, never inside its backup: without it every TOTP factor must be enrolled again.
XMPP_FACTOR_KEY = os.environ.get("XMPP_FACTOR_KEY", "").strip()
XMPP_FACTOR_KEY_FILE = Path(os.environ.get("XMPP_FACTOR_KEY_FILE", DATA_DIR / "factor.key"))
# The issuer shown by authenticator apps (the otpauth:// URI); default: the domain
XMPP_TOTP_ISSUER = os.environ.get("XMPP_TOTP_ISSUER", "").strip() or XMPP_DOMAIN
# After n wrong TOTP codes (or recovery codes) in a row, the next check waits factor * 2^(n-1) seconds
# (django-otp's ThrottlingMixin, persisted in the database so every process sees it); 0 turns the wait off.
XMPP_TOTP_THROTTLE_FACTOR = _env_int("XMPP_TOTP_THROTTLE_FACTOR", 1, minimum=0)
# ... and the wait never grows beyond this many seconds (someone who knows the password could otherwise
# keep the owner's right codes failing for ever longer).
XMPP_TOTP_THROTTLE_MAX_SECONDS = _env_int("XMPP_TOTP_THROTTLE_MAX_SECONDS", 300, minimum=1)
# Changing how the account logs in from an XMPP session (enrolling a second factor, XEP-0400) needs a
# login with the account password at most this many seconds before.
XMPP_REAUTH_SECONDS = _env_int("XMPP_REAUTH_SECONDS", 300, minimum=10)
# WebAuthn security keys and passkeys (accounts/webauthn.py). The relying party id is the domain the
# credentials are bound to (default: the XMPP domain); a browser signs only for a page whose origin is
# that domain or below it. XMPP_WEBAUTHN_ORIGINS lists the exact origins accepted in an assertion
# (default: https://RP_ID); with the RP id "localhost", http://localhost on any port is accepted too
# (a secure context for browsers, for development and tests).
XMPP_WEBAUTHN_RP_ID = os.environ.get("XMPP_WEBAUTHN_RP_ID", "").strip().lower() or XMPP_DOMAIN
XMPP_WEBAUTHN_RP_NAME = os.environ.get("XMPP_WEBAUTHN_RP_NAME", "").strip() or XMPP_TOTP_ISSUER
XMPP_WEBAUTHN_ORIGINS = _env_list("XMPP_WEBAUTHN_ORIGINS", f"https://{XMPP_WEBAUTHN_RP_ID}")
# "required": an assertion must show the authenticator verified its user (PIN, biometrics); "preferred"
# (default: it is the second factor after a password) asks for it without insisting; "discouraged".
# A passkey sign-in without a password always requires it.
XMPP_WEBAUTHN_USER_VERIFICATION = os.environ.get("XMPP_WEBAUTHN_USER_VERIFICATION", "preferred").strip()
# How long a ceremony's challenge stays valid, in seconds (the browser's timeout too)
XMPP_WEBAUTHN_TIMEOUT_SECONDS = _env_int("XMPP_WEBAUTHN_TIMEOUT_SECONDS", 120, minimum=10)
# The portal's sessions page: how often its live connection looks for sessions that started or ended
XMPP_PORTAL_LIVE_SECONDS = _env_int("XMPP_PORTAL_LIVE_SECONDS", 2, minimum=1)
# Self sign-up on the portal (/signup/): visitors create their own accounts (throttled per address). Off: the
# page is a 404 and accounts are made by an operator (manage.py adduser, the admin site).
XMPP_WEB_SIGNUP = _env_bool("XMPP_WEB_SIGNUP", False)
