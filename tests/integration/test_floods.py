"""Floods after login over real sockets (issue 12, item 2; SECURITY.md A5 row 21).

A client that sends faster than its read rate is read more slowly (TCP backpressure), while the others
are served at once; a client that stops reading is dropped once more than the outgoing bound waits for
it, and the sender goes on. The server here allows 4 MiB/s per connection in bursts of 4 MiB, and 256 KiB
waiting for a client.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.integration.rawclient import RawClient
from tests.integration.server import Server, running_server

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
LIMITS = {
    "XMPP_READ_BYTES_PER_SECOND": str(4 * MIB),
    "XMPP_READ_BURST_BYTES": str(4 * MIB),
    "XMPP_MAX_OUTGOING_BYTES": str(256 * 1024),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("floods"), **LIMITS) as srv:
        yield srv


def ping(client: RawClient, ident: str) -> float:
    start = time.monotonic()
    client.send(f"<iq type='get' id='{ident}'><ping xmlns='urn:xmpp:ping'/></iq>")
    client.read_until(f"id=.{ident}.".encode(), timeout=60)
    return time.monotonic() - start


def test_a_flooding_client_is_read_at_its_rate_and_the_others_are_not_held(server: Server) -> None:
    flooder, other = RawClient(server.c2s), RawClient(server.c2s)
    flooder.login("alice", "wonderland", "flood")
    other.login("bob", "builder", "quiet")
    quiet = [ping(other, f"q{i}") for i in range(5)]
    # 12 MiB: whitespace between stanzas (each run under the stanza limit), then a ping to time it
    spaces = b" " * (200 * 1024)
    count = 12 * MIB // len(spaces)
    flood = (spaces + b"<iq type='get' id='f'><ping xmlns='urn:xmpp:ping'/></iq>") * (count - 1)
    flood += spaces + b"<iq type='get' id='mark'><ping xmlns='urn:xmpp:ping'/></iq>"
    started = time.monotonic()
    sender = threading.Thread(target=lambda: flooder.send(flood))
    sender.start()
    during: list[float] = []
    while sender.is_alive() and len(during) < 20:  # the other client, while the flood is read
        during.append(ping(other, f"d{len(during)}"))
    flooder.read_until(b"id=.mark.", timeout=60)
    took = time.monotonic() - started
    sender.join()
    assert took >= 1.5, took  # 12 MiB at 4 MiB/s after a 4 MiB burst: about 2 s, not at once
    assert during, "the flood was read before the other client could ping"
    assert max(during) < max(0.5, 10 * max(quiet)), (quiet, during)
    flooder.close()
    other.close()


def test_a_client_that_stops_reading_is_dropped_and_the_sender_goes_on(server: Server) -> None:
    reader = RawClient(server.c2s)
    reader.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    jid = reader.login("carol", "singer", "asleep")
    sender = RawClient(server.c2s)
    sender.login("alice", "wonderland", "loud")
    body = "x" * (100 * 1024)
    for i in range(100):  # 10 MB for a client that reads nothing
        sender.send(f"<message to='{jid}' type='chat' id='m{i}'><body>{body}</body></message>")
        if "does not read" in server.log_text():
            break
        time.sleep(0.01)
    deadline = time.monotonic() + 20
    while "does not read" not in server.log_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "more than 262144 bytes wait for the client to read: dropped" in server.log_text()
    assert ping(sender, "after") < 5  # the sender's session is still served
    sender.close()
    reader.close()


def test_a_flood_of_messages_to_ones_own_jid_comes_back_whole(server: Server) -> None:
    """Each message to one's own full JID was delivered by pumping the stream again from inside its own
    pump, one level deeper per queued stanza: a few thousand ended the stream with internal-server-error
    (RecursionError; found by bench/hardening.py). Now every one comes back, in order."""
    client = RawClient(server.c2s)
    jid = client.login("carol", "singer", "mirror")
    count = 3000
    client.send(
        "".join(
            f"<message to='{jid}' type='chat' id='s{i}'><body>n{i}</body></message>" for i in range(count)
        )
    )
    echoed = client.read_until(f"<body>n{count - 1}</body>".encode(), timeout=60)
    bodies = re.findall(rb"<body>n(\d+)</body>", echoed)
    assert [int(b) for b in bodies] == list(range(count))
    assert b"stream:error" not in echoed
    assert ping(client, "still-here") < 5
    client.close()
