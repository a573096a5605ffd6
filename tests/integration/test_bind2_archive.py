"""Bind2 with the message archive (XEP-0386 §2.3-§2.4, issue 14), with the server's defaults.

A client that binds with Bind2 learns in ``<bound/>`` where its archive stands (XEP-0313 ``<metadata/>``)
and fetches what it missed from the archive: the stored messages the archive holds are cleared, not
sent. What the archive does not hold is sent as always, and an RFC 6120 client still gets everything
stored, with its delay stamp.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.integration.rawclient import RawClient, Session
from tests.integration.server import Server, running_server
from tests.integration.test_archive import MAM, bodies, online, query

pytestmark = pytest.mark.integration

PASSWORD = "archive-me"
NAMES = ("alice", "bob", "carol", "dave")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # the default: test environments of other modules turn the rule off (tests/integration/server.py)
    with running_server(
        tmp_path_factory.mktemp("bind2-archive"),
        dict.fromkeys(NAMES, PASSWORD),
        XMPP_BIND2_OFFLINE_FROM_ARCHIVE="1",
    ) as srv:
        yield srv


def chat(sender: Session, to: str, body: str) -> None:
    sender.send(f"<message to='{to}@localhost' type='chat'><body>{body}</body></message>")


def test_a_bind2_client_learns_where_its_archive_stands_and_fetches_what_waited_there(server: Server) -> None:
    alice = online(server, "alice")
    chat(alice, "bob", "while you were away 1")
    chat(alice, "bob", "while you were away 2")
    alice.quiet(0.3)  # stored, and archived behind the loop
    bob = Session(server, "bob", PASSWORD, software="bind2 archive tests")
    assert bob.ok, bob.reply
    metadata = re.search(
        rb"<bound xmlns=.urn:xmpp:bind:0.>\s*<metadata xmlns=.urn:xmpp:mam:2.>(.*?)</metadata>", bob.reply
    )
    assert metadata, bob.reply
    assert re.search(rb"<start id=.[^']+. timestamp=.20\d\d-", metadata.group(1)), metadata.group(1)
    end = re.search(rb"<end id=.([^'\"]+).", metadata.group(1))
    assert end, metadata.group(1)
    bob.send("<presence/>")
    waited = bob.quiet(0.6)
    assert b"while you were away" not in waited, waited  # not sent: the client fetches them
    got = query(bob, "catch-up")
    assert bodies(got) == ["while you were away 1", "while you were away 2"], got
    assert f"id='{end.group(1).decode()}'".encode() in got.replace(b'"', b"'"), got  # <end/> is the newest
    bob.close()
    # and they were cleared: an RFC 6120 client of bob's, next, gets nothing stored
    legacy = RawClient(server.c2s_tls, direct_tls=True)
    legacy.login("bob", PASSWORD, "legacy")
    legacy.send("<presence/>")
    assert b"while you were away" not in legacy.read_for(0.6)
    legacy.close()
    alice.close()


def test_what_the_archive_does_not_hold_is_sent_and_rfc_6120_clients_get_everything(server: Server) -> None:
    dave = online(server, "dave")
    dave.send(f"<iq type='set' id='pr'><prefs xmlns='{MAM}' default='never'/></iq>")  # dave keeps no archive
    dave.expect("id=.pr.")
    dave.close()
    carol = online(server, "carol")
    chat(carol, "dave", "not archived for dave")
    carol.quiet(0.3)
    again = Session(server, "dave", PASSWORD, software="bind2 archive tests")
    assert re.search(rb"<metadata xmlns=.urn:xmpp:mam:2.\s*/>", again.reply), again.reply  # an empty archive
    again.send("<presence/>")
    assert b"not archived for dave" in again.expect("not archived for dave</body>")
    again.close()

    chat(carol, "alice", "for an old client")
    carol.quiet(0.3)
    legacy = RawClient(server.c2s_tls, direct_tls=True)
    legacy.login("alice", PASSWORD, "legacy")
    legacy.send("<presence/>")
    got = legacy.read_until(rb"for an old client</body>.*?</message>")
    assert re.search(rb"<delay xmlns=.urn:xmpp:delay.", got), got
    legacy.close()
    carol.close()
