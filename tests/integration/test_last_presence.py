"""The last unavailable presence (RFC 6121 §4.3.2, XEP-0203) over real sockets.

When an account's last available resource goes (an explicit unavailable, maybe with a status, or its
session ending), the server keeps that presence; a subscriber that comes online while the account has no
available resource gets it, from the full JID of the resource that sent it and with a ``<delay/>``
saying when. Never to a contact that only the account sees (subscription 'from'), nor across a block
either way. Each test uses accounts of its own on one server.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.integration.rawclient import Session
from tests.integration.server import Server, running_server

pytestmark = pytest.mark.integration

ROSTER = "jabber:iq:roster"
BLOCKING = "urn:xmpp:blocking"
NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory")
PASSWORD = "last-words"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("lastpresence"), dict.fromkeys(NAMES, PASSWORD)) as srv:
        yield srv


def online(server: Server, user: str, status: str = "") -> Session:
    """``user`` bound, interested in roster pushes and available with ``status``."""
    status = status or f"{user} is here"
    session = Session(server, user, PASSWORD, software="last presence tests")
    assert session.ok, session.reply
    session.send(f"<iq type='get' id='roster'><query xmlns='{ROSTER}'/></iq>")
    session.expect("id=.roster.[^>]*?(/>|>.*?</iq>)")
    session.send(f"<presence><status>{status}</status></presence>")
    session.expect(f"{status}</status></presence>")  # its own presence, reflected
    return session


def watches(watcher: Session, contact: Session, who: str, whom: str) -> None:
    """``who`` subscribes to ``whom`` and ``whom`` approves: ``who`` sees ``whom``'s presence."""
    watcher.send(f"<presence to='{whom}@localhost' type='subscribe'/>")
    contact.expect(f"<presence[^>]*from=.{who}@localhost.[^>]*type=.subscribe.")
    contact.send(f"<presence to='{who}@localhost' type='subscribed'/>")
    watcher.expect(f"<presence[^>]*from=.{re.escape(contact.jid)}.")  # its presence comes at once


def gone(sender: str) -> str:
    """The pattern of an unavailable presence from ``sender`` (a full JID)."""
    return (
        f"<presence(?=[^>]*from=.{re.escape(sender)}.)(?=[^>]*type=.unavailable.)[^>]*?(/>|>.*?</presence>)"
    )


def presence(session: Session, sender: str) -> bytes:
    """The next unavailable presence from ``sender`` (a full JID): that stanza alone."""
    found = re.search(gone(sender).encode(), session.expect(gone(sender)), re.S)
    assert found
    return found.group(0)


def everything_until(session: Session, sender: str) -> bytes:
    """All the session gets up to the next unavailable presence from ``sender`` and then until it is
    quiet: a presence that must not come cannot hide before the one that must."""
    return session.expect(gone(sender)) + session.quiet(0.3)


def stamp(stanza: bytes) -> datetime:
    """The XEP-0203 stamp of the ``<delay/>`` in ``stanza``, which the server (localhost) must have put."""
    delay = re.search(rb"<delay xmlns='urn:xmpp:delay'[^>]*/>", stanza)
    assert delay, stanza
    assert b"from='localhost'" in delay.group(0), stanza
    when = re.search(rb"stamp='(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)'", delay.group(0))
    assert when, stanza
    return datetime.strptime(when.group(1).decode(), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def test_a_contact_who_left_is_seen_gone_with_its_last_status_and_when(server: Server) -> None:
    alice, bob = online(server, "alice"), online(server, "bob")
    watches(alice, bob, "alice", "bob")
    before = datetime.now(UTC).replace(microsecond=0)
    bob.send("<presence type='unavailable'><status>gone fishing</status></presence>")
    presence(alice, bob.jid)
    bob.close()
    alice.close()

    again = online(server, "alice", "alice again")  # her probe of bob, who has no available resource
    last = presence(again, bob.jid)  # from the resource that sent it, as it sent it
    assert b"<status>gone fishing</status>" in last, last
    assert before <= stamp(last) <= datetime.now(UTC) + timedelta(seconds=1), last
    again.close()


def test_the_last_resource_to_go_decides_even_when_its_session_just_ends(server: Server) -> None:
    carol, phone = online(server, "carol"), online(server, "dave", "dave on the phone")
    watches(carol, phone, "carol", "dave")
    tablet = online(server, "dave", "dave on the tablet")
    tablet.send("<presence type='unavailable'><status>tablet off</status></presence>")  # phone stays
    presence(carol, tablet.jid)
    phone.close()  # the session ends without a word: the server says it went (§4.5.2)
    presence(carol, phone.jid)
    tablet.close()
    carol.close()

    again = online(server, "carol", "carol again")
    seen = everything_until(again, phone.jid)
    last = re.search(gone(phone.jid).encode(), seen, re.S)
    assert last, seen
    assert b"<status>" not in last.group(0), seen  # the phone's own (empty) unavailable
    stamp(last.group(0))
    assert b"tablet off" not in seen, seen  # not the tablet's: it was not the last to go
    again.close()


def test_only_a_contact_whose_presence_the_account_may_see_is_answered(server: Server) -> None:
    erin, frank, grace = online(server, "erin"), online(server, "frank"), online(server, "grace")
    watches(frank, erin, "frank", "erin")  # erin lets frank see her: erin has frank as 'from' only
    watches(erin, grace, "erin", "grace")  # erin sees grace
    frank.send("<presence type='unavailable'><status>frank left</status></presence>")
    grace.send("<presence type='unavailable'><status>grace left</status></presence>")
    presence(erin, grace.jid)
    for session in (erin, frank, grace):
        session.close()

    again = online(server, "erin", "erin again")
    seen = everything_until(again, grace.jid)
    assert b"grace left" in seen, seen
    assert b"frank left" not in seen, seen  # she does not see frank's presence
    again.close()


def test_nothing_of_a_contact_comes_across_a_block_either_way(server: Server) -> None:
    heidi, ivan, judy = online(server, "heidi"), online(server, "ivan"), online(server, "judy", "judy is in")
    mallory = online(server, "mallory", "mallory is in")
    for contact, name in ((ivan, "ivan"), (judy, "judy"), (mallory, "mallory")):
        watches(heidi, contact, "heidi", name)
    ivan.send(f"<iq type='set' id='b1'><block xmlns='{BLOCKING}'><item jid='heidi@localhost'/></block></iq>")
    ivan.expect("id=.b1.")  # ivan blocks heidi
    heidi.send(f"<iq type='set' id='b2'><block xmlns='{BLOCKING}'><item jid='judy@localhost'/></block></iq>")
    heidi.expect("id=.b2.")  # heidi blocks judy
    for contact, name in ((ivan, "ivan"), (judy, "judy"), (mallory, "mallory")):
        contact.send(f"<presence type='unavailable'><status>{name} left</status></presence>")
    presence(heidi, mallory.jid)
    for session in (heidi, ivan, judy, mallory):
        session.close()

    again = online(server, "heidi", "heidi again")
    seen = everything_until(again, mallory.jid)
    assert b"mallory left" in seen, seen  # the one not blocked either way
    assert b"ivan left" not in seen, seen  # ivan blocks heidi
    assert b"judy left" not in seen, seen  # heidi blocks judy
    again.close()
