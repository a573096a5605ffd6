"""XEP-0199 XMPP Ping: the core answers a ping to the server or to the account's bare JID.

Implements §4.2 (client-to-server ping). States touched: BOUND (through :mod:`.rfc6120_stanzas`).
"""

from __future__ import annotations

from . import ns

QUERY = ns.qname(ns.PING, "ping")
FEATURE = ns.PING
