"""Namespace constants used on the wire (RFC 6120, RFC 7395 and the XEPs we implement)."""

from __future__ import annotations

from typing import Any

STREAMS = "http://etherx.jabber.org/streams"
CLIENT = "jabber:client"
FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"  # RFC 7395
STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"
STANZA_ERRORS = "urn:ietf:params:xml:ns:xmpp-stanzas"
TLS = "urn:ietf:params:xml:ns:xmpp-tls"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND = "urn:ietf:params:xml:ns:xmpp-bind"
SESSION = "urn:ietf:params:xml:ns:xmpp-session"  # RFC 3921 legacy, advertised as optional
SASL_CB = "urn:xmpp:sasl-cb:0"  # XEP-0440
SASL2 = "urn:xmpp:sasl:2"  # XEP-0388
BIND2 = "urn:xmpp:bind:0"  # XEP-0386 (normative; some XEP examples say urn:xmpp:bind2:1)
FAST = "urn:xmpp:fast:0"  # XEP-0484
PING = "urn:xmpp:ping"  # XEP-0199
SM = "urn:xmpp:sm:3"  # XEP-0198
CARBONS = "urn:xmpp:carbons:2"  # XEP-0280
FORWARD = "urn:xmpp:forward:0"  # XEP-0297
CSI = "urn:xmpp:csi:0"  # XEP-0352
HINTS = "urn:xmpp:hints"  # XEP-0334
DELAY = "urn:xmpp:delay"  # XEP-0203
DISCO_INFO = "http://jabber.org/protocol/disco#info"  # XEP-0030
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
ROSTER = "jabber:iq:roster"  # RFC 6121 §2
BLOCKING = "urn:xmpp:blocking"  # XEP-0191
MAM = "urn:xmpp:mam:2"  # XEP-0313
PUBSUB = "http://jabber.org/protocol/pubsub"  # XEP-0060, as XEP-0163 PEP serves it
PUBSUB_OWNER = "http://jabber.org/protocol/pubsub#owner"
REGISTER = "jabber:iq:register"  # XEP-0077 (in-band password change)
COMMANDS = "http://jabber.org/protocol/commands"  # XEP-0050
ADMIN = "http://jabber.org/protocol/admin"  # XEP-0133, also the FORM_TYPE of its forms
DATA_FORMS = "jabber:x:data"  # XEP-0004
CAM = "urn:xmpp:cam:0"  # XEP-0494 client access management
GRANT = "urn:xmppauth:grant:0"  # our scopes inside XEP-0494 (docs/access.md)
SASL_UPGRADE = "urn:xmpp:sasl:upgrade:0"  # XEP-0480 task names in <authentication/>
SCRAM_UPGRADE = "urn:xmpp:scram-upgrade:0"  # XEP-0480 task data
MFA = "urn:xmpp:mfa:0"  # XEP-0400
STREAM_LIMITS = "urn:xmpp:stream-limits:0"  # XEP-0478
RECOVERY = "urn:xmppauth:recovery:0"  # our recovery-code SASL2 task (docs/protocol/recovery-task.md)
WEBAUTHN = "urn:xmppauth:webauthn:0"  # our WebAuthn SASL2 task (docs/protocol/webauthn-task.md)
XML = "http://www.w3.org/XML/1998/namespace"


def default(namespace: str) -> dict[Any, str]:
    """An lxml ``nsmap`` declaring ``namespace`` as the default (lxml-stubs do not admit a None key)."""
    return {None: namespace}


def qname(namespace: str, local: str) -> str:
    """Clark notation as lxml spells it: ``{namespace}local``."""
    return f"{{{namespace}}}{local}"
