"""Roster versioning (RFC 6121 §2.6) over real sockets: what a client that caches its roster sees.

A get with the version the client holds is answered with an empty result and the changes come as pushes;
any other version (an older one, or '' to bootstrap) gets the whole roster and the current version; every
roster push carries the version its change made, whether a roster set or a presence subscription made
it; blocklist pushes (XEP-0191) carry none and do not move the roster's version. Each test uses accounts
of its own on one server.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from lxml import etree

from tests.integration.rawclient import SASL, RawClient, Session
from tests.integration.server import Server, running_server

pytestmark = pytest.mark.integration

ROSTER = "jabber:iq:roster"
BLOCKING = "urn:xmpp:blocking"
NAMES = ("alice", "bob", "carol", "dave", "erin")
PASSWORD = "version-me"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("rosterver"), dict.fromkeys(NAMES, PASSWORD)) as srv:
        yield srv


def login(server: Server, user: str) -> Session:
    session = Session(server, user, PASSWORD, software="roster versioning tests")
    assert session.ok, session.reply
    return session


def get(session: Session, ver: str | None, iq_id: str) -> bytes:
    """A roster get with ``ver`` (None: without the attribute); its answer, quotes normalised to '."""
    attr = "" if ver is None else f" ver='{ver}'"
    session.send(f"<iq type='get' id='{iq_id}'><query xmlns='{ROSTER}'{attr}/></iq>")
    answer = f"<iq[^>]*id=.{iq_id}.[^>]*?(/>|>.*?</iq>)"
    found = re.search(answer.encode(), session.expect(answer), re.S)  # without what came before it
    assert found
    return found.group(0)


def roster_set(session: Session, item: str, iq_id: str) -> None:
    session.send(f"<iq type='set' id='{iq_id}'><query xmlns='{ROSTER}'>{item}</query></iq>")
    result = session.expect(f"<iq[^>]*id=.{iq_id}.[^>]*?(/>|>.*?</iq>)")
    assert b"type='result'" in result, result


def push(session: Session, contact: str) -> bytes:
    """The next roster push about ``contact`` (a bare JID), whole (without what came before it)."""
    pattern = f"<iq[^>]*type=.set.[^>]*><query xmlns=.{ROSTER}.[^>]*><item[^>]*jid=.{re.escape(contact)}.[^>]*?(/>|>.*?</iq>)"
    found = re.search(pattern.encode(), session.expect(pattern), re.S)
    assert found
    return found.group(0)


def ver(stanza: bytes) -> str:
    """The ``ver`` of the roster <query/> in ``stanza``."""
    found = re.search(rb"<query xmlns='jabber:iq:roster'[^>]*\bver='([^']*)'", stanza)
    assert found, stanza
    return found.group(1).decode()


def empty_result(reply: bytes, iq_id: str) -> bool:
    """§2.6.3: the answer to a get whose ``ver`` is current is an iq result with no child at all."""
    iq = etree.fromstring(reply)
    return iq.get("id") == iq_id and iq.get("type") == "result" and len(iq) == 0


def test_a_client_holding_the_current_version_gets_an_empty_result_and_then_the_changes(
    server: Server,
) -> None:
    phone = login(server, "alice")
    first = get(phone, "", "g1")  # §2.6.2: '' bootstraps versioning
    assert ver(first), first  # the whole roster (empty so far) and its version
    assert b"<item" not in first, first

    roster_set(phone, "<item jid='nurse@example.com' name='Nurse'/>", "s1")
    one = ver(push(phone, "nurse@example.com"))
    assert one != ver(first)

    tablet = login(server, "alice")  # a client that cached the roster at version ``one``
    cached = get(tablet, one, "g2")
    assert empty_result(cached, "g2"), cached

    roster_set(phone, "<item jid='romeo@example.net'><group>Verona</group></item>", "s2")
    pushed = push(tablet, "romeo@example.net")  # the change comes to the client that got the empty result
    two = ver(pushed)
    assert two not in (one, ver(first)), pushed
    assert empty_result(get(tablet, two, "g3"), "g3")  # the push's version is the roster's

    full = get(login(server, "alice"), one, "g4")  # an older version: the whole roster, current version
    assert ver(full) == two, full
    assert b"jid='nurse@example.com'" in full, full
    assert b"jid='romeo@example.net'" in full, full

    roster_set(phone, "<item jid='nurse@example.com' subscription='remove'/>", "s3")
    removed = push(tablet, "nurse@example.com")
    assert b"subscription='remove'" in removed, removed
    three = ver(removed)
    assert three not in (one, two), removed
    after = get(tablet, two, "g5")
    assert ver(after) == three, after
    assert b"nurse@example.com" not in after, after

    plain = get(tablet, None, "g6")  # §2.6.2: a client without versioning sends no ver and gets none
    assert b"jid='romeo@example.net'" in plain, plain
    assert b"ver=" not in plain, plain
    for session in (phone, tablet):
        session.close()


def test_subscription_changes_move_the_versions_of_both_rosters_and_their_pushes_carry_them(
    server: Server,
) -> None:
    bob, carol = login(server, "bob"), login(server, "carol")
    for session in (bob, carol):
        get(session, "", "g0")  # interested in pushes
        session.send("<presence/>")
    roster_set(bob, "<item jid='friend@example.net'/>", "s1")
    bob_before = ver(push(bob, "friend@example.net"))

    carol.send("<presence to='bob@localhost' type='subscribe'/>")
    asked = push(carol, "bob@localhost")
    assert b"ask='subscribe'" in asked, asked
    carol_asked = ver(asked)
    bob.expect("<presence[^>]*type=.subscribe.")
    # a request bob has not answered does not list carol in his roster: his version stays (§3.1.3)
    assert empty_result(get(bob, bob_before, "g1"), "g1")

    bob.send("<presence to='carol@localhost' type='subscribed'/>")
    granted = push(bob, "carol@localhost")
    assert b"subscription='from'" in granted, granted
    bob_after = ver(granted)
    subscribed = push(carol, "bob@localhost")
    assert b"subscription='to'" in subscribed, subscribed
    carol_after = ver(subscribed)
    assert bob_after != bob_before
    assert carol_after != carol_asked

    assert empty_result(get(bob, bob_after, "g2"), "g2")
    assert empty_result(get(carol, carol_after, "g3"), "g3")
    full = get(bob, bob_before, "g4")
    assert ver(full) == bob_after, full
    assert re.search(rb"<item[^>]*jid='carol@localhost'[^>]*subscription='from'", full), full
    bob.close()
    carol.close()


def test_blocklist_pushes_carry_no_roster_version_and_leave_it_as_it_was(server: Server) -> None:
    dave = login(server, "dave")
    get(dave, "", "g0")
    roster_set(dave, "<item jid='erin@localhost'/>", "s1")
    current = ver(push(dave, "erin@localhost"))
    dave.send(f"<iq type='get' id='b0'><blocklist xmlns='{BLOCKING}'/></iq>")
    dave.expect("id=.b0.[^>]*?(/>|>.*?</iq>)")

    dave.send(f"<iq type='set' id='b1'><block xmlns='{BLOCKING}'><item jid='erin@localhost'/></block></iq>")
    dave.expect("id=.b1.[^>]*?(/>|>.*?</iq>)")
    pushed = dave.expect(f"<iq[^>]*type=.set.[^>]*><block xmlns=.{BLOCKING}.[^>]*>.*?</iq>")
    assert b"<item jid='erin@localhost'/>" in pushed, pushed
    assert b"ver=" not in pushed, pushed
    assert empty_result(get(dave, current, "g1"), "g1")  # the roster did not change
    dave.close()


def test_the_stream_features_after_authentication_advertise_roster_versioning(server: Server) -> None:
    bound = login(server, "erin")  # Bind2: the features that follow <success/>
    assert b"<ver xmlns='urn:xmpp:features:rosterver'/>" in bound.reply, bound.reply
    bound.close()
    raw = RawClient(server.c2s_tls, direct_tls=True)  # RFC 6120: the features offering resource binding
    raw.open_stream()
    assert b"<success" in raw.scram("SCRAM-SHA-256", "erin", PASSWORD)
    features = raw.open_stream().replace(b'"', b"'")
    assert f"xmlns='{SASL}'".encode() not in features, features
    assert b"<ver xmlns='urn:xmpp:features:rosterver'/>" in features, features
    raw.close()
