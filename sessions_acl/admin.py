from __future__ import annotations

from django.contrib import admin

from .models import Client


@admin.register(Client)
class ClientAdmin(admin.ModelAdmin[Client]):
    list_display = ("user", "software", "device", "first_seen", "last_seen")
    list_filter = ("software",)
    search_fields = ("user__username", "software", "device")
    readonly_fields = ("user", "user_agent_id", "software", "device", "first_seen", "last_seen")
