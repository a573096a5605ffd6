"""Async ports from the stream consumer to Django: credential lookups (run off the event loop)."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from lxml import etree

from accounts import scram
from accounts.models import User
from sessions_acl import services as grants
from xmppauth.proto.sasl import ScramCredentials

scram_credentials = database_sync_to_async(grants.scram_lookup)
check_password = database_sync_to_async(grants.check_plain)  # PLAIN: "" / "app:N" / None

fast_candidates = database_sync_to_async(grants.fast_candidates)
authorize = database_sync_to_async(grants.authorize)
login_failed = database_sync_to_async(grants.login_failed)
close_session = database_sync_to_async(grants.close_session)
touch_session = database_sync_to_async(grants.touch_session)
open_session = database_sync_to_async(grants.open_session)


@database_sync_to_async  # type: ignore[untyped-decorator]
def resume_session(session_id: int, auth: grants.Authorization, mechanism: str, address: str) -> None:
    """A hibernated session continues on a new stream, under that stream's authentication."""
    from django.utils import timezone

    from sessions_acl.models import Session

    Session.objects.filter(pk=session_id).update(
        grant_id=auth.grant_id,
        client_id=auth.client_id,
        credential=auth.credential,
        mechanism=mechanism,
        address=address,
        last_activity=timezone.now(),
    )


@database_sync_to_async  # type: ignore[untyped-decorator]
def cam_list(user_id: int) -> etree._Element:
    from sessions_acl import cam

    return cam.client_list(User.objects.get(pk=user_id))


@database_sync_to_async  # type: ignore[untyped-decorator]
def cam_revoke(user_id: int, client_ref: str, actor: str) -> Any:
    from sessions_acl import cam

    return cam.revoke(User.objects.get(pk=user_id), client_ref, actor=actor)


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
