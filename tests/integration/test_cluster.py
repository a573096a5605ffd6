"""Two server processes, one service (issue 13): PostgreSQL and Redis shared, each process its own
``XMPP_NODE``. Before, alice logged in on one and bob on the other could not exchange a single
stanza. Now messages to full and bare JIDs, iq requests and their answers, presence between an
account's resources and directed presence, and carbons cross from one process to the other
(xmppauth/cluster.py), with the same decisions as inside one process.

Uses the PostgreSQL (a fresh database per module) and the Redis (database 6, emptied first) that this
project's machines run on 127.0.0.1.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.integration.rawclient import RawClient, Session, parse_stream_error
from tests.integration.server import (
    ROOT,
    Server,
    fresh_postgres_database,
    migrate,
    redis_url,
    running_server,
    server_env,
)
from tests.integration.test_grants import app_password, closed_within, revoke_over_xep0494
from tests.integration.test_pep import DEVICES, DISCO, befriend, devicelist, disco_answer, ver
from tests.integration.test_session_features import SM, bodies
from xmppauth import cluster

pytestmark = pytest.mark.integration

REDIS_URL = redis_url(6)
ACCOUNTS = {"alice": "wonderland", "bob": "builder"}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment of every process of this module: one database, one Redis, the accounts made."""
    redis.Redis.from_url(REDIS_URL).flushdb()
    with fresh_postgres_database() as database:
        env = {"DATABASE_URL": database, "CHANNEL_LAYER_URL": REDIS_URL}
        migrate(tmp_path_factory.mktemp("cluster-migrate"), **env)
        yield env


@pytest.fixture(scope="module")
def pair(shared: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    one, two = tmp_path_factory.mktemp("cluster-a"), tmp_path_factory.mktemp("cluster-b")
    with (
        running_server(one, ACCOUNTS, XMPP_NODE="a", **shared) as first,
        running_server(two, {}, XMPP_NODE="b", **shared) as second,
    ):
        yield first, second


def login(server: Server, user: str, carbons: bool = False, available: bool = True) -> Session:
    """``user`` bound (SASL2 + Bind2), with carbons (XEP-0280) if asked, and available if asked."""
    session = Session(server, user, ACCOUNTS[user])
    assert session.ok, session.reply
    assert "/" in session.jid, session.reply  # Bind2: the full JID
    if carbons:
        session.send("<iq type='set' id='carbons'><enable xmlns='urn:xmpp:carbons:2'/></iq>")
        assert b"type='result'" in session.expect("</iq>|<iq[^>]*id=.carbons.[^>]*/>")
    if available:
        session.send("<presence/>")
        session.expect("</presence>|<presence[^>]*/>")
    return session


def reaches(sender: Session, target: Session, within: float = 5.0) -> None:
    """Wait until ``sender``'s process routes to ``target`` on the other one (a bind is told to the
    other process at once, through Redis): headlines to ``target``'s full JID, which RFC 6121 §8.5.3.2.1
    drops while no such resource is known, until one arrives."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        probe = f"probe-{uuid.uuid4().hex[:8]}"
        sender.send(f"<message to='{target.jid}' type='headline'><body>{probe}</body></message>")
        if probe.encode() in target.raw.read_for(0.2):
            return
    raise AssertionError(f"{target.jid} not routable from {sender.jid} within {within} s")


@pytest.fixture
def apart(pair: tuple[Server, Server]) -> Iterator[tuple[Session, Session]]:
    """alice available on the first process, bob on the second, each routable from the other."""
    a, b = pair
    alice, bob = login(a, "alice"), login(b, "bob")
    try:
        reaches(alice, bob)
        reaches(bob, alice)
        yield alice, bob
    finally:
        alice.close()
        bob.close()


def test_a_message_crosses_to_a_full_jid_and_back_to_a_bare_jid(apart: tuple[Session, Session]) -> None:
    alice, bob = apart
    alice.send(f"<message to='{bob.jid}' type='chat' id='m1'><body>hello across</body></message>")
    got = bob.expect("hello across</body>.*?</message>")
    assert f"from='{alice.jid}'".encode() in got, got
    bob.send("<message to='alice@localhost' type='chat' id='m2'><body>and back</body></message>")
    got = alice.expect("and back</body>.*?</message>")
    assert f"from='{bob.jid}'".encode() in got, got


def test_a_burst_across_arrives_whole_and_in_order(apart: tuple[Session, Session]) -> None:
    """500 messages written at once: the sending process carries what waits for the other in batches
    (one Redis message for many stanzas); every one arrives, once, in the order sent (RFC 6120 §10.1)."""
    alice, bob = apart
    alice.send(
        "".join(f"<message to='{bob.jid}' type='chat'><body>n{i}</body></message>" for i in range(500))
    )
    got = bob.expect("n499</body>.*?</message>", timeout=20)
    assert bodies(got) == [f"n{i}" for i in range(500)]


def test_an_iq_request_and_its_answer_cross_both_ways(apart: tuple[Session, Session]) -> None:
    alice, bob = apart
    alice.send(f"<iq to='{bob.jid}' type='get' id='v1'><query xmlns='jabber:iq:version'/></iq>")
    request = bob.expect("</iq>")
    assert b"type='get'" in request, request
    assert f"from='{alice.jid}'".encode() in request, request
    bob.send(
        f"<iq to='{alice.jid}' type='result' id='v1'><query xmlns='jabber:iq:version'>"
        "<name>bob's client</name></query></iq>"
    )
    answer = alice.expect("</iq>")
    assert b"bob's client" in answer, answer
    assert b"type='result'" in answer, answer
    # an answer nobody asked for is dropped on the way, as inside one process
    bob.send(f"<iq to='{alice.jid}' type='result' id='never-asked'/>")
    assert b"never-asked" not in alice.quiet(0.5)


def test_an_accounts_resources_on_two_processes_see_each_others_presence_and_get_carbons(
    pair: tuple[Server, Server],
) -> None:
    a, b = pair
    desk = login(a, "alice", carbons=True)
    phone = login(b, "alice", carbons=True, available=False)
    phone.send("<presence><status>on the phone</status></presence>")
    assert b"on the phone" in desk.expect("on the phone</status>")  # broadcast to the other process
    got = phone.expect("on the phone</status></presence>")  # its own, after the desk's last presence
    assert f"<presence xmlns='jabber:client' from='{desk.jid}' to='alice@localhost'/>".encode() in got, got
    bob = login(b, "bob")
    try:
        reaches(desk, bob)
        desk.send(f"<message to='{bob.jid}' type='chat' id='c1'><body>carbon copy</body></message>")
        assert b"carbon copy" in bob.expect("carbon copy</body>")
        copy = phone.expect("</sent>")  # XEP-0280: a copy of what another resource sent
        assert b"urn:xmpp:carbons:2" in copy, copy
        assert b"carbon copy" in copy, copy
        desk.close()
        gone = phone.expect("type=.unavailable.")  # the desk's end is heard on the other process
        assert re.search(rf"from='{re.escape(desk.jid)}'".encode(), gone), gone
    finally:
        phone.close()
        bob.close()


def test_a_roster_change_on_one_process_is_pushed_to_the_accounts_resource_on_the_other(
    pair: tuple[Server, Server],
) -> None:
    a, b = pair
    desk, phone = login(a, "alice", available=False), login(b, "alice", available=False)
    try:
        for session in (desk, phone):  # each asks for the roster: an interested resource (RFC 6121 §2.1.6)
            session.send("<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>")
            assert b"type='result'" in session.expect("</iq>|<iq[^>]*/>")
        contact = f"friend-{uuid.uuid4().hex[:6]}@localhost"
        # what the phone's process tells the desk's comes in order: once the phone reaches the desk, the
        # desk's process knows of its interest
        reaches(phone, desk)
        desk.send(
            f"<iq type='set' id='add'><query xmlns='jabber:iq:roster'><item jid='{contact}'/></query></iq>"
        )
        push = phone.expect(f"{contact}.*?</iq>")
        assert b"type='set'" in push, push
        assert f"to='{phone.jid}'".encode() in push, push
    finally:
        desk.close()
        phone.close()


def test_a_client_revoked_over_xep0494_on_one_process_is_closed_on_the_other_within_a_second(
    pair: tuple[Server, Server],
) -> None:
    a, b = pair
    phone = Session(b, "alice", "wonderland", software="phone on b")
    laptop = Session(a, "alice", "wonderland", software="laptop on a")
    assert phone.ok, phone.reply
    assert laptop.ok, laptop.reply
    try:
        started = revoke_over_xep0494(laptop, "phone on b")
        text, _ = closed_within(phone, started)  # within a second, on the other process
        assert "client was revoked" in text, text
        answer = laptop.expect("</iq>")
        assert b"password-reset-required" in answer, answer  # as in one process: it had used the password
    finally:
        laptop.close()
        phone.close()


def test_a_resume_on_the_other_process_fails_cleanly_and_nothing_unacknowledged_is_lost(
    pair: tuple[Server, Server],
) -> None:
    """XEP-0198 resumes a session only on the process that holds it: a client that comes back to the
    other one is told so and binds anew (XEP-0386 inline), the old session ends at once, and the
    messages it had not acknowledged come to the new session from the offline store."""
    a, b = pair
    ua = str(uuid.uuid4())
    phone = RawClient(b.c2s_tls, direct_tls=True)
    phone.open_stream()
    sm_bind = f"<bind xmlns='urn:xmpp:bind:0'><tag>phone</tag><enable xmlns='{SM}' resume='true'/></bind>"
    phone.authenticate_plain("alice", "wonderland", ua=ua, software="phone", inline=sm_bind)
    reply = phone.read_until(rb"</success>(<stream:features>.*?</stream:features>)?|</failure>")
    previd = re.search(rb"<enabled xmlns='urn:xmpp:sm:3' id='([^']+)' resume='true'", reply)
    assert previd is not None, reply
    jid = reply.split(b"<authorization-identifier>")[1].split(b"<")[0].decode()
    phone.send("<presence/>")
    phone.read_until(rb"<presence[^>]*/>")
    bob = login(a, "bob")
    deadline = time.monotonic() + 5  # until bob's process knows the phone
    while b"probe" not in phone.read_for(0.2):
        assert time.monotonic() < deadline, "the phone never became routable from bob's process"
        bob.send(f"<message to='{jid}' type='headline'><body>probe</body></message>")
    for i in range(3):
        bob.send(f"<message to='{jid}' type='chat'><body>kept {i}</body></message>")
    phone.read_until(rb"kept 2</body>.*?</message>")
    phone.sock.close()  # gone without acknowledging them: the session hibernates on its process
    time.sleep(0.3)

    back = RawClient(a.c2s_tls, direct_tls=True)
    back.open_stream()
    resume = f"<resume xmlns='{SM}' previd='{previd.group(1).decode()}' h='1'/>"
    back.authenticate_plain("alice", "wonderland", ua=ua, software="phone", inline=resume + sm_bind)
    reply = back.read_until(rb"</success>(<stream:features>.*?</stream:features>)?|</failure>")
    assert b"<failed xmlns='urn:xmpp:sm:3'" in reply, reply
    assert b"another server process" in reply, reply
    assert b"<bound" in reply, reply  # bound anew, here
    back.send("<presence/>")
    got = back.read_until(rb"kept 2</body>")
    assert bodies(got) == ["kept 0", "kept 1", "kept 2"], got
    assert b"urn:xmpp:delay" in got  # from the offline store, stamped
    assert "3 unacknowledged message(s) kept offline" in b.log_text()  # by the process that held it
    back.close()
    bob.close()


def test_each_process_is_ready_with_its_database_and_the_channel_layer(pair: tuple[Server, Server]) -> None:
    for server, node in zip(pair, ("a", "b"), strict=True):
        deadline = time.monotonic() + 5  # its own heartbeat comes back within a second of starting
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{server.http}/readyz", timeout=5) as answer:
                    body = json.loads(answer.read())
                break
            except urllib.error.HTTPError as not_ready:
                body = json.loads(not_ready.read())
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert body == {"node": node, "checks": {"serving": "ok", "database": "ok", "channel_layer": "ok"}}


def test_stanzas_sent_to_a_process_that_stopped_answering_are_stored_not_lost(
    shared: dict[str, str], pair: tuple[Server, Server], tmp_path: Path
) -> None:
    """A process frozen (SIGSTOP, then killed) while messages are sent to a client on it: the sending
    process keeps each stanza until the other's heartbeat says it was handled, so when the frozen one
    is declared gone, what it never handled goes to the offline store, and comes at the next login."""
    a, _ = pair
    with running_server(tmp_path / "d", {}, XMPP_NODE="d", **shared) as d:
        bob, phone = login(a, "bob"), login(d, "alice")
        reaches(bob, phone)
        d.proc.send_signal(signal.SIGSTOP)
        try:
            for i in range(5):
                bob.send(f"<message to='{phone.jid}' type='chat'><body>frozen {i}</body></message>")
            deadline = time.monotonic() + cluster.NODE_TIMEOUT + 3 * cluster.HEARTBEAT + 5
            while "stanza(s) not handled by node d" not in a.log_text():
                assert time.monotonic() < deadline, a.log_text()[-2000:]
                time.sleep(0.2)
        finally:
            d.proc.kill()
        later = login(a, "alice", available=False)
        later.send("<presence/>")
        got = later.expect("frozen 4</body>")
        assert bodies(got) == [f"frozen {i}" for i in range(5)], got
        for session in (bob, later):
            session.close()


def live_records(shared: dict[str, str], node: str, data_dir: Path) -> int:
    """Session records of ``node`` not ended, in the shared database."""
    code = f"from sessions_acl.models import Session; print(Session.objects.filter(node={node!r}, ended=None).count())"
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT, env=server_env(data_dir, **shared), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])  # after what the shell says it imported


def test_a_killed_process_is_noticed_by_the_others_within_the_bound(
    shared: dict[str, str], pair: tuple[Server, Server], tmp_path: Path
) -> None:
    """kill -9 of a third process: the others withdraw its sessions within NODE_TIMEOUT and a
    heartbeat (its account's other resources hear them leave), route around them, and end its
    session records; nothing waits for the dead process."""
    a, _ = pair
    with running_server(tmp_path / "c", {}, XMPP_NODE="c", XMPP_LOG_FORMAT="json", **shared) as c:
        desk, bob = login(a, "alice"), login(a, "bob")
        phone = login(c, "alice", available=False)
        phone.send("<presence><status>doomed</status></presence>")
        desk.expect("doomed</status>")
        reaches(bob, phone)
        assert live_records(shared, "c", tmp_path) == 1
        logged = [json.loads(line) for line in c.log_text().splitlines() if line.startswith("{")]
        assert logged, c.log_text()  # XMPP_LOG_FORMAT=json: each line an object naming its process
        assert {line["node"] for line in logged} == {"c"}
        c.proc.kill()
        killed = time.monotonic()
        gone = desk.expect(f"<presence[^>]*from=.{re.escape(phone.jid)}.[^>]*type=.unavailable.", timeout=15)
        noticed = time.monotonic() - killed
        assert gone
        assert noticed < cluster.NODE_TIMEOUT + 2 * cluster.HEARTBEAT + 1, noticed
        # a chat to the dead full JID is a chat to the account (RFC 6121 §8.5.3.2.1): its live resource
        bob.send(f"<message to='{phone.jid}' type='chat' id='after'><body>to the living</body></message>")
        assert f"from='{bob.jid}'".encode() in desk.expect("to the living</body>.*?</message>")
        deadline = time.monotonic() + 5  # ended right after the stand-ins go
        while live_records(shared, "c", tmp_path) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert live_records(shared, "c", tmp_path) == 0
        assert "node c " in a.log_text()
        desk.close()
        bob.close()


def test_a_process_stopped_with_sigterm_says_goodbye_and_the_others_forget_its_sessions_at_once(
    shared: dict[str, str], pair: tuple[Server, Server], tmp_path: Path
) -> None:
    """SIGTERM of a third process: its clients get ``system-shutdown``, it tells the others it is going
    (no waiting for NODE_TIMEOUT): the account's resources on another process hear its session leave
    within a second, a chat to its full JID goes to the account's living resource, and its session
    records are ended."""
    a, _ = pair
    with running_server(tmp_path / "c", {}, XMPP_NODE="c", **shared) as c:
        desk, bob = login(a, "alice"), login(a, "bob")
        phone = login(c, "alice", available=False)
        phone.send("<presence><status>leaving soon</status></presence>")
        desk.expect("leaving soon</status>")
        reaches(bob, phone)
        c.proc.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        gone = desk.expect(f"<presence[^>]*from=.{re.escape(phone.jid)}.[^>]*type=.unavailable.", timeout=5)
        assert gone
        assert time.monotonic() - stopped < 1.0
        assert parse_stream_error(phone.raw.read_to_close(timeout=10)) == "system-shutdown"
        bob.send(f"<message to='{phone.jid}' type='chat' id='after'><body>to the living</body></message>")
        assert f"from='{bob.jid}'".encode() in desk.expect("to the living</body>.*?</message>")
        assert c.proc.wait(timeout=15) == 0
        assert live_records(shared, "c", tmp_path) == 0
        desk.close()
        bob.close()


def test_a_contact_blocked_on_one_process_reaches_nothing_from_the_other(
    apart: tuple[Session, Session],
) -> None:
    """XEP-0191 across processes: bob's process does not keep alice's blocklist; alice's process checks
    what comes to her and answers bob through the cluster, as if nobody were there."""
    alice, bob = apart
    blocking = "urn:xmpp:blocking"
    alice.send(f"<iq type='set' id='blk'><block xmlns='{blocking}'><item jid='bob@localhost'/></block></iq>")
    alice.expect("id=.blk.")
    bob.send(f"<message to='{alice.jid}' type='chat' id='x1'><body>across the wall</body></message>")
    refused = bob.expect("<message[^>]*id=.x1.[^>]*>.*?</message>")
    assert b"<service-unavailable" in refused, refused
    assert b"across the wall" not in alice.quiet(0.3)
    alice.send(f"<iq type='set' id='unb'><unblock xmlns='{blocking}'/></iq>")
    alice.expect("id=.unb.")
    reaches(bob, alice)


def test_a_pep_notification_crosses_to_a_contact_that_wants_it_on_the_other_process(
    pair: tuple[Server, Server],
) -> None:
    """XEP-0163 across processes: bob (on b) says through his caps that he wants alice's OMEMO device
    list; alice publishes on a. Bob's session holds an app password with the presence scope and not
    messages.receive: a notification is presence-scoped wherever it is checked."""
    a, b = pair
    _, secret = app_password(a, "bob", "omemo-only", "presence", "roster.read", "roster.write")
    alice = login(a, "alice")
    bob = Session(b, "bob", secret)
    assert bob.ok, bob.reply
    features = [DISCO, f"{DEVICES}+notify", "urn:xmppauth:test:cluster"]
    bob.send(
        f"<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='{ver(features)}'/></presence>"
    )
    bob.send(disco_answer(bob.expect("<iq[^>]*type=.get.[^>]*><query[^>]*/></iq>"), features))
    befriend(bob, alice)  # (not reaches(): bob receives no messages, headlines included)
    deadline = time.monotonic() + 5
    while True:  # until a has heard of bob's interest (his process tells the others at once)
        alice.send(
            f"<iq type='set' id='pub'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='{DEVICES}'>"
            f"<item id='current'>{devicelist(4711)}</item></publish></pubsub></iq>"
        )
        alice.expect("id=.pub.")
        if b"4711" in bob.raw.read_for(0.3):
            break
        assert time.monotonic() < deadline, "no notification crossed to bob's process"
    alice.close()
    bob.close()
