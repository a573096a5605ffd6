"""RFC 6121 §2 roster items as the wire shows them: the ``<item/>`` element, the roster result and
push, and roster versioning (§2.6).

Building and one decision; the roster get/set handler is ``xmppauth/features/rfc6121_roster.py``, the
subscription state behind ``subscription``, ``ask`` and ``approved`` is
:mod:`xmppauth.proto.rfc6121_subscriptions`, and the version counter is kept in the database by
``xmppauth/subscriptions.py`` (one per account, raised in the transaction of every change).

Roster versioning (§2.6): a version string is ``<counter>-<tag>`` (:func:`version`), opaque to the
client (§2.1.1). :data:`INITIAL` is the version of a roster that no versioned change has touched: it is
handed out but never matched, so such a roster is always sent in full. A roster get whose ``ver`` is
the current version is answered with an empty result (:func:`unchanged`); any other ``ver`` gets the
whole roster with the current ``ver``, which §2.6.3 allows (no history of changes is kept, so there is
nothing to push instead); a get without ``ver`` comes from a client that does not use versioning
(§2.6.2) and is answered as before, without one. Every roster push carries the version the change made
(:func:`push_payload`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass

from lxml import etree

from . import ns
from .jid import JID

#: RFC 6121 §2.6.1: the stream feature by which the server says it supports roster versioning.
ROSTERVER = "urn:xmpp:features:rosterver"
#: The ``<ver/>`` to put in the stream features offered to an authenticated client (§2.6.1).
FEATURE = f"<ver xmlns='{ROSTERVER}'/>"
#: The version of a roster no versioned change has touched yet (whatever it held before): never matched.
INITIAL = "0"

QUERY = ns.qname(ns.ROSTER, "query")
ITEM = ns.qname(ns.ROSTER, "item")
GROUP = ns.qname(ns.ROSTER, "group")
_Q_IQ = ns.qname(ns.CLIENT, "iq")

#: A session's feature-state key: it asked for the roster, so it is an "interested resource" that
#: hears of every change (§2.1.6).
INTERESTED = "rfc6121_roster.interested"


@dataclass(frozen=True)
class Item:
    """A roster item as the account sees it (§2.1.2); ``subscription`` 'remove' in a removal's push."""

    jid: str
    name: str
    groups: tuple[str, ...]
    subscription: str
    ask: bool
    approved: bool = False


def item_element(item: Item) -> etree._Element:
    """``<item jid name? subscription ask? approved?><group/>*</item>`` (§2.1.2)."""
    el = etree.Element(ITEM)
    el.set("jid", item.jid)
    if item.name:
        el.set("name", item.name)
    el.set("subscription", item.subscription)
    if item.ask:
        el.set("ask", "subscribe")  # §2.1.2.2: the only value
    if item.approved:
        el.set("approved", "true")  # §2.1.2.1: a pre-approval (§3.4)
    for group in item.groups:
        etree.SubElement(el, GROUP).text = group
    return el


def version(counter: int, tag: str) -> str:
    """The ``ver`` of the account's roster after ``counter`` changes, in the row made with ``tag``."""
    return f"{counter}-{tag}"


def unchanged(requested: str | None, current: str) -> bool:
    """§2.6.3: whether a roster get with ``ver`` = ``requested`` (None: no ``ver``) may be answered with
    an empty result, "thus indicating that any roster modifications will be sent via roster pushes":
    only when the client holds the current version. An empty ``ver`` asks to bootstrap versioning
    (§2.6.2) and :data:`INITIAL` matches nothing, so both get the whole roster."""
    return requested is not None and requested == current and current != INITIAL


def roster_payload(items: Iterable[Item], ver: str | None) -> etree._Element:
    """The ``<query xmlns='jabber:iq:roster' ver?>`` of a roster result: every item (§2.1.4), and the
    current version when the client asked with one ("including a 'ver' attribute that signals the
    latest version", §2.6.3)."""
    query = etree.Element(QUERY, nsmap=ns.default(ns.ROSTER))
    if ver is not None:
        query.set("ver", ver)
    for item in items:
        query.append(item_element(item))
    return query


def push_payload(item: Item, *, ver: str) -> etree._Element:
    """The ``<query xmlns='jabber:iq:roster' ver>`` of a roster push with the one changed item (§2.1.6)
    and the version that change made (§2.6: the client keeps it as the version of its copy)."""
    query = etree.Element(QUERY, nsmap=ns.default(ns.ROSTER))
    query.set("ver", ver)
    query.append(item_element(item))
    return query


def push_iq(push: etree._Element, to: JID, iq_id: str) -> etree._Element:
    """Wrap a roster push payload into ``<iq type='set' id=… to=…>`` for one session (§2.1.6).

    The push carries no ``from``: §2.1.6 has the client accept a push without one (or from its own
    bare JID). The payload is copied, so one push can be wrapped for every session of the account.
    """
    iq = etree.Element(_Q_IQ, nsmap=ns.default(ns.CLIENT))
    iq.set("type", "set")
    iq.set("id", iq_id)
    iq.set("to", str(to))
    iq.append(copy.deepcopy(push))
    return iq
