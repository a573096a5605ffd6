"""Offline messages (XEP-0160, issue 14): a chat or normal message to an account with no available
resource waits and comes, in order and stamped with when it came (XEP-0203), to the account's next
client that sends available presence; what cannot be kept is refused with a text that says why.

Before, every such message came back to its sender as ``service-unavailable``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from tests.integration.rawclient import Session
from tests.integration.server import Server, running_server

pytestmark = pytest.mark.integration

PASSWORDS = {"alice": "wonderland", "bob": "builder", "carol": "singer", "dave": "diver"}
LIMIT = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("offline-messages")
    with running_server(data_dir, PASSWORDS, XMPP_MAX_OFFLINE_MESSAGES=str(LIMIT)) as srv:
        yield srv


def login(server: Server, user: str) -> Session:
    session = Session(server, user, PASSWORDS[user], software="offline messages")
    assert session.ok, session.reply
    return session


def error_to(sender: Session, stanza_id: str) -> bytes:
    return sender.expect(f"<message[^>]*id=.{stanza_id}.[^>]*>.*?</message>")


def test_messages_to_an_offline_account_come_at_its_next_login_in_order_with_their_time(
    server: Server,
) -> None:
    alice = login(server, "alice")
    alice.send("<message to='bob@localhost' type='chat' id='o1'><body>first while away</body></message>")
    alice.send(
        "<message to='bob@localhost/phone' type='normal' id='o2'><body>second, to a resource</body></message>"
    )
    # a chat state has nothing worth keeping: dropped, the sender told nothing either
    alice.send(
        "<message to='bob@localhost' type='chat' id='o3'>"
        "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>"
    )
    assert b"type='error'" not in alice.quiet(0.3)
    bob = login(server, "bob")
    assert b"first while away" not in bob.quiet(0.3)  # not before its available presence
    bob.send("<presence/>")
    got = bob.expect("second, to a resource</body>.*?</message>")
    assert re.findall(rb"<body>([^<]*)</body>", got) == [b"first while away", b"second, to a resource"]
    assert got.count(b"<delay xmlns='urn:xmpp:delay'") == 2, got
    assert f"from='{alice.jid}'".encode() in got, got
    assert b"composing" not in got + bob.quiet(0.3)
    # delivered once: the next login finds the store empty
    bob.close()
    again = login(server, "bob")
    again.send("<presence/>")
    assert b"while away" not in again.quiet(0.3)
    again.close()
    alice.close()


def test_a_full_offline_store_refuses_the_next_message_and_says_so(server: Server) -> None:
    alice = login(server, "alice")
    for n in range(LIMIT):
        alice.send(f"<message to='carol@localhost' type='chat' id='f{n}'><body>kept {n}</body></message>")
    alice.send("<message to='carol@localhost' type='chat' id='full'><body>one too many</body></message>")
    refused = error_to(alice, "full")
    assert b"type='error'" in refused, refused
    assert b"<service-unavailable" in refused, refused
    assert f"cannot store more messages (at most {LIMIT},".encode() in refused, refused
    carol = login(server, "carol")
    carol.send("<presence/>")
    got = carol.expect(f"kept {LIMIT - 1}</body>.*?</message>")
    assert re.findall(rb"<body>([^<]*)</body>", got) == [f"kept {n}".encode() for n in range(LIMIT)]
    assert b"one too many" not in got + carol.quiet(0.3)
    carol.close()
    alice.close()


def test_a_message_to_no_account_or_that_asks_not_to_be_stored_is_refused(server: Server) -> None:
    alice = login(server, "alice")
    alice.send("<message to='nobody@localhost' type='chat' id='n1'><body>hello?</body></message>")
    refused = error_to(alice, "n1")
    assert b"<service-unavailable" in refused, refused
    assert b"no account of this server has that address" in refused, refused
    alice.send(
        "<message to='dave@localhost' type='chat' id='n2'><body>ephemeral</body>"
        "<no-store xmlns='urn:xmpp:hints'/></message>"
    )
    refused = error_to(alice, "n2")
    assert b"<service-unavailable" in refused, refused
    assert b"asked not to be stored" in refused, refused
    dave = login(server, "dave")
    dave.send("<presence/>")
    assert b"ephemeral" not in dave.quiet(0.3)
    dave.close()
    alice.close()


def test_megabytes_of_stored_messages_reach_a_client_that_reads_late_and_the_store_is_bounded_in_bytes(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Found by a black-box attack: stored messages were all written at once at the next login, so 20
    of 250 KB to an offline account went past the outgoing limit and the connection was dropped, at
    every login: a lockout anyone could cause. Now they go a piece at a time, as the client reads, and an
    account's store is bounded in bytes too (XMPP_MAX_OFFLINE_BYTES)."""
    limits = {"XMPP_MAX_OFFLINE_BYTES": "4000000", "XMPP_MAX_OUTGOING_BYTES": "400000"}
    with running_server(tmp_path_factory.mktemp("offline-bytes"), PASSWORDS, **limits) as big:
        alice = login(big, "alice")
        filler = "x" * 250_000
        for n in range(16):  # 15 fit in 4,000,000 bytes; the 16th does not
            alice.send(
                f"<message to='bob@localhost' type='chat' id='b{n}'><body>{n:02d}{filler}</body></message>"
            )
        refused = error_to(alice, "b15")
        assert b"<service-unavailable" in refused, refused[:400]
        assert b"4000000 bytes in all" in refused, refused[-600:]
        bob = login(big, "bob")
        bob.send("<presence/>")
        time.sleep(2)  # bob reads nothing meanwhile: 3.75 MB wait for it, ten times the outgoing limit
        got = bob.expect("<body>14x*</body>.*?</message>", timeout=30)
        assert re.findall(rb"<body>(\d\d)x+</body>", got) == [f"{n:02d}".encode() for n in range(15)]
        bob.send("<iq type='get' id='still'><ping xmlns='urn:xmpp:ping'/></iq>")
        assert b"type='result'" in bob.expect("<iq[^>]*id=.still.[^>]*>")  # still connected
        assert "wait for the client to read" not in big.log_text()
        bob.close()
        alice.close()
