"""XMPP over WebSocket (RFC 7395) as a transport of the ``xmpp`` ASGI scope, beside transport/tcp.py.

Daphne speaks the WebSocket protocol; :class:`WebSocketTransport` wraps the stream application
(the consumer) for the ``/xmpp-websocket`` route and does what is WebSocket-specific: the
subprotocol check, the accept, text frames in and out. The application sees the message set of
the TCP transport (transport/tcp.py), with one element per ``xmpp.receive``:

Scope: the WebSocket scope with ``"type": "xmpp"``, ``"transport": "websocket"``,
``"xmpp_framing": "websocket"`` (each ``xmpp.receive`` is one RFC 7395 message: one element) and
``"xmpp_optional": frozenset({"xmpp.bound"})`` (the optional message this transport takes).

Transport -> application:

- ``{"type": "xmpp.connect", "tls": None, "encrypted": bool}`` first: ``encrypted`` when the
  WebSocket arrived over wss or from a proxy trusted to have terminated TLS
  (``XMPP_WS_TLS_TERMINATED_BY``); there is no channel binding through a WebSocket.
- ``{"type": "xmpp.receive", "bytes": b"..."}`` one text message, UTF-8 encoded.
- ``{"type": "xmpp.stream_error", "condition": str, "text": str}``: the client sent what the
  stream cannot take (a binary message), and the stream ends with that stream error.
- ``{"type": "xmpp.disconnect", "reason": str}`` last.

Application -> transport: ``{"type": "xmpp.send", "frames": [b"...", ...]}`` (one text message per frame),
``{"type": "xmpp.close"}`` (close code 1000) and ``{"type": "xmpp.bound"}`` (the stream is a user's: its
credential was right, or it resumed a session; below). A client that has gone already is not an error:
Daphne's protocol then raises autobahn's ``Disconnected`` (say, for our answer to a ``<close/>`` the client
sent just before closing the socket), which is dropped here with the rest of the frames; the
``xmpp.disconnect`` that follows ends the stream.

Connection limits (transport/limits.py), shared with the TCP listeners. Until its stream is bound a
WebSocket waits for its client, like an XMPP stream over TCP: when the process is full the limits may give
it up to make room for a connection from another address (``ConnectionLimits.waiting``); before, an
attacker filling the process with WebSockets that never logged in held everyone else out for as long as
``XMPP_PREAUTH_TIMEOUT``, and again after reconnecting. Two cases:

- Through the HTTP listener's guard (transport/http_guard.py, the way ``serve`` runs): the guard admitted
  and counts the TCP connection. This transport declares that connection waiting again; giving it up
  aborts the TCP connection, Daphne delivers ``websocket.disconnect``, and the stream ends as for any
  client that went (its reason: closed to make room for another address). ``xmpp.bound`` makes it busy.
- Without the guard (another ASGI server): this transport admits the WebSocket itself; giving it up
  releases its place at once and closes the WebSocket with code 1008 (policy violation).

The limits log a connection given up, once a minute per address.

Cost (docs/performance.md, issue 9): each frame is its own ``websocket.send`` and its own
autobahn frame, so a stanza costs Daphne and autobahn their per-message work on top of the
stream's; this layer adds one dictionary per message each way and nothing per byte.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

from autobahn.exception import Disconnected
from django.conf import settings

from xmppauth import tasks
from xmppauth.transport import ASGIApp, Message, limits
from xmppauth.transport.limits import ConnectionLimits, process_limits

SUBPROTOCOL = "xmpp"  # RFC 7395 §3.1
OPTIONAL_MESSAGES = frozenset({"xmpp.bound", "xmpp.waiting"})  # the scope's "xmpp_optional"
NORMAL_CLOSURE = 1000  # RFC 6455 §7.4.1
POLICY_VIOLATION = 1008  # RFC 6455 §7.4.1: a WebSocket given up to make room for another address
GIVEN_UP = "closed to make room for another address"  # its xmpp.disconnect reason, as over TCP
# RFC 7395 §3.2: "Data frame messages in the XMPP subprotocol MUST be of the text type and contain
# UTF-8 encoded data." RFC 7395 names no condition; a binary frame is the stream "improperly
# encoded", RFC 6120 §4.9.3.22, which §4.9.3.1 prefers to bad-format. The error, then <close/>,
# then the WebSocket closes (RFC 7395 §3.5, §3.6).
BINARY_FRAME = {
    "type": "xmpp.stream_error",
    "condition": "unsupported-encoding",
    "text": "XMPP over WebSocket uses text frames (RFC 7395 §3.2)",
}


@functools.cache
def _tls_terminating_networks() -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(net, strict=False) for net in settings.XMPP_WS_TLS_TERMINATED_BY)


def websocket_is_encrypted(scope: dict[str, Any]) -> bool:
    """A WebSocket counts as encrypted over wss, or from a proxy trusted to have terminated TLS."""
    if scope.get("scheme") == "wss":
        return True
    client = scope.get("client") or ("", 0)
    try:
        address = ipaddress.ip_address(str(client[0]))
    except (TypeError, ValueError):
        return False
    return any(address in net for net in _tls_terminating_networks())


class WebSocketTransport:
    """ASGI application for the XMPP WebSocket route: RFC 7395 framing around an ``xmpp`` application."""

    def __init__(self, application: ASGIApp, connection_limits: ConnectionLimits | None = None) -> None:
        self.application = application
        self._limits = connection_limits

    @property
    def limits(self) -> ConnectionLimits:
        if self._limits is None:
            self._limits = process_limits()
        return self._limits

    async def __call__(
        self, scope: dict[str, Any], receive: Callable[[], Awaitable[Message]], send: Any
    ) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return  # websocket.disconnect: the client left during the handshake
        if SUBPROTOCOL not in scope.get("subprotocols", ()):
            # RFC 7395 §3.3: the client MUST offer 'xmpp'; refusing before accept answers HTTP 403.
            await send({"type": "websocket.close"})
            return
        await send({"type": "websocket.accept", "subprotocol": SUBPROTOCOL})
        connection = _Connection(receive, send, encrypted=websocket_is_encrypted(scope))
        xmpp_scope = {
            **scope,
            "type": "xmpp",
            "transport": "websocket",
            "xmpp_framing": "websocket",
            "xmpp_optional": OPTIONAL_MESSAGES,
        }
        # the process's connection limits (transport/limits.py), shared with the TCP listeners: a refused
        # WebSocket is told why with a stream error after the <open/>
        client = scope.get("client") or ("", 0)
        address = str(client[0])
        counts = self.limits
        listener = counts.listener_connection(address, int(client[1] or 0))
        if listener is not None:
            # the HTTP listener admitted this connection (transport/http_guard.py) and releases it; until
            # the login it waits again, and giving it up aborts the listener's TCP connection
            connection.waits(counts, address, *listener)
        elif (refused := counts.admit(address)) is not None:
            connection.refuse(refused)
        else:
            connection.admitted(counts, address)
        try:
            await self.application(xmpp_scope, connection.receive, connection.send)
        finally:
            connection.ended()


class _Connection:
    """One accepted WebSocket: translates between the WebSocket and the xmpp message sets, and keeps its
    place in the connection limits."""

    def __init__(self, receive: Callable[[], Awaitable[Message]], send: Any, *, encrypted: bool) -> None:
        self._receive = receive
        self._send = send
        self._connect: Message | None = {"type": "xmpp.connect", "tls": None, "encrypted": encrypted}
        self._refusal: Message | None = None
        self._limits: ConnectionLimits | None = None
        self._address = ""
        self._waiting_as: object | None = None  # the connection the limits know as waiting, until bound
        self._counted = False  # admitted by this transport (no HTTP guard in front): released here
        self._given_up = False
        # what waits() was told, to wait again after xmpp.waiting
        self._waits_as: tuple[ConnectionLimits, str, object, Callable[[], None]] | None = None

    def refuse(self, reason: str) -> None:
        """The connection limits refuse this WebSocket: right after the connect, the stream ends with why."""
        self._refusal = limits.refusal(reason)

    def waits(
        self, counts: ConnectionLimits, address: str, connection: object, close: Callable[[], None]
    ) -> None:
        """Until its stream is bound this WebSocket waits for its client: the limits know it as
        ``connection`` and, when the process is full, may give it up with ``close`` (which releases its
        place at once) to make room for another address."""
        self._limits, self._address, self._waiting_as = counts, address, connection
        self._waits_as = (counts, address, connection, close)

        def give_up() -> None:
            self._given_up = True
            self._waiting_as = None
            close()

        counts.waiting(address, connection, give_up)

    def admitted(self, counts: ConnectionLimits, address: str) -> None:
        """This transport counted the WebSocket itself (no HTTP guard in front of it): it releases the
        place when the stream ends, or at once when the WebSocket is given up."""
        self._counted = True
        self.waits(counts, address, self, self._make_room)

    def _make_room(self) -> None:
        """Given up, when this transport counted the WebSocket: the newcomer needs the place now, while
        the close handshake may take the client a while."""
        self._release()
        tasks.start(
            self._close(POLICY_VIOLATION), name="closing a WebSocket to make room for another address"
        )

    def _bound(self) -> None:
        """The stream is a user's (its credential was right): never given up to make room."""
        connection, self._waiting_as = self._waiting_as, None
        if connection is not None and self._limits is not None:
            self._limits.busy(self._address, connection)

    def ended(self) -> None:
        """The stream has ended: nothing left to give up, and a place this transport counted is free."""
        self._bound()
        self._release()

    def _release(self) -> None:
        if self._counted and self._limits is not None:
            self._counted = False
            self._limits.release(self._address)

    async def receive(self) -> Message:
        connect = self._connect
        if connect is not None:
            self._connect = None
            return connect
        refusal = self._refusal
        if refusal is not None:
            self._refusal = None
            return refusal
        message = await self._receive()
        if message["type"] == "websocket.receive":
            text = message.get("text")
            if text is None:
                return dict(BINARY_FRAME)
            return {"type": "xmpp.receive", "bytes": text.encode()}
        if message["type"] == "websocket.disconnect":
            reason = GIVEN_UP if self._given_up else f"websocket closed ({message.get('code')})"
            return {"type": "xmpp.disconnect", "reason": reason}
        raise ValueError(f"unexpected message {message['type']!r} on an XMPP WebSocket")

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "xmpp.send":
            try:
                for frame in message["frames"]:
                    await self._send({"type": "websocket.send", "text": frame.decode()})
            except Disconnected:
                return
        elif kind == "xmpp.close":
            await self._close(NORMAL_CLOSURE)
        elif kind == "xmpp.bound":
            self._bound()
        elif kind == "xmpp.waiting":  # the login failed after all: it may be given up again
            if self._waits_as is not None and self._waiting_as is None and not self._given_up:
                self.waits(*self._waits_as)
        else:
            raise ValueError(f"unknown message type {kind!r} for an XMPP WebSocket")

    async def _close(self, code: int) -> None:
        try:
            await self._send({"type": "websocket.close", "code": code})
        except Disconnected:
            return
