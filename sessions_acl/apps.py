"""The sessions_acl app: clients, grants, sessions, revocation; it hears of password and factor changes
and web sign-ins."""

from __future__ import annotations

from django.apps import AppConfig


class SessionsAclConfig(AppConfig):
    name = "sessions_acl"
    verbose_name = "Sessions and access control"

    def ready(self) -> None:
        from accounts.signals import (
            account_changed,
            factor_changed,
            password_changed,
            policy_changed,
            web_signin,
        )

        from .revocation import on_account_changed, on_factor_removed, on_password_changed
        from .securitylog import on_factor_changed, on_policy_changed, on_web_signin

        password_changed.connect(on_password_changed, dispatch_uid="sessions_acl.on_password_changed")
        factor_changed.connect(on_factor_changed, dispatch_uid="sessions_acl.on_factor_changed")
        factor_changed.connect(on_factor_removed, dispatch_uid="sessions_acl.on_factor_removed")
        web_signin.connect(on_web_signin, dispatch_uid="sessions_acl.on_web_signin")
        policy_changed.connect(on_policy_changed, dispatch_uid="sessions_acl.on_policy_changed")
        account_changed.connect(on_account_changed, dispatch_uid="sessions_acl.on_account_changed")
