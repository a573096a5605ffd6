"""The one place that says yes or no to a session: scopes, roles, and the stanza → scope table.

Pure Python (no Django, no I/O), so the stream machine can ask it on every stanza and the tests
can read it as a table. Every session carries exactly one grant; a grant is a set of scopes
(ARCHITECTURE.md "Scopes"). What each scope opens:

================  =====================================================================
scope             inbound (client → server)                 outbound (server → client)
================  =====================================================================
messages.send     <message/> of any type; iq get/set to      -
                  another entity (routed requests)
messages.receive  carbons enable/disable                     <message/> (incl. carbons and
                                                             stored messages), routed iq get/set
presence          <presence/> of any type                    <presence/>
roster.read       roster get (jabber:iq:roster)              roster pushes
roster.write      roster set                                 -
clients.manage    XEP-0494 client access management,         -
                  XEP-0077 password change
admin             XEP-0050 commands (XEP-0133 admin)         -
================  =====================================================================

Always allowed, whatever the grant: ping, service discovery, session and stream management,
client state, answers (result/error) to what the session received or asked, and errors to its
own stanzas. Everything else follows the table; a denial is ``forbidden`` with a text that names
the missing scope, never silence (RFC 6120 §8.3.3.6: "the requesting entity does not possess the
necessary permissions").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from xmppauth.proto.access import Denial
from xmppauth.proto.errors import StanzaErrorCondition

MESSAGES_SEND = "messages.send"
MESSAGES_RECEIVE = "messages.receive"
PRESENCE = "presence"
ROSTER_READ = "roster.read"
ROSTER_WRITE = "roster.write"
CLIENTS_MANAGE = "clients.manage"
ADMIN = "admin"

#: The catalogue, in the order the portal shows it, with what each means to a user.
SCOPES: dict[str, str] = {
    MESSAGES_SEND: "Send messages",
    MESSAGES_RECEIVE: "Receive messages",
    PRESENCE: "See and share online status",
    ROSTER_READ: "Read the contact list",
    ROSTER_WRITE: "Change the contact list",
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

ROSTER = "jabber:iq:roster"
CAM = "urn:xmpp:cam:0"  # XEP-0494
REGISTER = "jabber:iq:register"  # XEP-0077 (in-band password change)
COMMANDS = "http://jabber.org/protocol/commands"  # XEP-0050, for XEP-0133
CARBONS = "urn:xmpp:carbons:2"

_INBOUND_IQ_SCOPES: dict[tuple[str, str], str] = {
    (ROSTER, "get"): ROSTER_READ,
    (ROSTER, "set"): ROSTER_WRITE,
    (CAM, "get"): CLIENTS_MANAGE,
    (CAM, "set"): CLIENTS_MANAGE,
    (REGISTER, "get"): CLIENTS_MANAGE,
    (REGISTER, "set"): CLIENTS_MANAGE,
    (COMMANDS, "get"): ADMIN,
    (COMMANDS, "set"): ADMIN,
    (CARBONS, "set"): MESSAGES_RECEIVE,
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


@dataclass(slots=True)
class SessionAccess:
    """The access policy of one live session; ``scopes`` may be replaced while it runs."""

    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return scope in self.scopes

    # -------------------------------------------------------------- inbound (client → server)
    def check_inbound(self, kind: str, type: str, target: str, payload: str | None) -> Denial | None:
        """``target``: "server", "account" (own bare JID) or "peer"; ``payload``: the iq child's tag."""
        scopes = self.scopes
        if kind == "message":
            if type == "error":
                if MESSAGES_SEND in scopes or MESSAGES_RECEIVE in scopes:
                    return None
                return _denied(MESSAGES_SEND, "sending messages")
            return None if MESSAGES_SEND in scopes else _denied(MESSAGES_SEND, "sending messages")
        if kind == "presence":
            return None if PRESENCE in scopes else _denied(PRESENCE, "sending presence")
        # iq
        if type in ("result", "error"):
            return None  # answers to what the session received or asked
        if target == "peer":
            return None if MESSAGES_SEND in scopes else _denied(MESSAGES_SEND, "requests to other entities")
        scope = _INBOUND_IQ_SCOPES.get((_namespace(payload), type))
        if scope is None or scope in scopes:
            return None
        return _denied(scope, _IQ_WHAT.get(scope, "this request"))

    # -------------------------------------------------------------- outbound (server → client)
    def may_receive(self, kind: str, type: str) -> bool:
        """Whether a stanza routed to this session may be written to it."""
        if kind == "message":
            return type == "error" or MESSAGES_RECEIVE in self.scopes
        if kind == "presence":
            return PRESENCE in self.scopes
        if type in ("result", "error"):
            return True
        return MESSAGES_RECEIVE in self.scopes


_IQ_WHAT = {
    ROSTER_READ: "reading the roster",
    ROSTER_WRITE: "changing the roster",
    CLIENTS_MANAGE: "managing clients and the password",
    ADMIN: "server administration",
    MESSAGES_RECEIVE: "message carbons",
}


def session_scopes(grant_scopes: Iterable[str], *, app_password: bool, staff: bool) -> frozenset[str]:
    """What a session may use: its grant, minus ``admin`` for non-staff and what app passwords never get."""
    scopes = frozenset(grant_scopes) & SCOPES.keys()
    if not staff:
        scopes -= {ADMIN}
    if app_password:
        scopes -= NEVER_FOR_APP_PASSWORDS
    return scopes
