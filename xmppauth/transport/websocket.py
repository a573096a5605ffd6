"""XMPP over WebSocket (RFC 7395) as a transport of the ``xmpp`` ASGI scope, beside transport/tcp.py.

Daphne speaks the WebSocket protocol; :class:`WebSocketTransport` wraps the stream application
(the consumer) for the ``/xmpp-websocket`` route and does what is WebSocket-specific: the
subprotocol check, the accept, text frames in and out. The application sees the message set of
the TCP transport (transport/tcp.py), with one element per ``xmpp.receive``:

Scope: the WebSocket scope with ``"type": "xmpp"``, ``"transport": "websocket"`` and
``"xmpp_framing": "websocket"`` (each ``xmpp.receive`` is one RFC 7395 message: one element).

Transport -> application:

- ``{"type": "xmpp.connect", "tls": None, "encrypted": bool}`` first: ``encrypted`` when the
  WebSocket arrived over wss or from a proxy trusted to have terminated TLS
  (``XMPP_WS_TLS_TERMINATED_BY``); there is no channel binding through a WebSocket.
- ``{"type": "xmpp.receive", "bytes": b"..."}`` one text message, UTF-8 encoded.
- ``{"type": "xmpp.stream_error", "condition": str, "text": str}``: the client sent what the
  stream cannot take (a binary message), and the stream ends with that stream error.
- ``{"type": "xmpp.disconnect", "reason": str}`` last.

Application -> transport: ``{"type": "xmpp.send", "frames": [b"...", ...]}`` (one text message
per frame) and ``{"type": "xmpp.close"}`` (close code 1000). A client that has gone already is
not an error: Daphne's protocol then raises autobahn's ``Disconnected`` (say, for our answer to a
``<close/>`` the client sent just before closing the socket), which is dropped here with the rest
of the frames; the ``xmpp.disconnect`` that follows ends the stream.

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

from xmppauth.transport import ASGIApp, Message, limits
from xmppauth.transport.limits import ConnectionLimits, process_limits

SUBPROTOCOL = "xmpp"  # RFC 7395 §3.1
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
        xmpp_scope = {**scope, "type": "xmpp", "transport": "websocket", "xmpp_framing": "websocket"}
        # the process's connection limits (transport/limits.py), shared with the TCP listeners: a refused
        # WebSocket is told why with a stream error after the <open/>
        client = scope.get("client") or ("", 0)
        address = str(client[0])
        if self.limits.held_by_listener(address, int(client[1] or 0)):
            # the HTTP listener admitted this connection (transport/http_guard.py) and releases it
            await self.application(xmpp_scope, connection.receive, connection.send)
            return
        refused = self.limits.admit(address)
        if refused is not None:
            connection.refuse(refused)
            await self.application(xmpp_scope, connection.receive, connection.send)
            return
        try:
            await self.application(xmpp_scope, connection.receive, connection.send)
        finally:
            self.limits.release(address)


class _Connection:
    """One accepted WebSocket: translates between the WebSocket and the xmpp message sets."""

    def __init__(self, receive: Callable[[], Awaitable[Message]], send: Any, *, encrypted: bool) -> None:
        self._receive = receive
        self._send = send
        self._connect: Message | None = {"type": "xmpp.connect", "tls": None, "encrypted": encrypted}
        self._refusal: Message | None = None

    def refuse(self, reason: str) -> None:
        """The connection limits refuse this WebSocket: right after the connect, the stream ends with why."""
        self._refusal = limits.refusal(reason)

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
            return {"type": "xmpp.disconnect", "reason": f"websocket closed ({message.get('code')})"}
        raise ValueError(f"unexpected message {message['type']!r} on an XMPP WebSocket")

    async def send(self, message: Message) -> None:
        kind = message["type"]
        try:
            if kind == "xmpp.send":
                for frame in message["frames"]:
                    await self._send({"type": "websocket.send", "text": frame.decode()})
            elif kind == "xmpp.close":
                await self._send({"type": "websocket.close", "code": 1000})
            else:
                raise ValueError(f"unknown message type {kind!r} for an XMPP WebSocket")
        except Disconnected:
            return
