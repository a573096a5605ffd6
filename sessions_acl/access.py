"""The one place that says yes or no to a session: scopes, roles, and the stanza → scope table.

Pure Python (no Django, no I/O), so the stream machine can ask it on every stanza and the tests
can read it as a table. Every session carries exactly one grant; a grant is a set of scopes
(ARCHITECTURE.md "Scopes"). What each scope opens:

================  =====================================================================
scope             inbound (client → server)                 outbound (server → client)
================  =====================================================================
messages.send     <message/> of any type, errors included;   -
                  iq get/set to another entity (routed
                  requests)
messages.receive  carbons enable/disable; the message        <message/> (incl. carbons and
                  archive (XEP-0313 queries, preferences)    stored messages), routed iq get/set
presence          <presence/> of any type                    <presence/>
roster.read       roster get (jabber:iq:roster), blocklist   roster and blocklist pushes
                  get (XEP-0191)
roster.write      roster set, block and unblock; presence    -
                  subscriptions
                  (subscribe, subscribed, unsubscribe,
                  unsubscribed: with presence)
pep.write         XEP-0163 changes: publish, retract,        -
                  create, configure, delete, explicit
                  subscriptions (reading PEP, the account's
                  and its contacts', is ``presence``)
clients.manage    XEP-0494 client access management,         -
                  XEP-0077 password change
admin             XEP-0050 commands (XEP-0133 admin)         -
================  =====================================================================

Always allowed, whatever the grant: ping, service discovery, session and stream management,
client state, and errors the server itself returns to the session's own stanzas. Everything else
follows the table; a denial is ``forbidden`` with a text that names the missing scope, never
silence (RFC 6120 §8.3.3.6: "the requesting entity does not possess the necessary permissions").

**Answers only to questions** (RFC 6120 §8.2.3: a result or an error answers a get or a set; an
entity must never answer one with another). Each session keeps two small ledgers of routed iq
requests, bounded in number and in time (:class:`Pending`): the requests it *asked* (sent to other
entities) and the requests it *owes* an answer to (routed to it). An iq ``result`` or ``error``
passes between sessions, in either direction, only when it answers such a request, same peer and
same id, once; anything else is dropped (and logged): answering an iq is not a way around
``messages.send`` or ``messages.receive``. Answers to the server itself end in the server.
A ``<message type='error'/>`` reaches a session without ``messages.receive`` only as the error to a
message it sent to that peer with that id, and then stripped to its ``<error/>``
(:attr:`Admission.ERROR_ONLY`): an error carries no other content to it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field

from xmppauth.proto import ns
from xmppauth.proto.access import Admission, Denial
from xmppauth.proto.errors import StanzaErrorCondition

MESSAGES_SEND = "messages.send"
MESSAGES_RECEIVE = "messages.receive"
PRESENCE = "presence"
ROSTER_READ = "roster.read"
ROSTER_WRITE = "roster.write"
PEP_WRITE = "pep.write"
CLIENTS_MANAGE = "clients.manage"
ADMIN = "admin"

#: The catalogue, in the order the portal shows it, with what each means to a user.
SCOPES: dict[str, str] = {
    MESSAGES_SEND: "Send messages",
    MESSAGES_RECEIVE: "Receive messages",
    PRESENCE: "See and share online status",
    ROSTER_READ: "Read the contact list",
    ROSTER_WRITE: "Change the contact list",
    PEP_WRITE: "Publish what the account shares with its contacts (avatar, encryption keys, bookmarks)",
    CLIENTS_MANAGE: "List and revoke this account's clients, change its password",
    ADMIN: "Administer the server (staff accounts only)",
}

#: Scopes an app password can never carry (ARCHITECTURE.md: it cannot reach them).
NEVER_FOR_APP_PASSWORDS = frozenset({ADMIN, CLIENTS_MANAGE})

#: Named bundles of scopes. ``full`` is what a password login gets (plus ``admin`` for staff).
ROLES: dict[str, frozenset[str]] = {
    "full": frozenset(SCOPES) - {ADMIN},
    "bot": frozenset({MESSAGES_SEND, MESSAGES_RECEIVE, PRESENCE}),
    "notifier": frozenset({MESSAGES_SEND}),
    "read-only": frozenset({MESSAGES_RECEIVE, PRESENCE, ROSTER_READ}),
    "admin": frozenset(SCOPES),
}

log = logging.getLogger("xmppauth.access")

_SUBSCRIPTION_TYPES = frozenset({"subscribe", "subscribed", "unsubscribe", "unsubscribed"})

_INBOUND_IQ_SCOPES: dict[tuple[str, str], str] = {
    (ns.ROSTER, "get"): ROSTER_READ,
    (ns.ROSTER, "set"): ROSTER_WRITE,
    (ns.BLOCKING, "get"): ROSTER_READ,  # XEP-0191: who the account blocks is part of its contacts
    (ns.BLOCKING, "set"): ROSTER_WRITE,
    (ns.CAM, "get"): CLIENTS_MANAGE,  # XEP-0494
    (ns.CAM, "set"): CLIENTS_MANAGE,
    (ns.REGISTER, "get"): CLIENTS_MANAGE,  # XEP-0077 (in-band password change)
    (ns.REGISTER, "set"): CLIENTS_MANAGE,
    (ns.COMMANDS, "get"): ADMIN,  # XEP-0050, for XEP-0133
    (ns.COMMANDS, "set"): ADMIN,
    (ns.CARBONS, "set"): MESSAGES_RECEIVE,
    (ns.MAM, "get"): MESSAGES_RECEIVE,  # XEP-0313: the archive holds the account's messages
    (ns.MAM, "set"): MESSAGES_RECEIVE,
    (ns.MFA, "get"): CLIENTS_MANAGE,  # XEP-0400 enrolment: how the account logs in
    (ns.MFA, "set"): CLIENTS_MANAGE,
    # XEP-0163 PEP (the account's and its contacts'): reading what the account and its contacts share
    # with those who see their presence (avatars, OMEMO keys) is ``presence``, as are the notifications
    # (may_receive); changing it is ``pep.write``: a device list published by a read-only app password
    # would make the contacts encrypt to a device of its choosing
    (ns.PUBSUB, "get"): PRESENCE,
    (ns.PUBSUB, "set"): PEP_WRITE,
    (ns.PUBSUB_OWNER, "get"): PRESENCE,
    (ns.PUBSUB_OWNER, "set"): PEP_WRITE,
}


class UnknownScope(ValueError):
    """A scope name that is not in the catalogue."""


def validate_scopes(scopes: Iterable[str], *, app_password: bool = False) -> frozenset[str]:
    """The scopes as a set, or :class:`UnknownScope`/:class:`ValueError` with a message for a person."""
    result = frozenset(scopes)
    unknown = sorted(result - SCOPES.keys())
    if unknown:
        raise UnknownScope(f"unknown scope {', '.join(unknown)}; known scopes: {', '.join(SCOPES)}")
    if app_password and result & NEVER_FOR_APP_PASSWORDS:
        forbidden = ", ".join(sorted(result & NEVER_FOR_APP_PASSWORDS))
        raise ValueError(f"an app password can never carry {forbidden}")
    return result


def scopes_for_role(role: str) -> frozenset[str]:
    try:
        return ROLES[role]
    except KeyError:
        raise UnknownScope(f"unknown role {role!r}; roles: {', '.join(ROLES)}") from None


def _namespace(tag: str | None) -> str:
    if not tag or not tag.startswith("{"):
        return ""
    return tag[1 : tag.index("}")]


def _denied(scope: str, what: str) -> Denial:
    return Denial(
        condition=StanzaErrorCondition.FORBIDDEN,
        text=f"this session's grant does not include {scope} ({what})",
    )


class Pending:
    """Stanzas that may be answered: ``(peer, id)`` keys, at most ``limit`` of them, each for
    ``seconds``. When full, the oldest is forgotten (its answer would then be dropped)."""

    __slots__ = ("_clock", "_entries", "limit", "seconds")

    def __init__(self, limit: int, seconds: float, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.seconds = seconds
        self._clock = clock
        self._entries: dict[tuple[Hashable, str], float] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, peer: Hashable, stanza_id: str) -> None:
        entries = self._entries
        key = (peer, stanza_id)
        entries.pop(key, None)  # asked again: the newest deadline, at the end of the order
        while len(entries) >= self.limit:
            del entries[next(iter(entries))]
        entries[key] = self._clock() + self.seconds

    def take(self, peer: Hashable, stanza_id: str) -> bool:
        """Whether ``(peer, id)`` was pending and has not expired; it is pending no more."""
        deadline = self._entries.pop((peer, stanza_id), None)
        return deadline is not None and self._clock() <= deadline

    def adopt(self, other: Pending) -> None:
        """Take over what ``other`` holds (a stream-management resume continues a session)."""
        for (peer, stanza_id), deadline in other._entries.items():
            if len(self._entries) >= self.limit:
                break
            self._entries[peer, stanza_id] = deadline


#: Defaults for the ledgers (settings XMPP_PENDING_REQUESTS and XMPP_PENDING_REQUEST_SECONDS).
PENDING_LIMIT = 256
PENDING_SECONDS = 120.0


@dataclass(slots=True)
class SessionAccess:
    """The access policy of one live session; ``scopes`` may be replaced while it runs.

    ``asked``: iq requests this session sent to other entities, and, while it may not receive
    messages, the messages it sent (whose errors may come back). ``owed``: iq requests routed to
    it. Peers are :class:`~xmppauth.proto.jid.JID` objects (any hashable value works), ids strings.
    """

    scopes: frozenset[str]
    limit: int = PENDING_LIMIT
    seconds: float = PENDING_SECONDS
    clock: Callable[[], float] = time.monotonic
    asked: Pending = field(init=False)
    owed: Pending = field(init=False)

    def __post_init__(self) -> None:
        self.asked = Pending(self.limit, self.seconds, self.clock)
        self.owed = Pending(self.limit, self.seconds, self.clock)

    def allows(self, scope: str) -> bool:
        return scope in self.scopes

    # -------------------------------------------------------------- inbound (client → server)
    def check_inbound(
        self,
        kind: str,
        type: str,
        target: str,
        payload: str | None,
        peer: Hashable | None = None,
        stanza_id: str | None = None,
    ) -> Denial | None:
        """``target``: "server", "account" (own bare JID) or "peer"; ``payload``: the iq child's
        tag; ``peer``: the parsed ``to`` (None without one); ``stanza_id``: the ``id``."""
        scopes = self.scopes
        if kind == "message":
            if MESSAGES_SEND not in scopes:
                return _denied(MESSAGES_SEND, "sending messages")
            if stanza_id and type != "error" and MESSAGES_RECEIVE not in scopes:
                self.asked.add(peer, stanza_id)  # its error may come back (admit)
            return None
        if kind == "presence":
            if PRESENCE not in scopes:
                return _denied(PRESENCE, "sending presence")
            if type in _SUBSCRIPTION_TYPES and ROSTER_WRITE not in scopes:
                # a subscription adds to or changes the account's contact list (RFC 6121 §3)
                return _denied(ROSTER_WRITE, "managing presence subscriptions")
            return None
        # iq
        if type in ("result", "error"):
            if target != "peer" or self.owed.take(peer, stanza_id or ""):
                return None  # an answer to the server ends there; one to a peer must be owed
            log.info(
                "dropped an iq %s to %s (id %r): it answers no request this session received",
                type,
                peer,
                stanza_id,
            )
            return _UNSOLICITED
        if target == "peer":
            if MESSAGES_SEND not in scopes:
                return _denied(MESSAGES_SEND, "requests to other entities")
            self.asked.add(peer, stanza_id or "")
            return None
        scope = _INBOUND_IQ_SCOPES.get((_namespace(payload), type))
        if scope is None or scope in scopes:
            return None
        return _denied(scope, _IQ_WHAT[scope])

    # -------------------------------------------------------------- outbound (server → client)
    def may_receive(self, kind: str, type: str) -> bool:
        """Whether this kind of stanza routed to this session may be written to it at all (the
        router treats a session that may not as absent); :meth:`admit` then decides answers."""
        if kind == "message":
            return type == "error" or MESSAGES_RECEIVE in self.scopes
        if kind in ("presence", "pep"):  # "pep": a XEP-0163 notification (a headline message)
            return PRESENCE in self.scopes
        if type in ("result", "error"):
            return True
        return MESSAGES_RECEIVE in self.scopes

    def may_receive_everything(self) -> bool:
        """Whether :meth:`may_receive` says yes to every kind and type (a check of stanzas queued
        under earlier scopes can then be skipped)."""
        return MESSAGES_RECEIVE in self.scopes and PRESENCE in self.scopes

    def admit(self, kind: str, type: str, sender: Hashable, stanza_id: str | None) -> Admission:
        """An iq, or a message error, from ``sender`` that :meth:`may_receive` let through: is it
        an answer this session waits for (and, for an iq request, note that it owes one)?"""
        if kind == "iq":
            if type in ("get", "set"):
                self.owed.add(sender, stanza_id or "")
                return Admission.WHOLE
            if self.asked.take(sender, stanza_id or ""):
                return Admission.WHOLE
        elif kind != "message" or type != "error" or MESSAGES_RECEIVE in self.scopes:
            return Admission.WHOLE
        elif stanza_id and self.asked.take(sender, stanza_id):
            return Admission.ERROR_ONLY
        log.info("dropped an unsolicited %s %s from %s (id %r)", kind, type, sender, stanza_id)
        return Admission.DROP

    def answered_for_it(self, sender: Hashable, stanza_id: str | None) -> None:
        """The server answered a request routed to this session on its behalf (say, with an error
        when the request could not be delivered after all): the session owes that answer no more."""
        self.owed.take(sender, stanza_id or "")

    def adopt(self, previous: SessionAccess) -> None:
        """A resumed stream continues ``previous``: the answers it waited for still pass."""
        self.asked.adopt(previous.asked)
        self.owed.adopt(previous.owed)


#: An unsolicited answer: dropped, never answered (RFC 6120 §8.3.1), so the text is for the log.
_UNSOLICITED = Denial(
    condition=StanzaErrorCondition.NOT_ALLOWED, text="an answer to no request this session received"
)

_IQ_WHAT = {
    ROSTER_READ: "reading the roster",
    ROSTER_WRITE: "changing the roster",
    CLIENTS_MANAGE: "managing clients and the password",
    ADMIN: "server administration",
    MESSAGES_RECEIVE: "message carbons and the message archive",
    PRESENCE: "reading personal eventing (PEP)",
    PEP_WRITE: "publishing to personal eventing (PEP)",
}


def session_scopes(grant_scopes: Iterable[str], *, app_password: bool, staff: bool) -> frozenset[str]:
    """What a session may use: its grant, minus ``admin`` for non-staff and what app passwords never get."""
    scopes = frozenset(grant_scopes) & SCOPES.keys()
    if not staff:
        scopes -= {ADMIN}
    if app_password:
        scopes -= NEVER_FOR_APP_PASSWORDS
    return scopes
