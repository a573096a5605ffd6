"""XEP-0484 FAST tokens and app-password secrets: making them, storing them, finding them again.

A FAST token is ``secret-token:`` (RFC 8959, so secret scanners recognise it) and 64 URL-safe
base64 characters (384 random bits). HT-* mechanisms use the token as an HMAC-SHA-256 key; HMAC
first hashes any key longer than the 64-byte block (RFC 2104 §2), so ``SHA-256(token)`` is the
key the server needs and the token itself is never stored. That hash is kept XOR-masked with a
value derived from ``SECRET_KEY`` and a per-row nonce, so a stolen database alone yields nothing
that can log in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta

from django.conf import settings

TOKEN_PREFIX = "secret-token:"  # noqa: S105 - RFC 8959 scheme, not a secret
HMAC_BLOCK = 64


def new_token() -> str:
    token = TOKEN_PREFIX + secrets.token_urlsafe(48)
    assert len(token.encode()) > HMAC_BLOCK  # the stored hash is then exactly the HMAC key
    return token


def hmac_key(token: str) -> bytes:
    """The key HMAC actually uses for ``token`` (valid because tokens exceed the block size)."""
    return hashlib.sha256(token.encode()).digest()


def _mask(nonce: bytes) -> bytes:
    return hmac.new(
        settings.SECRET_KEY.encode(), b"xmppauth fast-token mask\0" + nonce, hashlib.sha256
    ).digest()


def seal(key: bytes) -> tuple[bytes, bytes]:
    """(masked key, nonce) for storage."""
    nonce = secrets.token_bytes(16)
    return bytes(a ^ b for a, b in zip(key, _mask(nonce), strict=True)), nonce


def unseal(masked: bytes, nonce: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(bytes(masked), _mask(bytes(nonce)), strict=True))


def xep0082(moment: datetime) -> str:
    """XEP-0082 DateTime in UTC with a Z, whole seconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def token_lifetime() -> timedelta:
    return timedelta(seconds=settings.XMPP_FAST_TOKEN_SECONDS)


def rotate_after() -> timedelta:
    return timedelta(seconds=settings.XMPP_FAST_ROTATE_SECONDS)


def new_app_password() -> str:
    """Four groups of six characters from an alphabet without look-alikes: ~119 bits, easy to type."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    groups = ["".join(secrets.choice(alphabet) for _ in range(6)) for _ in range(4)]
    return "-".join(groups)
