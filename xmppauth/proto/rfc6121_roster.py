"""RFC 6121 §2 roster items as the wire shows them: the ``<item/>`` element and the roster push.

Building only; the roster get/set handler is ``xmppauth/features/rfc6121_roster.py`` and the
subscription state behind ``subscription``, ``ask`` and ``approved`` is
:mod:`xmppauth.proto.rfc6121_subscriptions`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from lxml import etree

from . import ns
from .jid import JID

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


def push_payload(item: Item) -> etree._Element:
    """The ``<query xmlns='jabber:iq:roster'>`` of a roster push with the one changed item (§2.1.6)."""
    query = etree.Element(QUERY, nsmap=ns.default(ns.ROSTER))
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
