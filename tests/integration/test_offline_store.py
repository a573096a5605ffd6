"""The offline store keeps a message until its client has it (issue 12 item 6;
xmppauth/stored_delivery.py; xmppauth/services.py ``take_offline``).

A stored message sent to a session with stream management stays stored, taken by that session, until
the client acknowledges it; one that comes for a hibernating session is stored at once and comes when the
session is resumed; without stream management nothing is ever acknowledged and a stored message leaves
the store as it is sent. (What a kill -9 then does is tests/integration/test_faults.py.)
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Iterator

import pytest

from tests.integration.rawclient import RawClient
from tests.integration.server import Server, running_server

pytestmark = pytest.mark.integration

SM = "urn:xmpp:sm:3"
PASSWORDS = {"alice": "wonderland", "bob": "builder", "carol": "singer"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("offline")) as srv:
        yield srv


def stored(server: Server, user: str) -> list[tuple[str, bool]]:
    """The bodies stored for ``user``, each with whether a session has taken it."""
    with sqlite3.connect(f"file:{server.data_dir / 'db.sqlite3'}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT o.stanza, o.taken_by_id FROM xmppauth_offlinemessage o "
            "JOIN accounts_user u ON u.id = o.user_id WHERE u.username = ? ORDER BY o.id",
            (user,),
        ).fetchall()
    return [(re.findall(r"<body>([^<]*)</body>", stanza)[0], taken is not None) for stanza, taken in rows]


def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 5
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def login(server: Server, user: str, *, enable: str = f"<enable xmlns='{SM}'/>") -> tuple[RawClient, bytes]:
    """SASL2 PLAIN with Bind2 (and XEP-0198 inline unless ``enable`` is empty), then available."""
    client = RawClient(server.c2s_tls, direct_tls=True)
    client.open_stream()
    client.authenticate_plain(
        user,
        PASSWORDS[user],
        software="offline tests",
        inline=f"<bind xmlns='urn:xmpp:bind:0'>{enable}</bind>",
    )
    reply = client.read_until(rb"</stream:features>|</failure>")
    assert b"<success" in reply, reply
    client.send("<presence/>")
    return client, reply


def leave_unacknowledged(server: Server, user: str, body: str) -> None:
    """``user`` gets ``body`` from alice over stream management and closes without acknowledging it:
    the server stores it (XEP-0198 §6)."""
    client, _ = login(server, user)
    client.read_until(rb"<presence[^>]*?(/>|>.*?</presence>)")
    alice, _ = login(server, "alice", enable="")
    alice.send(f"<message to='{user}@localhost' type='chat'><body>{body}</body></message>")
    client.read_until(f"{body}</body>")
    client.send("</stream:stream>")
    client.read_to_close(timeout=5)
    alice.close()
    eventually(lambda: stored(server, user) == [(body, False)], f"{body!r} was not stored")


def test_a_stored_message_leaves_the_store_when_acknowledged_not_when_sent(server: Server) -> None:
    leave_unacknowledged(server, "bob", "kept for bob")
    bob, _ = login(server, "bob")
    got = bob.read_until(rb"kept for bob</body>.*?</message>")
    assert b"urn:xmpp:delay" in got, got
    eventually(lambda: stored(server, "bob") == [("kept for bob", True)], "it was not taken by the session")
    time.sleep(0.3)
    assert stored(server, "bob") == [("kept for bob", True)], "it left the store before it was acknowledged"
    stanzas = len(re.findall(rb"<(?:message|presence|iq)[\s/>]", got))  # what the server sent so far
    bob.send(f"<a xmlns='{SM}' h='{stanzas}'/>")
    eventually(lambda: stored(server, "bob") == [], "it stayed stored after the acknowledgement")
    bob.send("</stream:stream>")
    bob.read_to_close(timeout=5)
    again, _ = login(server, "bob")
    assert b"kept for bob" not in again.quiet(0.5), "an acknowledged message came a second time"
    again.close()


def test_a_message_for_a_hibernating_session_is_stored_at_once_and_comes_at_the_resume(
    server: Server,
) -> None:
    carol = RawClient(server.c2s)  # RFC 6120 logins, the first and the resuming one alike
    jid = carol.login("carol", PASSWORDS["carol"], "phone")
    carol.send(f"<enable xmlns='{SM}' resume='true'/>")
    previd = re.search(rb"<enabled[^>]*id=['\"]([^'\"]+)", carol.read_until(rb"<enabled[^>]*/>"))
    assert previd
    carol.send("<presence/>")
    seen = carol.read_until(rb"<presence[^>]*?(/>|>.*?</presence>)")
    carol.sock.close()  # the connection drops: the session hibernates
    time.sleep(0.3)
    alice, _ = login(server, "alice", enable="")
    alice.send(f"<message to='{jid}' type='chat'><body>while carol is away</body></message>")
    eventually(
        lambda: stored(server, "carol") == [("while carol is away", False)], "it was not stored at once"
    )
    alice.close()

    back = RawClient(server.c2s)
    back.starttls()
    assert b"<success" in back.scram("SCRAM-SHA-256", "carol", PASSWORDS["carol"])
    back.open_stream()
    handled = len(re.findall(rb"<(?:message|presence|iq)[\s/>]", seen))
    back.send(f"<resume xmlns='{SM}' previd='{previd.group(1).decode()}' h='{handled}'/>")
    got = back.read_until(rb"while carol is away</body>.*?</message>")
    assert b"<resumed" in got, got
    assert b"urn:xmpp:delay" in got, got
    back.close()


def test_without_stream_management_a_stored_message_leaves_the_store_as_it_is_sent(server: Server) -> None:
    leave_unacknowledged(server, "alice", "kept for alice")
    alice, _ = login(server, "alice", enable="")
    alice.read_until(rb"kept for alice</body>")
    eventually(lambda: stored(server, "alice") == [], "it stayed stored though nothing is ever acknowledged")
    alice.close()


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(
        tmp_path_factory.mktemp("offline-small"), PASSWORDS, XMPP_MAX_OFFLINE_MESSAGES="3"
    ) as srv:
        yield srv


def refusals(alice: RawClient, count: int) -> bytes:
    got = b"".join(alice.read_until(rb"<message[^>]*type=.error.*?</message>") for _ in range(count))
    assert got.count(b"cannot store more messages (at most 3,") == count, got
    return got


def test_messages_for_a_hibernating_session_are_held_to_the_stores_bounds(small: Server) -> None:
    """Found by a black-box attack: what came for a hibernating session went to the store whatever it held
    (1,000 messages, 257 MB, against a bound of 16 MiB); now the store's bounds hold and the rest goes back
    to its sender, saying why."""
    carol = RawClient(small.c2s)
    jid = carol.login("carol", PASSWORDS["carol"], "phone")
    carol.send(f"<enable xmlns='{SM}' resume='true'/>")
    carol.read_until(rb"<enabled[^>]*/>")
    carol.send("<presence/>")
    carol.read_until(rb"<presence[^>]*?(/>|>.*?</presence>)")
    carol.sock.close()  # the connection drops: the session hibernates
    eventually(lambda: f"{jid} hibernates" in small.log_text(), "the session did not hibernate")
    alice, _ = login(small, "alice", enable="")
    for n in range(5):
        alice.send(f"<message to='{jid}' type='chat' id='h{n}'><body>away {n}</body></message>")
    refused = refusals(alice, 2)
    assert b"id='h3'" in refused.replace(b'"', b"'")
    assert b"id='h4'" in refused.replace(b'"', b"'")
    assert [body for body, _ in stored(small, "carol")] == ["away 0", "away 1", "away 2"]
    alice.close()


def test_a_session_ending_on_a_full_store_stores_again_what_it_was_sent_and_returns_the_rest(
    small: Server,
) -> None:
    """The stored messages a session took and never acknowledged go back into the store in their own
    places (the store counts without them); the new messages it did not acknowledge do not fit and go
    back to their sender, instead of the store holding 5 of 3 (found by a black-box attack)."""
    alice, _ = login(small, "alice", enable="")
    for n in range(3):
        alice.send(f"<message to='bob@localhost' type='chat'><body>stored {n}</body></message>")
    eventually(lambda: len(stored(small, "bob")) == 3, "the store did not fill")
    bob, _ = login(small, "bob")
    bob.read_until(rb"stored 2</body>.*?</message>")
    for n in range(2):
        alice.send(f"<message to='bob@localhost' type='chat' id='live{n}'><body>live {n}</body></message>")
    bob.read_until(rb"live 1</body>.*?</message>")
    bob.send("</stream:stream>")  # nothing acknowledged
    bob.read_to_close(timeout=5)
    refused = refusals(alice, 2)
    assert b'id="live0"' in refused, refused
    assert b'id="live1"' in refused
    eventually(
        lambda: stored(small, "bob") == [(f"stored {n}", False) for n in range(3)], "the three are not kept"
    )
    alice.close()
