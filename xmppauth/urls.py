"""The site's URLs: the self-service portal (accounts, with the security log of sessions_acl) and the
Django admin."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from sessions_acl.views import security_log

urlpatterns = [
    path("", include("accounts.urls")),
    path("account/log/", security_log, name="security-log"),
    path("admin/", admin.site.urls),
]
