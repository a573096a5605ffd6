"""The portal's pages of sessions_acl, at the site's root URLconf (names without a namespace: the
navigation links ``sessions`` and ``security-log``). Every one is behind sign-in
(accounts.views.guard.signed_in; tests/web/test_guard.py takes them from the URLconf)."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("account/sessions/", views.sessions_page, name="sessions"),
    path("account/sessions/<int:pk>/end/", views.end_session, name="session-end"),
    path("account/sessions/clients/<int:pk>/revoke/", views.revoke_client, name="client-revoke"),
    path("account/sessions/sign-out-others/", views.sign_out_others, name="sign-out-others"),
    path("account/log/", views.security_log, name="security-log"),
]
