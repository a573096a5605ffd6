"""XEP-0163 Personal Eventing: each account's nodes and items, and who hears of them.

The one door for PEP state: :class:`Service` runs the requests :mod:`xmppauth.proto.xep0163_pep`
parses (the iq handler is ``xmppauth/features/xep0163_pep.py``), in one transaction each, and sends
the notifications; :class:`Eventing` is the router's hook on available presence.

Who is notified of a publish or a retraction (XEP-0163 §4, XEP-0060 §7.1.2.1):

* every available resource of the owner and of the owner's presence subscribers (subscription
  ``from`` or ``both`` in the owner's roster) whose entity capabilities (XEP-0115) carry
  "NODE+notify", when the node's access model lets that contact read it (§4.1's implicit
  subscription; XEP-0060 §9.2's filter);
* every JID that subscribed to the node explicitly (XEP-0060 §6.1) and may still read it;
* never a contact the owner blocks or that blocks the owner (XEP-0163 §4.3.3, XEP-0191).

A resource's interest lives in its ``feature_state`` (:data:`NOTIFY`), so another process's sessions
are reached through their stand-ins like any routed stanza. When a resource becomes available or
its capabilities change, it gets the last published item of every node it is interested in, of its
own account and of each account whose presence it receives (``send_last_published_item`` =
``on_sub_and_presence``, XEP-0163 §4.3.4), with the XEP-0203 stamp of when it was published.

Notifications need the ``presence`` scope to be received (``sessions_acl.access``), as does every
request here. Only local accounts exist (no server-to-server): a contact is an account of this server.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max, Sum
from django.utils import timezone
from lxml import etree

from xmppauth import blocking, caps, sending, tasks
from xmppauth.models import PepItem, PepNode, PepSubscription, RosterItem
from xmppauth.offloop import off_loop
from xmppauth.proto import xep0163_pep as rules
from xmppauth.proto.errors import StanzaErrorCondition
from xmppauth.proto.jid import JID, InvalidJID
from xmppauth.proto.replies import Refusal
from xmppauth.proto.xep0313_mam import format_timestamp
from xmppauth.proto.xml import serialize
from xmppauth.router import ROUTER, Blocking, Router, Session

log = logging.getLogger("xmppauth.pep")

#: ``feature_state`` keys of a session: the nodes it wants notifications of, joined by NUL (no node
#: name holds one: XML cannot carry it), and the capabilities (hash and ver) they came from.
NOTIFY = "xep0163.notify"
CAPS = "xep0163.caps"
_SUBSCRIBED = ("from", "both")  # in the owner's roster: the contact receives the owner's presence


def interest(session: object) -> frozenset[str]:
    """The nodes ``session`` (a router session or a stand-in) wants notifications of."""
    state = getattr(session, "feature_state", None)
    value = state.get(NOTIFY) if state is not None else None
    return frozenset(value.split("\0")) if isinstance(value, str) and value else frozenset()


def _ceiling() -> int:
    return int(settings.XMPP_PEP_MAX_ITEMS)


def _config(stored: object) -> rules.NodeConfig:
    """A node's configuration from the fields stored with it (only what differs from the defaults)."""
    fields = stored if isinstance(stored, dict) else {}
    return rules.apply_configuration(rules.DEFAULTS, fields, ceiling=_ceiling())


@dataclass(frozen=True)
class Reader:
    """Who asks, as the owner's roster sees it: XEP-0060 §4.5's relation and the roster groups."""

    relation: rules.Relation
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Audience:
    """Those a change to a node may reach: the owner's subscribers (bare JID, roster groups) and the
    explicit subscriptions (JID as subscribed)."""

    subscribers: tuple[tuple[JID, tuple[str, ...]], ...]
    explicit: tuple[JID, ...]


@dataclass(frozen=True)
class Change:
    """What a publish, retraction or deletion did: the node as it is now, and whom it may reach."""

    node: str
    config: rules.NodeConfig
    audience: Audience
    items: tuple[tuple[str, bytes], ...] = ()
    retracts: tuple[str, ...] = ()
    deleted: bool = False


# ------------------------------------------------------------------------------------- the store
def _user_id(account: JID) -> int | None:
    from accounts.models import User

    return (
        User.objects.filter(username=account.local or "", is_active=True).values_list("id", flat=True).first()
    )


def _reader(owner_id: int, owner: JID, reader: JID) -> Reader:
    if reader.bare == owner:
        return Reader("self")
    row = RosterItem.objects.filter(user_id=owner_id, jid=str(reader.bare)).values_list(
        "subscription", "groups", "listed"
    )
    found = row.first()
    if found is None:
        return Reader("none")
    subscription, groups, listed = found
    groups = tuple(g for g in groups or () if isinstance(g, str))
    if subscription in _SUBSCRIBED:
        return Reader("subscribed", groups)
    return Reader("roster", groups) if listed else Reader("none")


def _audience(owner_id: int, node: PepNode) -> Audience:
    subscribers = []
    rows = RosterItem.objects.filter(user_id=owner_id, subscription__in=_SUBSCRIBED).values_list(
        "jid", "groups"
    )
    for jid, groups in rows:
        try:
            subscribers.append((JID.parse(jid), tuple(g for g in groups or () if isinstance(g, str))))
        except InvalidJID:
            continue
    explicit = []
    for jid in PepSubscription.objects.filter(node=node).values_list("jid", flat=True):
        try:
            explicit.append(JID.parse(jid))
        except InvalidJID:
            continue
    return Audience(tuple(subscribers), tuple(explicit))


def _node_row(owner_id: int, node: str, *, lock: bool = False) -> PepNode | None:
    query = PepNode.objects.filter(user_id=owner_id, node=node)
    return (query.select_for_update() if lock else query).first()


def _room_for_a_node(owner_id: int) -> None:
    if PepNode.objects.filter(user_id=owner_id).count() >= settings.XMPP_PEP_MAX_NODES:
        raise Refusal(
            StanzaErrorCondition.NOT_ALLOWED,
            f"this account has {settings.XMPP_PEP_MAX_NODES} PEP nodes, as many as it may: delete one first",
            application=(rules.PUBSUB_ERRORS, "max-nodes-exceeded"),
        )


def _own_node(owner_id: int | None, node: str) -> PepNode:
    """The owner's node, locked for a change in the caller's transaction, or item-not-found."""
    row = _node_row(owner_id, node, lock=True) if owner_id is not None else None
    if row is None:
        raise _not_found(node)
    return row


def _not_found(node: str) -> Refusal:
    return Refusal(StanzaErrorCondition.ITEM_NOT_FOUND, f"no node {node[:80]!r} here")


@off_loop
def _publish(owner: JID, request: rules.Publish, publisher: JID) -> Change:
    owner_id = _user_id(owner)
    if owner_id is None:
        raise Refusal(StanzaErrorCondition.ITEM_NOT_FOUND, "no such account")
    payload = serialize(request.item)
    for attempt in (1, 2):  # a first publish racing another to create the node: the second goes on
        try:
            with transaction.atomic():
                row = _node_row(owner_id, request.node, lock=True)
                config = rules.check_publish_options(
                    _config(row.config) if row is not None else None, request.options, ceiling=_ceiling()
                )
                if row is None:
                    _room_for_a_node(owner_id)
                    row = PepNode.objects.create(user_id=owner_id, node=request.node, config=request.options)
                item_id = request.item_id or rules.new_item_id()
                if config.persist_items:
                    _store_item(row, config, item_id, payload, publisher)
                return Change(request.node, config, _audience(owner_id, row), items=((item_id, payload),))
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _store_item(row: PepNode, config: rules.NodeConfig, item_id: str, payload: bytes, publisher: JID) -> None:
    """XEP-0060 §7.1.2: an ItemID published again replaces its item (a new row: the newest id is the
    last published item); beyond the node's limit the oldest go."""
    PepItem.objects.filter(node=row, item_id=item_id).delete()
    PepItem.objects.create(
        node=row,
        item_id=item_id,
        payload=payload.decode(),
        size=item_size(payload, item_id, str(publisher)),
        publisher=str(publisher),
        published=timezone.now(),
    )
    _trim(row, config)
    _within_quota(row.user_id)


def item_size(payload: bytes, item_id: str, publisher: str) -> int:
    """What an item holds of the quota: its payload, its id and its publisher, in UTF-8 bytes (found by a
    black-box attack: ids of 1,023 bytes with empty payloads were free, 286 KB past a 64 KiB quota)."""
    return len(payload) + len(item_id.encode()) + len(publisher.encode())


def _within_quota(owner_id: int) -> None:
    """After a publish (and the trim it caused): the account's items together within XMPP_PEP_MAX_BYTES,
    or a refusal, which rolls the publish back."""
    held = PepItem.objects.filter(node__user_id=owner_id).aggregate(total=Sum("size"))["total"] or 0
    limit = settings.XMPP_PEP_MAX_BYTES
    if held > limit:
        raise Refusal(
            StanzaErrorCondition.POLICY_VIOLATION,
            f"this account's PEP items would hold {held} bytes, over its limit of {limit}: "
            "retract items or delete nodes first",
        )


def _trim(row: PepNode, config: rules.NodeConfig) -> None:
    """Beyond the node's item limit the oldest items go; a node that keeps none loses them all."""
    if not config.persist_items:
        PepItem.objects.filter(node=row).delete()
        return
    limit = config.item_limit(_ceiling())
    surplus = list(PepItem.objects.filter(node=row).order_by("-id").values_list("id", flat=True)[limit:])
    if surplus:
        PepItem.objects.filter(id__in=surplus).delete()


@off_loop
def _retract(owner: JID, request: rules.Retract) -> Change:
    owner_id = _user_id(owner)
    with transaction.atomic():
        row = _own_node(owner_id, request.node)
        if not PepItem.objects.filter(node=row, item_id=request.item_id).delete()[0]:
            raise Refusal(
                StanzaErrorCondition.ITEM_NOT_FOUND, f"no item {request.item_id[:80]!r} in this node"
            )
        config = _config(row.config)
        audience = _audience(owner_id or 0, row) if (request.notify or config.notify_retract) else None
    if audience is None:
        return Change(request.node, config, Audience((), ()))
    return Change(request.node, config, audience, retracts=(request.item_id,))


@off_loop
def _delete(owner: JID, request: rules.Delete) -> Change:
    owner_id = _user_id(owner)
    with transaction.atomic():
        row = _own_node(owner_id, request.node)
        config, audience = _config(row.config), _audience(owner_id or 0, row)
        row.delete()
    return Change(request.node, config, audience, deleted=True)


@off_loop
def _create(owner: JID, request: rules.Create) -> None:
    owner_id = _user_id(owner)
    if owner_id is None:
        raise Refusal(StanzaErrorCondition.ITEM_NOT_FOUND, "no such account")
    rules.apply_configuration(rules.DEFAULTS, request.options, ceiling=_ceiling())  # refuses bad options
    try:
        with transaction.atomic():
            if _node_row(owner_id, request.node) is not None:
                raise IntegrityError
            _room_for_a_node(owner_id)
            PepNode.objects.create(user_id=owner_id, node=request.node, config=request.options)
    except IntegrityError:
        raise Refusal(
            StanzaErrorCondition.CONFLICT, f"the node {request.node[:80]!r} exists already"
        ) from None


@off_loop
def _configure(owner: JID, node: str, options: rules.Options | None) -> rules.NodeConfig:
    owner_id = _user_id(owner)
    with transaction.atomic():
        row = _node_row(owner_id, node, lock=True) if owner_id is not None else None
        if row is None:
            raise _not_found(node)
        config = _config(row.config)
        if options is None:
            return config  # a get, or a cancelled form (§8.2.5): nothing changes
        config = rules.apply_configuration(config, options, ceiling=_ceiling())
        row.config = {**(row.config if isinstance(row.config, dict) else {}), **options}
        row.save(update_fields=["config"])
        _trim(row, config)
        return config


@off_loop
def _read(owner: JID, reader: JID, request: rules.Items) -> list[tuple[str, bytes]]:
    owner_id = _user_id(owner)
    row = _node_row(owner_id, request.node) if owner_id is not None else None
    if row is None or owner_id is None:
        raise _not_found(request.node)
    who = _reader(owner_id, owner, reader)
    refusal = rules.access_refusal(_config(row.config), who.relation, who.groups)
    if refusal is not None:
        raise refusal
    items = PepItem.objects.filter(node=row)
    if request.item_ids:
        items = items.filter(item_id__in=request.item_ids)
    limit = request.max_items if request.max_items is not None else _ceiling()
    chosen: list[tuple[str, bytes]] = []
    size, budget = 0, sending.piece_bytes()
    newest_first = items.order_by("-id").values_list("item_id", "payload", "size")
    for item_id, payload, item_size in newest_first.iterator():
        size += item_size
        if len(chosen) == limit or (chosen and size > budget):
            break  # XEP-0060 §6.5.4: the newest that fit, a truncated set, not a stanza too big to send
        chosen.append((item_id, payload.encode()))
    return list(reversed(chosen))


@dataclass(frozen=True)
class _Last:
    owner: JID
    node: str
    item_id: str
    payload: bytes
    published: datetime


@off_loop
def _subscribe(owner: JID, reader: JID, request: rules.Subscribe | rules.Unsubscribe) -> _Last | None:
    """An explicit subscription made (with the last item, to send) or ended."""
    owner_id = _user_id(owner)
    with transaction.atomic():
        row = _node_row(owner_id, request.node) if owner_id is not None else None
        if row is None or owner_id is None:
            raise _not_found(request.node)
        if isinstance(request, rules.Unsubscribe):
            if not PepSubscription.objects.filter(node=row, jid=str(request.jid)).delete()[0]:
                raise Refusal(
                    StanzaErrorCondition.UNEXPECTED_REQUEST,
                    "that address is not subscribed to this node",
                    application=(rules.PUBSUB_ERRORS, "not-subscribed"),
                )
            return None
        who = _reader(owner_id, owner, reader)
        config = _config(row.config)
        refusal = rules.access_refusal(config, who.relation, who.groups)
        if refusal is not None:
            raise refusal
        PepSubscription.objects.get_or_create(node=row, jid=str(request.jid))
        if config.send_last_published_item == "never":
            return None
        last = (
            PepItem.objects.filter(node=row)
            .order_by("-id")
            .values_list("item_id", "payload", "published")
            .first()
        )
    if last is None:
        return None
    return _Last(owner, request.node, last[0], last[1].encode(), last[2])


@off_loop
def _last_items(account: JID, nodes: frozenset[str]) -> list[_Last]:
    """XEP-0163 §4.3.4: the last published item of each node in ``nodes`` of ``account`` and of the
    accounts whose presence it receives, that it may read and that sends it on presence."""
    from accounts.models import User

    own_id = _user_id(account)
    if own_id is None or not nodes:
        return []
    contacts = [
        jid
        for jid in RosterItem.objects.filter(user_id=own_id, subscription__in=("to", "both")).values_list(
            "jid", flat=True
        )
        if "@" in jid and "/" not in jid
    ]
    owners = dict(
        User.objects.filter(username__in=[c.split("@", 1)[0] for c in contacts], is_active=True).values_list(
            "id", "username"
        )
    )
    owners[own_id] = account.local or ""
    # how each owner's roster sees the account (its groups, for the "roster" access model)
    seen = {
        user_id: (subscription, tuple(groups or ()))
        for user_id, subscription, groups in RosterItem.objects.filter(
            user_id__in=list(owners), jid=str(account)
        ).values_list("user_id", "subscription", "groups")
    }
    wanted: dict[int, tuple[JID, str, rules.NodeConfig, rules.Relation, tuple[str, ...]]] = {}
    for node_id, user_id, node, stored in PepNode.objects.filter(
        user_id__in=list(owners), node__in=nodes
    ).values_list("id", "user_id", "node", "config"):
        config = _config(stored)
        if config.send_last_published_item != "on_sub_and_presence":
            continue
        relation: rules.Relation = "self" if user_id == own_id else "none"
        subscription, groups = seen.get(user_id, ("none", ()))
        if relation == "none" and subscription in _SUBSCRIBED:
            relation = "subscribed"
        if rules.may_access(config, relation, groups):
            wanted[node_id] = (JID(owners[user_id], account.domain), node, config, relation, groups)
    if not wanted:
        return []
    newest = PepItem.objects.filter(node_id__in=list(wanted)).values("node_id").annotate(last=Max("id"))
    ids = [row["last"] for row in newest]
    found = []
    for node_id, item_id, payload, published in PepItem.objects.filter(id__in=ids).values_list(
        "node_id", "item_id", "payload", "published"
    ):
        owner, node, *_ = wanted[node_id]
        found.append(_Last(owner, node, item_id, payload.encode(), published))
    return found


# ------------------------------------------------------------------------------------- delivery
def _available(router: Router, account: JID) -> list[Session]:
    return [s for s in list(router.resources(account).values()) if s.available]


@dataclass
class _Mail:
    """The notifications of one change, one per session, never two to the same one."""

    owner: JID
    change: Change
    shield: Blocking | None = None
    sent: set[str] = field(default_factory=set)

    async def send(self, session: Session) -> None:
        jid = session.jid
        if jid is None or str(jid) in self.sent or not session.may_receive("pep", "headline"):
            return
        if self.shield is not None and jid.bare != self.owner and self.shield.blocks(self.owner, jid):
            return  # a full JID the owner blocks (its bare JID was checked with the contact)
        self.sent.add(str(jid))
        change, owner = self.change, str(self.owner)
        if change.deleted:
            data = rules.delete_message(owner, str(jid), change.node)
        else:
            data = rules.event_message(owner, str(jid), change.node, change.items, retracts=change.retracts)
        await session.deliver(data, urgent=False)


async def notify(router: Router, owner: JID, change: Change) -> int:
    """Send ``change`` to everyone the module docstring names; returns how many sessions got it."""
    shield = router.blocking
    mail, config, node = _Mail(owner, change, shield), change.config, change.node
    for session in _available(router, owner):
        if node in interest(session):
            await mail.send(session)
    readers: dict[JID, tuple[str, ...]] = dict(change.audience.subscribers)
    refused = await blocking.refusing(list(readers) + [j.bare for j in change.audience.explicit], owner)

    def shut_out(contact: JID) -> bool:
        return contact in refused or (shield is not None and shield.blocks(owner, contact))

    for contact, groups in readers.items():
        if shut_out(contact) or not rules.may_access(config, "subscribed", groups):
            continue
        for session in _available(router, contact):
            if node in interest(session):
                await mail.send(session)
    for jid in change.audience.explicit:
        relation: rules.Relation = "self" if jid.bare == owner else "none"
        groups = readers.get(jid.bare, ())
        if jid.bare in readers:
            relation = "subscribed"
        if relation != "self" and shut_out(jid.bare):
            continue
        if not rules.receives_notification(
            config, relation, interested=False, subscribed=True, groups=groups
        ):
            continue
        targets = _available(router, jid.bare)
        if jid.resource is not None:
            targets = [s for s in targets if s.jid == jid]
        for session in targets:
            await mail.send(session)
    return len(mail.sent)


async def _send_last(session: Session, items: Iterable[_Last]) -> None:
    jid = session.jid
    if jid is None or not session.may_receive("pep", "headline"):
        return
    for last in items:
        stamp = format_timestamp(last.published)
        data = rules.event_message(
            str(last.owner), str(jid), last.node, [(last.item_id, last.payload)], delay=stamp
        )
        await session.deliver(data, urgent=False)


# ------------------------------------------------------------------------------------- the door
class Service:
    """Runs one parsed PEP request of ``requester`` (a full JID) on ``owner``'s service (a bare JID)."""

    async def run(self, owner: JID, requester: JID, request: rules.Request) -> etree._Element | None:
        """The ``<pubsub/>`` to answer with (None: an empty result); raises :class:`Refusal`. What
        follows the answer (a subscription's last item) waits in :meth:`then`."""
        own = requester.bare == owner
        if not own and await blocking.refuses_stored(owner, requester):
            # XEP-0191 §3.3: a request from a JID the owner blocks is answered as if nobody were there
            raise Refusal(StanzaErrorCondition.SERVICE_UNAVAILABLE, "")
        if isinstance(request, rules.Items):
            return rules.items_result(request.node, await _read(owner, requester, request))
        if isinstance(request, (rules.Subscribe, rules.Unsubscribe)):
            rules.check_subscriber(request, requester)
            last = await _subscribe(owner, requester, request)
            if isinstance(request, rules.Unsubscribe):
                return None
            if last is not None:
                self._after[requester] = (request.jid, last)
            return rules.subscription_result(request.node, request.jid)
        if not own:  # everything else changes the service: only its account may
            what = _WHAT[type(request)]
            raise Refusal(StanzaErrorCondition.FORBIDDEN, f"only the account itself may {what} its PEP nodes")
        if isinstance(request, rules.Publish):
            change = await _publish(owner, request, requester)
            await notify(ROUTER, owner, change)
            return rules.publish_result(request.node, change.items[0][0])
        if isinstance(request, rules.Retract):
            await notify(ROUTER, owner, await _retract(owner, request))
            return None
        if isinstance(request, rules.Delete):
            await notify(ROUTER, owner, await _delete(owner, request))
            return None
        if isinstance(request, rules.Create):
            await _create(owner, request)
            return None
        if isinstance(request, rules.ConfigureGet):
            return rules.configure_form(request.node, await _configure(owner, request.node, None))
        await _configure(owner, request.node, request.options)
        return None

    def __init__(self) -> None:
        self._after: dict[JID, tuple[JID, _Last]] = {}  # requester -> (subscribed JID, its last item)

    async def then(self, requester: JID) -> None:
        """After the answer to ``requester``'s request: a new subscription's last item (XEP-0060
        §6.1.7: it follows the subscription's result)."""
        waiting = self._after.pop(requester, None)
        if waiting is None:
            return
        jid, last = waiting
        sessions = _available(ROUTER, jid.bare)
        if jid.resource is not None:
            sessions = [s for s in sessions if s.jid == jid]
        for session in sessions:
            await _send_last(session, [last])


_WHAT: dict[type, str] = {
    rules.Publish: "publish to",
    rules.Retract: "retract items of",
    rules.Delete: "delete",
    rules.Create: "create",
    rules.ConfigureGet: "configure",
    rules.ConfigureSet: "configure",
}
SERVICE = Service()


class Eventing:
    """The router's ``eventing``: a resource's available presence says what it wants (XEP-0115) and
    brings it the last published items (module docstring). Runs in the background, one task per
    change of capabilities: the presence itself is not held up."""

    def presence(self, router: Router, sender: Session, stanza: etree._Element, initial: bool) -> None:
        state = getattr(sender, "feature_state", None)
        if state is None or sender.jid is None:
            return
        found = rules.caps_from_presence(stanza)
        key = f"{found.hash} {found.ver}" if found is not None else ""
        if state.get(CAPS, "") == key and not initial:
            return  # the same capabilities again: nothing new to want or to send
        state[CAPS] = key
        if found is None:
            if state.pop(NOTIFY, None) is not None:
                router.changed(sender)
            return
        nodes = caps.known(found)
        if nodes is not None:
            self._want(router, sender, nodes)
        tasks.start(self._resolve(router, sender, found, nodes), name=f"PEP on the presence of {sender.jid}")

    @staticmethod
    def _want(router: Router, session: Session, nodes: frozenset[str]) -> None:
        state = getattr(session, "feature_state", {})
        value = "\0".join(sorted(nodes))
        if state.get(NOTIFY, "") != value:
            state[NOTIFY] = value
            router.changed(session)  # other processes notify it by this

    async def _resolve(
        self, router: Router, session: Session, found: rules.Caps, nodes: frozenset[str] | None
    ) -> None:
        jid = session.jid
        assert jid is not None
        if nodes is None:
            nodes = await caps.notify_nodes(jid, found, session.deliver)
            if session.jid != jid or not session.available:
                return  # gone meanwhile
            self._want(router, session, nodes)
        if nodes:
            await _send_last(session, await _last_items(jid.bare, nodes))
