"""The admin of accounts: Django's user admin, plus the XMPP fields.

Its password form calls ``User.set_password``, the one password door, so a password set here ends
the account's other sessions and FAST tokens like any other change.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from .models import User


@admin.register(User)
class AccountAdmin(UserAdmin[User]):
    readonly_fields = ("scram_hashes",)
    fieldsets = (*UserAdmin.fieldsets, ("XMPP", {"fields": ("xmpp_password_login", "scram_hashes")}))  # type: ignore[misc]

    @admin.display(description="SCRAM credentials")
    def scram_hashes(self, obj: User) -> str:
        return ", ".join(sorted(obj.scram)) or "none (no password set)"
