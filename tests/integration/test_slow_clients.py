"""Slow and idle connections before authentication (SECURITY.md A5 row 5; issue 12, item 2).

Every connection that has not logged in within ``XMPP_PREAUTH_TIMEOUT`` is closed, whatever it sends
meanwhile (a byte now and then keeps nothing open), with ``connection-timeout`` and a line in the log;
and the memory they held comes back: after rounds of many such connections the server is no larger
than after the first (a leak would grow it every round). Here the deadline is 2 s.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.rawclient import client_header
from tests.integration.server import Server, running_server

pytestmark = pytest.mark.integration

ROUNDS = 4
PER_ROUND = 150


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("slow"), {}, XMPP_PREAUTH_TIMEOUT="2") as srv:
        yield srv


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def slow_round(server: Server, count: int) -> list[float]:
    """``count`` connections that send their stream header a byte at a time, slowly; how long after
    connecting each was closed."""
    header = client_header()
    socks = []
    for i in range(count):
        sock = socket.create_connection(
            ("127.0.0.1", server.c2s), source_address=(f"127.0.1.{i % 200 + 1}", 0)
        )
        sock.setblocking(False)
        socks.append((sock, time.monotonic()))
    closed: dict[int, float] = {}
    sent = 0
    deadline = time.monotonic() + 15
    while len(closed) < count and time.monotonic() < deadline:
        for n, (sock, opened) in enumerate(socks):
            if n in closed:
                continue
            try:
                if sent < len(header):
                    sock.send(header[sent : sent + 1])
                while sock.recv(65536):
                    pass
                closed[n] = time.monotonic() - opened  # recv returned b"": the server closed it
            except BlockingIOError:
                pass
            except OSError:
                closed[n] = time.monotonic() - opened
        sent += 1
        time.sleep(0.25)
    for sock, _ in socks:
        sock.close()
    return [closed.get(n, float("inf")) for n in range(count)]


def test_slow_connections_are_closed_at_the_deadline_and_their_memory_comes_back(server: Server) -> None:
    first = slow_round(server, PER_ROUND)
    assert max(first) < 2 + 2.5, sorted(first)[-5:]  # the deadline, plus the test's own quarter-second steps
    time.sleep(0.5)
    after_first = rss_kib(server.proc.pid)
    for _ in range(ROUNDS - 1):
        durations = slow_round(server, PER_ROUND)
        assert max(durations) < 2 + 2.5, sorted(durations)[-5:]
    time.sleep(0.5)
    after_all = rss_kib(server.proc.pid)
    assert after_all <= after_first * 1.05 + 1024, (after_first, after_all)  # ±5 % (and 1 MiB of noise)
    assert "not logged in after 2 s: closed" in server.log_text()
