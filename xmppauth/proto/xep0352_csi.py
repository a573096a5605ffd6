"""XEP-0352 Client State Indication: ``<active/>`` and ``<inactive/>`` between stanzas.

Implements §4 (the nonzas, advertised in the features after binding) and its Bind2 inline form
(XEP-0386 §2.2). States touched: BOUND. What the driver holds back for an inactive client is its
business: the core reports a change as :class:`~.events.ClientStateChanged`.
"""

from __future__ import annotations

from . import ns

ACTIVE = ns.qname(ns.CSI, "active")
INACTIVE = ns.qname(ns.CSI, "inactive")
NONZAS = frozenset({ACTIVE, INACTIVE})
FEATURE = f"<csi xmlns='{ns.CSI}'/>"
