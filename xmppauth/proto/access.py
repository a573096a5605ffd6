"""The access hook: the core asks, the driver decides (per-session permissions).

Which stanzas a session may send is a policy of the application (grants, roles, restricted app
passwords and FAST tokens), so it lives outside the core. The stream machine only asks
:meth:`AccessPolicy.check_inbound` about every stanza a bound client sends, once the stanza is
well-formed (``from`` stamped, ``to`` valid, RFC 6120 §8 checks passed) and before anything
handles or routes it, the server's own iq handlers (ping, disco, carbons) included. A
:class:`Denial` is answered with that stanza error (RFC 6120 §8.3; error and result stanzas are
never answered, RFC 6120 §8.3.1) and the stanza is dropped.

The question is kept small and cheap on purpose, one call per stanza on the hot path:

``kind``
    ``"message"``, ``"presence"`` or ``"iq"``.
``type``
    The stanza's ``type``, with the RFC 6121 defaults filled in: ``"available"`` for a
    presence and ``"normal"`` for a message without one.
``target``
    ``"server"`` (no ``to``, or ``to`` is a bare domain this server serves), ``"account"``
    (``to`` is the session's own bare JID), ``"contact"`` (the bare JID of another account of this
    server, whose server answers some requests on its behalf, e.g. XEP-0163 PEP) or ``"peer"``
    (anything else, the session's own other resources included).
``payload``
    For an iq, the Clark-notation tag of its single child element (``{urn:xmpp:ping}ping``);
    None for messages, presences and an iq without (exactly one) child.
``peer``
    The parsed ``to`` (a :class:`~xmppauth.proto.jid.JID`), None without one.
``stanza_id``
    The stanza's ``id``, None without one. With ``peer`` it lets the policy pair requests with
    their answers (RFC 6120 §8.2.3): a denied result or error is dropped, never answered.

Stanzas routed *to* a session are the router's business (xmppauth/router.py); it asks the
session's policy the same way and gets an :class:`Admission` for answers.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Protocol

from .errors import StanzaErrorCondition

__all__ = ["TARGETS", "AccessPolicy", "Admission", "Denial"]

#: The values of ``target``.
TARGETS = ("server", "account", "contact", "peer")


@dataclass(frozen=True, slots=True)
class Denial:
    """Refuse the stanza with this RFC 6120 §8.3.3 condition; ``text`` goes into ``<text/>``."""

    condition: StanzaErrorCondition
    text: str


class Admission(enum.Enum):
    """Whether a routed answer (an iq result/error, a message error) reaches a session."""

    DROP = "drop"  #: it answers nothing the session asked: dropped and logged
    WHOLE = "whole"  #: delivered as it is
    ERROR_ONLY = "error-only"  #: delivered stripped to its <error/> (no other content)


class AccessPolicy(Protocol):
    """What the driver plugs into :attr:`C2SStream.access <xmppauth.proto.stream.C2SStream.access>`."""

    def check_inbound(
        self,
        kind: str,
        type: str,
        target: str,
        payload: str | None,
        peer: Hashable | None = None,
        stanza_id: str | None = None,
    ) -> Denial | None:
        """None allows the stanza; a :class:`Denial` refuses it (see the module docstring)."""
        ...
