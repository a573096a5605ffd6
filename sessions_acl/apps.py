from __future__ import annotations

from django.apps import AppConfig


class SessionsAclConfig(AppConfig):
    name = "sessions_acl"
    verbose_name = "Sessions and access control"
