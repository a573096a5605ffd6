"""Clients, and (with the grants issue) grants and sessions."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Client(models.Model):
    """One client installation of an account: a SASL2 user-agent id (XEP-0388 §2.4).

    The unit that XEP-0494 lists and revokes and that FAST tokens will belong to. Software and
    device are what the client says about itself; they are shown to the account's owner only.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="clients")
    user_agent_id = models.CharField(max_length=256)
    software = models.CharField(max_length=256, blank=True)
    device = models.CharField(max_length=256, blank=True)
    first_seen = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "user_agent_id"], name="one_client_per_user_agent")
        ]
        ordering = ("-last_seen",)

    def __str__(self) -> str:
        what = self.software or "unknown software"
        return f"{what} on {self.device}" if self.device else what
