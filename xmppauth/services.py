"""Async ports from the stream consumer to Django: credentials, logins, session records, XEP-0494,
offline messages, SCRAM upgrades and second factors, each run off the event loop
(:func:`xmppauth.offloop.off_loop`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, transaction
from django.db.models import Count, Q, Sum
from lxml import etree

from accounts import guessing, recovery, scram, totp, webauthn
from accounts.models import User
from accounts.secretbox import SecretBoxError
from sessions_acl import credentials, login, records, securitylog, xep0494
from xmppauth.models import OfflineMessage
from xmppauth.offloop import off_loop
from xmppauth.proto.sasl import ScramCredentials

log = logging.getLogger("xmppauth.mfa")
db_log = logging.getLogger("xmppauth.db")

# each behind the guessing limits (accounts/guessing.py): with the verdict, whose claim a success gives back
scram_credentials = off_loop(credentials.guarded_scram_lookup)
check_password = off_loop(credentials.guarded_check_plain)  # PLAIN: "" / "app:N" / None
fast_candidates = off_loop(credentials.guarded_fast_candidates)


claim_guess = off_loop(credentials.claim_guess)  # a second-factor code: the same limits as a password
known_client = off_loop(credentials.known_client)  # a second factor's wait after wrong codes spares it
give_back = off_loop(guessing.Claim.give_back)  # an attempt that succeeded


@off_loop
def authorize(
    localpart: str, *, claim: guessing.Claim | None, **kwargs: Any
) -> login.Authorization | login.Refusal:
    """The mechanism succeeded: its guessing claim goes back (:mod:`accounts.guessing`), then
    :func:`sessions_acl.login.authorize` decides, in the same trip off the event loop."""
    if claim is not None:
        claim.give_back()
    return login.authorize(localpart, **kwargs)


finish_after_tasks = off_loop(login.finish_after_tasks)  # the grant and token once the tasks are passed
logins_failed = off_loop(securitylog.logins_failed)  # in batches: xmppauth/failed_logins.py
verify_totp = off_loop(totp.verify_totp)  # XEP-0400: a code, accepted once per time step
use_recovery_code = off_loop(recovery.use_code)  # each code once
webauthn_options = off_loop(webauthn.authentication_options)  # a challenge for the account's keys
webauthn_verify = off_loop(webauthn.authenticate)  # an assertion, against the challenge it answers

open_session = off_loop(records.open_session)
resume_session = off_loop(records.resume_session)
close_session = off_loop(records.close_session)


@off_loop
def touch_session(session_id: int) -> None:
    """The session record's last activity (a busy session's, once a minute). Best effort: a database
    that is away for a moment (restarting, failing over) must not end a session that only chats, as
    any failure of a session's background work does; the next stamp catches up."""
    try:
        records.touch_session(session_id)
    except DatabaseError as exc:
        db_log.warning("session %s: its last activity was not recorded (%s)", session_id, type(exc).__name__)


@off_loop
def cam_list(user_id: int) -> etree._Element:
    return xep0494.client_list(User.objects.get(pk=user_id))


@off_loop
def cam_revoke(user_id: int, client_ref: str, actor: str) -> xep0494.RevokeOutcome:
    return xep0494.revoke(User.objects.get(pk=user_id), client_ref, actor=actor)


def _offline_row(user: User, data: bytes, taken_by_id: int | None = None) -> OfflineMessage:
    return OfflineMessage(user=user, stanza=data.decode("utf-8"), size=len(data), taken_by_id=taken_by_id)


@dataclass(frozen=True, slots=True)
class StoreBounds:
    """What an account's offline store holds at most (XMPP_MAX_OFFLINE_MESSAGES, XMPP_MAX_OFFLINE_BYTES);
    ``besides``: a session whose taken rows are not counted (they go as the new copies come)."""

    messages: int
    size: int
    besides: int | None = None


@off_loop
def store_offline(localpart: str, stanzas: list[bytes], bounds: StoreBounds | None = None) -> int:
    """Keep messages for ``localpart``, in order, as many as ``bounds`` let in (all without): how many
    were stored (0 for an unknown account). The account's row is locked while it counts."""
    if not stanzas:
        return 0
    with transaction.atomic():
        user = User.objects.select_for_update().filter(username=localpart).only("id").first()
        if user is None:
            return 0
        fit = stanzas
        if bounds is not None:
            rows = OfflineMessage.objects.filter(user=user)
            if bounds.besides is not None:
                rows = rows.exclude(taken_by_id=bounds.besides)
            held = rows.aggregate(count=Count("id"), size=Sum("size"))
            count, size = held["count"], held["size"] or 0
            fit = []
            for data in stanzas:
                if count >= bounds.messages or size + len(data) > bounds.size:
                    break
                fit.append(data)
                count, size = count + 1, size + len(data)
        OfflineMessage.objects.bulk_create([_offline_row(user, data) for data in fit])
    return len(fit)


@off_loop
def store_offline_message(localpart: str, data: bytes, limit: int, limit_bytes: int) -> str:
    """Keep one message for ``localpart`` (XEP-0160): "stored", "unknown" (no such active account),
    or "full" (it holds ``limit`` stored messages already, or the message would take its stored bytes
    over ``limit_bytes``). The account's row is locked while it counts, so two messages racing for the
    last place cannot both take it."""
    with transaction.atomic():
        user = User.objects.select_for_update().filter(username=localpart, is_active=True).only("id").first()
        if user is None:
            return "unknown"
        held = OfflineMessage.objects.filter(user=user).aggregate(count=Count("id"), size=Sum("size"))
        if held["count"] >= limit or (held["size"] or 0) + len(data) > limit_bytes:
            return "full"
        _offline_row(user, data).save(force_insert=True)
    return "stored"


@off_loop
def store_offline_taken(localpart: str, stanzas: list[bytes], session_id: int) -> list[int]:
    """Store copies of messages a session holds unacknowledged, taken by it (see :func:`take_offline`):
    their ids. Nothing for an unknown account."""
    user = User.objects.filter(username=localpart).only("id").first()
    if user is None or not stanzas:
        return []
    rows = OfflineMessage.objects.bulk_create([_offline_row(user, data, session_id) for data in stanzas])
    return [row.id for row in rows]


@off_loop
def take_offline(
    localpart: str, session_id: int | None, budget: int = 0
) -> tuple[list[tuple[int, bytes, str]], bool]:
    """The stored messages of ``localpart`` that no live session has taken, oldest first, as
    ``(id, stanza, UTC timestamp)``, now taken by the session ``session_id``: they stay stored until
    :func:`forget_offline` (its client acknowledged them, or its session ended and stored what was not
    acknowledged again) or :func:`release_offline`; a session whose process died (its record ended at
    the next start) no longer holds them. Without a session record they are removed at once.

    ``budget`` (bytes; 0: no bound): the oldest that fit in it (at least one), and whether more wait:
    a client is sent a few at a time, as fast as it reads (xmppauth/stored_delivery.py)."""
    free = Q(taken_by__isnull=True) | Q(taken_by__ended__isnull=False)
    with transaction.atomic():
        waiting = OfflineMessage.objects.select_for_update(of=("self",))
        sizes = list(waiting.filter(free, user__username=localpart).values_list("id", "size"))
        if not sizes:
            return [], False  # the usual login: nothing waits
        ids: list[int] = []
        total = 0
        for id_, size in sizes:
            if budget and ids and total + size > budget:
                break
            ids.append(id_)
            total += size
        rows = list(OfflineMessage.objects.filter(id__in=ids).values_list("id", "stanza", "created"))
        if ids and session_id is None:
            OfflineMessage.objects.filter(id__in=ids).delete()
        elif ids:
            OfflineMessage.objects.filter(id__in=ids).update(taken_by_id=session_id)
    taken = [
        (id_, text.encode("utf-8"), created.strftime("%Y-%m-%dT%H:%M:%SZ")) for id_, text, created in rows
    ]
    return taken, len(ids) < len(sizes)


@off_loop
def forget_offline(ids: list[int]) -> None:
    """Stored messages that were delivered and acknowledged (or stored again): gone."""
    OfflineMessage.objects.filter(id__in=ids).delete()


@off_loop
def release_offline(ids: list[int]) -> None:
    """Stored messages a session took and did not send: free for the account's next session."""
    OfflineMessage.objects.filter(id__in=ids).update(taken_by=None)


@off_loop
def missing_hashes(localpart: str) -> set[str]:
    """The SCRAM hashes an account has no credentials for (XEP-0480 upgrades can add them)."""
    user = User.objects.filter(username=localpart).only("id", "scram").first()
    return set() if user is None else set(scram.HASHES) - set(user.scram)


@off_loop
def store_scram(localpart: str, hash_name: str, creds: ScramCredentials) -> None:
    """Add credentials for one hash, keeping the others (XEP-0480 §3.2: older ones stay usable)."""
    with transaction.atomic():
        user = User.objects.select_for_update().get(username=localpart)
        user.scram = {**user.scram, hash_name: scram.to_json(creds)}
        user.save(update_fields=["scram"])


@off_loop
def start_totp_setup(user_id: int) -> str | None:
    """XEP-0400: a new, unconfirmed authenticator and its otpauth:// URI (the secret: never logged), or
    None when secrets cannot be sealed (the factor key is missing or unusable: logged for the operator)."""
    try:
        _device, uri = totp.start_setup(User.objects.get(pk=user_id))
    except SecretBoxError:
        log.exception("setting up an authenticator app: the factor key is not usable")
        return None
    return uri


@off_loop
def confirm_totp_setup(user_id: int, code: str, actor: str) -> totp.TotpCheck:
    """XEP-0400: confirm the authenticator being set up with a current code from it."""
    return totp.confirm_setup(User.objects.get(pk=user_id), code, actor=actor)
