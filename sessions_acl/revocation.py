"""Revoking sessions, clients, grants and app passwords: commit, then tell every serving process.

Each function changes the database in one transaction (the grant is marked revoked, FAST tokens
are deleted, the security log says who did it) and writes a :class:`~.models.Revocation` row.
When the transaction commits the row is published on the channel layer (group
``CONTROL_GROUP``), which reaches every ``serve`` process at once with Redis; each process also
polls the table, which covers the in-memory layer of another process (``manage.py revoke``
beside ``manage.py serve``). A process closes every affected stream with a
``<policy-violation/>`` stream error whose text says what happened and who did it.

The portal, the admin, XEP-0494 and the management commands all call these functions; a password
change, announced by the accounts app, ends the account's other sessions here too
(:func:`on_password_changed`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TypeVar

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import models, transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import User
from accounts.signals import PasswordChange

from . import access
from .login import lock_clients
from .models import AppPassword, AuthEvent, Client, FastToken, Grant, Revocation, Session
from .securitylog import log_event

log = logging.getLogger("xmppauth.revocation")

CONTROL_GROUP = "xmppauth.control"

M = TypeVar("M", bound=models.Model)


class NotFound(LookupError):
    """Nothing with that id (or it belongs to another account)."""


def _publish_on_commit(revocation: Revocation) -> None:
    message = revocation.message()

    def committed() -> None:
        # When it committed: the serving processes spare logins that began after it (control.py).
        now = timezone.now()
        try:
            Revocation.objects.filter(pk=revocation.pk).update(committed=now)
            message["committed"] = now.timestamp()
        except Exception:  # without it, each process takes the time it heard of it: later, so safe
            log.exception("could not stamp revocation %s as committed", revocation.pk)
        touch_stamp()
        publish(message)

    transaction.on_commit(committed)


def _stamp() -> Path:
    return Path(settings.DATA_DIR) / "revocations.stamp"


def touch_stamp() -> None:
    """Tell serving processes on this machine to read the outbox now (a stat is all they pay)."""
    try:
        _stamp().touch()
    except OSError:
        log.warning("cannot touch %s; serving processes will read the outbox within seconds", _stamp())


def stamp_mtime() -> int | None:
    try:
        return _stamp().stat().st_mtime_ns
    except OSError:
        return None


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
    # One conditional UPDATE: of two revocations at once, the first says who and why (``grant`` may
    # have been read before the other committed).
    if grant.revoked is None:
        change = {"revoked": timezone.now(), "revoked_by": actor[:200], "revoke_reason": reason[:200]}
        if Grant.objects.filter(pk=grant.pk, revoked__isnull=True).update(**change):
            for name, value in change.items():
                setattr(grant, name, value)
        else:
            grant.refresh_from_db(fields=list(change))
    FastToken.objects.filter(client__grant=grant).delete()


def _find(query: QuerySet[M], pk: int, user: User | None, what: str) -> M:
    """The row ``pk`` (of ``user`` only, when given), or :class:`NotFound`."""
    if user is not None:
        query = query.filter(user=user)
    found = query.filter(pk=pk).first()
    if found is None:
        raise NotFound(f"no {what} {pk}")
    return found


def _record(
    user: User,
    what: str,
    *,
    actor: str,
    reason: str,
    text: str,
    session_ids: list[int] | None = None,
    grant_ids: list[int] | None = None,
) -> None:
    """The security log entry, the outbox row, and its publication once the transaction commits."""
    because = f": {reason}" if reason else ""
    log_event(user, AuthEvent.Kind.REVOKED, what + because, actor=actor)
    revocation = Revocation.objects.create(
        username=user.username,
        session_ids=session_ids or [],
        grant_ids=grant_ids or [],
        text=f"{text}{_describe(actor)}{because}",
    )
    _publish_on_commit(revocation)


def revoke_grant(grant_id: int, *, actor: str, reason: str = "", user: User | None = None) -> Grant:
    """End every session holding the grant and kill its tokens; ``user`` limits it to one account."""
    with transaction.atomic():
        # The clients holding it first, as logins take them (login.lock_clients).
        lock_clients(Client.objects.filter(grant_id=grant_id))
        grant = _find(Grant.objects.select_related("user"), grant_id, user, "grant")
        _revoke_grant_rows(grant, actor=actor, reason=reason)
        _record(
            grant.user,
            str(grant),
            actor=actor,
            reason=reason,
            text="this session's grant was revoked",
            grant_ids=[grant.pk],
        )
    return grant


def revoke_client(client_id: int, *, actor: str, reason: str = "", user: User | None = None) -> Client:
    """End the client's sessions, kill its FAST tokens and its grant (XEP-0494 revoke)."""
    with transaction.atomic():
        lock_clients(Client.objects.filter(pk=client_id))
        client = _find(Client.objects.select_related("user", "grant"), client_id, user, "client")
        client.revoked = timezone.now()
        client.save(update_fields=["revoked"])
        FastToken.objects.filter(client=client).delete()
        grant_ids = []
        if client.grant is not None:
            _revoke_grant_rows(client.grant, actor=actor, reason=reason or "client revoked")
            grant_ids.append(client.grant.pk)
        live = Session.objects.filter(client=client, ended__isnull=True).values_list("id", flat=True)
        _record(
            client.user,
            f"client {client}",
            actor=actor,
            reason=reason,
            text="this client was revoked",
            session_ids=list(live),
            grant_ids=grant_ids,
        )
    return client


def revoke_app_password(
    app_password_id: int, *, actor: str, reason: str = "", user: User | None = None
) -> AppPassword:
    """The app password stops working and its sessions end."""
    with transaction.atomic():
        app = _find(
            AppPassword.objects.select_related("user", "grant"), app_password_id, user, "app password"
        )
        _revoke_grant_rows(app.grant, actor=actor, reason=reason or "app password revoked")
        _record(
            app.user,
            f"app password {app.label!r}",
            actor=actor,
            reason=reason,
            text="this session's app password was revoked",
            grant_ids=[app.grant.pk],
        )
    return app


def revoke_session(session_id: int, *, actor: str, reason: str = "", user: User | None = None) -> Session:
    """End one stream (its grant stays: the client can log in again)."""
    with transaction.atomic():
        session = _find(Session.objects.select_related("user"), session_id, user, "session")
        _record(
            session.user,
            f"session {session.jid}",
            actor=actor,
            reason=reason,
            text="this session was ended",
            session_ids=[session.pk],
        )
    return session


def change_grant_scopes(grant_id: int, scopes: list[str], *, actor: str, user: User | None = None) -> Grant:
    """Give a grant other scopes; its live sessions use them within a second (no reconnect).

    Raises :class:`NotFound`, or ValueError with a message for a person (unknown scope, or a scope
    an app password can never carry).
    """
    with transaction.atomic():
        # The grant row held until the commit: a revocation or another change waits, then sees this one.
        grant = _find(
            Grant.objects.select_for_update(of=("self",)).select_related("user"), grant_id, user, "grant"
        )
        if grant.revoked is not None:
            raise ValueError("the grant is revoked")
        chosen = access.validate_scopes(scopes, app_password=grant.origin == Grant.Origin.APP_PASSWORD)
        before = set(grant.scopes)
        grant.scopes = sorted(chosen)
        grant.save(update_fields=["scopes"])
        removed, added = sorted(before - chosen), sorted(chosen - before)
        change = "; ".join(
            part
            for part in (
                f"removed {', '.join(removed)}" if removed else "",
                f"added {', '.join(added)}" if added else "",
            )
            if part
        )
        log_event(grant.user, AuthEvent.Kind.GRANT_CHANGED, f"{grant}: {change or 'unchanged'}", actor=actor)
        revocation = Revocation.objects.create(
            username=grant.user.username,
            grant_ids=[grant.pk],
            scopes=grant.scopes,
            text=f"this session's grant was changed{_describe(actor)}",
        )
        _publish_on_commit(revocation)
    return grant


def end_user_sessions(
    user: User,
    *,
    actor: str,
    reason: str = "",
    except_session: int | None = None,
    text: str = "",
    username: str = "",
) -> None:
    """End every session of the account (but ``except_session``) and kill all its FAST tokens.

    Grants and app passwords stay: clients log in again with the password or an app password.
    """
    with transaction.atomic():
        lock_clients(Client.objects.filter(user=user))  # as logins take them (login.lock_clients)
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
            username=username or user.username, all_sessions=True, except_session=except_session, text=text
        )
        _publish_on_commit(revocation)


def on_password_changed(sender: object, *, user: User, change: PasswordChange, **kwargs: object) -> None:
    """Receiver of :data:`accounts.signals.password_changed` (connected in ``apps.py``): the security
    log says who changed it and, unless the change keeps them, every other session and every FAST
    token of the account ends (ASVS V7.4).

    App passwords stay valid: they are separate credentials, listed in the portal to review.
    """
    log_event(
        user,
        AuthEvent.Kind.PASSWORD_CHANGED,
        "sessions kept" if change.keep_other_sessions else "other sessions ended",
        actor=change.actor,
    )
    if not change.keep_other_sessions:
        end_user_sessions(
            user,
            actor=change.actor,
            except_session=change.except_session,
            text=f"the account password was changed{_describe(change.actor)}",
        )


def on_factor_removed(
    sender: object, *, user: User, kind: str, action: str, actor: str = "", **kwargs: object
) -> None:
    """Receiver of :data:`accounts.signals.factor_changed` (connected in ``apps.py``): a second factor
    removed (by its owner, or by an operator whose ``mfa reset`` answers a lost phone) takes the account's
    FAST tokens with it, at once: they let a client back in without the password and without that factor.
    Sessions go on; the clients log in again with the password and the factors left."""
    if action != "removed":
        return
    with transaction.atomic():
        lock_clients(Client.objects.filter(user=user))  # as logins take them (login.lock_clients)
        dropped, _ = FastToken.objects.filter(client__user=user).delete()
    if dropped:
        detail = f"FAST tokens: a second factor ({kind}) was removed"
        log_event(user, AuthEvent.Kind.REVOKED, detail, actor=actor)


def on_account_changed(
    sender: object,
    *,
    user: User,
    changes: dict[str, tuple[object, object]],
    created: bool = False,
    actor: str = "",
    **kwargs: object,
) -> None:
    """Receiver of :data:`accounts.signals.account_changed` (connected in ``apps.py``): in the security
    log, with who did it; an account disabled, renamed (its JID changed) or no longer staff (its sessions
    hold the admin scope) has every session and FAST token ended."""
    shown = ", ".join(f"{name}: {old} → {new}" for name, (old, new) in changes.items())
    log_event(user, AuthEvent.Kind.ACCOUNT_CHANGED, ("created: " if created else "") + shown, actor=actor)
    if created:
        return
    ending = [
        why
        for name, why in (
            ("is_active", "the account was disabled"),
            ("username", "the account was renamed"),
            ("is_staff", "the account is no longer staff"),
        )
        if name in changes and (name == "username" or not changes[name][1])
    ]
    if ending:
        old_name = changes.get("username", (user.username, user.username))[0]
        end_user_sessions(user, actor=actor, reason="; ".join(ending), username=str(old_name))
