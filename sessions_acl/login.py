"""What a stream that just authenticated may do: the grant a login holds, its client, its FAST token.

A SASL mechanism has matched a credential (:mod:`sessions_acl.credentials`); :func:`authorize` now
decides: the account password gets the client's grant (made or renewed here), an app password its
own grant, a FAST token its client's grant, and a token is issued, rotated (XEP-0484) or
invalidated on the way. The usual reconnect is one read (``loginreads.py``) and no write.
Synchronous Django code; the stream consumer calls it off the event loop (``xmppauth/services.py``).
Nothing here ever logs or stores a secret.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.models import PasswordLogin, User

from . import access, loginreads, tokens
from .credentials import APP_PASSWORD_PREFIX, FAST_PREFIX
from .models import AppPassword, AuthEvent, Client, FastToken, Grant, client_label
from .securitylog import log_event

log = logging.getLogger("xmppauth.grants")


@dataclass(frozen=True, kw_only=True)
class IssuedToken:
    """A new XEP-0484 token for the client, shown to it once in the SASL2 success."""

    token: str = field(repr=False)
    expiry: str
    mechanism: str


@dataclass(frozen=True, kw_only=True)
class Authorization:
    """What an authenticated stream may do: the grant it holds, and where it came from."""

    user_id: int
    username: str
    staff: bool
    grant_id: int
    grant_expires: datetime | None
    client_id: int | None
    scopes: frozenset[str]
    credential: str  # "password" | "app-password" | "fast"
    label: str  # the app password's label or the client's description, for logs and the portal
    token: IssuedToken | None = None
    #: The second factors the account has confirmed, when this login must pass one of them as a
    #: SASL2 task (a password login; app passwords and FAST tokens are exempt): "totp", "webauthn",
    #: "recovery"; "totp-init" when the account's policy demands a factor it does not have yet
    #: (XEP-0400 TOTP-INIT).
    second_factors: tuple[str, ...] = ()
    #: A FAST token the client asked for (its mechanism), to be issued only once the tasks are
    #: passed (XEP-0484: "only after full authentication, including all tasks"): finish_after_tasks().
    token_request: str | None = None

    @property
    def pending(self) -> bool:
        """A password login that still owes a second factor: it holds no grant yet (``grant_id`` 0, no
        scopes) and nothing of it is written; :func:`finish_after_tasks` completes it."""
        return bool(self.second_factors)


@dataclass(frozen=True, kw_only=True)
class Refusal:
    """The mechanism succeeded but the login is not allowed; ``condition`` is a SASL condition."""

    condition: str
    text: str


def authorize(
    localpart: str,
    *,
    credential_id: str,
    mechanism: str,
    user_agent_id: str | None,
    software: str | None = None,
    device: str | None = None,
    fast_request: str | None = None,
    fast_invalidate: bool = False,
    fast_count: int | None = None,
    address: str = "",
    tasks: bool = True,
) -> Authorization | Refusal:
    """Decide what a stream that just authenticated may do, and record the client and grant.

    ``credential_id`` says what matched: "" the account password, "app:N" an app password,
    "fast:N" a FAST token. ``tasks`` says whether the login can be asked for SASL2 tasks (False for
    RFC 6120 SASL): a password login of an account with a second factor is refused without them.

    Concurrent logins of one client (several connections at once, several serving processes) may
    interleave in any way: whatever a login reads and then changes (the client's tokens and grant)
    it reads after taking the client's turn (:func:`lock_clients`), or it changes with one
    conditional UPDATE whose row count says whether it won.
    """
    now = timezone.now()
    if not credential_id:
        # The common case, kept to one read when nothing changed since the client's last login.
        return _authorize_password(
            localpart, user_agent_id or "", software, device, fast_request, now, tasks=tasks
        )
    if credential_id.startswith(FAST_PREFIX) and not (
        fast_request or fast_invalidate or fast_count is not None
    ):
        quick = _fast_without_writes(localpart, credential_id, user_agent_id or "", now)
        if quick is not None:
            return quick
    with transaction.atomic():
        user = User.objects.filter(username=localpart, is_active=True).first()
        if user is None:
            return _DISABLED
        if credential_id.startswith(APP_PASSWORD_PREFIX):
            return _authorize_app_password(user, credential_id, fast_request, now)
        return _authorize_fast(
            user, credential_id, user_agent_id or "", fast_request, fast_invalidate, fast_count, now
        )


_DISABLED = Refusal(condition="account-disabled", text="this account is disabled")


def finish_after_tasks(
    localpart: str,
    *,
    user_agent_id: str,
    software: str | None = None,
    device: str | None = None,
    fast_request: str | None = None,
) -> Authorization | Refusal:
    """A password login that has now passed its second factor (a :attr:`Authorization.pending` one):
    record its client and grant, and issue the FAST token it asked for (XEP-0484 hands one out only
    after every task). Read afresh: the account may have been disabled meanwhile."""
    now = timezone.now()
    row = loginreads.password_login(localpart, user_agent_id, now)
    if row is None or not row.active:
        return _DISABLED
    return _record_password_login(localpart, row, user_agent_id, software, device, fast_request, now)


# Last seen / last used are kept to the minute: a login within a minute of the previous one writes
# nothing (one write per login cost a third of a login's CPU, see docs/performance.md).
SEEN_GRANULARITY = timedelta(seconds=60)


def _stale(moment: datetime | None, now: datetime) -> bool:
    return moment is None or now - moment >= SEEN_GRANULARITY


def lock_clients(clients: QuerySet[Client]) -> None:
    """Take these clients' turn until the transaction ends: whatever reads and then changes a
    client's tokens or grant does it in its turn, so that two logins (or a login and a revocation)
    never decide on the same stale read.

    PostgreSQL: ``SELECT … FOR UPDATE`` on the client rows, in id order (the same order everywhere,
    so that two transactions never wait for each other in a circle); the next statements see what
    the previous holder committed. SQLite: nothing to do, because every transaction here is already
    the only writer from its first statement on (``transaction_mode: IMMEDIATE`` in
    xmppauth/settings.py), and every read inside it is current.
    """
    if connection.features.has_select_for_update:
        list(clients.select_for_update(of=("self",)).order_by("pk").values_list("pk", flat=True))


def _authorize_app_password(
    user: User, credential_id: str, fast_request: str | None, now: datetime
) -> Authorization | Refusal:
    pk = int(credential_id.removeprefix(APP_PASSWORD_PREFIX))
    app = AppPassword.objects.select_related("grant").filter(pk=pk, user=user).first()
    gone = Refusal(condition="credentials-expired", text="this app password was revoked or has expired")
    if app is None or not app.grant.is_live(now):
        return gone
    # Marked used (its first use makes it a "session" in XEP-0494 lists) only while still live: a
    # revocation that commits between the read above and this UPDATE makes it match no row.
    if not Grant.objects.filter(pk=app.grant.pk).live(now).update(last_used=now):
        return gone
    if fast_request:
        # A token belongs to a client's grant, which an app password must never reach.
        log.info("%s: no FAST token for an app-password session (%s)", user.username, app.label)
    return Authorization(
        user_id=user.pk,
        username=user.username,
        staff=user.is_staff,
        grant_id=app.grant.pk,
        grant_expires=app.grant.expires,
        client_id=None,
        scopes=access.session_scopes(app.grant.scopes, app_password=True, staff=user.is_staff),
        credential="app-password",
        label=app.label,
    )


def _from_row(
    localpart: str,
    row: loginreads.PasswordLogin | loginreads.FastLogin,
    grant_id: int,
    credential: str,
    user_agent_id: str,
) -> Authorization:
    """A password or FAST login that holds its client's grant, straight from the login read."""
    return Authorization(
        user_id=row.user_id,
        username=localpart,
        staff=row.staff,
        grant_id=grant_id,
        grant_expires=row.grant_expires,
        client_id=row.client_id,
        scopes=access.session_scopes(row.grant_scopes, app_password=False, staff=row.staff),
        credential=credential,
        label=client_label(user_agent_id, row.software, row.device),
    )


def _fast_without_writes(
    localpart: str, credential_id: str, user_agent_id: str, now: datetime
) -> Authorization | None:
    """A reconnect with the current token that changes nothing: one read. None: take the long way
    (the token is new or due for rotation, a record is a minute old, or something is not live)."""
    row = loginreads.fast_login(localpart, int(credential_id.removeprefix(FAST_PREFIX)), now)
    if (
        row is None
        or row.user_agent_id != user_agent_id
        or row.slot != FastToken.Slot.CURRENT
        or now - row.issued >= tokens.rotate_after()
        or row.last_auth != "fast"
        or _stale(row.last_seen, now)
        or _stale(row.grant_last_used, now)
    ):
        return None
    return _from_row(localpart, row, row.grant_id, "fast", row.user_agent_id)


def _authorize_fast(
    user: User,
    credential_id: str,
    user_agent_id: str,
    fast_request: str | None,
    invalidate: bool,
    count: int | None,
    now: datetime,
) -> Authorization | Refusal:
    pk = int(credential_id.removeprefix(FAST_PREFIX))
    lock_clients(Client.objects.filter(user=user, fast_tokens=pk))
    # Read in the client's turn: another login of this client may just have promoted, rotated or
    # invalidated this very token.
    token = FastToken.objects.select_related("client__grant").filter(pk=pk, client__user=user).first()
    expired = Refusal(
        condition="credentials-expired",
        text="this token is not valid (expired, replaced or revoked); authenticate with your password",
    )
    # A token belongs to one user agent (XEP-0484), never to the shared "clients without an id".
    if (
        token is None
        or token.expires <= now
        or not user_agent_id
        or token.client.user_agent_id != user_agent_id
    ):
        return expired
    client = token.client
    grant = client.grant
    if client.revoked is not None or grant is None or not grant.is_live(now):
        return expired
    if count is not None:
        # XEP-0484 §4: a count must grow with every use of a token; an old one is a replay. One
        # conditional UPDATE: of two logins with the same count, only one matches the row.
        fresh = (
            FastToken.objects.filter(pk=pk)
            .filter(Q(last_count__isnull=True) | Q(last_count__lt=count))
            .update(last_count=count)
        )
        if not fresh:
            return Refusal(condition="not-authorized", text="this token count was already used")
    elif token.last_count is not None:
        # A client that counts goes on counting: a login without the count it has been sending is a
        # recorded one replayed with its count left out (found by tests/security/test_fast.py).
        return Refusal(condition="not-authorized", text="this token is used with a count: send the next one")
    if token.slot == FastToken.Slot.NEW:
        # XEP-0484 §5: the new token is in use, so the older one is retired (never this one, which
        # the unique (client, slot) constraint needs out of the way first).
        FastToken.objects.filter(client=client, slot=FastToken.Slot.CURRENT).exclude(pk=pk).delete()
        FastToken.objects.filter(pk=pk, slot=FastToken.Slot.NEW).update(slot=FastToken.Slot.CURRENT)
    issued: IssuedToken | None = None
    if invalidate:
        token.delete()
        log_event(user, AuthEvent.Kind.TOKEN_INVALIDATED, f"by {client}")
        if fast_request:
            issued = _issue_token(client, fast_request, now)
    elif fast_request:
        issued = _issue_token(client, fast_request, now)
    elif now - token.issued >= tokens.rotate_after():
        issued = _rotate(client, token.mechanism, now)
    if _stale(client.last_seen, now) or client.last_auth != "fast":
        Client.objects.filter(pk=client.pk).update(last_seen=now, last_auth="fast")
    return _client_authorization(user, client, grant, "fast", issued, now)


def _authorize_password(
    localpart: str,
    user_agent_id: str,
    software: str | None,
    device: str | None,
    fast_request: str | None,
    now: datetime,
    *,
    tasks: bool,
) -> Authorization | Refusal:
    row = loginreads.password_login(localpart, user_agent_id, now)
    if row is None or not row.active:
        return _DISABLED
    if row.policy == PasswordLogin.OFF:
        return Refusal(
            condition="not-authorized",
            text="password logins over XMPP are turned off for this account: "
            "use an app password, or a client that already holds a FAST token",
        )
    second_factors = (
        (("totp",) if row.has_totp else ())
        + (("webauthn",) if row.has_webauthn else ())
        + (("recovery",) if row.has_recovery_codes else ())
    )
    if second_factors and not tasks:
        return Refusal(
            condition="not-authorized",
            text="this account has a second factor, which RFC 6120 SASL cannot ask for: log in with a "
            "client that speaks SASL2 tasks (XEP-0388, XEP-0400), or use an app password",
        )
    if not second_factors and row.policy == PasswordLogin.SECOND_FACTOR:
        if not tasks:
            return Refusal(
                condition="not-authorized",
                text="this account allows password logins only with a second factor, and it has none "
                "yet: enrol one with a client that speaks SASL2 tasks (XEP-0400 TOTP-INIT), or use an "
                "app password",
            )
        # XEP-0400 TOTP-INIT: the login sets up an authenticator app, and passes only once it works.
        second_factors = ("totp-init",)
    if second_factors:
        # Nothing is written before the second factor: no client row made or brought back from a
        # revocation, no grant renewed, no password seen, no token (XEP-0484: it waits for the tasks).
        return Authorization(
            user_id=row.user_id,
            username=localpart,
            staff=row.staff,
            grant_id=0,
            grant_expires=None,
            client_id=None,
            scopes=frozenset(),
            credential="password",
            label="",
            second_factors=second_factors,
            token_request=fast_request,
        )
    return _record_password_login(localpart, row, user_agent_id, software, device, fast_request, now)


def _record_password_login(
    localpart: str,
    row: loginreads.PasswordLogin,
    user_agent_id: str,
    software: str | None,
    device: str | None,
    fast_request: str | None,
    now: datetime,
) -> Authorization:
    """The grant of a password login that owes nothing more, its client recorded (made, renewed or
    brought back), with the FAST token it asked for."""
    software = software[:256] if software else None
    device = device[:256] if device else None
    unchanged = (
        row.client_id is not None
        and row.client_live
        and row.grant_id is not None
        and row.grant_live
        and not _stale(row.password_seen, now)
        and (software is None or software == row.software)
        and (device is None or device == row.device)
    )
    if unchanged and not fast_request:
        # The usual reconnect: nothing to write (last seen and last used are kept to the minute).
        assert row.grant_id is not None
        return _from_row(localpart, row, row.grant_id, "password", user_agent_id)
    with transaction.atomic():
        user = User.objects.get(pk=row.user_id)
        # The client row in this login's turn (lock_clients): made by exactly one of two first logins
        # at once (the other's INSERT fails on the unique (user, user agent) constraint, inside a
        # savepoint, and it reads the row the first one committed), and read afresh, so that two
        # logins never both give it a new grant.
        client, created = Client.objects.select_for_update().get_or_create(
            user=user, user_agent_id=user_agent_id, defaults={"first_seen": now, "last_seen": now}
        )
        grant = client.grant
        renew = grant is None or not grant.is_live(now)
        if renew:
            role = "admin" if user.is_staff else "full"
            grant = Grant.objects.create(
                user=user, origin=Grant.Origin.PASSWORD, role=role, scopes=sorted(access.ROLES[role])
            )
            client.grant = grant
        if created or renew or client.revoked is not None or not unchanged:
            client.last_seen = client.password_seen = now
            client.last_auth = "password"
            client.revoked = None
            client.software = software or client.software
            client.device = device or client.device
            client.save()
        assert grant is not None
        issued = _issue_token(client, fast_request, now) if fast_request and user_agent_id else None
        return _client_authorization(user, client, grant, "password", issued, now)


def _client_authorization(
    user: User, client: Client, grant: Grant, credential: str, token: IssuedToken | None, now: datetime
) -> Authorization:
    """A password or FAST login holds its client's grant."""
    if _stale(grant.last_used, now):
        Grant.objects.filter(pk=grant.pk).update(last_used=now)
    return Authorization(
        user_id=user.pk,
        username=user.username,
        staff=user.is_staff,
        grant_id=grant.pk,
        grant_expires=grant.expires,
        client_id=client.pk,
        scopes=access.session_scopes(grant.scopes, app_password=False, staff=user.is_staff),
        credential=credential,
        label=str(client),
        token=token,
    )


def _rotate(client: Client, mechanism: str, now: datetime) -> IssuedToken | None:
    """A new token for a login with a token due for rotation, unless the client already has an
    unused one that is not due itself: another login of the client (one racing with this one, or a
    recent one) was given it, and replacing it would take from the client the token it was told to
    use next. This login then brings no token; the one it used still works."""
    fresh_after = now - max(tokens.rotate_after(), SEEN_GRANULARITY)
    if FastToken.objects.filter(client=client, slot=FastToken.Slot.NEW, issued__gt=fresh_after).exists():
        return None
    return _issue_token(client, mechanism, now)


def _issue_token(client: Client, mechanism: str, now: datetime) -> IssuedToken:
    """A new token in the client's ``new`` slot (an unused earlier one is replaced). Called in the
    client's turn (:func:`lock_clients`), so the DELETE and the INSERT are not interleaved with
    another login's: the unique (client, slot) constraint is never hit."""
    token = tokens.new_token()
    masked, nonce = tokens.seal(tokens.hmac_key(token))
    expires = now + tokens.token_lifetime()
    FastToken.objects.filter(client=client, slot=FastToken.Slot.NEW).delete()
    FastToken.objects.create(
        client=client,
        slot=FastToken.Slot.NEW,
        mechanism=mechanism,
        key=masked,
        nonce=nonce,
        issued=now,
        expires=expires,
    )
    log_event(client.user_id, AuthEvent.Kind.TOKEN_ISSUED, f"{mechanism} token for {client}")
    return IssuedToken(token=token, expiry=tokens.xep0082(expires), mechanism=mechanism)
