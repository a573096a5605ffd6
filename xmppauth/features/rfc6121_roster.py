"""Roster management, RFC 6121 §2: roster get, roster set (add, update, remove) and roster pushes.

Registered for ``jabber:iq:roster`` (:mod:`xmppauth.features`): the driver hands over iq get/set
requests with that payload addressed to the server or to the account's own bare JID; whether the
session may read or change the roster (its scopes) was decided before :func:`handle` is called.

What is supported and what is not:

* Roster get (RFC 6121 §2.1.3, §2.2) answers every item, sorted by JID. With roster versioning
  (§2.6, :mod:`xmppauth.proto.rfc6121_roster`): a get whose ``ver`` is the current version gets an
  empty result and then only pushes (§2.6.3); one with any other ``ver`` (an older one, or the empty
  string that bootstraps versioning, §2.6.2) gets every item and the current ``ver``; one without
  ``ver`` gets every item and no ``ver``, as before versioning.
* Roster set (§2.1.5, §2.3, §2.4) creates or replaces one item: its name and groups become
  exactly what the set carries. The ``subscription`` attribute is ignored unless it is
  ``remove`` (§2.1.2.5); ``ask`` and ``approved`` are not the client's to set (§2.1.2.1,
  §2.1.2.2) and are ignored too. Subscription state only changes through presence
  subscriptions (§3, :mod:`xmppauth.subscriptions`), which also add items (a request the account
  sends or approves lists the contact).
* ``subscription='remove'`` deletes the item (§2.5); the server first cancels, on the account's
  behalf, what subscriptions and requests it had with the contact (§2.5.2).
* Items are keyed by the contact's bare JID, prepared (RFC 7622). A full JID in a roster set
  names the item of its bare JID.

Limits (the "server-configured limits" of RFC 6121 §2.3.3, answered with ``not-acceptable``):
a name of at most :data:`MAX_NAME_BYTES` bytes, at most :data:`MAX_GROUPS` groups per item, each
of at most :data:`MAX_GROUP_BYTES` bytes (UTF-8). The number of items per account is limited by
the ``XMPP_MAX_ROSTER_ITEMS`` setting (default 1000); adding an item beyond it is refused with
``resource-constraint`` (see :func:`_apply_set` for why that condition).

A successful set is answered with an empty result and yields the payload of a roster push
(§2.1.6), which goes to every interested resource of the account (:func:`push_iq` wraps it): each
session that has asked for the roster and may still read it. The push carries the roster version the
set made: the set raises the account's version in the transaction that stores it
(:func:`xmppauth.subscriptions.bump_version`).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from lxml import etree

from accounts.models import User
from xmppauth import features, sending, subscriptions
from xmppauth.models import RosterItem
from xmppauth.offloop import off_loop
from xmppauth.proto import ns
from xmppauth.proto.errors import StanzaErrorCondition
from xmppauth.proto.jid import JID, InvalidJID
from xmppauth.proto.replies import Refusal, iq_error, iq_reply
from xmppauth.proto.rfc6121_roster import (
    GROUP,
    INTERESTED,
    ITEM,
    QUERY,
    Item,
    push_payload,
    roster_payload,
    unchanged,
)
from xmppauth.proto.xml import serialize

NS = ns.ROSTER

#: Longest item name accepted, in UTF-8 bytes (RFC 6121 §2.3.3 "server-configured limit"; the
#: same bound RFC 7622 puts on each JID part, and what ``RosterItem.name`` stores).
MAX_NAME_BYTES = 1023
#: Longest group name accepted, in UTF-8 bytes (RFC 6121 §2.3.3 "server-configured limit").
MAX_GROUP_BYTES = 1023
#: Most groups one item may be in (a server policy; RFC 6121 defines no number).
MAX_GROUPS = 32
#: Items per account when ``settings.XMPP_MAX_ROSTER_ITEMS`` is not set.
DEFAULT_MAX_ITEMS = 1000

_Q_QUERY = QUERY
_Q_ITEM = ITEM
_Q_GROUP = GROUP


@dataclass(frozen=True)
class RosterOutcome:
    """What to answer the requesting session, and what to push to all of the account's sessions.

    ``reply`` is the complete ``<iq type='result'/>`` or ``<iq type='error'/>``. ``push`` is the
    ``<query xmlns='jabber:iq:roster' ver>`` with the one changed item (``subscription='remove'`` for
    a removed one) and the new roster version when a roster set succeeded, else None; RFC 6121 §2.3.2,
    §2.4.2 and §2.5.2 require it to go to every interested resource, the one that sent the set included.
    """

    reply: etree._Element
    push: etree._Element | None


# ---------------------------------------------------------------------------------- the handler
async def _on_iq(context: features.IqContext, stanza: etree._Element, payload: etree._Element) -> None:
    get = stanza.get("type") == "get"
    interested = context.state.get(INTERESTED)
    if get:
        # Interested from before the roster is read: a change committed while it is read is pushed to
        # this session too (maybe before the result). Marked after the read, a push made in between
        # would miss it, and with versioning the next push's version would hide that for good.
        context.state[INTERESTED] = True
    outcome = await handle(context.user_id, context.jid, stanza, payload)
    if get and not interested and outcome.reply.get("type") != "result":
        del context.state[INTERESTED]  # refused: no more interested than before
    await context.answer(outcome.reply)
    if outcome.push is not None:
        await _push(context, outcome.push)


async def _push(context: features.IqContext, push: etree._Element) -> None:
    await subscriptions.push_roster(context.account_sessions(), push)


features.register(NS, _on_iq)


# ---------------------------------------------------------------------------------- public API
async def handle(
    user_id: int, account: JID, stanza: etree._Element, payload: etree._Element
) -> RosterOutcome:
    """Answer a roster get or set (RFC 6121 §2.1.3, §2.1.5) of the account ``user_id``.

    ``account`` is the account's JID (its bare form is what a roster may not contain),
    ``stanza`` the request as the driver received it (``from`` stamped with the sender's full
    JID), ``payload`` its single child. Never raises for a client's mistake: every refusal is an
    error reply.
    """
    try:
        if payload.tag != _Q_QUERY:
            # RFC 6120 §8.4: a payload the server does not understand is service-unavailable.
            raise Refusal(StanzaErrorCondition.SERVICE_UNAVAILABLE, "not a jabber:iq:roster query")
        iq_type = stanza.get("type")
        if iq_type == "get":
            return RosterOutcome(await _roster_get(user_id, stanza, payload), None)
        if iq_type == "set":
            return await _roster_set(user_id, account, stanza, payload)
        raise Refusal(StanzaErrorCondition.BAD_REQUEST, "a roster request is an iq of type get or set")
    except Refusal as refusal:
        return RosterOutcome(iq_error(stanza, refusal), None)


# ---------------------------------------------------------------------------------- get
async def _roster_get(user_id: int, stanza: etree._Element, payload: etree._Element) -> etree._Element:
    if any(isinstance(child.tag, str) for child in payload):
        # RFC 6121 §2.1.3: the <query/> of a roster get contains no child elements.
        raise Refusal(StanzaErrorCondition.BAD_REQUEST, "a roster get carries an empty <query/>")
    requested = payload.get("ver")  # None: the client does not use versioning (§2.6.2)
    current, items = await _load_roster(user_id, requested)
    reply = _result(stanza)
    if items is not None:
        reply.append(roster_payload(items, current if requested is not None else None))
    # else §2.6.3: the client's copy is current, "an empty IQ-result"; changes come as pushes
    return reply


def _items_of(user_id: int) -> list[Item]:
    listed = RosterItem.objects.filter(user_id=user_id, listed=True).order_by("jid")
    return [_snapshot(row) for row in listed]


@off_loop
def _load_roster(user_id: int, requested: str | None) -> tuple[str, list[Item] | None]:
    """The current version, and the items unless the client holds that version (None then)."""
    current = subscriptions.roster_version(user_id)  # first: see roster_version
    if unchanged(requested, current):
        return current, None
    return current, _items_of(user_id)


# ---------------------------------------------------------------------------------- set
@dataclass(frozen=True)
class _SetRequest:
    jid: str
    remove: bool
    name: str
    groups: tuple[str, ...]


async def _roster_set(
    user_id: int, account: JID, stanza: etree._Element, payload: etree._Element
) -> RosterOutcome:
    request = _parse_set(account, payload)
    push = await _apply(user_id, account, request)
    return RosterOutcome(_result(stanza), push)


def _parse_set(account: JID, payload: etree._Element) -> _SetRequest:
    """Check a roster set's <query/> against RFC 6121 §2.1.5 and §2.3.3; return what it asks."""
    items = [child for child in payload if child.tag == _Q_ITEM]
    if len(items) != 1:
        # RFC 6121 §2.1.5 (exactly one <item/>) and §2.3.3 (more than one is bad-request).
        raise Refusal(StanzaErrorCondition.BAD_REQUEST, "a roster set carries exactly one <item/>")
    item = items[0]
    raw_jid = item.get("jid")
    if not raw_jid:
        # RFC 6121 §2.1.2.3: the 'jid' attribute is REQUIRED; without it the request is malformed
        # (RFC 6120 §8.3.3.1 bad-request).
        raise Refusal(StanzaErrorCondition.BAD_REQUEST, "the <item/> has no 'jid' attribute")
    try:
        jid = JID.parse(raw_jid).bare
    except InvalidJID as exc:
        # RFC 6120 §8.3.3.8: an address that violates RFC 7622 is jid-malformed.
        raise Refusal(StanzaErrorCondition.JID_MALFORMED, f"the item's JID is not valid: {exc}") from None

    if item.get("subscription") == "remove":
        # RFC 6121 §2.5.1: the removal names the item; name and groups do not matter.
        return _SetRequest(str(jid), True, "", ())

    if jid == account.bare:
        # The account's own bare JID is not a contact: a roster set error (RFC 6121 §2.3.3)
        # answered with not-allowed, "the server does not allow the action" (RFC 6120 §8.3.3.10).
        raise Refusal(StanzaErrorCondition.NOT_ALLOWED, "the account's own JID cannot be a roster item")

    name = item.get("name") or ""
    if len(name.encode()) > MAX_NAME_BYTES:
        raise Refusal(
            StanzaErrorCondition.NOT_ACCEPTABLE, f"the item name is longer than {MAX_NAME_BYTES} bytes"
        )
    groups: list[str] = []
    for group in item:
        if group.tag != _Q_GROUP:
            continue  # unknown children are not ours to judge (RFC 6120 §8.4 extensibility)
        text = group.text or ""
        if not text:
            # RFC 6121 §2.3.3: a group of zero length is not-acceptable (leave a group out instead).
            raise Refusal(StanzaErrorCondition.NOT_ACCEPTABLE, "a <group/> is empty")
        if len(text.encode()) > MAX_GROUP_BYTES:
            raise Refusal(
                StanzaErrorCondition.NOT_ACCEPTABLE, f"a group name is longer than {MAX_GROUP_BYTES} bytes"
            )
        if text in groups:
            # RFC 6121 §2.3.3: duplicate <group/> elements are bad-request.
            raise Refusal(StanzaErrorCondition.BAD_REQUEST, f"the group {text!r} is given twice")
        groups.append(text)
    if len(groups) > MAX_GROUPS:
        raise Refusal(StanzaErrorCondition.NOT_ACCEPTABLE, f"an item is in at most {MAX_GROUPS} groups")
    return _SetRequest(str(jid), False, name, tuple(groups))


def _max_items() -> int:
    return int(getattr(settings, "XMPP_MAX_ROSTER_ITEMS", DEFAULT_MAX_ITEMS))


def _apply_set(user_id: int, request: _SetRequest) -> tuple[Item, str]:
    """Store the roster set (not a removal); return the item to push and the roster version it made.

    Runs in one transaction with the account's row locked, so two sets racing for the last free
    place cannot both take it, and the version is raised in that same transaction.

    A full roster is refused with ``resource-constraint`` (RFC 6121 §2.3.3 allows it or
    ``policy-violation``): the request itself is acceptable and would succeed once the account
    has removed items; what is missing is room, which is what resource-constraint names
    ("lacks the system resources necessary to service the request", RFC 6120 §8.3.3.18),
    whereas policy-violation (§8.3.3.12) tells the client that something in its request broke a
    rule, which nothing did. Its error type is ``cancel``, not the ``wait`` RFC 6120 shows for the
    condition: waiting alone never makes room, so a client should not retry unchanged.
    """
    with transaction.atomic():
        User.objects.select_for_update().filter(pk=user_id).first()
        existing = RosterItem.objects.filter(user_id=user_id, jid=request.jid).first()
        if existing is None or not existing.listed:
            # a new item, or a contact whose request waits becomes one (it keeps that request)
            limit = _max_items()
            if RosterItem.objects.filter(user_id=user_id, listed=True).count() >= limit:
                raise Refusal(
                    StanzaErrorCondition.RESOURCE_CONSTRAINT,
                    f"the roster is full: at most {limit} items",
                    error_type="cancel",
                )
            if existing is None:
                existing = RosterItem(user_id=user_id, jid=request.jid)
            existing.listed = True
        existing.name = request.name
        existing.groups = list(request.groups)
        _check_answer_size(user_id, existing)
        existing.save()
        return _snapshot(existing), subscriptions.bump_version(user_id)


def _check_answer_size(user_id: int, changed: RosterItem) -> None:
    """The roster is sent whole (RFC 6121 §2.1.3), in one stanza: refuse a set that would make that
    answer larger than :func:`xmppauth.sending.answer_bytes` (found by a black-box attack: names and
    groups full of ``>``, sent back as ``&gt;``, made a 5 MB roster and dropped every client fetching it)."""
    others = RosterItem.objects.filter(user_id=user_id, listed=True).exclude(jid=changed.jid)
    items = [*(_snapshot(row) for row in others), _snapshot(changed)]
    size, limit = len(serialize(roster_payload(items, ver=None))), sending.answer_bytes()
    if size > limit:
        raise Refusal(
            StanzaErrorCondition.POLICY_VIOLATION,
            f"the roster would take {size} bytes to send, more than {limit}: shorten names and groups",
        )


_apply_set_async = off_loop(_apply_set)


async def _apply(user_id: int, account: JID, request: _SetRequest) -> etree._Element:
    if request.remove:
        ver = await subscriptions.remove_contact(account.bare, JID.parse(request.jid))
        if ver is None:
            # RFC 6121 §2.5.3: removing an item that is not in the roster is item-not-found.
            raise Refusal(StanzaErrorCondition.ITEM_NOT_FOUND, "no such item in the roster")
        item = Item(request.jid, "", (), "remove", False)
    else:
        item, ver = await _apply_set_async(user_id, request)
    return push_payload(item, ver=ver)


# ---------------------------------------------------------------------------------- builders
def _snapshot(row: RosterItem) -> Item:
    return subscriptions.item_of(row)


def _result(stanza: etree._Element) -> etree._Element:
    return iq_reply(stanza, "result")
