"""SCRAM credentials of accounts: derived at every password change, looked up at every login.

A user's ``scram`` field maps a hash name ("SHA-1", "SHA-256", "SHA-512") to the salt, the
iteration count, StoredKey and ServerKey (base64). These are what RFC 5802 servers keep instead
of the password; nothing stored lets anyone recover the password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
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
        settings.SECRET_KEY.encode(), username, hash_name, iterations=_iterations_for(username, hash_name)
    )


#: The iteration counts of the accounts' keys, per hash: ((count, accounts), ...), read again every
#: MIX_SECONDS. An account keeps the count its keys were made with until its password is set again, so once
#: XMPP_SCRAM_ITERATIONS is raised, older accounts answer with the old count; unknown names answering with
#: the new one told them apart in one message (found by a black-box attack). An unknown name gets a count
#: in use, picked by a keyed hash of the name in proportion to the accounts that have it: stable per name,
#: and as common as among the accounts.
_MIX: dict[str, tuple[tuple[int, int], ...]] = {}
_mix_read = float("-inf")
MIX_SECONDS = 3600.0


def refresh_iterations_in_use() -> None:
    """Read the counts in use again if :data:`MIX_SECONDS` have passed: one grouped query per hash,
    counted by the database. Called for every lookup, known name or not, so that the one that pays for
    the read says nothing about the name."""
    global _mix_read
    now = time.monotonic()
    if now - _mix_read < MIX_SECONDS:
        return
    _mix_read = now
    from django.db.models import Count
    from django.db.models.fields.json import KT

    from .models import User

    for hash_name in HASHES:
        rows = (
            User.objects.filter(is_active=True)
            .values(count=KT(f"scram__{hash_name}__iterations"))
            .annotate(accounts=Count("id"))
            .order_by()
        )
        mix = sorted((int(row["count"]), int(row["accounts"])) for row in rows if row["count"] is not None)
        _MIX[hash_name] = tuple(mix)


def _iterations_for(username: str, hash_name: str) -> int:
    mix = _MIX.get(hash_name, ())
    if not mix:
        return int(settings.XMPP_SCRAM_ITERATIONS)
    if len(mix) == 1:
        return mix[0][0]
    total = sum(accounts for _, accounts in mix)
    key = settings.SECRET_KEY.encode()
    digest = hmac.new(key, b"iterations\0" + hash_name.encode() + b"\0" + username.encode(), hashlib.sha256)
    pick = int.from_bytes(digest.digest()[:8], "big") % total
    for count, accounts in mix:
        if pick < accounts:
            return count
        pick -= accounts
    return mix[-1][0]
