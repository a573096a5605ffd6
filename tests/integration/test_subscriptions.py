"""Presence subscriptions over real sockets (RFC 6121 §3-4, issue 14; xmppauth/subscriptions.py).

Before, a subscription request went nowhere: it was delivered like any presence and every roster item
stayed ``subscription='none'``, so nobody ever saw a contact come online. Each test uses accounts of
its own on one server, so what one test leaves in a roster cannot reach another.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.integration.rawclient import Session
from tests.integration.server import Server, running_server
from tests.integration.test_grants import app_password

pytestmark = pytest.mark.integration

ROSTER = "jabber:iq:roster"
NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory")
PASSWORD = "subscribe-me"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("subscriptions"), dict.fromkeys(NAMES, PASSWORD)) as srv:
        yield srv


def online(server: Server, user: str, status: str = "") -> Session:
    """``user`` bound, interested in roster pushes (it asked for the roster) and available."""
    session = Session(server, user, PASSWORD, software="subscription tests")
    assert session.ok, session.reply
    session.send(f"<iq type='get' id='roster'><query xmlns='{ROSTER}'/></iq>")
    session.expect("id=.roster.[^>]*?(/>|>.*?</iq>)")
    session.send(f"<presence><status>{status or user + ' is here'}</status></presence>")
    session.expect(f"{status or user + ' is here'}</status></presence>")  # its own presence, reflected
    return session


def push(session: Session, contact: str) -> bytes:
    """The next roster push about ``contact``: its <item/>."""
    got = session.expect(
        f"<iq[^>]*type=.set.[^>]*><query xmlns=.{ROSTER}.[^>]*><item[^>]*jid=.{contact}@localhost.[^>]*"
    )
    item = re.search(rb"<item[^>]*", got)
    assert item, got
    return item.group(0)


def presence(session: Session, sender: str, kind: str = "") -> bytes:
    """The next presence from ``sender`` (a bare JID, or a full one's start), of ``kind`` if given."""
    typed = f"[^>]*type=.{kind}." if kind else "(?![^>]*type=)"
    return session.expect(f"<presence(?=[^>]*from=.{re.escape(sender)})(?={typed})[^>]*?(/>|>.*?</presence>)")


def roster(session: Session) -> bytes:
    session.send(f"<iq type='get' id='list'><query xmlns='{ROSTER}'/></iq>")
    return session.expect("id=.list.[^>]*?(/>|>.*?</iq>)")


def test_a_request_approved_lets_the_requester_see_the_contact_come_and_go(server: Server) -> None:
    alice, bob = online(server, "alice"), online(server, "bob", "bob at his desk")
    alice.send("<presence to='bob@localhost' type='subscribe'><status>it is alice</status></presence>")
    assert b"ask='subscribe'" in push(alice, "bob")
    request = presence(bob, "alice@localhost", "subscribe")
    assert b"from='alice@localhost'" in request, request  # the bare JID (§3.1.2)
    assert b"it is alice" in request, request
    assert b"<item" not in roster(bob)  # a request alone does not put alice in bob's roster

    bob.send("<presence to='alice@localhost' type='subscribed'/>")
    assert b"subscription='from'" in push(bob, "alice")
    item = push(alice, "bob")
    assert b"subscription='to'" in item, item
    assert b"ask=" not in item, item
    presence(alice, "bob@localhost", "subscribed")
    assert b"bob at his desk" in presence(alice, bob.jid)  # bob's current presence comes at once

    bob.send("<presence><status>out for lunch</status></presence>")
    assert b"out for lunch" in presence(alice, bob.jid)
    alice.send("<presence><status>alice only watches</status></presence>")
    alice.expect("alice only watches")
    assert b"alice only watches" not in bob.quiet(0.3)  # bob did not subscribe to alice

    bob.send("<presence to='alice@localhost' type='unsubscribed'/>")  # bob cancels
    assert b"subscription='none'" in push(alice, "bob")
    presence(alice, "bob@localhost", "unsubscribed")
    presence(alice, bob.jid, "unavailable")  # then bob's resources leave alice's view
    bob.send("<presence><status>unseen</status></presence>")
    assert b"unseen" not in alice.quiet(0.3)
    alice.close()
    bob.close()


def test_a_request_to_someone_offline_waits_and_both_ways_make_both(server: Server) -> None:
    carol = online(server, "carol")
    carol.send("<presence to='dave@localhost' type='subscribe'/>")
    push(carol, "dave")
    dave = online(server, "dave")  # its first available presence brings the request that waited
    presence(dave, "carol@localhost", "subscribe")
    dave.send("<presence to='carol@localhost' type='subscribed'/>")
    dave.send("<presence to='carol@localhost' type='subscribe'/>")
    assert b"subscription='to'" in push(carol, "dave")
    presence(carol, "dave@localhost", "subscribe")
    carol.send("<presence to='dave@localhost' type='subscribed'/>")
    assert b"subscription='both'" in push(carol, "dave")
    listed = roster(dave)
    assert b"jid='carol@localhost'" in listed, listed
    assert b"subscription='both'" in listed, listed

    # each sees the other log in: carol's probe at her first available presence, and dave's broadcast
    carol.close()
    presence(dave, carol.jid, "unavailable")
    again = online(server, "carol", "carol again")
    assert b"carol again" in presence(dave, again.jid)
    assert b"dave is here" in presence(again, dave.jid)
    again.close()
    dave.close()


def test_a_pre_approval_answers_the_request_without_asking(server: Server) -> None:
    erin, frank = online(server, "erin"), online(server, "frank")
    erin.send("<presence to='frank@localhost' type='subscribed'/>")  # nothing asked yet: a pre-approval
    assert b"approved='true'" in push(erin, "frank")
    frank.send("<presence to='erin@localhost' type='subscribe'/>")
    assert b"subscription='to'" in push(frank, "erin")  # asked and answered at once: one push
    presence(frank, "erin@localhost", "subscribed")
    assert b"erin is here" in presence(frank, erin.jid)
    assert b"subscription='from'" in push(erin, "frank")
    assert b"type='subscribe'" not in erin.quiet(0.3)  # never asked: it was approved already
    erin.close()
    frank.close()


def test_a_denied_request_leaves_nothing_and_no_account_answers_unsubscribed(server: Server) -> None:
    grace, heidi = online(server, "grace"), online(server, "heidi")
    grace.send("<presence to='heidi@localhost' type='subscribe'/>")
    push(grace, "heidi")
    presence(heidi, "grace@localhost", "subscribe")
    heidi.send("<presence to='grace@localhost' type='unsubscribed'/>")
    item = push(grace, "heidi")
    assert b"subscription='none'" in item, item
    assert b"ask=" not in item, item
    presence(grace, "heidi@localhost", "unsubscribed")
    heidi.close()
    again = online(server, "heidi")
    assert b"type='subscribe'" not in again.quiet(0.3)  # the request was answered: it does not come back
    again.close()

    grace.send("<presence to='nobody@localhost' type='subscribe'/>")
    item = push(grace, "nobody")  # in the roster, answered at once on behalf of no account (§3.1.3)
    assert b"subscription='none'" in item, item
    assert b"ask=" not in item, item
    presence(grace, "nobody@localhost", "unsubscribed")
    grace.close()


def test_removing_a_contact_ends_the_subscriptions_both_ways(server: Server) -> None:
    ivan, judy = online(server, "ivan"), online(server, "judy")
    for one, other in ((ivan, "judy"), (judy, "ivan")):
        one.send(f"<presence to='{other}@localhost' type='subscribe'/>")
        one.send(f"<presence to='{other}@localhost' type='subscribed'/>")
    judy.expect("subscription=.both.")
    ivan.expect("subscription=.both.")
    ivan.send(
        f"<iq type='set' id='rm'><query xmlns='{ROSTER}'><item jid='judy@localhost' subscription='remove'/></query></iq>"
    )
    assert b"subscription='remove'" in push(ivan, "judy")
    assert b"subscription='none'" in push(judy, "ivan")  # judy keeps ivan, with nothing between them
    presence(judy, "ivan@localhost", "unsubscribe")
    presence(judy, "ivan@localhost", "unsubscribed")
    presence(judy, ivan.jid, "unavailable")  # judy no longer sees ivan
    listed = roster(judy)
    assert b"subscription='none'" in listed, listed
    ivan.send("<presence><status>unwatched</status></presence>")
    assert b"unwatched" not in judy.quiet(0.3)
    ivan.close()
    judy.close()


def test_subscribing_needs_roster_write_as_well_as_presence(server: Server) -> None:
    _, secret = app_password(server, "mallory", "status", "presence")
    status = Session(server, "mallory", secret)
    assert status.ok, status.reply
    status.send("<presence to='alice@localhost' type='subscribe' id='s1'/>")
    refused = status.expect("</presence>")
    assert b"<forbidden" in refused, refused
    assert b"roster.write" in refused, refused
    status.send("<presence><status>a status is fine</status></presence>")
    assert b"a status is fine" in status.expect("</presence>")
    status.close()
