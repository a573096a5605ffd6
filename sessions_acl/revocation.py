"""Revoking sessions, clients, grants and app passwords: commit, then tell every serving process.

Each function changes the database in one transaction (the grant is marked revoked, FAST tokens
are deleted, the security log says who did it) and writes a :class:`~.models.Revocation` row.
When the transaction commits the row is published on the channel layer (group
``CONTROL_GROUP``), which reaches every ``serve`` process at once with Redis; each process also
polls the table, which covers the in-memory layer of another process (``manage.py revoke``
beside ``manage.py serve``). A process closes every affected stream with a
``<policy-violation/>`` stream error whose text says what happened and who did it.

The portal, the admin, XEP-0494 and the management commands all call these functions.
"""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from django.db import transaction
from django.utils import timezone

from accounts.models import User

from .models import AppPassword, AuthEvent, Client, FastToken, Grant, Revocation, Session
from .services import log_event

log = logging.getLogger("xmppauth.revocation")

CONTROL_GROUP = "xmppauth.control"


class NotFound(LookupError):
    """Nothing with that id (or it belongs to another account)."""


def _publish_on_commit(revocation: Revocation) -> None:
    message = revocation.message()
    transaction.on_commit(lambda: publish(message))


def publish(message: dict[str, object]) -> None:
    """Send a committed revocation to the channel layer (best effort: the table is the fallback)."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(CONTROL_GROUP, {"type": "control.revoke", **message})
    except Exception:  # the poll picks it up
        log.warning("could not publish revocation %s; the serving processes will poll it", message["id"])


def _describe(actor: str) -> str:
    return f" by {actor}" if actor else ""


def _revoke_grant_rows(grant: Grant, *, actor: str, reason: str) -> None:
    now = timezone.now()
    if grant.revoked is None:
        grant.revoked = now
        grant.revoked_by = actor[:200]
        grant.revoke_reason = reason[:200]
        grant.save(update_fields=["revoked", "revoked_by", "revoke_reason"])
    FastToken.objects.filter(client__grant=grant).delete()


def revoke_grant(grant_id: int, *, actor: str, reason: str = "", user: User | None = None) -> Grant:
    """End every session holding the grant and kill its tokens; ``user`` limits it to one account."""
    with transaction.atomic():
        query = Grant.objects.select_related("user").filter(pk=grant_id)
        if user is not None:
            query = query.filter(user=user)
        grant = query.first()
        if grant is None:
            raise NotFound(f"no grant {grant_id}")
        _revoke_grant_rows(grant, actor=actor, reason=reason)
        log_event(
            grant.user, AuthEvent.Kind.REVOKED, f"{grant}" + (f": {reason}" if reason else ""), actor=actor
        )
        revocation = Revocation.objects.create(
            username=grant.user.username,
            grant_ids=[grant.pk],
            text=f"this session's grant was revoked{_describe(actor)}" + (f": {reason}" if reason else ""),
        )
        _publish_on_commit(revocation)
    return grant


def revoke_client(client_id: int, *, actor: str, reason: str = "", user: User | None = None) -> Client:
    """End the client's sessions, kill its FAST tokens and its grant (XEP-0494 revoke)."""
    with transaction.atomic():
        query = Client.objects.select_related("user", "grant").filter(pk=client_id)
        if user is not None:
            query = query.filter(user=user)
        client = query.first()
        if client is None:
            raise NotFound(f"no client {client_id}")
        client.revoked = timezone.now()
        client.save(update_fields=["revoked"])
        FastToken.objects.filter(client=client).delete()
        grant_ids = []
        if client.grant is not None:
            _revoke_grant_rows(client.grant, actor=actor, reason=reason or "client revoked")
            grant_ids.append(client.grant.pk)
        log_event(
            client.user,
            AuthEvent.Kind.REVOKED,
            f"client {client}" + (f": {reason}" if reason else ""),
            actor=actor,
        )
        session_ids = list(
            Session.objects.filter(client=client, ended__isnull=True).values_list("id", flat=True)
        )
        revocation = Revocation.objects.create(
            username=client.user.username,
            grant_ids=grant_ids,
            session_ids=session_ids,
            text=f"this client was revoked{_describe(actor)}" + (f": {reason}" if reason else ""),
        )
        _publish_on_commit(revocation)
    return client


def revoke_app_password(
    app_password_id: int, *, actor: str, reason: str = "", user: User | None = None
) -> AppPassword:
    with transaction.atomic():
        query = AppPassword.objects.select_related("user", "grant").filter(pk=app_password_id)
        if user is not None:
            query = query.filter(user=user)
        app = query.first()
        if app is None:
            raise NotFound(f"no app password {app_password_id}")
        _revoke_grant_rows(app.grant, actor=actor, reason=reason or "app password revoked")
        log_event(
            app.user,
            AuthEvent.Kind.REVOKED,
            f"app password {app.label!r}" + (f": {reason}" if reason else ""),
            actor=actor,
        )
        revocation = Revocation.objects.create(
            username=app.user.username,
            grant_ids=[app.grant.pk],
            text=f"this session's app password was revoked{_describe(actor)}"
            + (f": {reason}" if reason else ""),
        )
        _publish_on_commit(revocation)
    return app


def revoke_session(session_id: int, *, actor: str, reason: str = "", user: User | None = None) -> Session:
    """End one stream (its grant stays: the client can log in again)."""
    with transaction.atomic():
        query = Session.objects.select_related("user").filter(pk=session_id)
        if user is not None:
            query = query.filter(user=user)
        session = query.first()
        if session is None:
            raise NotFound(f"no session {session_id}")
        log_event(
            session.user,
            AuthEvent.Kind.REVOKED,
            f"session {session.jid}" + (f": {reason}" if reason else ""),
            actor=actor,
        )
        revocation = Revocation.objects.create(
            username=session.user.username,
            session_ids=[session.pk],
            text=f"this session was ended{_describe(actor)}" + (f": {reason}" if reason else ""),
        )
        _publish_on_commit(revocation)
    return session


def end_user_sessions(
    user: User, *, actor: str, reason: str = "", except_session: int | None = None, text: str = ""
) -> None:
    """End every session of the account (but ``except_session``) and kill all its FAST tokens.

    Grants and app passwords stay: clients log in again with the password or an app password.
    """
    with transaction.atomic():
        FastToken.objects.filter(client__user=user).delete()
        if not text:
            text = f"every session of this account was ended{_describe(actor)}" + (
                f": {reason}" if reason else ""
            )
            log_event(
                user,
                AuthEvent.Kind.REVOKED,
                "all sessions and FAST tokens" + (f": {reason}" if reason else ""),
                actor=actor,
            )
        revocation = Revocation.objects.create(
            username=user.username, all_sessions=True, except_session=except_session, text=text
        )
        _publish_on_commit(revocation)


def end_sessions_after_password_change(user: User, *, actor: str, except_session: int | None = None) -> None:
    """A new password ends every other session and every FAST token of the account (ASVS V7.4).

    App passwords stay valid: they are separate credentials, listed in the portal to review.
    """
    end_user_sessions(
        user,
        actor=actor,
        except_session=except_session,
        text=f"the account password was changed{_describe(actor)}",
    )


def change_password(
    user: User,
    password: str,
    *,
    actor: str,
    keep_other_sessions: bool = False,
    except_session: int | None = None,
) -> None:
    """Set a new password; unless asked otherwise, end the account's other sessions and tokens."""
    with transaction.atomic():
        user.keep_sessions_on_password_change = True  # handled here, not by the save hook
        user.set_password(password)
        user.save()
        log_event(
            user,
            AuthEvent.Kind.PASSWORD_CHANGED,
            "sessions kept" if keep_other_sessions else "other sessions ended",
            actor=actor,
        )
        if not keep_other_sessions:
            end_sessions_after_password_change(user, actor=actor, except_session=except_session)
