"""Server features the driver answers: iq handlers registered by namespace, one module per protocol.

The core answers ping, disco, carbons and the legacy session itself; an iq get/set to the server or
to the account's bare JID in any other namespace is answered ``service-unavailable`` unless the
driver claimed the namespace (``StreamConfig.driver_iq_namespaces``), and then arrives as an
:class:`~xmppauth.proto.events.IqRequest`. The same goes for disco#info and disco#items of the
server nodes in ``StreamConfig.driver_disco_nodes``. This package is where those claims are made:

- each module of this package (``rfc6121_roster``, ``xep0050_commands``, …) calls :func:`register`
  (and :func:`register_node`) once, at import, for the namespaces it answers;
- :func:`advertised` imports every module of the package and says what the core needs to know
  (the namespaces, the disco nodes, the features to list in disco#info); the consumer's
  ``stream_config()`` passes that on;
- the consumer calls :func:`handler_for` for every ``IqRequest`` and runs the handler with an
  :class:`IqContext` of the session.

Adding a feature is one new module here; neither the consumer nor the core changes. Whether the
session may use a namespace at all (its scopes) is decided by the core's access check before the
request gets here (``sessions_acl.access``); a handler decides only what depends on the request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from django.conf import settings
from lxml import etree

from sessions_acl.access import SessionAccess
from xmppauth.plugins import import_submodules
from xmppauth.proto import ns
from xmppauth.proto.errors import StanzaErrorCondition
from xmppauth.proto.jid import JID
from xmppauth.proto.replies import Refusal


class AccountSession(Protocol):
    """A bound session of the account, as a feature sees it (to push to it)."""

    jid: JID | None
    access: SessionAccess | None
    feature_state: dict[str, object]

    async def deliver(self, data: bytes, urgent: bool = True) -> None: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class IqContext:
    """The session that sent an iq request, as far as its handler needs it."""

    user_id: int  # the account (``accounts.User`` primary key)
    jid: JID  # the session's full JID
    session_id: int | None  # its ``sessions_acl.Session`` row
    access: SessionAccess  # its grant's scopes, as limited for this login
    # The features' own state for this session, by key (kept across a stream-management resume).
    state: dict[str, object]
    answer: Callable[[etree._Element], Awaitable[None]]  # send the reply to the request
    # The account's bound sessions in this process (this one included), to push to.
    account_sessions: Callable[[], list[AccountSession]]
    # How this stream authenticated ("password", "app-password", "fast") and how many seconds ago:
    # a feature that changes how the account logs in asks for a fresh password login.
    credential: str
    authenticated_ago: Callable[[], float]

    def require_fresh_password(self, change: str) -> None:
        """The one check for a request that changes how the account logs in (``change``, e.g.
        "changing the password"): the stream logged in with the account password (not an app password
        or a FAST token, which a thief may hold) within ``XMPP_REAUTH_SECONDS``; else a Refusal."""
        window = float(settings.XMPP_REAUTH_SECONDS)
        if self.credential != "password" or self.authenticated_ago() > window:
            raise Refusal(
                StanzaErrorCondition.NOT_AUTHORIZED,
                f"{change} needs a fresh login with the account password (within the last "
                f"{int(window // 60)} minutes): log in again with the password, then try again",
            )


Handler = Callable[[IqContext, etree._Element, etree._Element], Awaitable[None]]
"""``handler(context, stanza, payload)``: answer the request (``from`` stamped with the sender's
full JID; ``payload`` is its single child) through ``context.answer``. Never raises for a client's
mistake: a refusal is an error reply. Whatever it raises ends the session's stream."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Advertised:
    """What the core is told about the registered features (``StreamConfig`` fields)."""

    iq_namespaces: frozenset[str]
    contact_namespaces: frozenset[str]  # also answered for other accounts' bare JIDs (target "contact")
    disco_nodes: frozenset[str]
    server_features: tuple[str, ...]
    account_features: tuple[str, ...]
    account_identities: tuple[tuple[str, str], ...]


_handlers: dict[str, Handler] = {}  # payload namespace -> handler
_contact_namespaces: set[str] = set()
_nodes: dict[str, Handler] = {}  # disco node of the server -> handler of its disco#info / disco#items
_server_features: list[str] = []
_account_features: list[str] = []
_account_identities: list[tuple[str, str]] = []


def register(
    namespace: str,
    handler: Handler,
    *,
    server_feature: bool = False,
    account_feature: bool = False,
    contacts: bool = False,
) -> None:
    """Answer iq requests whose payload is in ``namespace`` with ``handler``; list ``namespace``
    among the server's (or the account's) features in disco#info if asked to. ``contacts``: requests
    to other accounts' bare JIDs too (the handler reads the account from the stanza's ``to``)."""
    if namespace in _handlers:
        raise ValueError(f"two handlers for {namespace}")
    _handlers[namespace] = handler
    if contacts:
        _contact_namespaces.add(namespace)
    if server_feature:
        _server_features.append(namespace)
    if account_feature:
        _account_features.append(namespace)


def advertise_identity(category: str, kind: str) -> None:
    """List the XEP-0030 identity (``category``, ``kind``) in the account's disco#info too."""
    _account_identities.append((category, kind))


def advertise(feature: str, *, account_feature: bool = False) -> None:
    """List ``feature`` (a disco#info feature that is no namespace of its own, e.g. XEP-0313's
    ``urn:xmpp:mam:2#extended``) among the server's, or the account's, features."""
    (_account_features if account_feature else _server_features).append(feature)


def register_node(node: str, handler: Handler) -> None:
    """Answer disco#info and disco#items of the server's ``node`` with ``handler`` (XEP-0030 §3.2)."""
    if node in _nodes:
        raise ValueError(f"two handlers for the disco node {node}")
    _nodes[node] = handler


def handler_for(payload: etree._Element) -> Handler | None:
    """The handler of the request whose single child is ``payload``."""
    import_submodules(__name__)
    namespace = etree.QName(payload).namespace or ""
    if namespace in (ns.DISCO_INFO, ns.DISCO_ITEMS):
        handler = _nodes.get(payload.get("node") or "")
        if handler is not None:
            return handler
    return _handlers.get(namespace)


def advertised() -> Advertised:
    """The namespaces, disco nodes and disco features of every module of this package."""
    import_submodules(__name__)
    return Advertised(
        iq_namespaces=frozenset(_handlers),
        contact_namespaces=frozenset(_contact_namespaces),
        disco_nodes=frozenset(_nodes),
        server_features=tuple(_server_features),
        account_features=tuple(_account_features),
        account_identities=tuple(_account_identities),
    )
