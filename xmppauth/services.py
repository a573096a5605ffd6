"""Async ports from the stream consumer to Django: credential lookups (run off the event loop)."""

from __future__ import annotations

import hmac
from typing import Any

from channels.db import database_sync_to_async

from accounts import scram
from accounts.models import User
from xmppauth.proto.sasl import ScramCredentials, derive_credentials


def _usable_user(localpart: str | None) -> User | None:
    if localpart is None:
        return None
    user = User.objects.filter(username=localpart, is_active=True).only("id", "username", "scram").first()
    return user


@database_sync_to_async  # type: ignore[untyped-decorator]
def scram_credentials(localpart: str | None, username: str, hash_name: str) -> ScramCredentials:
    """Stored credentials, or deterministic fake ones so an unknown account looks like any other."""
    user = _usable_user(localpart)
    creds = user.scram_credentials(hash_name) if user is not None else None
    return creds if creds is not None else scram.fake_for(username, hash_name)


@database_sync_to_async  # type: ignore[untyped-decorator]
def check_password(localpart: str | None, username: str, password: str) -> bool:
    """PLAIN: derive the SCRAM-SHA-256 StoredKey from the password and compare in constant time.

    Unknown accounts run the same derivation against fake credentials, so timing does not tell.
    """
    user = _usable_user(localpart)
    stored = user.scram_credentials("SHA-256") if user is not None else None
    reference = stored or scram.fake_for(username, "SHA-256")
    try:
        derived = derive_credentials(
            password, "SHA-256", salt=reference.salt, iterations=reference.iterations
        )
    except ValueError:  # the password is not a valid SASLprep string
        return False
    return hmac.compare_digest(derived.stored_key, reference.stored_key) and stored is not None


@database_sync_to_async  # type: ignore[untyped-decorator]
def store_offline(localpart: str, stanzas: list[bytes]) -> int:
    """Keep messages for ``localpart``; returns how many were stored (0 for an unknown account)."""
    from xmppauth.models import OfflineMessage

    user = User.objects.filter(username=localpart).only("id").first()
    if user is None or not stanzas:
        return 0
    OfflineMessage.objects.bulk_create(
        [OfflineMessage(user=user, stanza=data.decode("utf-8")) for data in stanzas]
    )
    return len(stanzas)


@database_sync_to_async  # type: ignore[untyped-decorator]
def take_offline(localpart: str) -> list[tuple[bytes, str]]:
    """Remove and return the stored messages of ``localpart`` with their UTC timestamps, oldest first."""
    from django.db import transaction

    from xmppauth.models import OfflineMessage

    with transaction.atomic():
        rows = list(
            OfflineMessage.objects.filter(user__username=localpart).values_list("id", "stanza", "created")
        )
        if rows:
            OfflineMessage.objects.filter(id__in=[r[0] for r in rows]).delete()
    return [(stanza.encode("utf-8"), created.strftime("%Y-%m-%dT%H:%M:%SZ")) for _, stanza, created in rows]


@database_sync_to_async  # type: ignore[untyped-decorator]
def missing_hashes(localpart: str) -> set[str]:
    """The SCRAM hashes an account has no credentials for (XEP-0480 upgrades can add them)."""
    user = User.objects.filter(username=localpart).only("id", "scram").first()
    return set() if user is None else set(scram.HASHES) - set(user.scram)


@database_sync_to_async  # type: ignore[untyped-decorator]
def store_scram(localpart: str, hash_name: str, creds: ScramCredentials) -> None:
    """Add credentials for one hash, keeping the others (XEP-0480 §3.2: older ones stay usable)."""
    from django.db import transaction

    with transaction.atomic():
        user = User.objects.select_for_update().get(username=localpart)
        user.scram = {**user.scram, hash_name: scram.to_json(creds)}
        user.save(update_fields=["scram"])


# Last-seen is kept to the minute, not to the login: a client seen (with the same software and device)
# less than this long ago is not written again. Writing on every login cost ~3 ms of server CPU,
# a third of a login (bench: SASL2 login 11.0 -> 8.0 ms without the write).
CLIENT_SEEN_GRANULARITY = 60.0
_clients_seen: dict[tuple[str, str], tuple[float, str | None, str | None]] = {}


def client_needs_recording(
    localpart: str, user_agent_id: str, software: str | None, device: str | None
) -> bool:
    """Whether :func:`record_client` has anything to write (first time, new details, or a minute passed)."""
    import time

    now = time.monotonic()
    key = (localpart, user_agent_id)
    seen = _clients_seen.get(key)
    if seen is not None and now - seen[0] < CLIENT_SEEN_GRANULARITY and seen[1:] == (software, device):
        return False
    if len(_clients_seen) > 100_000:
        _clients_seen.clear()
    _clients_seen[key] = (now, software, device)
    return True


@database_sync_to_async  # type: ignore[untyped-decorator]
def record_client(localpart: str, user_agent_id: str, software: str | None, device: str | None) -> None:
    """Remember the client installation (SASL2 user agent): first seen once, last seen (to the minute)."""
    from django.utils import timezone

    from sessions_acl.models import Client

    user = User.objects.filter(username=localpart).only("id").first()
    if user is None:
        return
    now = timezone.now()
    fields: dict[str, Any] = {"last_seen": now}
    if software:
        fields["software"] = software
    if device:
        fields["device"] = device
    updated = Client.objects.filter(user=user, user_agent_id=user_agent_id).update(**fields)
    if not updated:
        Client.objects.get_or_create(
            user=user, user_agent_id=user_agent_id, defaults={"first_seen": now, **fields}
        )
