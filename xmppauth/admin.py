"""The admin of the server's own rows: the offline store and rosters, read-only (docs/admin.md).

An offline message is shown by account, time and size, never its content: the stanza is the
account's mail, and the operator needs to know that it waits, not what it says.
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.db.models.functions import Length
from django.http import HttpRequest

from accounts.admin import ReadOnlyAdmin

from .models import OfflineMessage, RosterItem


@admin.register(OfflineMessage)
class OfflineMessageAdmin(ReadOnlyAdmin[OfflineMessage]):
    list_display = ("id", "user", "created", "size")
    list_filter = ("created",)
    list_select_related = ("user",)
    search_fields = ("user__username",)
    fields = ("user", "created", "size")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[OfflineMessage]:
        return super().get_queryset(request).annotate(stanza_length=Length("stanza"))

    @admin.display(description="size (characters)", ordering="stanza_length")
    def size(self, obj: OfflineMessage) -> int:
        return int(obj.stanza_length)  # type: ignore[attr-defined]


@admin.register(RosterItem)
class RosterItemAdmin(ReadOnlyAdmin[RosterItem]):
    list_display = ("user", "jid", "name", "subscription", "ask", "updated")
    list_filter = ("subscription", "ask")
    list_select_related = ("user",)
    search_fields = ("user__username", "jid", "name")
    fields = ("user", "jid", "name", "groups", "subscription", "ask", "created", "updated")
    readonly_fields = fields
