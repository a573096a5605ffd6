"""What a black-box attack on the grants found (issue 8), on real streams: a stream-management resume
by another login of the account, a resume with a bad h, three logins racing for one full JID."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.integration.rawclient import RawClient, parse_stream_error
from tests.integration.server import Server, running_server
from tests.integration.test_grants import app_password, live_grant, manage

pytestmark = pytest.mark.integration

SM = "urn:xmpp:sm:3"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("takeover"), XMPP_SM_RESUME_SECONDS="30") as srv:
        yield srv


def authenticate(client: RawClient, user: str, secret: str, ua: str, inline: str) -> bytes:
    client.authenticate_plain(user, secret, ua=ua, software="takeover tests", inline=inline)
    return client.read_until(
        rb"</success>(<stream:features>.*?</stream:features>)?|</failure>|</stream:stream>"
    )


def login(server: Server, user: str, secret: str, ua: str, inline: str) -> tuple[RawClient, bytes]:
    client = RawClient(server.c2s_tls, direct_tls=True)
    client.open_stream()
    return client, authenticate(client, user, secret, ua, inline)


def resumable(server: Server, user: str, secret: str, ua: str) -> tuple[RawClient, str, str]:
    """A bound session with resumption enabled: (client, full JID, resumption id)."""
    client, reply = login(
        server,
        user,
        secret,
        ua,
        f"<bind xmlns='urn:xmpp:bind:0'><tag>t</tag><enable xmlns='{SM}' resume='true'/></bind>",
    )
    previd = re.search(rb"<enabled xmlns='urn:xmpp:sm:3' id='([^']+)'", reply)
    jid = re.search(rb"<authorization-identifier>([^<]+)</authorization-identifier>", reply)
    assert previd, reply
    assert jid, reply
    return client, jid.group(1).decode(), previd.group(1).decode()


def resume(
    server: Server, user: str, secret: str, ua: str, previd: str, h: int, tag: str = "t"
) -> tuple[RawClient, bytes]:
    """Resume inline, or else bind with ``tag`` (the session's own tag replaces it, RFC 6120 §7.7.2.2)."""
    return login(
        server,
        user,
        secret,
        ua,
        f"<resume xmlns='{SM}' previd='{previd}' h='{h}'/><bind xmlns='urn:xmpp:bind:0'><tag>{tag}</tag></bind>",
    )


def narrow_while_away(server: Server, client: RawClient, jid: str, scopes: str) -> None:
    """The connection drops (the session hibernates), then the operator narrows its grant."""
    grant = live_grant(server, jid)
    client.sock.close()
    time.sleep(0.3)
    manage(server, "setscopes", grant, scopes)
    time.sleep(1.2)  # applied within a second


def live_jids(server: Server, user: str) -> list[str]:
    lines = manage(server, "listsessions", "--user", user).splitlines()[1:]
    return [line.split()[1] for line in lines if line.split()]


def bob(server: Server) -> RawClient:
    client = RawClient(server.c2s)
    client.login("bob", "builder", f"desk-{uuid.uuid4().hex[:6]}")
    return client


def test_another_login_of_the_account_cannot_resume_a_session(server: Server) -> None:
    ua = str(uuid.uuid4())
    phone, jid, previd = resumable(server, "alice", "wonderland", ua)
    sender = bob(server)
    sender.send(f"<message to='{jid}' type='chat' id='s1'><body>for alice's phone only</body></message>")
    phone.read_until(rb"for alice's phone only")
    phone.sock.close()  # gone without acknowledging it
    time.sleep(0.3)
    _, secret = app_password(server, "alice", "status light", "presence")
    for user_agent in (str(uuid.uuid4()), ua):  # a new client, or one that claims the phone's id
        thief, reply = resume(server, "alice", secret, user_agent, previd, 0, tag="thief")
        assert b"<success" in reply, reply  # the app password is right: it logs in and binds anew
        assert b"<resumed" not in reply, reply
        assert b"belongs to another client or app password" in reply, reply
        assert b"for alice's phone only" not in thief.quiet()
        thief.close()
    back, reply = resume(server, "alice", "wonderland", ua, previd, 0)  # the phone itself
    assert b"<resumed" in reply, reply
    assert b"for alice's phone only" in back.read_until(rb"for alice's phone only")
    back.close()
    sender.close()


def test_a_session_narrowed_while_away_gets_only_what_its_grant_allows_and_nothing_is_lost(
    server: Server,
) -> None:
    ua = str(uuid.uuid4())
    _, secret = app_password(server, "carol", "bot", "messages.send", "messages.receive", "presence")
    bot, jid, previd = resumable(server, "carol", secret, ua)
    sender = bob(server)
    sender.send(f"<message to='{jid}' type='chat' id='n1'><body>sent before the change</body></message>")
    bot.read_until(rb"sent before the change")
    narrow_while_away(server, bot, jid, "presence")
    back, reply = resume(server, "carol", secret, ua, previd, 0)
    assert b"<resumed" in reply, reply
    assert b"sent before the change" not in back.quiet()  # withheld: it may no longer receive messages
    back.close()
    owner, _ = login(server, "carol", "singer", str(uuid.uuid4()), "<bind xmlns='urn:xmpp:bind:0'/>")
    owner.send("<presence/>")
    assert b"sent before the change" in owner.read_until(rb"sent before the change")  # kept offline
    owner.close()
    sender.close()


@pytest.mark.parametrize("connected", [True, False], ids=["connected", "hibernating"])
def test_a_resume_with_a_bad_h_fails_and_leaves_the_session_as_it_was(
    server: Server, connected: bool
) -> None:
    ua = str(uuid.uuid4())
    phone, jid, previd = resumable(server, "alice", "wonderland", ua)
    sender = bob(server)
    sender.send(f"<message to='{jid}' type='chat' id='h1'><body>unacknowledged one</body></message>")
    phone.read_until(rb"unacknowledged one")
    if not connected:
        phone.sock.close()
        time.sleep(0.3)
    bad, reply = resume(server, "alice", "wonderland", ua, previd, 99)
    error = reply + (b"" if bad.closed else bad.read_to_close())
    assert parse_stream_error(error) == "undefined-condition", error
    assert b"handled-count-too-high" in error, error
    assert jid in live_jids(server, "alice")  # the session is untouched
    sender.send(f"<message to='{jid}' type='chat' id='h2'><body>after the bad resume</body></message>")
    if connected:
        assert b"after the bad resume" in phone.read_until(rb"after the bad resume")
        phone.close()
    else:
        back, reply = resume(server, "alice", "wonderland", ua, previd, 0)
        assert b"<resumed" in reply, reply
        replay = back.read_until(rb"after the bad resume")
        assert b"unacknowledged one" in replay, replay  # nothing was lost
        back.close()
    sender.close()


def test_a_resumed_stream_tells_the_old_connection_why_it_ends(server: Server) -> None:
    ua = str(uuid.uuid4())
    phone, _, previd = resumable(server, "alice", "wonderland", ua)
    back, reply = resume(server, "alice", "wonderland", ua, previd, 0)
    assert b"<resumed" in reply, reply
    error = phone.read_to_close()
    assert parse_stream_error(error) == "conflict", error
    assert b"resumed on another stream" in error, error
    back.close()


def _race(gate: threading.Barrier, client: RawClient, ua: str, replies: list[bytes]) -> None:
    gate.wait()
    replies.append(
        authenticate(client, "alice", "wonderland", ua, "<bind xmlns='urn:xmpp:bind:0'><tag>dup</tag></bind>")
    )


def test_three_logins_at_once_for_one_full_jid_leave_exactly_one_session(server: Server) -> None:
    for _ in range(5):
        ua = str(uuid.uuid4())
        clients = []
        for _ in range(3):
            client = RawClient(server.c2s_tls, direct_tls=True)
            client.open_stream()
            clients.append(client)
        gate = threading.Barrier(3)
        replies: list[bytes] = []

        threads = [threading.Thread(target=_race, args=(gate, client, ua, replies)) for client in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        jids = {re.search(rb"<authorization-identifier>([^<]+)<", r).group(1) for r in replies}  # type: ignore[union-attr]
        assert len(jids) == 1, replies  # all three asked for the same full JID
        time.sleep(0.5)
        alive = []
        for client in clients:
            data = client.read_for(0.2)
            if client.closed:
                assert parse_stream_error(data) == "conflict", data
            else:
                alive.append(client)
        assert len(alive) == 1  # the last to bind holds it; the others were told
        jid = jids.pop().decode()
        assert live_jids(server, "alice").count(jid) == 1
        alive[0].send("<iq type='get' id='still'><ping xmlns='urn:xmpp:ping'/></iq>")
        alive[0].read_until(rb"id=.still.")
        alive[0].close()


def test_a_request_answered_by_the_server_at_a_resume_cannot_be_answered_again(server: Server) -> None:
    ua = str(uuid.uuid4())
    _, secret = app_password(server, "carol", "bot2", "messages.send", "messages.receive", "presence")
    bot, jid, previd = resumable(server, "carol", secret, ua)
    sender = RawClient(server.c2s)
    sender_jid = sender.login("bob", "builder", f"desk-{uuid.uuid4().hex[:6]}")
    sender.send(f"<iq to='{jid}' type='get' id='iq1'><query xmlns='jabber:iq:version'/></iq>")
    bot.read_until(rb"id=.iq1.")
    narrow_while_away(server, bot, jid, "presence")
    back, reply = resume(server, "carol", secret, ua, previd, 0)
    assert b"<resumed" in reply, reply
    bounced = sender.read_until(rb"id=.iq1.[^>]*>.*?</iq>")
    assert b'type="error"' in bounced or b"type='error'" in bounced, bounced
    back.send(
        f"<iq to='{sender_jid}' type='result' id='iq1'><query xmlns='jabber:iq:version'><name>late</name></query></iq>"
    )
    back.send("<iq type='get' id='b-settle'><ping xmlns='urn:xmpp:ping'/></iq>")
    back.read_until(rb"id=.b-settle.")
    assert b"late" not in sender.quiet()  # one answer to one request: the server's
    back.close()
    sender.close()


@pytest.mark.parametrize("how", ["bind2", "rfc6120"])
def test_an_app_password_cannot_take_the_full_clients_resource(server: Server, how: str) -> None:
    ua = str(uuid.uuid4())
    phone, jid, _ = resumable(server, "alice", "wonderland", ua)
    _, secret = app_password(server, "alice", f"squatter {how}", "messages.send")
    if how == "bind2":  # the phone's user-agent id and tag give the phone's resource
        squatter, reply = login(
            server, "alice", secret, ua, "<bind xmlns='urn:xmpp:bind:0'><tag>t</tag></bind>"
        )
        other = re.search(rb"<authorization-identifier>([^<]+)<", reply)
    else:
        squatter, reply = login(server, "alice", secret, str(uuid.uuid4()), "")
        resource = jid.split("/", 1)[1]
        squatter.send(
            f"<iq type='set' id='bd'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{resource}</resource></bind></iq>"
        )
        other = re.search(rb"<jid>([^<]+)</jid>", squatter.read_until(rb"id=.bd.[^>]*>.*?</iq>"))
    assert other is not None, reply
    assert other.group(1).decode() != jid  # it gets a resource of its own
    phone.send("<iq type='get' id='p-alive'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert b"p-alive" in phone.read_until(rb"id=.p-alive.")  # the phone's stream goes on
    assert jid in live_jids(server, "alice")
    squatter.close()
    phone.close()


def test_a_resumed_session_keeps_receiving_roster_pushes(server: Server) -> None:
    """RFC 6121 §2.1.6: a resource that asked for the roster is an interested resource and hears of
    every change. A resume continues the session (XEP-0198 §5): it stays interested."""
    ua = str(uuid.uuid4())
    phone, _, previd = resumable(server, "alice", "wonderland", ua)
    phone.send("<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>")
    phone.read_until(rb"id=.r1.")
    phone.sock.close()
    time.sleep(0.3)
    back, reply = resume(server, "alice", "wonderland", ua, previd, 0)
    assert b"<resumed" in reply, reply
    laptop = RawClient(server.c2s)
    laptop.login("alice", "wonderland", f"laptop-{uuid.uuid4().hex[:6]}")
    contact = f"friend-{uuid.uuid4().hex[:6]}@localhost"
    laptop.send(
        f"<iq type='set' id='s1'><query xmlns='jabber:iq:roster'><item jid='{contact}'/></query></iq>"
    )
    laptop.read_until(rb"id=.s1.")
    push = back.read_until(rf"<item[^>]*{re.escape(contact)}".encode())
    assert b"jabber:iq:roster" in push, push
    back.close()
    laptop.close()
