"""A resume in the middle of a delivery of stored messages (XEP-0160 with XEP-0198 §5;
xmppauth/stored_delivery.py).

Stored messages go a piece at a time, the next once the transport says the client has read the last
(``xmpp.drain``); a client that reads slowly is mid-way through them for a while. If its connection drops
then and it resumes the session, the resumed session resends what the client had not acknowledged and
goes on with the rest of the store: every message arrives, once. (A resumed session that did not go on,
as before the hand-over said a delivery was under way, ``HandOver.to_follow``, left the rest to the next
login: this test then fails, message 59 never comes.)

The sizes: what a client does not read fills the kernel's buffers first (about 4 MB on loopback), then
the transport's, so the store holds 12 MB for the delivery to stop half-way. The resume resends all that
was unacknowledged at once, those 4 MB, twice the outgoing limit (the default, 2 MiB): what it resends is
owed to the client (``xmpp.owed``, xmppauth/transport/tcp.py), and does not count towards the limit while
the client reads it. Before, the resumed connection was dropped at once, at every resume.
"""

from __future__ import annotations

import re
import socket
import struct
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.integration.rawclient import RawClient, Session
from tests.integration.server import Server, running_server
from tests.integration.test_offline_store import SM, eventually, stored
from tests.integration.test_takeover import resumable, resume

pytestmark = pytest.mark.integration

PASSWORDS = {"alice": "wonderland", "bob": "builder"}
COUNT = 60  # stored messages of 200 KB: 12 MB, in pieces of 512 KiB
FILLER = "x" * 200_000
_STANZA = rb"<(message|presence|iq)\b[^>]*?(/>|>.*?</\1>)"
_BODY = re.compile(rb"<body>(\d{3})x*</body>")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("offline-resume")
    with running_server(data_dir, PASSWORDS, XMPP_MAX_OUTGOING_BYTES=str(2 * 1024 * 1024)) as srv:
        yield srv


def taken_while_unread(server: Server, user: str) -> int:
    """How many of ``user``'s stored messages its session has taken once the delivery has stopped to wait
    for its client to read (none taken for a second and a half)."""
    taken, still_since = -1, time.monotonic()
    deadline = still_since + 30
    while time.monotonic() - still_since < 1.5:
        assert time.monotonic() < deadline, "the delivery never stopped to wait for the client"
        now = sum(1 for _, held in stored(server, user) if held)
        if now != taken:
            taken, still_since = now, time.monotonic()
        time.sleep(0.1)
    return taken


def read_through(client: RawClient, last: int) -> tuple[list[int], int]:
    """Read up to the stored message numbered ``last``, a stanza at a time (one search over megabytes
    for each read would take seconds): the numbers of the messages read, in order, and how many stanzas
    that was (what the client has handled, for its ``h``)."""
    numbers: list[int] = []
    stanzas = 0
    while last not in numbers:
        try:
            stanza = client.read_until(_STANZA, timeout=20)
        except AssertionError:  # (its text would hold the megabytes read so far)
            got = f"{len(numbers)} of them, the last {numbers[-1]}" if numbers else "none"
            raise AssertionError(f"message {last} never came; the client got {got}") from None
        stanzas += 1
        numbers += [int(number) for number in _BODY.findall(stanza)]
    return numbers, stanzas


def abort(client: RawClient) -> None:
    """The connection drops without a goodbye (a reset, as when a phone loses its network)."""
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.sock.close()


def test_a_session_resumed_in_the_middle_of_its_stored_messages_gets_each_of_them_once(
    server: Server,
) -> None:
    alice = Session(server, "alice", PASSWORDS["alice"], software="offline resume")
    assert alice.ok, alice.reply
    for n in range(COUNT):
        alice.send(f"<message to='bob@localhost' type='chat'><body>{n:03d}{FILLER}</body></message>")
    eventually(lambda: len(stored(server, "bob")) == COUNT, "the messages were not all stored")
    alice.close()

    ua = str(uuid.uuid4())
    bob, jid, previd = resumable(server, "bob", PASSWORDS["bob"], ua)
    bob.send("<presence/>")
    before, handled = read_through(bob, 2)  # its own presence and three messages, then it stops reading
    assert before == [0, 1, 2], before
    taken = taken_while_unread(server, "bob")
    assert taken < COUNT, "every message went at once: nothing was left to deliver after the resume"

    abort(bob)
    eventually(lambda: f"{jid} hibernates" in server.log_text(), "the session did not hibernate")
    back, reply = resume(server, "bob", PASSWORDS["bob"], ua, previd, handled)
    assert b"<resumed" in reply, reply
    after, handled_after = read_through(back, COUNT - 1)
    assert before + after == list(range(COUNT)), f"{len(after)} after the resume: {after[:5]}...{after[-5:]}"

    back.send(f"<a xmlns='{SM}' h='{handled + handled_after}'/>")
    eventually(lambda: stored(server, "bob") == [], "acknowledged messages stayed stored")
    back.send("</stream:stream>")
    back.read_to_close(timeout=10)
    again = Session(server, "bob", PASSWORDS["bob"], software="offline resume")
    assert again.ok, again.reply
    again.send("<presence/>")
    assert b"<body>" not in again.quiet(0.5)
    again.close()
