"""The operators' view of clients, grants, app passwords, FAST tokens, sessions and the security log
(docs/admin.md).

Every page here is read-only. What changes these rows is an action, and each action goes through
``sessions_acl.revocation`` like every other path (portal, XEP-0494, ``manage.py revoke``): the
affected streams close within a second, the ``Revocation`` outbox and the security log name the
operator. Nothing is deleted here: a deleted grant, client, session or app password would end
nothing and say nothing, so the admin's delete is off for them (revoke instead). No secret is
shown: not an app password's SCRAM keys, not a FAST token's key or nonce.

Sessions and clients show whether they are online now (a live session: ``ended`` is empty), for
clients with one ``EXISTS`` in the changelist's query, not a query per row.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar

from django.contrib import admin, messages
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from accounts.admin import M, ReadOnlyAdmin, YesNoFilter, admin_actor, may_change

from . import revocation
from .models import AppPassword, AuthEvent, Client, FastToken, Grant, Revocation, Session


def _revoke_each(request: HttpRequest, rows: QuerySet[Any], revoke: Callable[..., object]) -> int:
    """Revoke each row through ``revoke`` (a function of ``revocation``); how many were revoked."""
    count = 0
    for pk in rows.values_list("pk", flat=True):
        try:
            revoke(pk, actor=admin_actor(request))
        except revocation.NotFound:  # gone meanwhile
            continue
        count += 1
    return count


def _report(
    model_admin: admin.ModelAdmin[Any],
    request: HttpRequest,
    outcome: tuple[str, str, str],
    selected: int,
    count: int,
) -> None:
    """``outcome``: what was done ("Revoked"), to what ("grant(s)") and why the others were left
    ("already revoked")."""
    done, noun, why_left = outcome
    if not count:
        model_admin.message_user(
            request, f"Nothing done: the selected {noun} were {why_left}", messages.WARNING
        )
        return
    skipped = selected - count
    also = f" ({skipped} {why_left}, left alone)" if skipped else ""
    model_admin.message_user(
        request, f"{done} {count} {noun}{also}; their streams close within a second", messages.SUCCESS
    )


class _RevokingAdmin(ReadOnlyAdmin[M]):
    """Read-only pages whose actions revoke: they ask for the model's change permission."""

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return may_change(self, request)


class LiveFilter(YesNoFilter):
    """Sessions that are live now (connected, or hibernating for a stream-management resume)."""

    title = "live"
    parameter_name = "live"
    labels = ("live now", "ended")
    yes: ClassVar[dict[str, Any]] = {"ended__isnull": True}
    no: ClassVar[dict[str, Any]] = {"ended__isnull": False}


class OnlineFilter(YesNoFilter):
    """Clients with a live session now (the ``online`` annotation)."""

    title = "online"
    parameter_name = "online"
    labels = ("online now", "offline")
    yes: ClassVar[dict[str, Any]] = {"online": True}
    no: ClassVar[dict[str, Any]] = {"online": False}


class GrantStateFilter(admin.SimpleListFilter):
    """Live, revoked or expired, on a grant (``prefix`` "") or on what holds one ("grant__")."""

    title = "state"
    parameter_name = "state"
    prefix = ""

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> list[tuple[str, str]]:
        return [("live", "live"), ("revoked", "revoked"), ("expired", "expired")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        p, now = self.prefix, timezone.now()
        if self.value() == "live":
            return queryset.filter(
                Q(**{f"{p}revoked__isnull": True}),
                Q(**{f"{p}expires__isnull": True}) | Q(**{f"{p}expires__gt": now}),
            )
        if self.value() == "revoked":
            return queryset.filter(**{f"{p}revoked__isnull": False})
        if self.value() == "expired":
            return queryset.filter(**{f"{p}revoked__isnull": True, f"{p}expires__lte": now})
        return queryset


class AppPasswordStateFilter(GrantStateFilter):
    prefix = "grant__"


class RevokedFilter(YesNoFilter):
    title = "revoked"
    parameter_name = "revoked"
    labels = ("revoked", "not revoked")
    yes: ClassVar[dict[str, Any]] = {"revoked__isnull": False}
    no: ClassVar[dict[str, Any]] = {"revoked__isnull": True}


@admin.register(Client)
class ClientAdmin(_RevokingAdmin[Client]):
    list_display = (
        "id",
        "user",
        "software",
        "device",
        "first_seen",
        "last_seen",
        "last_auth",
        "revoked",
        "online",
    )
    list_display_links = ("id", "user")
    list_filter = (OnlineFilter, RevokedFilter, "last_auth")
    list_select_related = ("user",)
    search_fields = ("user__username", "software", "device", "user_agent_id")
    fields = (
        "user",
        "user_agent_id",
        "software",
        "device",
        "first_seen",
        "last_seen",
        "grant",
        "last_auth",
        "password_seen",
        "revoked",
        "online",
    )
    readonly_fields = fields
    actions = ("revoke_clients",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Client]:
        live = Session.objects.filter(client=OuterRef("pk"), ended__isnull=True)
        return super().get_queryset(request).annotate(online=Exists(live))

    @admin.display(description="online", boolean=True, ordering="online")
    def online(self, obj: Client) -> bool:
        return bool(obj.online)  # type: ignore[attr-defined]

    @admin.action(
        description="Revoke the selected clients (sessions, FAST tokens, grant)", permissions=["revoke"]
    )
    def revoke_clients(self, request: HttpRequest, queryset: QuerySet[Client]) -> None:
        pending = queryset.filter(revoked__isnull=True)
        count = _revoke_each(request, pending, revocation.revoke_client)
        _report(self, request, ("Revoked", "client(s)", "already revoked"), queryset.count(), count)


@admin.register(Grant)
class GrantAdmin(_RevokingAdmin[Grant]):
    list_display = (
        "id",
        "user",
        "origin",
        "role",
        "scope_list",
        "created",
        "expires",
        "revoked",
        "last_used",
    )
    list_display_links = ("id", "user")
    list_filter = (GrantStateFilter, "origin", "role")
    list_select_related = ("user",)
    search_fields = ("user__username", "role", "revoked_by")
    fields = (
        "user",
        "origin",
        "role",
        "scope_list",
        "created",
        "expires",
        "last_used",
        "revoked",
        "revoked_by",
        "revoke_reason",
    )
    readonly_fields = fields
    actions = ("revoke_grants",)

    @admin.display(description="scopes")
    def scope_list(self, obj: Grant) -> str:
        return ", ".join(obj.scopes)

    @admin.action(
        description="Revoke the selected grants (every session holding them ends)", permissions=["revoke"]
    )
    def revoke_grants(self, request: HttpRequest, queryset: QuerySet[Grant]) -> None:
        pending = queryset.filter(revoked__isnull=True)
        count = _revoke_each(request, pending, revocation.revoke_grant)
        _report(self, request, ("Revoked", "grant(s)", "already revoked"), queryset.count(), count)


@admin.register(AppPassword)
class AppPasswordAdmin(_RevokingAdmin[AppPassword]):
    list_display = ("label", "user", "scopes", "created", "expires", "revoked", "last_used")
    list_filter = (AppPasswordStateFilter,)
    list_select_related = ("user", "grant")
    search_fields = ("user__username", "label")
    # Never ``scram``: the keys a SCRAM exchange is checked against.
    fields = ("label", "user", "grant", "scopes", "created", "expires", "last_used", "revoked", "revoked_by")
    readonly_fields = fields
    actions = ("revoke_app_passwords",)

    @admin.display(description="scopes")
    def scopes(self, obj: AppPassword) -> str:
        return ", ".join(obj.grant.scopes)

    @admin.display(description="expires", ordering="grant__expires")
    def expires(self, obj: AppPassword) -> datetime | None:
        return obj.grant.expires

    @admin.display(description="revoked", ordering="grant__revoked")
    def revoked(self, obj: AppPassword) -> datetime | None:
        return obj.grant.revoked

    @admin.display(description="revoked by")
    def revoked_by(self, obj: AppPassword) -> str:
        return obj.grant.revoked_by

    @admin.display(description="last used", ordering="grant__last_used")
    def last_used(self, obj: AppPassword) -> datetime | None:
        return obj.grant.last_used

    @admin.action(description="Revoke the selected app passwords", permissions=["revoke"])
    def revoke_app_passwords(self, request: HttpRequest, queryset: QuerySet[AppPassword]) -> None:
        pending = queryset.filter(grant__revoked__isnull=True)
        count = _revoke_each(request, pending, revocation.revoke_app_password)
        _report(self, request, ("Revoked", "app password(s)", "already revoked"), queryset.count(), count)


@admin.register(FastToken)
class FastTokenAdmin(ReadOnlyAdmin[FastToken]):
    """Metadata only: never ``key`` or ``nonce``. A token goes with its client or grant (revoke those)."""

    list_display = ("id", "user", "client", "slot", "mechanism", "issued", "expires", "last_count")
    list_filter = ("slot", "mechanism")
    list_select_related = ("client", "client__user")
    search_fields = ("client__user__username", "client__software", "client__device")
    fields = ("user", "client", "slot", "mechanism", "issued", "expires", "last_count")
    readonly_fields = fields

    @admin.display(description="user", ordering="client__user__username")
    def user(self, obj: FastToken) -> str:
        return str(obj.client.user)


@admin.register(Session)
class SessionAdmin(_RevokingAdmin[Session]):
    list_display = (
        "id",
        "user",
        "jid",
        "transport",
        "address",
        "mechanism",
        "credential",
        "node",
        "started",
        "last_activity",
        "ended",
        "end_reason",
        "online",
    )
    list_display_links = ("id", "jid")
    list_filter = (LiveFilter, "transport", "credential", "node")
    list_select_related = ("user",)
    search_fields = ("jid", "user__username", "address", "node")
    fields = (
        "user",
        "jid",
        "client",
        "grant",
        "transport",
        "address",
        "mechanism",
        "credential",
        "factors",
        "node",
        "started",
        "last_activity",
        "ended",
        "end_reason",
        "online",
    )
    readonly_fields = fields
    actions = ("disconnect_sessions",)

    @admin.display(description="online", boolean=True, ordering="ended")
    def online(self, obj: Session) -> bool:
        return obj.ended is None

    @admin.action(description="Disconnect the selected sessions", permissions=["revoke"])
    def disconnect_sessions(self, request: HttpRequest, queryset: QuerySet[Session]) -> None:
        live = queryset.filter(ended__isnull=True)
        count = _revoke_each(request, live, revocation.revoke_session)
        _report(self, request, ("Disconnected", "session(s)", "already ended"), queryset.count(), count)


@admin.register(AuthEvent)
class AuthEventAdmin(ReadOnlyAdmin[AuthEvent]):
    """The security log: read-only for everyone, superusers included."""

    list_display = ("created", "user", "kind", "detail", "actor", "address")
    list_filter = ("kind", "created")
    list_select_related = ("user",)
    search_fields = ("user__username", "detail", "actor", "address")
    fields = ("created", "user", "kind", "detail", "actor", "address")
    readonly_fields = fields


@admin.register(Revocation)
class RevocationAdmin(ReadOnlyAdmin[Revocation]):
    """The outbox the serving processes read: what each revocation closed, and the text they sent."""

    list_display = ("id", "created", "username", "text", "what")
    search_fields = ("username", "text")
    fields = ("created", "username", "text", "what", "session_ids", "grant_ids", "except_session", "scopes")
    readonly_fields = fields

    @admin.display(description="closes")
    def what(self, obj: Revocation) -> str:
        if obj.scopes is not None:
            return f"nothing: grant(s) {obj.grant_ids} get new scopes"
        if obj.all_sessions:
            return "every session of the account" + (
                f" but {obj.except_session}" if obj.except_session else ""
            )
        parts = [f"session(s) {obj.session_ids}" if obj.session_ids else ""]
        parts.append(f"grant(s) {obj.grant_ids}" if obj.grant_ids else "")
        return ", ".join(p for p in parts if p) or "nothing"
