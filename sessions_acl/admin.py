"""The operators' view of clients, grants, app passwords, sessions and the security log.

Revoking from here goes through sessions_acl.revocation like every other path: the affected
streams close within a second and the security log names the operator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from . import revocation
from .models import AppPassword, AuthEvent, Client, Grant, Session


def _operator(request: HttpRequest) -> str:
    return f"{request.user} (admin site)"


def _revoke_each(
    request: HttpRequest, rows: QuerySet[Any], revoke: Callable[..., object], what: str
) -> tuple[int, str]:
    count = 0
    for row in rows:
        try:
            revoke(row.pk, actor=_operator(request))
            count += 1
        except revocation.NotFound:
            continue
    return count, what


def _report(admin_site: admin.ModelAdmin[Any], request: HttpRequest, outcome: tuple[int, str]) -> None:
    count, what = outcome
    admin_site.message_user(
        request, f"Revoked {count} {what}; their streams close within a second", messages.SUCCESS
    )


@admin.register(Client)
class ClientAdmin(admin.ModelAdmin[Client]):
    list_display = ("user", "software", "device", "first_seen", "last_seen", "last_auth", "revoked")
    list_filter = ("software", "last_auth")
    search_fields = ("user__username", "software", "device")
    readonly_fields = (
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
    )
    actions = ("revoke_clients",)

    @admin.action(description="Revoke the selected clients (sessions, FAST tokens, grant)")
    def revoke_clients(self, request: HttpRequest, queryset: QuerySet[Client]) -> None:
        _report(self, request, _revoke_each(request, queryset, revocation.revoke_client, "client(s)"))


@admin.register(Grant)
class GrantAdmin(admin.ModelAdmin[Grant]):
    list_display = ("pk", "user", "origin", "role", "created", "expires", "last_used", "revoked")
    list_filter = ("origin", "role")
    search_fields = ("user__username",)
    readonly_fields = (
        "user",
        "origin",
        "role",
        "scopes",
        "created",
        "last_used",
        "revoked",
        "revoked_by",
        "revoke_reason",
    )
    actions = ("revoke_grants",)

    @admin.action(description="Revoke the selected grants (every session holding them ends)")
    def revoke_grants(self, request: HttpRequest, queryset: QuerySet[Grant]) -> None:
        _report(self, request, _revoke_each(request, queryset, revocation.revoke_grant, "grant(s)"))


@admin.register(AppPassword)
class AppPasswordAdmin(admin.ModelAdmin[AppPassword]):
    list_display = ("label", "user", "created", "grant")
    search_fields = ("user__username", "label")
    readonly_fields = ("user", "grant", "label", "created")
    exclude = ("scram",)
    actions = ("revoke_app_passwords",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # made with `manage.py apppassword create` (and, later, the portal): shown once

    @admin.action(description="Revoke the selected app passwords")
    def revoke_app_passwords(self, request: HttpRequest, queryset: QuerySet[AppPassword]) -> None:
        _report(
            self, request, _revoke_each(request, queryset, revocation.revoke_app_password, "app password(s)")
        )


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin[Session]):
    list_display = (
        "jid",
        "transport",
        "address",
        "mechanism",
        "credential",
        "started",
        "ended",
        "end_reason",
    )
    list_filter = ("transport", "credential", "node")
    search_fields = ("jid", "user__username", "address")
    readonly_fields = tuple(f.name for f in Session._meta.fields)
    actions = ("revoke_sessions",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="End the selected sessions")
    def revoke_sessions(self, request: HttpRequest, queryset: QuerySet[Session]) -> None:
        live = queryset.filter(ended__isnull=True)
        _report(self, request, _revoke_each(request, live, revocation.revoke_session, "session(s)"))


@admin.register(AuthEvent)
class AuthEventAdmin(admin.ModelAdmin[AuthEvent]):
    list_display = ("created", "user", "kind", "detail", "actor", "address")
    list_filter = ("kind",)
    search_fields = ("user__username", "detail", "actor", "address")
    readonly_fields = ("created", "user", "kind", "detail", "actor", "address")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
