"""The connection limits of a process (xmppauth/transport/limits.py), with a clock of the test's own; and
the WebSocket transport's place in them (xmppauth/transport/websocket.py) without the HTTP listener's guard
in front of it (the guarded case: tests/test_http_guard.py; both on real sockets:
tests/integration/test_connection_limits.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from xmppauth.transport import limits
from xmppauth.transport.limits import ConnectionLimits
from xmppauth.transport.websocket import WebSocketTransport


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(**overrides: float) -> tuple[ConnectionLimits, Clock]:
    clock = Clock()
    config = {"total": 100, "per_address": 3, "rate": 2.0, "burst": 5, **overrides}
    return ConnectionLimits(clock=clock, **config), clock  # type: ignore[arg-type]


def test_an_address_may_hold_so_many_connections_and_another_is_not_held() -> None:
    counts, _ = make()
    assert [counts.admit("192.0.2.1") for _ in range(3)] == [None, None, None]
    assert counts.admit("192.0.2.1") == "too many connections from your address"
    assert counts.admit("192.0.2.2") is None
    counts.release("192.0.2.1")
    assert counts.admit("192.0.2.1") is None  # one went: one may come
    assert counts.open == 4


def test_new_connections_from_one_address_come_in_a_burst_then_at_the_rate() -> None:
    counts, clock = make(per_address=100)
    for _ in range(5):
        assert counts.admit("192.0.2.3") is None
        counts.release("192.0.2.3")
    assert counts.admit("192.0.2.3") == "too many new connections from your address: slow down"
    clock.now += 0.5  # one more token at 2 a second
    assert counts.admit("192.0.2.3") is None
    assert counts.admit("192.0.2.3") is not None
    clock.now += 60  # the bucket fills up to the burst, no further
    assert [counts.admit("192.0.2.3") is None for _ in range(6)] == [True] * 5 + [False]


def test_the_process_total_holds_every_address() -> None:
    counts, _ = make(total=4)
    for i in range(4):
        assert counts.admit(f"192.0.2.{10 + i}") is None
    assert counts.admit("192.0.2.99") == "the server has too many connections: try again later"
    counts.release("192.0.2.10")
    assert counts.admit("192.0.2.99") is None


def test_an_ipv6_subscriber_counts_by_its_64() -> None:
    counts, _ = make()
    for host in ("2001:db8:5:6::1", "2001:db8:5:6::2", "2001:db8:5:6:ffff::3"):
        assert counts.admit(host) is None
    assert counts.admit("2001:db8:5:6:1234::9") == "too many connections from your address"
    assert counts.admit("2001:db8:5:7::1") is None
    assert counts.connections_from("2001:db8:5:6::77") == 3


def test_a_release_never_counts_below_zero() -> None:
    counts, _ = make()
    counts.release("192.0.2.50")  # never admitted
    assert counts.admit("192.0.2.50") is None
    counts.release("192.0.2.50")
    counts.release("192.0.2.50")
    assert counts.open == 0


def test_the_table_of_addresses_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "PRUNE_AT", 50)
    counts, clock = make(rate=1000.0)
    for i in range(1000):
        assert counts.admit(f"10.0.{i // 250}.{i % 250}") is None
        counts.release(f"10.0.{i // 250}.{i % 250}")
        clock.now += 0.01
    assert len(counts._addresses) <= 50


def test_a_refusal_is_logged_once_a_minute_per_address(caplog: pytest.LogCaptureFixture) -> None:
    counts, clock = make(per_address=1)
    counts.admit("192.0.2.60")
    with caplog.at_level(logging.WARNING, logger="xmppauth.limits"):
        for _ in range(10):
            counts.admit("192.0.2.60")
        clock.now += 61
        counts.admit("192.0.2.60")
    lines = [r.getMessage() for r in caplog.records]
    assert (
        lines
        == ["connection from 192.0.2.60 refused: too many connections from your address (the address limit)"]
        * 2
    )


def test_while_the_process_stops_every_connection_is_refused_with_system_shutdown() -> None:
    counts, _ = make()
    counts.stopping = limits.STOPPING
    assert counts.admit("192.0.2.40") == limits.STOPPING
    assert counts.open == 0  # nothing counted
    assert limits.refusal(limits.STOPPING)["condition"] == "system-shutdown"
    assert limits.refusal("too many connections from your address")["condition"] == "policy-violation"


def test_the_http_listener_counts_a_connection_once_and_releases_it_once() -> None:
    counts, _ = make()
    first, later = object(), object()  # two TCP connections of the listener, one after the other
    assert counts.admit("192.0.2.41") is None
    counts.hold_for_listener("192.0.2.41", 5001, first, lambda: None)
    assert counts.held_by_listener("192.0.2.41", 5001)
    assert not counts.held_by_listener("192.0.2.41", 5002)  # another connection of the address
    counts.release_from_listener("192.0.2.41", 5001, first)
    counts.release_from_listener("192.0.2.41", 5001, first)  # a second release does not free another's place
    assert counts.open == 0
    assert counts.connections_from("192.0.2.41") == 0
    assert counts.admit("192.0.2.41") is None  # the same address and port again, a new connection
    counts.hold_for_listener("192.0.2.41", 5001, later, lambda: None)
    counts.release_from_listener("192.0.2.41", 5001, first)  # the old one's late release: not the new one's
    assert counts.held_by_listener("192.0.2.41", 5001)
    assert counts.open == 1


def test_a_websocket_on_a_listener_connection_waits_again_until_bound_and_leaves_nothing_behind() -> None:
    """What the HTTP guard and the WebSocket transport tell the limits about one TCP connection: it waits
    for a request, it is busy with the upgrade, its WebSocket waits for a login (and may be given up),
    it is busy once bound, it goes; after which the limits hold nothing of it."""
    counts, _ = make(total=3, per_address=3)
    closed: list[object] = []

    def listener(port: int) -> int:
        """A connection of the HTTP listener, as the guard registers it (closing it releases its place)."""
        connection = f"listener {port}"

        def close() -> None:
            closed.append(connection)
            counts.release_from_listener("198.51.100.1", port, connection)

        assert counts.admit("198.51.100.1") is None
        counts.hold_for_listener("198.51.100.1", port, connection, close)
        counts.waiting("198.51.100.1", connection, close)  # no request yet
        counts.busy("198.51.100.1", connection)  # the upgrade request arrived
        return port

    def upgraded(port: int) -> object:
        """The WebSocket transport: the listener's connection waits again, for the stream's login."""
        held = counts.listener_connection("198.51.100.1", port)
        assert held is not None
        counts.waiting("198.51.100.1", *held)
        return held[0]

    bound, idle = upgraded(listener(6001)), upgraded(listener(6002))
    counts.busy("198.51.100.1", bound)  # xmpp.bound
    younger = upgraded(listener(6003))
    assert counts.admit("203.0.113.9") is None  # the process was full: a WebSocket not logged in went
    assert closed == [idle]  # the oldest of those waiting; never the bound one
    assert not counts.held_by_listener("198.51.100.1", 6002)
    assert counts.admit("203.0.113.10") is None  # and the other one not logged in
    assert closed == [idle, younger]
    assert counts.admit("203.0.113.11") == "the server has too many connections: try again later"
    assert closed == [idle, younger]  # the bound one holds its place
    # each connection goes: what the guard's connectionLost tells the limits
    for port, connection in ((6001, bound), (6002, idle), (6003, younger)):
        counts.busy("198.51.100.1", connection)
        counts.release_from_listener("198.51.100.1", port, connection)
    assert counts._held_by_listener == {}
    assert counts._waiting == {}
    assert counts.connections_from("198.51.100.1") == 0


def test_a_reverse_proxys_connections_count_in_the_total_only() -> None:
    import ipaddress

    counts, _ = make(total=6, proxies=(ipaddress.ip_network("10.0.0.0/30"),))  # type: ignore[arg-type]
    assert [counts.admit("10.0.0.1") for _ in range(5)] == [None] * 5  # beyond per_address 3 and burst 5
    assert counts.admit("192.0.2.50") is None
    assert counts.admit("10.0.0.2") == "the server has too many connections: try again later"  # the total
    counts.release("10.0.0.1")
    assert counts.admit("10.0.0.2") is None
    assert counts.open == 6
    # an address outside the proxies' network keeps its own limits
    counts, _ = make(proxies=(ipaddress.ip_network("10.0.0.0/30"),))  # type: ignore[arg-type]
    assert [counts.admit("10.0.0.9") for _ in range(4)] == [
        None,
        None,
        None,
        "too many connections from your address",
    ]


def test_a_listener_accepts_at_most_a_turns_worth_of_connections_at_once() -> None:
    """Twisted's port accepts up to 100 connections per readiness and adds 20 whenever that many
    waited; ours stays at ACCEPTS_PER_TURN, so that a burst of connects (mostly refused) leaves the
    event loop to the other streams in between (docs/performance.md, "a flood of connects")."""
    from xmppauth.transport import tcp

    port = tcp._TurnTakingPort.__new__(tcp._TurnTakingPort)
    port.numberAccepts = 100  # what Twisted's startListening sets
    assert port.numberAccepts == tcp.ACCEPTS_PER_TURN == 16
    port.numberAccepts += 20  # every accept of a turn was used
    assert port.numberAccepts == 16
    port.numberAccepts = 3  # fewer waited: Twisted tries no more than that next time
    assert port.numberAccepts == 3


def test_a_full_process_makes_room_for_an_address_with_fewer_by_closing_a_waiting_one_of_the_most() -> None:
    """A slowloris from many addresses fills the total: a newcomer from an address with fewer
    connections takes the place of the oldest waiting connection of the address holding the most."""
    counts, _ = make(total=5, per_address=4)
    closed: list[str] = []

    def hold(address: str, name: str, waits: bool = True) -> None:
        assert counts.admit(address) is None
        if waits:

            def close() -> None:  # what the HTTP guard's connection does: its place back at once
                closed.append(name)
                counts.release(address)

            counts.waiting(address, name, close)

    for name in ("a1", "a2", "a3"):
        hold("198.51.100.1", name)  # the attacker's, each waiting for its request
    hold("198.51.100.2", "b1")
    hold("198.51.100.3", "c1", waits=False)  # busy: a request in hand, never closed for room
    assert counts.admit("198.51.100.1") == "the server has too many connections: try again later"
    assert closed == []  # the address with the most gets no room by closing its own
    assert counts.admit("203.0.113.9") is None  # a newcomer: the attacker's oldest waiting one goes
    assert closed == ["a1"]
    assert counts.connections_from("198.51.100.1") == 2
    assert counts.open == 5
    counts.busy("198.51.100.1", "a2")  # a request came on it: no longer waiting
    assert counts.admit("203.0.113.10") is None
    assert closed == ["a1", "a3"]
    # the others hold one each now (or are busy): nobody holds two more than a newcomer
    assert counts.admit("203.0.113.11") == "the server has too many connections: try again later"
    assert closed == ["a1", "a3"]


def test_an_address_held_to_its_rate_closes_nobody_to_make_room() -> None:
    counts, clock = make(total=5, per_address=5, burst=1, rate=1.0)
    closed: list[str] = []

    def closer(name: str) -> Callable[[], None]:
        def close() -> None:
            closed.append(name)
            counts.release("198.51.100.1")

        return close

    for name in ("a1", "a2", "a3", "a4", "a5"):  # one a second: within the first address's rate
        assert counts.admit("198.51.100.1") is None
        counts.waiting("198.51.100.1", name, closer(name))
        clock.now += 1.0
    assert counts.admit("203.0.113.9") is None  # the one connect of its burst: room is made
    assert closed == ["a1"]
    for _ in range(10):  # then held to its rate: refused, and nobody is closed for it
        assert counts.admit("203.0.113.9") == "too many new connections from your address: slow down"
    assert closed == ["a1"]


def test_when_nobody_holds_more_than_a_share_the_connection_waiting_longest_gives_its_place_up() -> None:
    """Found by a black-box attack: 70 addresses holding one idle stream each filled the process, and no
    address held two more than a newcomer's, so nobody got in. Now a connection that has waited
    ROOM_AFTER seconds or more, from whichever address, gives its place to the newcomer; a young one (a
    client in the middle of its login) is not touched."""
    counts, clock = make(total=4, per_address=4)
    closed: list[str] = []

    def close_for(address: str, name: str) -> Callable[[], None]:
        def close() -> None:
            closed.append(name)
            counts.release(address)

        return close

    for n in range(4):  # one each, a second apart
        address = f"198.51.100.{n + 1}"
        assert counts.admit(address) is None
        counts.waiting(address, f"w{n}", close_for(address, f"w{n}"))
        clock.now += 1.0
    counts.waiting("198.51.100.1", "w0", close_for("198.51.100.1", "w0"))  # w0 began waiting again: young
    assert counts.admit("203.0.113.9") == "the server has too many connections: try again later"
    assert closed == []  # w1 has waited 3 s, the longest: not long enough
    clock.now += counts.room_after - 3.0
    assert counts.admit("203.0.113.9") is None
    assert closed == ["w1"]  # the one that waited longest
    assert counts.open == 4


class WebSocketSide:
    """The WebSocket side of one connection as an ASGI server gives it to the WebSocket transport: what the
    client sends (put by the test), and what the transport sent. A close the transport sends is answered
    by the client's close, as a client does."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.incoming.put_nowait({"type": "websocket.connect"})
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        return await self.incoming.get()

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        if message["type"] == "websocket.close":
            self.incoming.put_nowait({"type": "websocket.disconnect", "code": message.get("code")})


class Stream:
    """Stands in for the stream application (xmppauth/consumer.py): a client that logs in at once
    (``binds``: the stream tells the transport ``xmpp.bound``, if its scope lists it, as the consumer does)
    or never; it keeps the reason its stream ended with."""

    def __init__(self, binds: bool, fails_after: bool = False) -> None:
        self.binds = binds
        self.fails_after = fails_after  # its password was right, its second factor wrong: xmpp.waiting
        self.ended: str | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "xmpp.connect"
        if self.binds and "xmpp.bound" in scope.get("xmpp_optional", ()):
            await send({"type": "xmpp.bound"})
            if self.fails_after:
                await send({"type": "xmpp.waiting"})
        message = await receive()
        assert message["type"] == "xmpp.disconnect", message
        self.ended = message["reason"]


async def test_a_websocket_not_logged_in_that_the_transport_counted_itself_gives_its_place_up() -> None:
    """No HTTP guard in front (another ASGI server): the WebSocket transport admits each WebSocket itself.
    When the process is full, one not logged in gives its place to a newcomer from another address at once,
    and is closed with 1008 (policy violation); a bound one is never given up."""
    counts, _ = make(total=2, per_address=2)
    sides = {name: WebSocketSide() for name in ("bound", "idle")}
    streams = {"bound": Stream(binds=True), "idle": Stream(binds=False)}
    running = []
    for port, name in enumerate(sides, start=7001):
        scope = {"type": "websocket", "subprotocols": ["xmpp"], "client": ("198.51.100.1", port)}
        transport = WebSocketTransport(streams[name], counts)
        running.append(asyncio.ensure_future(transport(scope, sides[name].receive, sides[name].send)))
        await asyncio.sleep(0.01)  # accepted, and bound or not
    assert counts.open == 2
    assert counts.admit("203.0.113.9") is None  # the newcomer: its place is free at once
    assert counts.open == 2
    await asyncio.wait_for(running[1], 1)
    assert sides["idle"].sent[-1] == {"type": "websocket.close", "code": 1008}
    assert streams["idle"].ended == "closed to make room for another address"
    assert counts.admit("203.0.113.10") == "the server has too many connections: try again later"
    assert sides["bound"].sent == [{"type": "websocket.accept", "subprotocol": "xmpp"}]  # not closed
    sides["bound"].incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})
    await asyncio.wait_for(running[0], 1)
    assert counts.connections_from("198.51.100.1") == 0  # each released once
    assert counts._waiting == {}


async def test_a_websocket_whose_login_failed_after_its_password_waits_again() -> None:
    """A stream told the transport its password was right (``xmpp.bound``), then its second factor failed
    (``xmpp.waiting``): it may be given up again, as one that never logged in (a second black-box attack:
    it kept the protection until XMPP_PREAUTH_TIMEOUT)."""
    counts, clock = make(total=1, per_address=2)
    side, stream = WebSocketSide(), Stream(binds=True, fails_after=True)
    scope = {"type": "websocket", "subprotocols": ["xmpp"], "client": ("198.51.100.1", 7001)}
    running = asyncio.ensure_future(WebSocketTransport(stream, counts)(scope, side.receive, side.send))
    await asyncio.sleep(0.01)
    clock.now += counts.room_after  # it has waited long enough to give its place up
    assert counts.admit("203.0.113.9") is None  # room was made: its place
    await asyncio.wait_for(running, 1)
    assert side.sent[-1] == {"type": "websocket.close", "code": 1008}
    assert stream.ended == "closed to make room for another address"
