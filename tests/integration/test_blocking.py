"""Blocking (XEP-0191, issue 14) over real sockets: the list over iq, and what a block does to stanzas
both ways, to stored messages and to presence. Each test uses accounts of its own on one server.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.integration.rawclient import Session
from tests.integration.server import Server, running_server
from tests.integration.test_grants import app_password

pytestmark = pytest.mark.integration

BLOCKING = "urn:xmpp:blocking"
NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace")
PASSWORD = "block-me"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("blocking"), dict.fromkeys(NAMES, PASSWORD)) as srv:
        yield srv


def online(server: Server, user: str, *, available: bool = True) -> Session:
    session = Session(server, user, PASSWORD, software="blocking tests")
    assert session.ok, session.reply
    session.send(f"<iq type='get' id='list0'><blocklist xmlns='{BLOCKING}'/></iq>")  # it hears of changes
    session.expect("id=.list0.[^>]*?(/>|>.*?</iq>)")
    if available:
        session.send(f"<presence><status>{user} is here</status></presence>")
        session.expect(f"{user} is here</status></presence>")
    return session


def answer(session: Session, stanza_id: str) -> bytes:
    return session.expect(
        f"<(iq|message|presence)[^>]*id=.{stanza_id}.[^>]*?(/>|>.*?</(iq|message|presence)>)"
    )


def block(session: Session, *jids: str, unblock: bool = False, stanza_id: str = "b1") -> bytes:
    items = "".join(f"<item jid='{jid}'/>" for jid in jids)
    tag = "unblock" if unblock else "block"
    session.send(f"<iq type='set' id='{stanza_id}'><{tag} xmlns='{BLOCKING}'>{items}</{tag}></iq>")
    result = answer(session, stanza_id)
    assert b"type='result'" in result, result
    return session.expect(f"<iq[^>]*type=.set.[^>]*><{tag} xmlns=.{BLOCKING}.[^>]*?(/>|>.*?</{tag}>)")


def subscribe_both(one: Session, two: Session, a: str, b: str) -> None:
    for sender, to in ((one, b), (two, a)):
        sender.send(f"<presence to='{to}@localhost' type='subscribe'/>")
        sender.send(f"<presence to='{to}@localhost' type='subscribed'/>")
    one.expect(f"{b} is here")  # each sees the other's presence: subscribed both ways
    two.expect(f"{a} is here")


def test_a_blocked_contact_reaches_nothing_and_is_reached_by_nothing(server: Server) -> None:
    alice, bob = online(server, "alice"), online(server, "bob")
    pushed = block(alice, "bob@localhost")
    assert b"<item jid='bob@localhost'/>" in pushed, pushed
    alice.send(f"<iq type='get' id='list1'><blocklist xmlns='{BLOCKING}'/></iq>")
    assert b"<item jid='bob@localhost'/>" in answer(alice, "list1")

    bob.send(f"<message to='{alice.jid}' type='chat' id='m1'><body>let me in</body></message>")
    refused = answer(bob, "m1")
    assert b"<service-unavailable" in refused, refused
    assert b"block" not in refused, refused  # bob is not told he is blocked
    bob.send(f"<iq to='{alice.jid}' type='get' id='q1'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert b"<service-unavailable" in answer(bob, "q1")
    bob.send(f"<presence to='{alice.jid}' id='p1'><status>directed at alice</status></presence>")
    assert b"let me in" not in alice.quiet(0.3)

    alice.send("<message to='bob@localhost' type='chat' id='m2'><body>you cannot read this</body></message>")
    blocked = answer(alice, "m2")
    assert b"<not-acceptable" in blocked, blocked
    assert b"<blocked xmlns='urn:xmpp:blocking:errors'/>" in blocked, blocked
    assert b"you cannot read this" not in bob.quiet(0.3)

    # nothing waits for alice either: bob's message to her while she is away is refused, not stored
    alice.close()
    bob.send("<message to='alice@localhost' type='chat' id='m3'><body>stored?</body></message>")
    assert b"<service-unavailable" in answer(bob, "m3")
    again = online(server, "alice")
    assert b"stored?" not in again.quiet(0.3)
    pushed = block(again, "bob@localhost", unblock=True, stanza_id="u1")
    assert b"<item jid='bob@localhost'/>" in pushed, pushed
    bob.send(f"<message to='{again.jid}' type='chat' id='m4'><body>hello again</body></message>")
    assert b"hello again" in again.expect("</message>")
    again.close()
    bob.close()


def test_blocking_a_subscriber_hides_the_accounts_presence_and_unblocking_shows_it(server: Server) -> None:
    carol, dave = online(server, "carol"), online(server, "dave")
    subscribe_both(carol, dave, "carol", "dave")
    block(carol, "dave@localhost")
    gone = dave.expect(f"<presence[^>]*from=.{re.escape(carol.jid)}.[^>]*type=.unavailable.")
    assert gone
    carol.send("<presence><status>carol in secret</status></presence>")
    carol.expect("carol in secret")
    assert b"carol in secret" not in dave.quiet(0.3)
    dave.send("<presence><status>dave waves</status></presence>")
    dave.expect("dave waves")
    assert b"dave waves" not in carol.quiet(0.3)  # nor does carol get his
    block(carol, unblock=True, stanza_id="u2")  # an empty unblock: everything (§3.5)
    assert b"carol in secret" in dave.expect("carol in secret</status></presence>")
    carol.close()
    dave.close()


def test_a_block_comes_to_the_accounts_other_sessions_and_a_full_list_is_refused(server: Server) -> None:
    desk, phone = online(server, "erin"), online(server, "erin")
    pushed = block(desk, "spam.example", "frank@localhost/bot")
    assert phone.expect(f"<block xmlns=.{BLOCKING}.>.*?</block>")
    assert b"<item jid='spam.example'/>" in pushed, pushed
    desk.send(f"<iq type='set' id='bad'><block xmlns='{BLOCKING}'/></iq>")
    assert b"<bad-request" in answer(desk, "bad")  # §3.3: at least one item
    desk.send(f"<iq type='set' id='bad2'><block xmlns='{BLOCKING}'><item jid='a@b@c'/></block></iq>")
    assert b"<jid-malformed" in answer(desk, "bad2")
    desk.close()
    phone.close()


def test_reading_the_list_needs_roster_read_and_changing_it_roster_write(server: Server) -> None:
    _, secret = app_password(server, "grace", "status", "presence,roster.read")
    status = Session(server, "grace", secret)
    assert status.ok, status.reply
    status.send(f"<iq type='get' id='g1'><blocklist xmlns='{BLOCKING}'/></iq>")
    assert b"type='result'" in answer(status, "g1")
    status.send(f"<iq type='set' id='s1'><block xmlns='{BLOCKING}'><item jid='x@localhost'/></block></iq>")
    refused = answer(status, "s1")
    assert b"<forbidden" in refused, refused
    assert b"roster.write" in refused, refused
    status.close()


def test_the_lists_sent_whole_stay_within_what_a_client_can_be_sent(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Found by a black-box attack: a roster of names and groups full of ``>`` (each sent back as
    ``&gt;``) and a blocklist of JIDs whose resources are full of ``"`` (``&quot;``) each made an answer of
    megabytes, one stanza that no limit split, and every client that fetched it was dropped. A change that
    would make either answer larger than half the outgoing limit (300,000 bytes here) is refused."""
    limits = {"XMPP_MAX_OUTGOING_BYTES": "600000"}
    with running_server(tmp_path_factory.mktemp("lists"), {"henry": PASSWORD}, **limits) as small:
        henry = online(small, "henry")
        groups = "".join(f"<group>{n:02d}{'&gt;' * 1000}</group>" for n in range(32))
        outcomes = []
        for n in range(3):  # some 131 KB each when sent: the third would pass 300,000 bytes
            henry.send(
                f"<iq type='set' id='r{n}'><query xmlns='jabber:iq:roster'><item jid='c{n}@localhost'"
                f" name='{'&gt;' * 1000}'>{groups}</item></query></iq>"
            )
            outcomes.append(answer(henry, f"r{n}"))
        assert [b"type='result'" in outcome for outcome in outcomes] == [True, True, False], outcomes[2][
            -400:
        ]
        assert b"<policy-violation" in outcomes[2]
        assert b"the roster would take" in outcomes[2]
        henry.send("<iq type='get' id='all'><query xmlns='jabber:iq:roster'/></iq>")
        roster = answer(henry, "all")
        assert len(re.findall(rb"<item ", roster)) == 2
        assert len(roster) < 300_000

        quoted = [f"q{n}@localhost/{'&quot;' * 1000}" for n in range(60)]  # some 6 KB each when sent
        block(henry, *quoted[:20], stanza_id="b1")
        block(henry, *quoted[20:40], stanza_id="b2")  # 240 KB
        items = "".join(f"<item jid='{jid}'/>" for jid in quoted[40:])
        henry.send(f"<iq type='set' id='b3'><block xmlns='{BLOCKING}'>{items}</block></iq>")
        refused = answer(henry, "b3")
        assert b"<policy-violation" in refused, refused[-400:]
        assert b"the blocklist would take" in refused
        henry.send(f"<iq type='get' id='bl'><blocklist xmlns='{BLOCKING}'/></iq>")
        assert len(re.findall(rb"<item ", answer(henry, "bl"))) == 40
        henry.close()
