"""What the SASL mechanisms check a login against: SCRAM keys, the PLAIN check, FAST tokens.

The account's SCRAM keys come with those of its live app passwords (derived with the same salts,
docs/access.md), so that one exchange can be checked against all of them at once; an unknown
account gets deterministic fake credentials, so that the exchange looks the same. What a
credential that matched may then do is :mod:`sessions_acl.login`'s question. Nothing here ever
logs or stores a secret.
"""

from __future__ import annotations

import hmac

from django.utils import timezone

from accounts import scram
from xmppauth.proto.sasl import ScramCredentials, derive_credentials
from xmppauth.proto.sasl.base import TokenCandidate

from . import loginreads, tokens

APP_PASSWORD_PREFIX = "app:"  # noqa: S105 - a credential id prefix, not a secret
FAST_PREFIX = "fast:"


def scram_lookup(
    localpart: str | None, username: str, hash_name: str
) -> tuple[ScramCredentials, list[ScramCredentials]]:
    """SCRAM: the account's stored credentials and, as alternatives, those of its live app
    passwords that share their salt and iteration count; for no such account, deterministic fake
    credentials (and none), so that the exchange looks the same."""
    creds, alternatives, _ = _lookup(localpart, username, hash_name)
    return creds, alternatives


def _lookup(
    localpart: str | None, username: str, hash_name: str
) -> tuple[ScramCredentials, list[ScramCredentials], bool]:
    found = loginreads.credentials(localpart, timezone.now()) if localpart is not None else None
    entry = found.scram.get(hash_name) if found is not None else None
    if found is None or not entry:
        return scram.fake_for(username, hash_name), [], False
    creds = scram.from_json(entry)
    return creds, _alternatives(found, hash_name, creds), True


def _alternatives(
    found: loginreads.Credentials, hash_name: str, reference: ScramCredentials
) -> list[ScramCredentials]:
    result = []
    for pk, data in found.app_passwords:
        entry = data.get(hash_name)
        if not entry:
            continue
        creds = scram.from_json(entry)
        if creds.salt != reference.salt or creds.iterations != reference.iterations:
            continue  # keys from another salt cannot answer this exchange's challenge
        result.append(
            ScramCredentials(
                salt=creds.salt,
                iterations=creds.iterations,
                stored_key=creds.stored_key,
                server_key=creds.server_key,
                credential_id=f"{APP_PASSWORD_PREFIX}{pk}",
            )
        )
    return result


def check_plain(localpart: str | None, username: str, password: str) -> str | None:
    """PLAIN: which credential ``password`` is ("" account password, "app:N"), or None.

    One SCRAM-SHA-256 derivation with the account's salt, then a constant-time comparison with
    the account's StoredKey and every live app password's (all of them, whatever matches first).
    Unknown accounts run the same derivation against fake credentials, so timing does not tell.
    """
    reference, alternatives, real = _lookup(localpart, username, "SHA-256")
    try:
        derived = derive_credentials(
            password, "SHA-256", salt=reference.salt, iterations=reference.iterations
        )
    except ValueError:  # not a valid SASLprep string
        return None
    found = None
    for candidate in [reference, *alternatives]:
        if hmac.compare_digest(derived.stored_key, candidate.stored_key) and found is None:
            found = candidate.credential_id
    return found if real else None


def fast_candidates(localpart: str | None, user_agent_id: str | None) -> list[TokenCandidate]:
    """The live FAST tokens of this account's client ``user_agent_id`` (none for anyone else)."""
    if localpart is None or not user_agent_id:
        return []
    return [
        TokenCandidate(credential_id=f"{FAST_PREFIX}{pk}", key=tokens.unseal(key, nonce), mechanism=mechanism)
        for pk, key, nonce, mechanism in loginreads.fast_tokens(localpart, user_agent_id, timezone.now())
    ]
