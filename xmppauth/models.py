"""The offline store: messages kept for an account that could not take them at the time."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class OfflineMessage(models.Model):
    """A message stanza, serialised, waiting for the account's next available resource.

    Today it holds what stream management could not get acknowledged before a session ended
    for good (XEP-0198); the IM issue routes messages for offline accounts here too.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="offline_messages"
    )
    stanza = models.TextField()
    created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ("created", "id")

    def __str__(self) -> str:
        return f"offline message for {self.user_id} from {self.created:%Y-%m-%d %H:%M}"
