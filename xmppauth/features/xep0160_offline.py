"""Best Practices for Handling Offline Messages, XEP-0160: what the server's disco#info says.

The storing and the delivery are the router's and the session's (``xmppauth/offline.py`` keeps messages
for an account with no available resource, ``consumer.py`` delivers them with XEP-0203 stamps at its
next available presence); this module only lists ``msgoffline`` among the server's features (§4:
XEP-0013's feature name, the one clients look for).
"""

from __future__ import annotations

from xmppauth import features

MSGOFFLINE = "msgoffline"

features.advertise(MSGOFFLINE)
