"""The HTTP listener's guard: connection limits and a request deadline in front of Daphne (issue 12).

Daphne accepts every TCP connection and Twisted gives an HTTP connection a minute of silence, renewed
by every byte: a client trickling one header byte a minute holds its connection for ever, and some
twenty thousand of them, from one machine, took the process past its file limit (a black-box attack on
this listener). These rules close that, in one wrapper around Daphne's HTTP factory:

- **The process's connection limits** (transport/limits.py): each TCP connection to the HTTP listener
  is admitted by the same :class:`~xmppauth.transport.limits.ConnectionLimits` as the XMPP listeners'
  connections, so the total, the per-address count and the connect rate cover every listener. A refused
  connection gets ``503 Service Unavailable`` with the reason as its text and is closed. A WebSocket
  upgraded from an admitted connection is that same connection: each admitted connection is registered
  with the limits by address and port, with :meth:`GuardedConnection._make_room`
  (:meth:`ConnectionLimits.hold_for_listener`), so that transport/websocket.py does not count it twice.
- **Room for other addresses** (``XMPP_ROOM_AFTER_SECONDS``): while a connection waits for a request
  (opened, or between requests) it is one the limits may give up when the process is full
  (:meth:`ConnectionLimits.waiting`); giving it up releases its place and aborts it. A WebSocket upgraded
  from it declares it waiting again until its XMPP stream is bound (transport/websocket.py), so that
  unauthenticated WebSockets hold no one out either: the abort makes Daphne tell the stream
  ``websocket.disconnect``, and the stream ends.
- **A request deadline** (``XMPP_HTTP_REQUEST_TIMEOUT``): a request's line, headers and body must all
  arrive within so many seconds of the connection opening or of the previous response. A client that
  sent part of a request by then gets ``408 Request Timeout`` and is closed; an idle keep-alive
  connection is closed without a word, as HTTP/1.1 allows (RFC 9112 §9.8). Once a request is upgraded
  to a WebSocket the deadline is over: the XMPP stream's own pre-authentication deadline takes over.
- **A client that does not read** (the same deadline): while a request is in hand, a response that has
  bytes waiting for the client and had none taken by it for ``XMPP_HTTP_REQUEST_TIMEOUT`` seconds ends the
  connection. A client that pipelined thousands of requests and then stopped reading held its
  connection for minutes (the requests in hand were never timed; a black-box attack).

Nothing here runs per byte beyond Twisted's own wrapper call; a connection costs one timer and one entry
in the limits' registry of the listener's connections, removed when it goes.
"""

from __future__ import annotations

import logging
from typing import Any

from daphne.http_protocol import WebRequest
from twisted.internet.protocol import Protocol, connectionDone
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure

from xmppauth.transport.limits import ConnectionLimits

log = logging.getLogger("xmppauth.limits")

TIMED_OUT = "the request did not arrive in time"


def plain_response(status: str, text: str) -> bytes:
    """A whole HTTP/1.1 response that closes the connection: a status line and a text body."""
    body = f"{text}\n".encode()
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n"
    )
    if status.startswith("503"):
        head += "Retry-After: 10\r\n"
    return head.encode() + b"\r\n" + body


# Twisted's wrapper classes are untyped; through these names their methods are Any to mypy
_Wrapper: Any = ProtocolWrapper
_WrappingFactory: Any = WrappingFactory


class _Refusal(Protocol):
    """A connection the limits refused: told why, then closed; it was never counted."""

    transport: Any

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def connectionMade(self) -> None:
        self.transport.write(plain_response("503 Service Unavailable", self.reason))
        self.transport.loseConnection()


class GuardedConnection(_Wrapper):  # type: ignore[misc]
    """One admitted connection: releases its place when it goes, and holds the request deadline."""

    factory: GuardedHTTPFactory
    disconnecting: int

    def __init__(self, factory: GuardedHTTPFactory, channel: Any, address: str, port: int) -> None:
        super().__init__(factory, channel)
        self.channel = channel
        self.address = address
        self.port = port
        self._deadline: Any = None  # twisted's IDelayedCall
        self._partial = False  # bytes of a request arrived while the deadline ran
        self._stall: Any = None  # while a request is in hand: the check that the client reads
        self._written = 0  # bytes given to the transport, in all
        self._taken = -1  # bytes the client had taken at the last check

    def connectionMade(self) -> None:
        self._arm()
        super().connectionMade()

    def dataReceived(self, data: bytes) -> None:
        if self._deadline is not None:
            self._partial = True
        super().dataReceived(data)

    def write(self, data: bytes) -> None:
        self._written += len(data)
        super().write(data)

    def writeSequence(self, data: Any) -> None:
        for piece in data:
            self.write(piece)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._disarm()
        self._stop_watching()
        self.factory.limits.busy(self.address, self)  # waiting for a request, or for a WebSocket's login
        self.factory.limits.release_from_listener(self.address, self.port, self)
        super().connectionLost(reason)

    # called by GuardedRequest

    def request_arrived(self) -> None:
        """A whole request is in: what happens next is the application's (or the WebSocket's); from
        now on the client must take what it is sent."""
        self._disarm()
        self.factory.limits.busy(self.address, self)
        self._stop_watching()
        self._taken = -1
        self._stall = self.factory.clock.callLater(self.factory.request_timeout, self._check_reading)

    def response_sent(self) -> None:
        """A response is done; the connection may carry the next request, within the deadline again."""
        self._stop_watching()
        if self.wrappedProtocol is self.channel and not self.disconnecting:
            self._arm()

    def _stop_watching(self) -> None:
        if self._stall is not None and self._stall.active():
            self._stall.cancel()
        self._stall = None

    def _check_reading(self) -> None:
        """Every deadline while a request is in hand: bytes wait for the client and it took none since
        the last look: it does not read, and the connection ends. A WebSocket is the stream's to watch."""
        self._stall = None
        if self.wrappedProtocol is not self.channel or self.disconnecting:
            return
        waiting = _waiting_bytes(self.transport)
        taken = self._written - waiting
        if waiting and taken == self._taken:
            self._not_reading()
            return
        self._taken = taken
        self._stall = self.factory.clock.callLater(self.factory.request_timeout, self._check_reading)

    def _arm(self) -> None:
        self._disarm()
        self._partial = False
        self._taken = self._written - _waiting_bytes(self.transport)
        self._deadline = self.factory.clock.callLater(self.factory.request_timeout, self._expired)
        self.factory.limits.waiting(self.address, self, self._make_room)

    def _make_room(self) -> None:
        """The process is full and this waiting connection (no request yet, or a WebSocket not logged in)
        is the one to go: its place is given back now, for the newcomer, and the connection aborted (a
        WebSocket's stream then hears ``websocket.disconnect`` from Daphne)."""
        self.factory.limits.release_from_listener(self.address, self.port, self)
        self._disarm()
        self.transport.abortConnection()

    def _disarm(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.wrappedProtocol is not self.channel or self.disconnecting:
            return
        waiting = _waiting_bytes(self.transport)
        if waiting:  # responses it was sent still wait for it (a close would wait for them too)
            taken = self._written - waiting
            if taken > self._taken:  # a slow reader of a big response: still reading, another deadline
                self._taken = taken
                self._deadline = self.factory.clock.callLater(self.factory.request_timeout, self._expired)
                return
            # not a byte taken for a whole deadline: a pipelining client that stopped reading, say
            # (the next request waits unread behind the responses)
            self._not_reading()
            return
        if self._partial:
            self.factory.limits.note(
                self.address, "http-deadline", f"HTTP connection from {self.address} closed: {TIMED_OUT}"
            )
            self.write(plain_response("408 Request Timeout", TIMED_OUT))
        self.loseConnection()

    def _not_reading(self) -> None:
        what = f"HTTP connection from {self.address} closed: it does not read"
        self.factory.limits.note(self.address, "http-not-reading", what)
        self.transport.abortConnection()


def _waiting_bytes(transport: Any) -> int:
    """Bytes a Twisted TCP transport holds for its peer (0 for a transport that does not say)."""
    buffered = getattr(transport, "dataBuffer", b"")
    offset = getattr(transport, "offset", 0)
    pending = getattr(transport, "_tempDataLen", 0)
    return max(0, len(buffered) - offset) + pending


class GuardedHTTPFactory(_WrappingFactory):  # type: ignore[misc]
    """Wraps Daphne's HTTP factory: admission by the process's limits, and the request deadline."""

    protocol = GuardedConnection
    noisy = False

    def __init__(self, wrapped: Any, limits: ConnectionLimits, request_timeout: float, clock: Any) -> None:
        super().__init__(wrapped)
        self.limits = limits
        self.request_timeout = request_timeout
        self.clock = clock

    def buildProtocol(self, addr: Any) -> Protocol:
        address, port = str(getattr(addr, "host", "")), int(getattr(addr, "port", 0))
        refused = self.limits.admit(address)
        if refused is not None:
            refusal = _Refusal(refused)
            refusal.factory = self
            return refusal
        channel = self.wrappedFactory.buildProtocol(addr)
        channel.requestFactory = GuardedRequest
        connection = GuardedConnection(self, channel, address, port)
        self.limits.hold_for_listener(address, port, connection, connection._make_room)
        return connection

    def acceptableProtocols(self) -> list[bytes]:  # ALPN, when the listener speaks TLS
        protocols: list[bytes] = self.wrappedFactory.acceptableProtocols()
        return protocols


class GuardedRequest(WebRequest):  # type: ignore[misc]
    """Daphne's request, telling the guard when a request is in and when its response is done."""

    def process(self) -> Any:
        guard = self.transport
        if isinstance(guard, GuardedConnection):
            guard.request_arrived()
        return super().process()

    def finish(self) -> Any:
        guard = self.transport
        done = super().finish()
        if isinstance(guard, GuardedConnection):
            guard.response_sent()
        return done


def guarded_server(limits: ConnectionLimits, request_timeout: float, **options: Any) -> Any:
    """A Daphne server whose HTTP factory is guarded (daphne.server.Server builds the factory in
    ``run``; the subclass wraps it as it is set). Its ``listen_failures`` are the errors of the endpoints
    it could not listen on (Twisted's CannotListenError names the address), for the caller to say which."""
    import daphne.server
    from twisted.internet import reactor

    class GuardedServer(daphne.server.Server):  # type: ignore[misc]
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.listen_failures: list[BaseException] = []

        def listen_error(self, failure: Failure) -> None:
            if failure.value is not None:
                self.listen_failures.append(failure.value)
            super().listen_error(failure)

        @property
        def http_factory(self) -> GuardedHTTPFactory:
            return self._guarded_factory

        @http_factory.setter
        def http_factory(self, factory: Any) -> None:
            self._guarded_factory = GuardedHTTPFactory(factory, limits, request_timeout, reactor)

    return GuardedServer(**options)
