"""The HTTP listener's guard (xmppauth/transport/http_guard.py) with Twisted's test clock and string
transports: when the request deadline closes a connection, and with what; and when a WebSocket upgraded
from one of its connections gives that connection up to make room (the real-socket cases are in
tests/integration/test_connection_limits.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport as _StringTransport

from tests.test_connection_limits import Stream, WebSocketSide
from xmppauth.transport.http_guard import GuardedConnection, GuardedHTTPFactory
from xmppauth.transport.limits import ConnectionLimits
from xmppauth.transport.websocket import WebSocketTransport

StringTransport: Any = _StringTransport  # untyped in Twisted


class Channel(Protocol):
    """Stands in for Daphne's HTTP channel: keeps what it is given."""

    def __init__(self) -> None:
        self.data = b""

    def dataReceived(self, data: bytes) -> None:
        self.data += data


class Peer:
    def __init__(self, port: int, host: str = "192.0.2.7") -> None:
        self.host, self.port = host, port


def connect(
    factory: GuardedHTTPFactory, port: int, transport: Any = None, host: str = "192.0.2.7"
) -> tuple[Any, Any]:
    protocol: Any = factory.buildProtocol(Peer(port, host))
    transport = transport if transport is not None else StringTransport()
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


class BufferingTransport(StringTransport):  # type: ignore[misc]
    """A string transport that says, like Twisted's TCP one, how many bytes wait for the peer."""

    def __init__(self) -> None:
        super().__init__()
        self.dataBuffer = b""
        self.offset = 0
        self._tempDataLen = 0

    def write(self, data: bytes) -> None:
        super().write(data)
        self._tempDataLen += len(data)

    def peer_reads(self, size: int) -> None:
        self._tempDataLen = max(0, self._tempDataLen - size)


def test_a_client_that_stops_reading_while_a_request_is_in_hand_is_dropped() -> None:
    factory, clock, counts = make()
    protocol, transport = connect(factory, 1003, BufferingTransport())
    protocol.dataReceived(b"GET / HTTP/1.1\r\n\r\n" * 3000)  # pipelined, then it stops reading
    protocol.request_arrived()
    protocol.write(b"x" * 100_000)  # the response waits for the client
    clock.advance(20.1)  # the first look: bytes wait, none taken yet, but there was no look before
    assert not transport.disconnecting
    transport.peer_reads(10)  # a slow reader is not dropped
    clock.advance(20)
    assert not transport.disconnecting
    clock.advance(20)  # 20 s more without a byte taken
    assert transport.disconnected  # aborted, not waiting for what it will never read
    protocol.connectionLost()
    assert counts.connections_from("192.0.2.7") == 0


def test_a_slow_answer_with_nothing_waiting_for_the_client_is_not_the_clients_fault() -> None:
    factory, clock, _ = make()
    protocol, transport = connect(factory, 1004, BufferingTransport())
    protocol.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
    protocol.request_arrived()
    clock.advance(300)  # the application takes its time; nothing is written meanwhile
    assert not transport.disconnecting
    assert not transport.disconnected


def test_after_a_response_a_slow_reader_gets_more_time_and_one_that_takes_nothing_is_dropped() -> None:
    factory, clock, _ = make()
    protocol, transport = connect(factory, 1005, BufferingTransport())
    protocol.dataReceived(b"GET /big.js HTTP/1.1\r\n\r\n")
    protocol.request_arrived()
    protocol.write(b"x" * 1_000_000)  # a big response, written whole into the transport's buffer
    protocol.response_sent()
    for _ in range(3):  # a slow link: some of it each deadline
        transport.peer_reads(50_000)
        clock.advance(20.1)
        assert not transport.disconnecting
        assert not transport.disconnected
    clock.advance(20.1)  # a deadline without a byte taken
    assert transport.disconnected


async def test_a_websocket_not_logged_in_gives_its_connection_up_to_make_room_and_a_bound_one_never() -> None:
    """Two requests of the listener upgraded to XMPP WebSockets fill the process; one stream logs in, the
    other never does. A newcomer from another address takes the place of the one not logged in: its TCP
    connection is aborted, the place released once, and its stream ends. The bound one keeps its place."""
    factory, _, counts = make(total=2)
    upgraded = {}
    for port, name in ((1010, "bound"), (1011, "idle")):
        protocol, transport = connect(factory, port)
        protocol.dataReceived(b"GET /xmpp-websocket HTTP/1.1\r\nUpgrade: websocket\r\n\r\n")
        protocol.request_arrived()  # Daphne hands the request to the WebSocket transport
        side, stream = WebSocketSide(), Stream(binds=name == "bound")
        scope = {"type": "websocket", "subprotocols": ["xmpp"], "client": ("192.0.2.7", port)}
        running = asyncio.ensure_future(WebSocketTransport(stream, counts)(scope, side.receive, side.send))
        upgraded[name] = (protocol, transport, side, stream, running)
    await asyncio.sleep(0.01)  # accepted, and bound or not
    assert counts.open == 2  # each counted once, by the guard
    newcomer, _ = connect(factory, 2000, host="198.51.100.9")
    assert isinstance(newcomer, GuardedConnection)  # admitted
    protocol, transport, side, stream, running = upgraded["idle"]
    assert transport.disconnected  # aborted: no close handshake with a client that never logged in
    protocol.connectionLost(None)  # then Twisted tells the guard, and Daphne the stream
    side.incoming.put_nowait({"type": "websocket.disconnect", "code": 1006})
    await asyncio.wait_for(running, 1)
    assert stream.ended == "closed to make room for another address"
    assert counts.open == 2
    assert counts.connections_from("192.0.2.7") == 1
    _, refused = connect(factory, 2001, host="198.51.100.10")
    assert refused.value().startswith(b"HTTP/1.1 503 Service Unavailable\r\n")  # the bound one stays
    protocol, transport, side, stream, running = upgraded["bound"]
    assert not transport.disconnecting
    protocol.connectionLost(None)
    side.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})
    await asyncio.wait_for(running, 1)
    newcomer.connectionLost(None)
    assert counts.open == 0
    assert counts._held_by_listener == {}  # nothing left behind
    assert counts._waiting == {}
