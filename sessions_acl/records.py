"""Session records: one row per XMPP stream, opened at bind, touched, closed, and forgotten in time.

The session rows are the login history of the security log (``securitylog.py`` keeps everything
else). Synchronous Django code; the stream consumer calls it off the event loop
(``xmppauth/services.py``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from .login import Authorization
from .models import AuthEvent, Session


def open_session(
    auth: Authorization,
    *,
    jid: str,
    transport: str,
    address: str,
    mechanism: str,
    node: str,
    factors: list[str] | None = None,
) -> int:
    """Record a bound stream; returns the session id. The session rows are the login history of the
    security log (AuthEvent keeps everything else: failures, tokens, revocations, changes)."""
    session = Session.objects.create(
        user_id=auth.user_id,
        grant_id=auth.grant_id,
        client_id=auth.client_id,
        jid=jid,
        transport=transport,
        address=address,
        mechanism=mechanism,
        credential=auth.credential,
        factors=factors or [],
        node=node,
    )
    return session.pk


def close_session(session_id: int, reason: str) -> None:
    now = timezone.now()
    Session.objects.filter(pk=session_id, ended__isnull=True).update(
        ended=now, last_activity=now, end_reason=reason[:200]
    )


def touch_session(session_id: int) -> None:
    Session.objects.filter(pk=session_id).update(last_activity=timezone.now())


def resume_session(session_id: int, auth: Authorization, mechanism: str, address: str) -> None:
    """A hibernated session continues on a new stream, under that stream's authentication."""
    Session.objects.filter(pk=session_id).update(
        grant_id=auth.grant_id,
        client_id=auth.client_id,
        credential=auth.credential,
        mechanism=mechanism,
        address=address,
        last_activity=timezone.now(),
    )


def forget_old_records(now: datetime | None = None) -> tuple[int, int]:
    """Privacy (XEP-0494, Privacy Considerations): ended sessions older than XMPP_SESSION_RECORD_DAYS
    and security-log entries older than XMPP_SECURITY_LOG_DAYS are deleted (0 keeps them for ever).
    Returns how many of each."""
    moment = now or timezone.now()
    sessions = events = 0
    if settings.XMPP_SESSION_RECORD_DAYS:
        horizon = moment - timedelta(days=settings.XMPP_SESSION_RECORD_DAYS)
        sessions, _ = Session.objects.filter(ended__lt=horizon).delete()
    if settings.XMPP_SECURITY_LOG_DAYS:
        horizon = moment - timedelta(days=settings.XMPP_SECURITY_LOG_DAYS)
        events, _ = AuthEvent.objects.filter(created__lt=horizon).delete()
    return sessions, events


def close_node_sessions(node: str, reason: str = "the server stopped") -> int:
    """At start-up: sessions this node left open when it last stopped are over."""
    now = timezone.now()
    return Session.objects.filter(node=node, ended__isnull=True).update(ended=now, end_reason=reason)
