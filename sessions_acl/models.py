"""Clients, grants, app passwords, FAST tokens, sessions and the security log.

Every authenticated XMPP session has exactly one :class:`Grant`: a password or FAST login gets
its :class:`Client`'s grant, an app-password login gets the app password's. Revoking a grant ends
every session that holds it and kills the tokens that hang off it (see ``revocation.py``).
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

#: "This grant is live" in SQL, for the login reads (``loginreads.py``) on a grant aliased ``g``;
#: one parameter, the moment. The same rule as :meth:`GrantQuerySet.live` and :meth:`Grant.is_live`.
LIVE_GRANT_SQL = "(g.revoked IS NULL AND (g.expires IS NULL OR g.expires > %s))"


class GrantQuerySet(models.QuerySet["Grant"]):
    """``Grant.objects``: the ORM form of the rules about grants."""

    def live(self, now: datetime) -> GrantQuerySet:
        """The grants neither revoked nor expired at ``now`` (the rule of :data:`LIVE_GRANT_SQL`)."""
        return self.filter(revoked__isnull=True).filter(Q(expires__isnull=True) | Q(expires__gt=now))


class Grant(models.Model):
    """What a client or an app password may do, and for how long."""

    class Origin(models.TextChoices):
        PASSWORD = "password", "Password login"
        APP_PASSWORD = "app-password", "App password"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="grants")
    origin = models.CharField(max_length=20, choices=Origin.choices)
    role = models.CharField(max_length=30, blank=True, help_text="The named role it was made from, if any.")
    scopes = models.JSONField(default=list)
    created = models.DateTimeField(default=timezone.now)
    expires = models.DateTimeField(null=True, blank=True)
    last_used = models.DateTimeField(null=True, blank=True)
    revoked = models.DateTimeField(null=True, blank=True)
    revoked_by = models.CharField(max_length=200, blank=True)
    revoke_reason = models.CharField(max_length=200, blank=True)

    objects = GrantQuerySet.as_manager()

    class Meta:
        ordering = ("-created",)

    def __str__(self) -> str:
        return f"grant {self.pk} ({self.get_origin_display()}) of {self.user}"

    def is_live(self, now: datetime | None = None) -> bool:
        """Neither revoked nor expired at ``now`` (the rule of :data:`LIVE_GRANT_SQL`)."""
        moment = now or timezone.now()
        return self.revoked is None and (self.expires is None or self.expires > moment)


def client_label(user_agent_id: str, software: str, device: str) -> str:
    """How a client is named to its owner."""
    if not user_agent_id:
        return "clients without an id (RFC 6120 logins)"
    what = software or "unknown software"
    return f"{what} on {device}" if device else what


class Client(models.Model):
    """One client installation of an account: a SASL2 user-agent id (XEP-0388 §2.4).

    The unit that XEP-0494 lists and revokes and that FAST tokens belong to. Software and device
    are what the client says about itself; they are shown to the account's owner only. Streams
    that name no user agent (RFC 6120 logins, SASL2 without ``<user-agent id>``) share one client
    per account with an empty id.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="clients")
    user_agent_id = models.CharField(max_length=256, blank=True)
    software = models.CharField(max_length=256, blank=True)
    device = models.CharField(max_length=256, blank=True)
    first_seen = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField()
    grant = models.ForeignKey(Grant, null=True, blank=True, on_delete=models.SET_NULL, related_name="clients")
    # How it last authenticated: "password" or "fast"; when it last presented the account password
    # (XEP-0494 <auth><password/>: it may still know it, unless the password changed since).
    last_auth = models.CharField(max_length=20, blank=True)
    password_seen = models.DateTimeField(null=True, blank=True)
    revoked = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "user_agent_id"], name="one_client_per_user_agent")
        ]
        ordering = ("-last_seen",)

    def __str__(self) -> str:
        return client_label(self.user_agent_id, self.software, self.device)


class AppPassword(models.Model):
    """A password for one program, with its own grant; shown once, stored as SCRAM keys only.

    The keys are derived with the account's salt and iteration count for each hash, so one SCRAM
    exchange can be checked against the account password and every app password at once (the
    server never has to know in advance which one the client uses; see docs/access.md).
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="app_passwords")
    grant = models.OneToOneField(Grant, on_delete=models.CASCADE, related_name="app_password")
    label = models.CharField(max_length=100)
    scram = models.JSONField(default=dict, editable=False)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("-created",)

    def __str__(self) -> str:
        return f"app password {self.label!r} of {self.user}"


class FastToken(models.Model):
    """XEP-0484 token of a client, in one of two slots (current / new) for rotation.

    ``key`` is SHA-256 of the token (what HMAC uses as the key for a token longer than the hash
    block), masked with a per-row value derived from the server's secret key: a copy of the
    database alone neither shows the token nor lets anyone compute its HMAC.
    """

    class Slot(models.TextChoices):
        CURRENT = "current"
        NEW = "new"

    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="fast_tokens")
    slot = models.CharField(max_length=10, choices=Slot.choices)
    mechanism = models.CharField(max_length=40)
    key = models.BinaryField(max_length=32)
    nonce = models.BinaryField(max_length=16)
    issued = models.DateTimeField(default=timezone.now)
    expires = models.DateTimeField()
    last_count = models.PositiveBigIntegerField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["client", "slot"], name="one_token_per_slot")]

    def __str__(self) -> str:
        return f"{self.mechanism} token ({self.slot}) of {self.client}, expires {self.expires:%Y-%m-%d}"


class Session(models.Model):
    """One XMPP stream, live (``ended`` is null) or past."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="xmpp_sessions")
    grant = models.ForeignKey(Grant, null=True, on_delete=models.SET_NULL, related_name="sessions")
    client = models.ForeignKey(
        Client, null=True, blank=True, on_delete=models.SET_NULL, related_name="sessions"
    )
    jid = models.CharField(max_length=3071)
    transport = models.CharField(max_length=20)
    address = models.CharField(max_length=100, blank=True)
    mechanism = models.CharField(max_length=40)
    credential = models.CharField(max_length=40, help_text="password, app-password or fast")
    factors = models.JSONField(default=list, blank=True)
    started = models.DateTimeField(default=timezone.now)
    last_activity = models.DateTimeField(default=timezone.now)
    ended = models.DateTimeField(null=True, blank=True, db_index=True)
    end_reason = models.CharField(max_length=200, blank=True)
    node = models.CharField(max_length=100)

    class Meta:
        ordering = ("-started",)

    def __str__(self) -> str:
        return f"{self.jid} ({'live' if self.ended is None else 'ended'})"


class AuthEvent(models.Model):
    """The security log: what happened to an account, who did it, from where. Never a secret."""

    class Kind(models.TextChoices):
        LOGIN = "login", "Logged in"
        LOGIN_FAILED = "login-failed", "Failed login"
        TOKEN_ISSUED = "token-issued", "FAST token issued"
        TOKEN_INVALIDATED = "token-invalidated", "FAST token invalidated by its client"
        APP_PASSWORD_CREATED = "app-password-created", "App password created"
        GRANT_CHANGED = "grant-changed", "Grant changed"
        REVOKED = "revoked", "Revoked"
        PASSWORD_CHANGED = "password-changed", "Password changed"
        POLICY_CHANGED = "policy-changed", "Login policy changed"
        FACTOR_CHANGED = "factor-changed", "Second factor enrolled or removed"
        ACCOUNT_CHANGED = "account-changed", "Account changed by an operator"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.CASCADE, related_name="auth_events"
    )
    kind = models.CharField(max_length=30, choices=Kind.choices)
    created = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.CharField(max_length=200, blank=True)
    address = models.CharField(max_length=100, blank=True)
    detail = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ("-created", "-id")

    def __str__(self) -> str:
        return f"{self.created:%Y-%m-%d %H:%M:%S} {self.get_kind_display()}: {self.detail}"


class Revocation(models.Model):
    """Outbox of revocations for the serving processes (published at commit, and polled).

    The channel layer carries a revocation to every process at once; a process that cannot hear
    it (the in-memory layer in another process, e.g. ``manage.py revoke`` beside ``serve``) finds
    it here within ``XMPP_REVOCATION_POLL_SECONDS``.
    """

    created = models.DateTimeField(default=timezone.now, db_index=True)
    username = models.CharField(max_length=150)
    session_ids = models.JSONField(default=list, blank=True)
    grant_ids = models.JSONField(default=list, blank=True)
    all_sessions = models.BooleanField(default=False)
    except_session = models.BigIntegerField(null=True, blank=True)
    text = models.CharField(max_length=300)
    # Not a revocation but a change: the sessions of ``grant_ids`` go on with these scopes.
    scopes = models.JSONField(null=True, blank=True)
    # When the transaction that wrote it committed (set just after): a login whose credential read
    # began later saw what it changed, and ``all_sessions`` spares it. Unset, the reader's own time.
    committed = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"revocation {self.pk} for {self.username}: {self.text}"

    def message(self) -> dict[str, object]:
        return {
            "id": self.pk,
            "username": self.username,
            "session_ids": list(self.session_ids),
            "grant_ids": list(self.grant_ids),
            "all_sessions": self.all_sessions,
            "except_session": self.except_session,
            "text": self.text,
            "scopes": self.scopes,
            "committed": self.committed.timestamp() if self.committed is not None else None,
        }
