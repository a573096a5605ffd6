"""The security log: what happened to an account, who did it, from where (never a secret).

Everything but the XMPP logins themselves, which are the session records (``records.py``): failed
logins, web sign-ins (the portal keeps no session records), FAST tokens issued and invalidated, app
passwords, grant changes, revocations, password and policy changes. Kept ``XMPP_SECURITY_LOG_DAYS``
(``records.forget_old_records``).
"""

from __future__ import annotations

from accounts.models import User

from .models import AuthEvent


def log_event(user: User | int | None, kind: str, detail: str, *, actor: str = "", address: str = "") -> None:
    AuthEvent.objects.create(
        user_id=user if isinstance(user, int) or user is None else user.pk,
        kind=kind,
        detail=detail[:500],
        actor=actor[:200],
        address=address[:100],
    )


def login_failed(
    localpart: str | None, mechanism: str, condition: str, address: str, *, factor_failed: str = ""
) -> None:
    """Security log entry for a failed login of an existing account (unknown names are not kept).
    ``factor_failed``: the password was right and the second factor was not passed (why): the owner
    must learn that someone has their password."""
    if localpart is None:
        return
    user_id = User.objects.filter(username=localpart).values_list("id", flat=True).first()
    if user_id is None:
        return
    detail = f"{mechanism}: {condition}"
    if factor_failed:
        detail = f"{mechanism}: the password was right, the second factor was not passed: {factor_failed}"
    log_event(user_id, AuthEvent.Kind.LOGIN_FAILED, detail, address=address)


def logins_failed(batch: list[tuple[str | None, str, str, str, str]]) -> None:
    """:func:`login_failed` for many at once (``xmppauth/failed_logins.py``): one read of the accounts
    named, one insert; entries are (localpart, mechanism, condition, address, factor_failed)."""
    names = {localpart for localpart, *_ in batch if localpart is not None}
    ids = dict(User.objects.filter(username__in=names).values_list("username", "id")) if names else {}
    rows = []
    for localpart, mechanism, condition, address, factor_failed in batch:
        user_id = ids.get(localpart) if localpart is not None else None
        if user_id is None:
            continue  # unknown names are not kept
        detail = f"{mechanism}: {condition}"
        if factor_failed:
            detail = f"{mechanism}: the password was right, the second factor was not passed: {factor_failed}"
        rows.append(
            AuthEvent(
                user_id=user_id, kind=AuthEvent.Kind.LOGIN_FAILED, detail=detail[:500], address=address[:100]
            )
        )
    AuthEvent.objects.bulk_create(rows)


def on_factor_changed(
    sender: object, *, user: User, kind: str, action: str, actor: str = "", detail: str = "", **kwargs: object
) -> None:
    """Receiver of :data:`accounts.signals.factor_changed` (connected in ``apps.py``): a second factor
    was enrolled or removed, in the security log with who did it."""
    text = f"{kind} {action}: {detail}" if detail else f"{kind} {action}"
    log_event(user, AuthEvent.Kind.FACTOR_CHANGED, text[:500], actor=actor)


def on_web_signin(
    sender: object, *, user: User, ok: bool, detail: str, address: str = "", **kwargs: object
) -> None:
    """Receiver of :data:`accounts.signals.web_signin` (connected in ``apps.py``): a web sign-in, or a
    refused attempt, with where it came from."""
    log_event(user, AuthEvent.Kind.LOGIN if ok else AuthEvent.Kind.LOGIN_FAILED, detail, address=address)


def on_policy_changed(
    sender: object, *, user: User, old: str, new: str, actor: str = "", **kwargs: object
) -> None:
    """Receiver of :data:`accounts.signals.policy_changed` (connected in ``apps.py``): the account's
    policy for XMPP password logins changed, in the security log with who did it."""
    log_event(user, AuthEvent.Kind.POLICY_CHANGED, f"XMPP password logins: {old} → {new}", actor=actor)
