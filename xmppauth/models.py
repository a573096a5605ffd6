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
    size = models.PositiveIntegerField(default=0, help_text="The stanza's UTF-8 bytes (for the quota).")
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    # The session it was sent to and that has not acknowledged it yet (XEP-0198): the row is deleted
    # when the client acknowledges it or the session ends; a session that died with its process (its
    # record then ends at the next start) leaves the row to be sent again, not lost.
    taken_by = models.ForeignKey(
        "sessions_acl.Session", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ("created", "id")

    def __str__(self) -> str:
        return f"offline message for {self.user_id} from {self.created:%Y-%m-%d %H:%M}"


class RosterItem(models.Model):
    """One contact of an account (RFC 6121 §2.1.2), and the presence subscription state between them.

    ``jid`` is the contact's bare JID, prepared (RFC 7622), so comparisons are plain string
    equality. ``subscription``, ``ask`` (a request of the account's, pending), ``pending_in`` (a request
    of the contact's, not answered yet) and ``approved`` (a pre-approval, §3.4) are the state of
    RFC 6121 Appendix A (``xmppauth/proto/rfc6121_subscriptions.py``); only presence subscription
    stanzas change them, never a roster set (§2.1.2.5).

    ``listed``: the contact is in the account's roster (roster get shows it, the roster's limit counts
    it). A contact's request to an account that has not listed it is kept in an unlisted row
    ("None + Pending In" without an item, §3.1.3), which goes when nothing is left of it.
    """

    class Subscription(models.TextChoices):
        NONE = "none"
        TO = "to"
        FROM = "from"
        BOTH = "both"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="roster_items")
    jid = models.CharField(max_length=3071)
    name = models.CharField(max_length=1023, blank=True)
    groups = models.JSONField(default=list, blank=True)
    subscription = models.CharField(max_length=4, choices=Subscription.choices, default=Subscription.NONE)
    ask = models.BooleanField(default=False, help_text="A subscription request is pending (ask='subscribe').")
    pending_in = models.BooleanField(
        default=False, help_text="The contact asked to see the account's presence and has no answer yet."
    )
    approved = models.BooleanField(
        default=False, help_text="The account approved the contact's subscription before it was asked (§3.4)."
    )
    listed = models.BooleanField(default=True, help_text="The contact is in the account's roster.")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "jid"], name="one_roster_item_per_jid")]
        ordering = ("jid",)

    def __str__(self) -> str:
        label = f"{self.name} <{self.jid}>" if self.name else self.jid
        return f"{label} in the roster of {self.user_id}"


class BlockedJid(models.Model):
    """One entry of an account's blocklist (XEP-0191): a full JID, a bare JID or a domain, prepared.

    Matched as XEP-0016 does (``xmppauth/proto/xep0191_blocking.py``); nothing from it reaches the
    account and nothing of the account's reaches it."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="blocked_jids")
    jid = models.CharField(max_length=3071)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "jid"], name="one_block_per_jid")]
        ordering = ("jid",)
        verbose_name = "blocked JID"
        verbose_name_plural = "blocked JIDs"

    def __str__(self) -> str:
        return f"{self.jid} blocked by {self.user_id}"


class ArchivedMessage(models.Model):
    """One message of an account's archive (XEP-0313): a chat or normal message it sent or received.

    ``archive_id`` is the id clients page by and the ``<stanza-id/>`` the message was delivered with
    (XEP-0359, time-ordered); ``with_jid`` is the other party's bare JID and ``peer`` its full JID as
    the stanza had it; ``stanza`` the message as routed (``from`` stamped by the server); ``size`` its
    UTF-8 bytes, which the account's quota (``XMPP_ARCHIVE_MAX_BYTES``) adds up."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="archive")
    archive_id = models.CharField(max_length=26)
    with_jid = models.CharField(max_length=3071)
    peer = models.CharField(max_length=3071)
    outgoing = models.BooleanField()
    stamp = models.DateTimeField()
    stanza = models.TextField()
    size = models.PositiveIntegerField(default=0, help_text="The stanza's UTF-8 bytes (for the quota).")
    kept_until = models.DateTimeField(
        null=True, blank=True, help_text="Not removed by the quota before then: a client is to fetch it."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "archive_id"], name="one_archive_id_per_account")
        ]
        indexes = [
            models.Index(fields=["user", "stamp"], name="archive_by_time"),
            models.Index(fields=["user", "with_jid", "stamp"], name="archive_by_contact"),
        ]
        ordering = ("id",)

    def __str__(self) -> str:
        return f"{self.archive_id} of {self.user_id} with {self.with_jid}"


class ArchivePrefs(models.Model):
    """An account's archiving preferences (XEP-0441); an account without a row archives everything."""

    class Default(models.TextChoices):
        ALWAYS = "always"
        ROSTER = "roster"
        NEVER = "never"

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="archive_prefs"
    )
    default = models.CharField(max_length=6, choices=Default.choices, default=Default.ALWAYS)
    always = models.JSONField(default=list, blank=True)
    never = models.JSONField(default=list, blank=True)

    def __str__(self) -> str:
        return f"archive preferences of {self.user_id}: {self.default}"


class PepNode(models.Model):
    """One node of an account's Personal Eventing service (XEP-0163), made by its first publish.

    ``config`` holds what differs from the node defaults of ``xmppauth/proto/xep0163_pep.py``
    (``NodeConfig``), as the node-configuration fields' values (access model, max items, …)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="pep_nodes")
    node = models.CharField(max_length=1023)
    config = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "node"], name="one_pep_node_per_name")]

    def __str__(self) -> str:
        return f"PEP node {self.node} of {self.user_id}"


class PepItem(models.Model):
    """One published item of a PEP node: its id, its one payload element as published (serialised), and
    who published it when. Publishing an id again replaces the item (XEP-0060 §7.1.2)."""

    node = models.ForeignKey(PepNode, on_delete=models.CASCADE, related_name="items")
    item_id = models.CharField(max_length=1023)
    payload = models.TextField()
    size = models.PositiveIntegerField(
        default=0, help_text="Payload, id and publisher in UTF-8 bytes (the quota)."
    )
    publisher = models.CharField(max_length=3071)
    published = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["node", "item_id"], name="one_pep_item_per_id")]
        indexes = [models.Index(fields=["node", "published"], name="pep_items_by_time")]

    def __str__(self) -> str:
        return f"item {self.item_id} of {self.node_id}"


class PepSubscription(models.Model):
    """An explicit subscription to a PEP node (XEP-0060 §6.1): ``jid`` (bare or full) is notified
    whatever its entity capabilities say, as long as the node's access model lets it read."""

    node = models.ForeignKey(PepNode, on_delete=models.CASCADE, related_name="subscriptions")
    jid = models.CharField(max_length=3071)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["node", "jid"], name="one_pep_subscription_per_jid")]

    def __str__(self) -> str:
        return f"{self.jid} subscribed to {self.node_id}"


class RosterVersion(models.Model):
    """The version of an account's roster (RFC 6121 §2.6), sent as ``ver`` with roster results and pushes.

    ``counter`` goes up by one in the transaction of every change a roster get would show (an item
    listed, changed or removed), so two changes never share a version, whichever process makes them.
    ``tag`` is random, made with the row: an account deleted and made again under the same name starts
    counting again, and its clients' cached versions must not match the new roster's. An account without
    a row has had no such change since versioning began (``xmppauth/subscriptions.py``)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="roster_version"
    )
    counter = models.PositiveBigIntegerField(default=0)
    tag = models.CharField(max_length=16)

    def __str__(self) -> str:
        return f"roster version {self.counter}-{self.tag} of {self.user_id}"


class LastPresence(models.Model):
    """The unavailable presence of an account's last available resource, as it was broadcast (``from`` its
    full JID), and when: what a subscriber's probe gets while the account has no available resource
    (RFC 6121 §4.3.2), with a XEP-0203 ``<delay/>``. One row per account, replaced each time."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="last_presence"
    )
    stanza = models.TextField()
    stamp = models.DateTimeField()

    def __str__(self) -> str:
        return f"last unavailable presence of {self.user_id} at {self.stamp:%Y-%m-%d %H:%M}"
