"""The site's URLs: the self-service portal (accounts, with the sessions and security log pages of
sessions_acl) and the Django admin."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from xmppauth import health

# for load balancers, public by design (xmppauth/health.py); namespace "health"
HEALTH = [path("healthz", health.live, name="live"), path("readyz", health.ready, name="ready")]

urlpatterns = [
    path("", include((HEALTH, "health"))),
    path("", include("accounts.urls")),
    path("", include("sessions_acl.urls")),
    path("admin/", admin.site.urls),
]
