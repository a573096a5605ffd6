"""The admin site, behind the portal's sign-in: one door in, with a second factor every operator must have.

Django's admin has a login page of its own that asks for the password alone. Here that page sends the
visitor to the portal's sign-in (password, then the account's second factor, throttled and in the
security log), and the admin lets in only a staff session that passed a second factor in this session
(django-otp's ``otp_device``): a session signed in any other way is treated as not signed in, and an
operator whose account has no factor yet is sent to set one up. Selected as the default admin site by
:class:`SecondFactorAdminConfig` (INSTALLED_APPS).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.admin import AdminSite
from django.contrib.admin import apps as admin_apps
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse


class SecondFactorAdminSite(AdminSite):
    def has_permission(self, request: HttpRequest) -> bool:
        """A staff session that passed a second factor in this session: an operator without one has none to
        pass, and is sent to set one up (:meth:`login`)."""
        return bool(super().has_permission(request)) and _passed_a_factor(request)

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """To the portal's sign-in, and back to the admin page asked for afterwards; a signed-in operator
        without a second factor to the portal's security page, to set one up first."""
        user = request.user
        if user.is_authenticated and user.is_active and user.is_staff and not _passed_a_factor(request):
            from accounts.views.guard import second_factor_passed

            if second_factor_passed(request):  # signed in, and the account has no factor at all
                messages.warning(
                    request, "The admin site needs a second factor: set one up here, then open it again."
                )
                return HttpResponseRedirect(reverse("accounts:security"))
        target = request.GET.get("next") or reverse("admin:index", current_app=self.name)
        return HttpResponseRedirect(f"{reverse('accounts:sign-in')}?{urlencode({'next': target})}")


def _passed_a_factor(request: HttpRequest) -> bool:
    return getattr(request.user, "otp_device", None) is not None  # django-otp's middleware sets it


class SecondFactorAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with :class:`SecondFactorAdminSite` as its site (INSTALLED_APPS)."""

    default_site = "xmppauth.admin_site.SecondFactorAdminSite"
