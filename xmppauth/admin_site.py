"""The admin site, behind the portal's sign-in: one door in, with the second factor.

Django's admin has a login page of its own that asks for the password alone. Here that page sends the
visitor to the portal's sign-in (password, then the account's second factor, throttled and in the
security log), and the admin lets in only a staff session that passed its account's second factor
(``accounts.views.guard.second_factor_passed``): a session signed in any other way is treated as not
signed in. Selected as the default admin site by :class:`SecondFactorAdminConfig` (INSTALLED_APPS).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib.admin import AdminSite
from django.contrib.admin import apps as admin_apps
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse


class SecondFactorAdminSite(AdminSite):
    def has_permission(self, request: HttpRequest) -> bool:
        from accounts.views.guard import second_factor_passed  # models: not before the apps are ready

        return bool(super().has_permission(request)) and second_factor_passed(request)

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """To the portal's sign-in, and back to the admin page asked for afterwards."""
        target = request.GET.get("next") or reverse("admin:index", current_app=self.name)
        return HttpResponseRedirect(f"{reverse('accounts:sign-in')}?{urlencode({'next': target})}")


class SecondFactorAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with :class:`SecondFactorAdminSite` as its site (INSTALLED_APPS)."""

    default_site = "xmppauth.admin_site.SecondFactorAdminSite"
