"""The HTTP listener's guard (xmppauth/transport/http_guard.py) with Twisted's test clock and string
transports: when the request deadline closes a connection, and with what (the real-socket cases are in
tests/integration/test_connection_limits.py)."""

from __future__ import annotations

from typing import Any

from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport as _StringTransport

from xmppauth.transport.http_guard import GuardedConnection, GuardedHTTPFactory
from xmppauth.transport.limits import ConnectionLimits

StringTransport: Any = _StringTransport  # untyped in Twisted


class Channel(Protocol):
    """Stands in for Daphne's HTTP channel: keeps what it is given."""

    def __init__(self) -> None:
        self.data = b""

    def dataReceived(self, data: bytes) -> None:
        self.data += data


class Peer:
    def __init__(self, port: int) -> None:
        self.host, self.port = "192.0.2.7", port


def connect(factory: GuardedHTTPFactory, port: int) -> tuple[Any, Any]:
    protocol: Any = factory.buildProtocol(Peer(port))
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


def make(**limits: Any) -> tuple[GuardedHTTPFactory, Clock, ConnectionLimits]:
    clock = Clock()
    counts = ConnectionLimits(**{"total": 100, "per_address": 2, "rate": 10.0, "burst": 10, **limits})
    return GuardedHTTPFactory(Factory.forProtocol(Channel), counts, 20, clock), clock, counts


def test_an_idle_connection_is_closed_without_a_word_at_the_deadline() -> None:
    factory, clock, _ = make()
    _, transport = connect(factory, 1000)
    clock.advance(19.9)
    assert not transport.disconnecting
    clock.advance(0.2)
    assert transport.disconnecting
    assert transport.value() == b""


def test_a_request_that_has_not_arrived_whole_gets_408() -> None:
    factory, clock, _ = make()
    protocol, transport = connect(factory, 1001)
    for _ in range(30):  # a byte a second: each renews nothing
        protocol.dataReceived(b"G")
        clock.advance(1)
        if transport.disconnecting:
            break
    assert transport.disconnecting
    assert transport.value().startswith(b"HTTP/1.1 408 Request Timeout\r\n"), transport.value()
    assert protocol.wrappedProtocol.data.startswith(b"GGG")  # what came reached the channel


def test_a_request_in_hand_is_not_timed_and_the_next_one_is() -> None:
    factory, clock, _ = make()
    protocol, transport = connect(factory, 1002)
    assert isinstance(protocol, GuardedConnection)
    protocol.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
    protocol.request_arrived()
    clock.advance(300)  # a slow answer (or a WebSocket) is not the client's delay
    assert not transport.disconnecting
    protocol.response_sent()
    clock.advance(20.1)
    assert transport.disconnecting
    assert transport.value() == b""


def test_beyond_the_limits_the_answer_is_503_with_the_reason_and_nothing_is_counted() -> None:
    factory, _, counts = make()
    first, _ = connect(factory, 1003)
    connect(factory, 1004)
    _, refused = connect(factory, 1005)
    assert refused.value().startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"too many connections from your address" in refused.value()
    assert refused.disconnecting
    assert counts.open == 2
    first.connectionLost(None)
    assert counts.open == 1
    assert not counts.held_by_listener("192.0.2.7", 1003)
