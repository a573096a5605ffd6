"""Grants on real streams, as an attacker would try them: answers only to questions (RFC 6120
§8.2.3), error stanzas that carry nothing, and one real-socket case for each decision that an
earlier mutation run showed no test would notice if it broke (issue 8)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from tests.integration.rawclient import Session
from tests.integration.server import Server, running_server
from tests.integration.test_grants import (
    CAM,
    ONLINE_NUM,
    ROSTER,
    app_password,
    forbidden,
    live_grant,
    manage,
)

pytestmark = pytest.mark.integration

VERSION = "jabber:iq:version"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("answers")) as srv:
        manage(srv, "adduser", "root", "rootpass", "--staff")
        yield srv


def role_password(server: Server, user: str, label: str, role: str) -> str:
    out = manage(server, "apppassword", "create", user, label, "--role", role)
    match = re.search(r"app password \d+ for \S+ \(.*\): (\S+)", out)
    assert match, out
    return match.group(1)


def settle(session: Session, mark: str) -> None:
    """Ping the server and wait for the answer: everything the session sent before has been
    handled (and routed) by then, since a stream's stanzas are handled in order."""
    session.send(f"<iq type='get' id='{mark}'><ping xmlns='urn:xmpp:ping'/></iq>")
    session.expect(f"id=.{mark}.")


def iq_leaks(to: str, secret: str, n: int) -> str:
    """Unsolicited iq answers with a payload: a result and an error."""
    return (
        f"<iq type='result' id='leak-r{n}' to='{to}'><query xmlns='{VERSION}'><name>{secret}</name></query></iq>"
        f"<iq type='error' id='leak-e{n}' to='{to}'><query xmlns='{VERSION}'><name>{secret}</name></query>"
        f"<error type='cancel'><item-not-found xmlns='{STANZAS}'/></error></iq>"
    )


def leaks(to: str, secret: str, n: int) -> str:
    """Unsolicited answers with a payload: an iq result, an iq error, a message error."""
    return iq_leaks(to, secret, n) + (
        f"<message type='error' id='leak-m{n}' to='{to}'><body>{secret}</body>"
        f"<error type='cancel'><service-unavailable xmlns='{STANZAS}'/></error></message>"
    )


# ---------------------------------------------------------------------- answers only to questions
def test_a_presence_only_session_cannot_send_data_as_unsolicited_answers(
    server: Server, bob: Session
) -> None:
    _, secret = app_password(server, "alice", "status only", "presence")
    status = Session(server, "alice", secret)
    assert status.ok, status.reply
    status.send(leaks(bob.jid, "exfiltrated by a presence-only session", 1))
    arrived = status.mark(bob, "after the leaks")  # directed presence is allowed and arrives after them
    assert b"exfiltrated" not in arrived, arrived
    assert b"exfiltrated" not in status.quiet(0.2)  # and nobody answers a result or an error
    status.close()


def test_a_notifier_gets_no_unsolicited_answers_but_the_bare_error_to_its_own_message(
    server: Server, bob: Session
) -> None:
    notifier = Session(server, "alice", role_password(server, "alice", "notifier", "notifier"))
    assert notifier.ok, notifier.reply
    bob.send(leaks(notifier.jid, "pushed to a session that may not receive", 2))
    settle(bob, "b-settle-1")
    assert b"pushed to a session" not in notifier.quiet(0.3)
    # an error to its own message reaches it, stripped to the error
    notifier.send(f"<message to='{bob.jid}' type='chat' id='n1'><body>build status: green</body></message>")
    assert b"build status: green" in bob.expect("</message>")
    bob.send(
        f"<message type='error' id='n1' to='{notifier.jid}'><body>smuggled in an error</body>"
        f"<error type='cancel'><service-unavailable xmlns='{STANZAS}'/>"
        f"<text xmlns='{STANZAS}'>smuggled in the text</text><app xmlns='urn:example'>smuggled data</app>"
        "</error></message>"
    )
    reply = notifier.expect("</message>")
    assert b"type='error'" in reply, reply
    assert b"id='n1'" in reply, reply
    assert b"<service-unavailable" in reply, reply
    assert b"smuggled" not in reply, reply
    assert b"urn:example" not in reply, reply
    # the same error again answers nothing any more
    bob.send(
        f"<message type='error' id='n1' to='{notifier.jid}'><body>twice</body>"
        f"<error type='cancel'><service-unavailable xmlns='{STANZAS}'/></error></message>"
    )
    settle(bob, "b-settle-2")
    assert b"<message" not in notifier.quiet(0.3)
    notifier.close()


def test_requests_and_their_answers_flow_between_full_sessions_once(server: Server, bob: Session) -> None:
    alice = Session(server, "alice", "wonderland")
    assert alice.ok, alice.reply
    alice.send(f"<iq type='get' id='ver 1' to='{bob.jid}'><query xmlns='{VERSION}'/></iq>")
    request = bob.expect("</iq>")
    assert f"from='{alice.jid}'".encode() in request, request
    answer = (
        f"<iq type='result' id='ver 1' to='{alice.jid}'><query xmlns='{VERSION}'>"
        "<name>bob's client</name></query></iq>"
    )
    bob.send(answer)
    reply = alice.expect("</iq>")
    assert b"bob's client" in reply, reply
    assert f"from='{bob.jid}'".encode() in reply, reply
    bob.send(answer.replace("bob's client", "a second answer"))  # the request was answered
    bob.send(iq_leaks(alice.jid, "never asked for", 3))
    settle(bob, "b-settle-3")
    assert alice.quiet(0.3) == b""
    alice.close()


def test_an_answer_to_a_request_that_was_never_routed_to_the_session_is_dropped(
    server: Server, bob: Session
) -> None:
    alice = Session(server, "alice", "wonderland")
    carol = Session(server, "carol", "singer")
    alice.send(f"<iq type='get' id='q1' to='{bob.jid}'><query xmlns='{VERSION}'/></iq>")
    bob.expect("</iq>")
    # carol answers the request bob received: the id is right, the peer is not
    carol.send(
        f"<iq type='result' id='q1' to='{alice.jid}'><query xmlns='{VERSION}'><name>carol</name></query></iq>"
    )
    settle(carol, "c-settle")
    assert b"carol" not in alice.quiet(0.3)
    # control: the peer the request went to answers it the same way, and that answer arrives
    bob.send(
        f"<iq type='result' id='q1' to='{alice.jid}'><query xmlns='{VERSION}'><name>bob</name></query></iq>"
    )
    answer = alice.expect("</iq>")
    assert b"<name>bob</name>" in answer, answer
    assert b"carol" not in answer, answer
    alice.close()
    carol.close()


# ---------------------------------------------------------------------- the decisions no test used to watch
def test_a_receive_only_session_can_send_neither_chat_nor_errors(server: Server, bob: Session) -> None:
    _, secret = app_password(server, "alice", "reader", "messages.receive")
    reader = Session(server, "alice", secret)
    reader.send(f"<message to='{bob.jid}' type='chat' id='r1'><body>reader chats</body></message>")
    forbidden(reader.expect("</message>"), "messages.send")
    reader.send(
        f"<message to='{bob.jid}' type='error' id='r2'><body>reader leaks in an error</body>"
        f"<error type='cancel'><service-unavailable xmlns='{STANZAS}'/></error></message>"
    )
    settle(reader, "r-settle")
    assert b"reader" not in bob.quiet(0.3)
    reader.close()


def test_a_presence_only_session_cannot_send_iq_requests_to_peers(server: Server, bob: Session) -> None:
    _, secret = app_password(server, "alice", "presence only", "presence")
    status = Session(server, "alice", secret)
    status.send(f"<iq type='get' id='p1' to='{bob.jid}'><query xmlns='{VERSION}'/></iq>")
    forbidden(status.expect("</iq>"), "messages.send")
    arrived = status.mark(bob, "presence only")  # control: what the session may send does arrive
    assert b"<iq" not in arrived, arrived
    assert b"<iq" not in bob.quiet(0.3)
    status.close()


def test_an_app_password_cannot_revoke_the_owners_clients_with_a_xep0494_set(server: Server) -> None:
    owner = Session(server, "alice", "wonderland", software="owner phone")
    owner.send(f"<iq type='get' id='l1'><list xmlns='{CAM}'/></iq>")
    listing = owner.expect("</iq>")
    ids = re.findall(rb"<client[^>]*id='(c\d+)'", listing)
    assert ids, listing
    _, secret = app_password(
        server,
        "alice",
        "greedy bot",
        "messages.send",
        "messages.receive",
        "presence",
        "roster.read",
        "roster.write",
    )
    bot = Session(server, "alice", secret)
    for client_id in ids:
        bot.send(
            f"<iq type='set' id='rv-{client_id.decode()}'><revoke xmlns='{CAM}' id='{client_id.decode()}'/></iq>"
        )
        forbidden(bot.expect("</iq>"), "clients.manage")
    settle(owner, "o-settle")  # the owner's stream is still open and answering
    bot.close()
    owner.close()


def test_presence_and_requests_do_not_reach_a_session_without_the_scope(server: Server, bob: Session) -> None:
    _, secret = app_password(server, "alice", "sender only", "messages.send")
    sender = Session(server, "alice", secret)
    bob.send(f"<presence to='{sender.jid}'><status>directed at the sender</status></presence>")
    bob.send(f"<iq type='get' id='b1' to='{sender.jid}'><query xmlns='{VERSION}'/></iq>")
    reply = bob.expect("id=.b1.[^>]*>.*?</iq>")
    assert b"type='error'" in reply, reply
    assert b"<service-unavailable" in reply, reply  # for routing, the session is not there
    assert sender.quiet(0.3) == b""
    sender.close()


def test_the_read_only_role_cannot_change_the_roster(server: Server) -> None:
    reader = Session(server, "alice", role_password(server, "alice", "reader", "read-only"))
    assert reader.ok, reader.reply
    reader.send(f"<iq type='set' id='ro1'><query xmlns='{ROSTER}'><item jid='eve@localhost'/></query></iq>")
    forbidden(reader.expect("</iq>"), "roster.write")
    reader.close()


def test_a_demoted_staff_account_loses_admin_on_its_next_login(server: Server) -> None:
    manage(server, "adduser", "dora", "dorapass", "--staff")
    ua = "dora-phone"
    before = Session(server, "dora", "dorapass", ua=ua)
    before.send(ONLINE_NUM)
    assert b"onlineusersnum" in before.expect("</iq>")
    before.close()
    manage(
        server,
        "shell",
        "-c",
        "from accounts.models import User; User.objects.filter(username='dora').update(is_staff=False)",
    )
    for software in ("grant tests", "a new version"):  # the quick reconnect, and the long way
        after = Session(server, "dora", "dorapass", ua=ua, software=software)
        assert after.ok, after.reply
        after.send(ONLINE_NUM)
        forbidden(after.expect("</iq>"), "admin")
        after.close()


def test_a_password_reconnect_within_a_minute_does_not_revive_a_revoked_grant(server: Server) -> None:
    ua = "erin-laptop"
    manage(server, "adduser", "frank", "frankpass")
    first = Session(server, "frank", "frankpass", ua=ua)
    assert first.ok, first.reply
    grant = live_grant(server, first.jid)
    manage(server, "revoke", "grant", grant, "--reason", "lost laptop")
    assert b"lost laptop" in first.expect("</stream:error>")
    deadline = time.monotonic() + 5
    again = Session(server, "frank", "frankpass", ua=ua)  # within a minute of the first login
    assert again.ok, again.reply
    while time.monotonic() < deadline:
        try:
            fresh = live_grant(server, again.jid)
            break
        except AssertionError:
            time.sleep(0.1)
    assert fresh != grant  # a new grant, not the revoked one
    settle(again, "f-settle")
    again.close()


def test_roster_pushes_and_presence_skip_a_session_whose_grant_lost_the_scope(server: Server) -> None:
    owner = Session(server, "carol", "singer", software="carol's desktop")
    assert owner.ok, owner.reply
    _, secret = app_password(server, "carol", "syncer", "roster.read", "presence")
    syncer = Session(server, "carol", secret)
    assert syncer.ok, syncer.reply
    syncer.send(f"<iq type='get' id='s0'><query xmlns='{ROSTER}'/></iq>")  # now an interested resource
    syncer.expect("id=.s0.")
    syncer.send("<presence/>")
    syncer.expect("</presence>|<presence[^>]*/>")
    manage(server, "setscopes", live_grant(server, syncer.jid), "messages.send")
    time.sleep(1.5)  # applied within a second
    owner.send("<presence><status>carol is here</status></presence>")
    owner.send(
        f"<iq type='set' id='g1'><query xmlns='{ROSTER}'><item jid='dave@localhost' name='Dave'/></query></iq>"
    )
    reply = owner.expect("id=.g1.")
    assert b"type='result'" in reply, reply
    settle(owner, "g-settle")
    quiet = syncer.quiet(0.3)
    assert b"dave@localhost" not in quiet, quiet  # roster.read gone: no pushes
    assert b"carol is here" not in quiet, quiet  # presence gone: no broadcasts
    syncer.close()
    owner.close()
