"""XEP-0280 Message Carbons, the stream's part: enabling and disabling per session.

Implements §4 (the enable/disable iq, answered with an empty result) and its Bind2 inline form
(XEP-0386 §2.4). States touched: BOUND. Copying messages to the other sessions is routing: see
:mod:`xmppauth.router`.
"""

from __future__ import annotations

from . import ns

ENABLE = ns.qname(ns.CARBONS, "enable")
DISABLE = ns.qname(ns.CARBONS, "disable")
PRIVATE = ns.qname(ns.CARBONS, "private")
FEATURE = ns.CARBONS
