from __future__ import annotations

from django.apps import AppConfig


class XmppauthConfig(AppConfig):
    name = "xmppauth"
    verbose_name = "XMPP server"
