"""What the SASL mechanisms check a login against: SCRAM keys, the PLAIN check, FAST tokens.

The account's SCRAM keys come with those of its live app passwords (derived with the same salts,
docs/access.md), so that one exchange can be checked against all of them at once; an unknown
account gets deterministic fake credentials, so that the exchange looks the same. What a
credential that matched may then do is :mod:`sessions_acl.login`'s question. Nothing here ever
logs or stores a secret.
"""

from __future__ import annotations

import hmac
import os
import statistics
import time
from collections import deque
from dataclasses import replace

from django.utils import timezone

from accounts import guessing, scram
from xmppauth.proto.sasl import ScramCredentials, derive_credentials
from xmppauth.proto.sasl.base import TokenCandidate

from . import loginreads, tokens
from .models import Client

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


#: How long the latest lookups took (seconds), of existing accounts and of unknown names. Reading an
#: account's row and decoding its keys costs more than finding no row and deriving fake keys: the
#: server-first message of an existing account came 66 µs later than an unknown name's (docs/performance.md,
#: docs/security.md row 11). An unknown name's lookup now lasts longer by the difference of the two medians,
#: so that both have the same middle, whatever this server's database and load. Waiting instead for the
#: time of one existing lookup picked at random made unknown names 26 µs slower: the slower of two times
#: is slower than either. An existing account's login pays the clock read twice and an append. (A black-box
#: attacker measuring over SASL2, one exchange per TLS connection, still found unknown names 18-61 µs slower:
#: docs/security.md, seventh session.)
_ACCOUNT_LOOKUPS: deque[float] = deque(maxlen=63)
_UNKNOWN_LOOKUPS: deque[float] = deque(maxlen=63)
LOOKUP_PAD_AT_MOST = 0.001  # seconds: a few slow lookups (a pause elsewhere) are no time to copy at length


def _lookup(
    localpart: str | None, username: str, hash_name: str
) -> tuple[ScramCredentials, list[ScramCredentials], bool]:
    # an unknown name's fake keys come from the name as an account would be looked up (its prepared
    # localpart, case-folded), so that NAME and name get the same salt as they would for a real account
    # (found by a black-box attack: they differed for unknown names only, which told names apart)
    began = time.perf_counter()
    scram.refresh_iterations_in_use()  # (for every lookup: the one that reads them tells nothing)
    found = loginreads.credentials(localpart, timezone.now()) if localpart is not None else None
    entry = found.scram.get(hash_name) if found is not None else None
    if found is None or not entry:
        fake = scram.fake_for(localpart or username, hash_name)
        _as_long_as_an_account(began)
        return fake, [], False
    creds = scram.from_json(entry)
    alternatives = _alternatives(found, hash_name, creds)
    _ACCOUNT_LOOKUPS.append(time.perf_counter() - began)
    return creds, alternatives, True


def _as_long_as_an_account(began: float) -> None:
    """Make an unknown name's lookup, begun at ``began``, last as an existing account's would (the comment
    on :data:`_ACCOUNT_LOOKUPS`)."""
    took = time.perf_counter() - began
    _UNKNOWN_LOOKUPS.append(took)
    if not _ACCOUNT_LOOKUPS:
        return
    pad = statistics.median(_ACCOUNT_LOOKUPS) - statistics.median(_UNKNOWN_LOOKUPS)
    until = began + took + min(pad, LOOKUP_PAD_AT_MOST)
    while time.perf_counter() < until:  # a sleep would wake tens of µs late
        pass


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


def known_client(localpart: str | None, user_agent_id: str | None) -> bool:
    """Has this client (its SASL2 user-agent id) logged in to this account with the password before,
    and not been revoked since? Such a client is not held by the account's guessing limit, nor by a
    second factor's wait after wrong codes (accounts/totp.py ``verify_totp``)."""
    if localpart is None or not user_agent_id:
        return False
    return Client.objects.filter(
        user__username=localpart,
        user_agent_id=user_agent_id,
        password_seen__isnull=False,
        revoked__isnull=True,
    ).exists()


def _claim(localpart: str | None, username: str, address: str, user_agent_id: str | None) -> guessing.Verdict:
    # the name as typed when it is no valid localpart: limited exactly like an account that exists
    return guessing.claim(
        address, localpart or username, account_exempt=lambda: known_client(localpart, user_agent_id)
    )


def claim_guess(localpart: str, address: str, user_agent_id: str | None) -> guessing.Verdict:
    """A turn for guessing at ``localpart``'s second factor (a TOTP or recovery code) from ``address``:
    refused by either limit (a code is no app password: an account held by its limit takes none,
    except from a client it knows)."""
    return _claim(localpart, localpart, address, user_agent_id)


def guarded_scram_lookup(
    localpart: str | None, username: str, hash_name: str, address: str, user_agent_id: str | None
) -> tuple[ScramCredentials, list[ScramCredentials], guessing.Verdict]:
    """:func:`scram_lookup` behind the guessing limits (:mod:`accounts.guessing`).

    Refused by the address: fake credentials, nothing read (the caller refuses the attempt). Held by
    the account's limit: the account password is replaced by keys no proof can match, so that only its
    app passwords can still succeed, and the exchange looks the same as for any other name."""
    verdict = _claim(localpart, username, address, user_agent_id)
    if verdict.scope == "address":
        return scram.fake_for(localpart or username, hash_name), [], verdict
    creds, alternatives, _ = _lookup(localpart, username, hash_name)
    if verdict.scope == "account":
        creds = replace(
            creds, stored_key=os.urandom(len(creds.stored_key)), server_key=os.urandom(len(creds.server_key))
        )
    return creds, alternatives, verdict


def guarded_check_plain(
    localpart: str | None, username: str, password: str, address: str, user_agent_id: str | None
) -> tuple[str | None, guessing.Verdict]:
    """:func:`check_plain` behind the guessing limits: refused by the address, nothing is checked; held by
    the account's limit, only the account's app passwords are."""
    verdict = _claim(localpart, username, address, user_agent_id)
    if verdict.scope == "address":
        return None, verdict
    found = _check_plain(localpart, username, password, app_passwords_only=verdict.scope == "account")
    return found, verdict


def guarded_fast_candidates(
    localpart: str | None, user_agent_id: str | None, address: str
) -> tuple[list[TokenCandidate], guessing.Verdict]:
    """:func:`fast_candidates` behind the address's guessing limit (a token is far too long to guess, and
    its owner must never be locked out of the account by someone else's guesses)."""
    verdict = guessing.claim(address, "")
    if verdict.refused:
        return [], verdict
    return fast_candidates(localpart, user_agent_id), verdict


def check_plain(localpart: str | None, username: str, password: str) -> str | None:
    """PLAIN: which credential ``password`` is ("" account password, "app:N"), or None.

    One SCRAM-SHA-256 derivation with the account's salt, then a constant-time comparison with
    the account's StoredKey and every live app password's (all of them, whatever matches first).
    Unknown accounts run the same derivation against fake credentials, so timing does not tell.
    """
    return _check_plain(localpart, username, password)


def _check_plain(
    localpart: str | None, username: str, password: str, *, app_passwords_only: bool = False
) -> str | None:
    reference, alternatives, real = _lookup(localpart, username, "SHA-256")
    try:
        derived = derive_credentials(
            password, "SHA-256", salt=reference.salt, iterations=reference.iterations
        )
    except ValueError:  # not a valid SASLprep string
        return None
    found = None
    for candidate in alternatives if app_passwords_only else [reference, *alternatives]:
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
