"""The message archive (XEP-0313 with XEP-0059 paging and XEP-0359 stanza ids, issue 14) over real
sockets. Before, a phone that had been asleep could not fetch what it missed. Each test uses accounts
of its own on one server.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.integration.rawclient import Session
from tests.integration.server import Server, running_server
from tests.integration.test_grants import app_password

pytestmark = pytest.mark.integration

MAM = "urn:xmpp:mam:2"
RSM = "http://jabber.org/protocol/rsm"
NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy")
PASSWORD = "archive-me"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("archive"), dict.fromkeys(NAMES, PASSWORD)) as srv:
        yield srv


def online(server: Server, user: str) -> Session:
    session = Session(server, user, PASSWORD, software="archive tests")
    assert session.ok, session.reply
    session.send("<presence/>")
    session.expect("<presence[^>]*?(/>|>.*?</presence>)")
    return session


def query(session: Session, stanza_id: str, *, with_jid: str = "", rsm: str = "", fields: str = "") -> bytes:
    """A MAM query; what comes back up to and with its iq answer."""
    form = f"<field var='with'><value>{with_jid}</value></field>" if with_jid else ""
    session.send(
        f"<iq type='set' id='{stanza_id}'><query xmlns='{MAM}' queryid='{stanza_id}'>"
        f"<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>{MAM}</value></field>"
        f"{form}{fields}</x>{rsm}</query></iq>"
    )
    return session.expect(f"<iq[^>]*id=.{stanza_id}.[^>]*?(/>|>.*?</iq>)")


def bodies(got: bytes) -> list[str]:
    return [b.decode() for b in re.findall(rb"<body>([^<]*)</body>", got)]


def last_id(got: bytes) -> str:
    found = re.search(rb"<last>([^<]+)</last>", got)
    assert found, got
    return found.group(1).decode()


def first_id(got: bytes) -> str:
    found = re.search(rb"<first[^>]*>([^<]+)</first>", got)
    assert found, got
    return found.group(1).decode()


def test_a_conversation_is_in_both_archives_and_pages_both_ways(server: Server) -> None:
    alice, bob = online(server, "alice"), online(server, "bob")
    for n in range(5):
        alice.send(f"<message to='{bob.jid}' type='chat' id='c{n}'><body>line {n}</body></message>")
    got = bob.expect("line 4</body>.*?</message>")
    ids = re.findall(rb"<stanza-id xmlns=.urn:xmpp:sid:0. id=.([^'\"]+). by=.bob@localhost./>", got)
    assert len(ids) == 5, got  # XEP-0359: each delivered with its id in bob's archive

    page = query(bob, "p1", with_jid="alice@localhost", rsm=f"<set xmlns='{RSM}'><max>2</max></set>")
    assert bodies(page) == ["line 0", "line 1"], page
    assert re.findall(rb"<result xmlns=.urn:xmpp:mam:2. queryid=.p1. id=.([^'\"]+).", page) == ids[:2]
    assert b"complete=" not in page, page
    assert b"<delay xmlns='urn:xmpp:delay'" in page, page
    page = query(
        bob,
        "p2",
        with_jid="alice@localhost",
        rsm=f"<set xmlns='{RSM}'><max>2</max><after>{last_id(page)}</after></set>",
    )
    assert bodies(page) == ["line 2", "line 3"], page
    page = query(
        bob,
        "p3",
        with_jid="alice@localhost",
        rsm=f"<set xmlns='{RSM}'><max>2</max><after>{last_id(page)}</after></set>",
    )
    assert bodies(page) == ["line 4"], page
    assert b"complete='true'" in page, page

    back = query(bob, "b1", rsm=f"<set xmlns='{RSM}'><max>2</max><before/></set>")  # the last page
    assert bodies(back) == ["line 3", "line 4"], back
    back = query(bob, "b2", rsm=f"<set xmlns='{RSM}'><max>2</max><before>{first_id(back)}</before></set>")
    assert bodies(back) == ["line 1", "line 2"], back
    back = query(bob, "b3", rsm=f"<set xmlns='{RSM}'><max>2</max><before>{first_id(back)}</before></set>")
    assert bodies(back) == ["line 0"], back
    assert b"complete='true'" in back, back

    mine = query(alice, "a1", with_jid="bob@localhost")  # what alice sent is in hers
    assert bodies(mine) == [f"line {n}" for n in range(5)], mine
    assert b"by='bob@localhost'" not in mine, mine  # bob's ids are his archive's, not for alice to see
    assert b"complete='true'" in mine, mine
    nothing = query(bob, "n1", fields="<field var='start'><value>2999-01-01T00:00:00Z</value></field>")
    assert bodies(nothing) == [], nothing
    assert b"complete='true'" in nothing, nothing
    missing = query(bob, "m1", rsm=f"<set xmlns='{RSM}'><after>01ARZ3NDEKTSV4RRFFQ69G5FAV</after></set>")
    assert b"<item-not-found" in missing, missing
    alice.close()
    bob.close()


def test_a_message_to_someone_offline_is_in_the_archive_it_finds_later(server: Server) -> None:
    carol = online(server, "carol")
    carol.send("<message to='dave@localhost' type='chat' id='o1'><body>while you slept</body></message>")
    dave = Session(server, "dave", PASSWORD)  # not available: nothing stored comes by itself
    assert dave.ok, dave.reply
    found = query(dave, "d1", with_jid="carol@localhost")
    assert bodies(found) == ["while you slept"], found
    dave.close()
    carol.close()


def test_a_stanza_id_forged_in_the_recipients_name_is_replaced(server: Server) -> None:
    erin, frank = online(server, "erin"), online(server, "frank")
    erin.send(
        f"<message to='{frank.jid}' type='chat' id='f1'><body>trust me</body>"
        "<stanza-id xmlns='urn:xmpp:sid:0' id='forged' by='frank@localhost'/></message>"
    )
    got = frank.expect("trust me</body>.*?</message>")
    assert b"forged" not in got, got
    assert got.count(b"<stanza-id") == 1, got
    erin.close()
    frank.close()


def test_preferences_never_stop_the_archiving_and_a_session_without_messages_receive_reads_nothing(
    server: Server,
) -> None:
    grace, heidi = online(server, "grace"), online(server, "heidi")
    heidi.send(f"<iq type='set' id='pr'><prefs xmlns='{MAM}' default='never'/></iq>")
    assert b"default='never'" in heidi.expect("id=.pr.[^>]*?(/>|>.*?</iq>)")
    heidi.send(f"<iq type='get' id='pg'><prefs xmlns='{MAM}'/></iq>")
    assert b"default='never'" in heidi.expect("id=.pg.[^>]*?(/>|>.*?</iq>)")
    grace.send(f"<message to='{heidi.jid}' type='chat' id='g1'><body>off the record</body></message>")
    got = heidi.expect("off the record</body>.*?</message>")
    assert b"<stanza-id" not in got, got  # not archived, so no id to page by
    assert bodies(query(heidi, "h1")) == []
    assert bodies(query(grace, "g2")) == ["off the record"]  # grace archives what she sends

    _, secret = app_password(server, "grace", "sender", "messages.send")
    sender = Session(server, "grace", secret)
    assert sender.ok, sender.reply
    refused = query(sender, "s1")
    assert b"<forbidden" in refused, refused
    assert b"messages.receive" in refused, refused
    assert b"off the record" not in refused, refused
    sender.close()
    grace.close()
    heidi.close()


def test_a_page_of_large_messages_holds_fewer_than_asked_and_says_it_is_not_complete(server: Server) -> None:
    """Found by a black-box attack: a page of 250 large messages would be written at once, past the
    outgoing limit, and the client dropped. A page stops at 512 KiB (a quarter of the 2 MiB limit: at
    least one message) without complete='true'; the client goes on from its <last/> (XEP-0059 §2.6)."""
    ivan, judy = online(server, "ivan"), online(server, "judy")
    filler = "y" * 200_000
    for n in range(6):
        ivan.send(f"<message to='{judy.jid}' type='chat' id='big{n}'><body>{n}{filler}</body></message>")
        judy.expect(f"<body>{n}y+</body>.*?</message>", timeout=10)
    got: list[str] = []
    pages, after = 0, ""
    while True:
        rsm = f"<set xmlns='{RSM}'><max>10</max>{after}</set>"
        page = query(judy, f"q{pages}", with_jid="ivan@localhost", rsm=rsm)
        pages += 1
        held = [body[0] for body in bodies(page)]
        assert 1 <= len(held) <= 2, (pages, held)  # three of 200 KB would pass 512 KiB
        got += held
        if b"complete='true'" in page:
            break
        after = f"<after>{last_id(page)}</after>"
        assert pages < 10
    assert got == [str(n) for n in range(6)]
    assert pages == 3
    judy.send("<iq type='get' id='alive'><ping xmlns='urn:xmpp:ping'/></iq>")
    judy.expect("<iq[^>]*id=.alive.[^>]*type=.result.|<iq[^>]*type=.result.[^>]*id=.alive.")
    ivan.close()
    judy.close()
