"""XEP-0280 Message Carbons: enabling per session, and the copies' form.

Implements §4 (the enable/disable iq, answered with an empty result, and its Bind2 inline form,
XEP-0386 §2.4), §6 (which messages are copied: not those marked ``<private/>`` or, XEP-0334,
``<no-copy/>``) and §5 (a copy wraps the message in ``<sent/>`` or ``<received/>`` with an XEP-0297
``<forwarded/>``). States touched: BOUND. Deciding who gets a copy is routing: the router calls
:func:`eligible` and :func:`wrap`.
"""

from __future__ import annotations

from lxml import etree

from . import ns
from .jid import JID
from .xml import escape_attr

ENABLE = ns.qname(ns.CARBONS, "enable")
DISABLE = ns.qname(ns.CARBONS, "disable")
PRIVATE = ns.qname(ns.CARBONS, "private")
NO_COPY = ns.qname(ns.HINTS, "no-copy")  # XEP-0334
FEATURE = ns.CARBONS


def eligible(stanza: etree._Element) -> bool:
    """§6: a chat message is copied unless marked private, or no-copy (XEP-0334)."""
    return stanza.find(PRIVATE) is None and stanza.find(NO_COPY) is None


def wrap(kind: str, bare: JID, to: JID, data: bytes) -> bytes:
    """§5: the serialised message ``data`` as a ``kind`` ("sent" or "received") carbon from the
    account's ``bare`` JID to the session ``to``."""
    return (
        f"<message xmlns='{ns.CLIENT}' from='{bare}' to='{escape_attr(str(to))}' type='chat'>"
        f"<{kind} xmlns='{ns.CARBONS}'><forwarded xmlns='{ns.FORWARD}'>".encode()
        + data
        + f"</forwarded></{kind}></message>".encode()
    )
