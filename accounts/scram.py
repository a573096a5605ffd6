"""SCRAM credentials of accounts: derived at every password change, looked up at every login.

A user's ``scram`` field maps a hash name ("SHA-1", "SHA-256", "SHA-512") to the salt, the
iteration count, StoredKey and ServerKey (base64). These are what RFC 5802 servers keep instead
of the password; nothing stored lets anyone recover the password.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

from django.conf import settings

from xmppauth.proto.sasl import ScramCredentials, derive_credentials, fake_credentials

HASHES = ("SHA-1", "SHA-256", "SHA-512")


def derive_all(
    password: str, *, iterations: int | None = None, keep_salts: dict[str, dict[str, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    """Fresh salt per hash and the configured iteration count (at least 4096), or, for the hashes
    in ``keep_salts``, the salt and iteration count already stored there."""
    count = max(iterations or settings.XMPP_SCRAM_ITERATIONS, 4096)
    result: dict[str, dict[str, Any]] = {}
    for hash_name in HASHES:
        kept = (keep_salts or {}).get(hash_name)
        salt, rounds = (
            (base64.b64decode(kept["salt"]), int(kept["iterations"]))
            if kept
            else (secrets.token_bytes(16), count)
        )
        result[hash_name] = to_json(derive_credentials(password, hash_name, salt=salt, iterations=rounds))
    return result


def to_json(creds: ScramCredentials) -> dict[str, Any]:
    return {
        "salt": base64.b64encode(creds.salt).decode(),
        "iterations": creds.iterations,
        "stored_key": base64.b64encode(creds.stored_key).decode(),
        "server_key": base64.b64encode(creds.server_key).decode(),
    }


def from_json(data: dict[str, Any]) -> ScramCredentials:
    return ScramCredentials(
        salt=base64.b64decode(data["salt"]),
        iterations=int(data["iterations"]),
        stored_key=base64.b64decode(data["stored_key"]),
        server_key=base64.b64decode(data["server_key"]),
    )


def fake_for(username: str, hash_name: str) -> ScramCredentials:
    """Deterministic credentials for a username with no usable account (never reveals which)."""
    return fake_credentials(
        settings.SECRET_KEY.encode(), username, hash_name, iterations=settings.XMPP_SCRAM_ITERATIONS
    )
