"""Connection limits of one serving process, shared by its listeners (TCP on 5222 and 5223, WebSocket).

Three limits (XEP-0205 §4.2; issue 12, item 2), each a setting (README, docs/security.md):

- ``XMPP_MAX_CONNECTIONS``: open connections in the process, all listeners together;
- ``XMPP_MAX_CONNECTIONS_PER_ADDRESS``: open connections from one client address (an IPv6 address by
  its /64 prefix, as one subscriber usually holds a whole /64);
- ``XMPP_CONNECTS_PER_SECOND_PER_ADDRESS``: new connections from one address, a token bucket that holds
  ``XMPP_CONNECT_BURST`` connections and refills at that rate, so that a flood of connects from one
  machine is refused after its burst while a household behind one address reconnecting all its
  clients at once is not.

A transport asks :meth:`ConnectionLimits.admit` when a connection arrives, before any TLS is done,
and calls :meth:`ConnectionLimits.release` when it goes. A refused connection is told why where the
protocol lets us: a stream error on the STARTTLS listener and on WebSocket, where XMPP can be spoken
before TLS; the direct-TLS listener can say nothing before a handshake it refuses to spend on the
connection, so it closes it. Refusals are logged once per address and limit each minute.

When the process is full, a connection that waits for its client (an HTTP connection between requests,
an XMPP stream over TCP or WebSocket that is not bound yet) may be closed to make room for a connection
from another address (:meth:`ConnectionLimits.waiting`, :meth:`ConnectionLimits.busy`): otherwise whoever
fills the process first, with connections that never log in, holds everyone else out.

The HTTP listener (transport/http_guard.py) admits a TCP connection before it knows whether it will carry a
WebSocket, so it registers the connection, with what closes it, by address and port
(:meth:`ConnectionLimits.hold_for_listener`). The WebSocket transport finds it there
(:meth:`ConnectionLimits.listener_connection`): it does not count the connection again, and until the
stream is bound it declares that same connection waiting again, so that giving it up closes its TCP
connection and frees the one place it holds. The registry entry goes when the listener's connection does.

Memory is bounded: an address has an entry while it has connections open or its bucket is refilling,
and the table of buckets is pruned of full ones when it grows past :data:`PRUNE_AT` entries.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from xmppauth.proto.netaddr import address_key

log = logging.getLogger("xmppauth.limits")

PRUNE_AT = 10_000
LOG_EVERY = 60.0  # seconds between two log lines for the same address and limit
STOPPING = "the server is shutting down: connect again in a moment"  # the refusal while it stops
#: When the process is full and no address holds more than its share, a connection that has waited this
#: long for its client (an idle HTTP keep-alive, an XMPP stream not logged in) gives its place up
#: (setting XMPP_ROOM_AFTER_SECONDS).
ROOM_AFTER = 5.0


@dataclass
class _Address:
    open: int = 0
    tokens: float = 0.0
    refilled: float = 0.0


@dataclass
class ConnectionLimits:
    """The counts behind the three limits, for one process (one event loop: no locking)."""

    total: int
    per_address: int
    rate: float
    burst: int
    clock: Callable[[], float] = time.monotonic
    # reverse proxies (XMPP_PROXY_ADDRESSES): each connection is another client's; counted in the total only
    proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    open: int = 0
    _addresses: dict[str, _Address] = field(default_factory=dict)
    _logged: dict[tuple[str, str], float] = field(default_factory=dict)
    # the HTTP listener's admitted connections by (address, port): the connection and what closes it to make
    # room, for a WebSocket upgraded from one (hold_for_listener, listener_connection)
    _held_by_listener: dict[tuple[str, int], tuple[object, Callable[[], None]]] = field(default_factory=dict)
    # connections that wait for their client (no request in hand yet) and may be closed to make room for
    # another address when the process is full, by address key, oldest first (make_room)
    _waiting: dict[str, dict[object, tuple[Callable[[], None], float]]] = field(default_factory=dict)
    stopping: str | None = None  # STOPPING while the process stops (xmppauth/shutdown.py)
    room_after: float = ROOM_AFTER

    def admit(self, address: str) -> str | None:
        """Count a new connection from ``address`` and return None, or refuse it: the reason, for the
        client (nothing is counted then)."""
        if self.stopping is not None:
            return self.stopping
        if self.proxies and self._from_proxy(address):
            if self.open >= self.total:
                return self._refused("proxy", "total", "the server has too many connections: try again later")
            self.open += 1
            return None
        key = address_key(address)
        now = self.clock()
        entry = self._addresses.get(key)
        if entry is None:
            if len(self._addresses) >= PRUNE_AT:
                self._prune(now)
            entry = self._addresses[key] = _Address(tokens=float(self.burst), refilled=now)
        entry.tokens = min(float(self.burst), entry.tokens + (now - entry.refilled) * self.rate)
        entry.refilled = now
        if entry.open >= self.per_address:
            return self._refused(key, "address", "too many connections from your address")
        if entry.tokens < 1.0:
            return self._refused(key, "rate", "too many new connections from your address: slow down")
        entry.tokens -= 1.0  # an attempt while the process is full counts too
        # Only an address its own limits admit may make room: one held to its rate must not close
        # another's connection with every connect it tries.
        if self.open >= self.total and not self._make_room(key, entry):
            return self._refused(key, "total", "the server has too many connections: try again later")
        entry.open += 1
        self.open += 1
        return None

    def release(self, address: str) -> None:
        """A connection that :meth:`admit` counted has gone."""
        if self.proxies and self._from_proxy(address):
            self.open = max(0, self.open - 1)
            return
        entry = self._addresses.get(address_key(address))
        if entry is not None and entry.open > 0:
            entry.open -= 1
            self.open -= 1

    def _from_proxy(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.proxies)

    def hold_for_listener(
        self, address: str, port: int, connection: object, close: Callable[[], None]
    ) -> None:
        """The HTTP listener (transport/http_guard.py) admitted ``connection`` with :meth:`admit` before it
        knows whether it will carry a WebSocket: remembered by address and port, with ``close``, which gives
        it up to make room (see :meth:`waiting`), so that the WebSocket transport neither counts it twice nor
        leaves it out of those that may be given up while its stream is not bound."""
        self._held_by_listener[(address, port)] = (connection, close)

    def release_from_listener(self, address: str, port: int, connection: object) -> None:
        """The listener's ``connection`` has gone, or was given up: its place is free. Only that
        connection's: a later one from the same address and port keeps its own."""
        held = self._held_by_listener.get((address, port))
        if held is not None and held[0] is connection:
            del self._held_by_listener[(address, port)]
            self.release(address)

    def held_by_listener(self, address: str, port: int) -> bool:
        """Whether the HTTP listener counted this connection already."""
        return (address, port) in self._held_by_listener

    def listener_connection(self, address: str, port: int) -> tuple[object, Callable[[], None]] | None:
        """The HTTP listener's connection from ``address`` and ``port`` and what gives it up, if the
        listener counted it: for the WebSocket transport, which declares it :meth:`waiting` again until
        its stream is bound, and :meth:`busy` then (the listener's ``busy`` when the connection goes
        covers a WebSocket that never logged in)."""
        return self._held_by_listener.get((address, port))

    def waiting(self, address: str, connection: object, close: Callable[[], None]) -> None:
        """``connection`` from ``address`` waits for its client to say something (an HTTP connection
        between requests, an XMPP stream not bound yet): when the process is full it may be closed, with
        ``close``, to make room for a connection from an address with fewer. ``close`` must release its
        count at once."""
        entries = self._waiting.setdefault(address_key(address), {})
        entries.pop(connection, None)  # waiting again: now the newest of its address
        entries[connection] = (close, self.clock())

    def busy(self, address: str, connection: object) -> None:
        """``connection`` no longer waits (a request came, its stream is bound, or it went)."""
        key = address_key(address)
        waiting = self._waiting.get(key)
        if waiting is not None and waiting.pop(connection, None) is not None and not waiting:
            del self._waiting[key]

    def _make_room(self, key: str, entry: _Address) -> bool:
        """The process is full: close the oldest waiting connection of the address that holds the most
        connections, if it holds more than one more than ``key`` (a slowloris from many addresses
        then holds no one else out: the newcomer takes an attacker's place); else the connection that
        has waited longest, if that is ``room_after`` seconds or more, whatever its address (found by a
        black-box attack: 70 addresses holding one idle stream each kept everyone out). Whether room
        was made."""
        candidates = [k for k in self._waiting if k in self._addresses]
        if not candidates:
            return False
        most = max(candidates, key=lambda k: self._addresses[k].open)
        if self._addresses[most].open > entry.open + 1:
            connection, (close, _) = next(iter(self._waiting[most].items()))
        else:
            since, most = min((next(iter(self._waiting[k].values()))[1], k) for k in candidates)
            if self.clock() - since < self.room_after:
                return False
            connection, (close, _) = next(iter(self._waiting[most].items()))
        self.busy(most, connection)
        close()
        self._log_once(
            most, "room", f"a waiting connection from {most} closed to make room for another address"
        )
        return self.open < self.total

    def connections_from(self, address: str) -> int:
        entry = self._addresses.get(address_key(address))
        return entry.open if entry is not None else 0

    def note(self, address: str, limit: str, what: str) -> None:
        """Log ``what`` happened to a connection from ``address`` as ``limit`` tripped, once a minute per
        address and limit."""
        self._log_once(address_key(address), limit, what)

    def _refused(self, key: str, limit: str, reason: str) -> str:
        self._log_once(key, limit, f"connection from {key} refused: {reason} (the {limit} limit)")
        return reason

    def _log_once(self, key: str, limit: str, what: str) -> None:
        now = self.clock()
        if now - self._logged.get((key, limit), -LOG_EVERY) >= LOG_EVERY:
            if len(self._logged) >= PRUNE_AT:
                self._logged.clear()
            self._logged[(key, limit)] = now
            log.warning("%s", what)

    def _prune(self, now: float) -> None:
        for key, entry in list(self._addresses.items()):
            if entry.open == 0 and entry.tokens + (now - entry.refilled) * self.rate >= self.burst:
                del self._addresses[key]


@functools.cache
def process_limits() -> ConnectionLimits:
    """The process's limits, from the settings (one object, whichever listener asks)."""
    from django.conf import settings

    return ConnectionLimits(
        total=settings.XMPP_MAX_CONNECTIONS,
        per_address=settings.XMPP_MAX_CONNECTIONS_PER_ADDRESS,
        rate=float(settings.XMPP_CONNECTS_PER_SECOND_PER_ADDRESS),
        burst=settings.XMPP_CONNECT_BURST,
        proxies=tuple(ipaddress.ip_network(net, strict=False) for net in settings.XMPP_PROXY_ADDRESSES),
        room_after=float(settings.XMPP_ROOM_AFTER_SECONDS),
    )


#: The message a transport gives the stream application to refuse a connection it has counted not.
def refusal(reason: str) -> dict[str, str]:
    condition = "system-shutdown" if reason == STOPPING else "policy-violation"
    return {"type": "xmpp.stream_error", "condition": condition, "text": reason}
