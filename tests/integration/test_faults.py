"""Faults of the process and of the services it stands on (issue 12, item 6), on the real services.

- **kill -9 mid-stream** (SQLite; PostgreSQL too with ``KILLED_ON``): the server is killed with SIGKILL
  while clients are logged in and messages are on their way, and started again on the same data.
  Accounts, second factors, grants, FAST tokens, app passwords, rosters and stored messages are as they
  were (a TOTP code and a FAST count used before the kill are still refused), and what was stored is
  delivered at the next login, with what came for a hibernating session (stored as it came) and stored
  messages sent but not acknowledged (they stay stored until acknowledged). What an online client had
  not acknowledged is still lost (a strict xfail: LOST_IN_MEMORY). A normal stop loses nothing.
- **PostgreSQL restarts under load** (a private cluster, never the shared one): logins during the
  outage end at once with a stream error that has a text, sessions logged in before keep being served
  (pings answered at once, messages routed), and once the database is back logins work again without
  restarting the server, the first one included (xmppauth/offloop.py), and a session that only chats
  lives through it (xmppauth/services.py ``touch_session``).
- **Redis goes away** (a private redis-server, two serving processes on one PostgreSQL database):
  revocations still reach the other process through the database poll (within ``FULL_POLL`` seconds,
  xmppauth/control.py), and once Redis is back through it again, by themselves; the outage is logged
  once, not a traceback a second (xmppauth/control.py). Logins go on while Redis is down (the guessing
  limits count in the process meanwhile: accounts/guessing.py).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration.rawclient import RawClient, parse_stream_error
from tests.integration.server import (
    ROOT,
    Server,
    free_port,
    fresh_postgres_database,
    running_server,
    server_env,
)
from tests.integration.test_mfa import secret_of, totp_code
from xmppauth.control import FULL_POLL

pytestmark = pytest.mark.integration

SASL2 = "urn:xmpp:sasl:2"
SM = "urn:xmpp:sm:3"
FAST = "urn:xmpp:fast:0"
MFA = "urn:xmpp:mfa:0"
ROSTER = "jabber:iq:roster"
Q = "['\"]"  # either attribute quote
PASSWORDS = {"alice": "wonderland", "bob": "builder", "carol": "singer", "dave": "diver"}


# ---------------------------------------------------------------------- small steps shared by the cases
def manage(data_dir: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT, env=server_env(data_dir, **env), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def bodies(data: bytes) -> list[str]:
    return [b.decode() for b in re.findall(rb"<body>([^<]*)</body>", data)]


def sasl2(
    server: Server, user: str, secret: str, *, ua: str | None = None, inline: str = "", tag: str = "faults"
) -> tuple[RawClient, bytes]:
    """A SASL2 PLAIN login with Bind2 (tag ``tag``) and ``inline`` inside the bind (SM) or beside it."""
    client = RawClient(server.c2s_tls, direct_tls=True)
    client.open_stream()
    bind_inner, beside = "", inline
    if "<enable" in inline:
        bind_inner, beside = inline, ""
    client.authenticate_plain(
        user,
        secret,
        ua=ua,
        software="fault tests",
        inline=f"<bind xmlns='urn:xmpp:bind:0'><tag>{tag}</tag>{bind_inner}</bind>{beside}",
    )
    return client, client.read_until(rb"</stream:features>|</failure>|</continue>")


def jid_of(reply: bytes) -> str:
    match = re.search(rb"<authorization-identifier>([^<]+)</authorization-identifier>", reply)
    assert match, reply
    return match.group(1).decode()


def fast_auth(
    server: Server, user: str, token: str, ua: str, *, count: int | None = None, inline: str = ""
) -> tuple[RawClient, bytes]:
    """A FAST (XEP-0484) login with HT-SHA-256-NONE; the stream is left open for the caller."""
    client = RawClient(server.c2s_tls, direct_tls=True)
    client.open_stream()
    mac = hmac.new(token.encode(), b"Initiator", hashlib.sha256).digest()
    initial = base64.b64encode(user.encode() + b"\0" + mac).decode()
    counted = f" count='{count}'" if count is not None else ""
    client.send(
        f"<authenticate xmlns='{SASL2}' mechanism='HT-SHA-256-NONE'><initial-response>{initial}"
        f"</initial-response><user-agent id='{ua}'/><fast xmlns='{FAST}'{counted}/>{inline}</authenticate>"
    )
    return client, client.read_until(rb"</stream:features>|</failure>")


def ping(client: RawClient, stanza_id: str, timeout: float) -> bytes:
    """XEP-0199 to the server over a logged-in stream: everything read up to its answer, which must
    come within ``timeout`` (the server handles one stream's stanzas in order: what it sends for the
    stanzas before the ping comes before the answer)."""
    client.send(f"<iq type='get' id='{stanza_id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    answer = client.read_until(rf"<iq(?=[^>]*id={Q}{stanza_id}{Q})[^>]*?(/>|>.*?</iq>)", timeout=timeout)
    assert re.search(rf"<iq(?=[^>]*id={Q}{stanza_id}{Q})(?=[^>]*type={Q}result{Q})".encode(), answer), answer
    return answer


def stanza_count(data: bytes) -> int:
    """How many top-level stanzas ``data`` holds (no test here sends nested ones)."""
    return len(re.findall(rb"<(?:message|presence|iq)[\s/>]", data))


# ---------------------------------------------------------------------- 1. kill -9 mid-stream
#: Prepared in one ``manage.py shell`` before the server starts (each manage.py costs seconds).
SETUP = """
import io, json
from django.core.management import call_command
call_command("migrate", interactive=False, verbosity=0)
for name, password in {accounts!r}.items():
    call_command("adduser", name, password, stdout=io.StringIO())
totp, app = io.StringIO(), io.StringIO()
call_command("totp", "add", "alice", stdout=totp)
call_command("apppassword", "create", "bob", "backup bot", "--scopes", "messages.send,messages.receive", stdout=app)
print(json.dumps({{"totp": totp.getvalue(), "app": app.getvalue()}}))
"""

ACCOUNTS_ONLY = """
import io
from django.core.management import call_command
call_command("migrate", interactive=False, verbosity=0)
for name, password in {accounts!r}.items():
    call_command("adduser", name, password, stdout=io.StringIO())
"""


#: What must survive, table by table: every column but the ones that change on their own (last seen…).
DURABLE = {
    "accounts_user": "id, username, password, scram, is_active, xmpp_password_login, password_changed",
    "accounts_totpdevice": "id, user_id, confirmed, encrypted_key, last_t",
    "sessions_acl_grant": "id, user_id, origin, role, scopes, expires, revoked",
    "sessions_acl_client": "id, user_id, user_agent_id, grant_id, revoked",
    "sessions_acl_fasttoken": "id, client_id, slot, mechanism, key, nonce, expires, last_count",
    "sessions_acl_apppassword": "id, user_id, grant_id, label, scram",
    "xmppauth_rosteritem": "id, user_id, jid, name, groups, subscription",
    "xmppauth_offlinemessage": "id, user_id, stanza",
}


@dataclass
class Database:
    """Read-only SQL on the server's database, straight from the test (no Django start-up)."""

    data_dir: Path
    url: str = ""

    def rows(self, sql: str) -> list[tuple[object, ...]]:
        if self.url:
            import psycopg

            with psycopg.connect(self.url, autocommit=True) as conn:
                fetched = conn.execute(sql).fetchall()
        else:
            import sqlite3

            with contextlib.closing(sqlite3.connect(self.data_dir / "db.sqlite3", timeout=20)) as conn:
                fetched = conn.execute(sql).fetchall()
        return [
            tuple(bytes(v).hex() if isinstance(v, bytes | memoryview) else v for v in row) for row in fetched
        ]

    def durable_state(self) -> dict[str, list[tuple[object, ...]]]:
        return {
            table: self.rows(f"SELECT {columns} FROM {table} ORDER BY id")
            for table, columns in DURABLE.items()
        }

    def offline(self) -> list[tuple[object, ...]]:
        return self.rows(
            "SELECT u.username, o.stanza, o.taken_by_id FROM xmppauth_offlinemessage o "
            "JOIN accounts_user u ON u.id = o.user_id ORDER BY o.id"
        )

    def sessions(self) -> list[tuple[object, ...]]:
        return self.rows("SELECT jid, ended, end_reason FROM sessions_acl_session ORDER BY id")


def wait_for(check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@dataclass
class BeforeTheKill:
    """What the clients did and were told before the server was killed."""

    env: dict[str, str]
    db: Database
    state: dict[str, list[tuple[object, ...]]]
    totp_secret: bytes
    totp_step: int  # the time step of the code alice logged in with
    fast_token: str
    fast_ua: str
    fast_count: int  # the last count used with it
    app_secret: str
    bob_sent: int  # stanzas bob sent after enabling XEP-0198
    bob_h: int  # the server's <a h/> for them
    hibernating_previd: str
    live: list[str]  # the full JIDs of the sessions live (or hibernating) when it was killed
    clients: list[RawClient] = field(default_factory=list)


KILL_ACCOUNTS = {**PASSWORDS, "erin": "eagle", "frank": "falconer", "gina": "gardener", "hank": "hunter"}


def _sm_login(server: Server, user: str, tag: str, *, resume: bool = False) -> tuple[RawClient, bytes]:
    """A password login with XEP-0198 enabled (resumable if asked), then available presence."""
    enable = f"<enable xmlns='{SM}' resume='true'/>" if resume else f"<enable xmlns='{SM}'/>"
    client, reply = sasl2(server, user, KILL_ACCOUNTS[user], inline=enable, tag=tag)
    assert b"<enabled" in reply, reply
    client.send("<presence/>")
    return client, reply


def _ack_up_to(client: RawClient, body: str, then: str) -> None:
    """Read up to the message ``then``; acknowledge (XEP-0198) every stanza up to and with ``body``."""
    got = client.read_until(rf"{then}</body>.*?</message>")
    end = got.index(b"</message>", got.index(body.encode())) + len(b"</message>")
    client.send(f"<a xmlns='{SM}' h='{stanza_count(got[:end])}'/>")
    ping(client, f"after-{uuid.uuid4().hex[:6]}", 5)  # the <a/> is read before anything else happens


def _before_the_kill(
    server: Server, env: dict[str, str], db: Database, prepared: dict[str, str]
) -> BeforeTheKill:
    # bob: a password login asks for a FAST token; a FAST login (count 1) keeps the stream, with XEP-0198
    ua = str(uuid.uuid4())
    request = f"<request-token xmlns='{FAST}' mechanism='HT-SHA-256-NONE'/>"
    first, reply = sasl2(server, "bob", PASSWORDS["bob"], ua=ua, inline=request)
    token = re.search(rb"<token xmlns=['\"]urn:xmpp:fast:0['\"][^>]*token=['\"]([^'\"]+)", reply)
    assert token, reply
    first.close()
    bind = f"<bind xmlns='urn:xmpp:bind:0'><tag>desk</tag><enable xmlns='{SM}'/></bind>"
    bob, reply = fast_auth(server, "bob", token.group(1).decode(), ua, count=1, inline=bind)
    assert b"<success" in reply, reply
    assert b"<enabled" in reply, reply
    sent = 0
    for contact, name in (("alice@localhost", "Alice"), ("carol@localhost", "Carol")):
        bob.send(
            f"<iq type='set' id='r-{name}'><query xmlns='{ROSTER}'><item jid='{contact}' name='{name}'>"
            "<group>Friends</group></item></query></iq>"
        )
        bob.read_until(rf"<iq(?=[^>]*id={Q}r-{name}{Q})[^>]*?(/>|>.*?</iq>)")
        sent += 1
    app = re.search(r"app password \d+ for \S+ \(.*\): (\S+)", prepared["app"])
    assert app, prepared
    bot, reply = sasl2(server, "bob", app.group(1), tag="bot")
    assert b"<success" in reply, reply
    bot.close()

    def send(to: str, body: str) -> None:
        nonlocal sent
        bob.send(f"<message to='{to}' type='chat'><body>{body}</body></message>")
        sent += 1

    # carol and frank: a message reached them, they never acknowledged it and closed: kept offline
    for user in ("carol", "frank"):
        client, _ = _sm_login(server, user, "once")
        client.read_until(rb"<presence[^>]*?(/>|>.*?</presence>)")
        send(f"{user}@localhost", f"for {user}, stored")
        client.read_until(f"for {user}, stored")
        client.send("</stream:stream>")
        client.read_to_close(timeout=5)
    wait_for(lambda: len(db.offline()) == 2, "the unacknowledged messages were not stored")
    # frank logs in again: the stored message is sent, and stays stored, taken by his session, until he
    # acknowledges it; he does not
    frank, _ = _sm_login(server, "frank", "again")
    frank.read_until(rb"for frank, stored</body>")
    taken = [("carol", False), ("frank", True)]
    wait_for(lambda: [(row[0], row[2] is not None) for row in db.offline()] == taken, "frank's was not taken")

    # dave: his resumable session hibernates (the connection dropped without a word)
    dave, reply = _sm_login(server, "dave", "asleep", resume=True)
    previd = re.search(rb"<enabled[^>]*id=['\"]([^'\"]+)", reply)
    assert previd, reply
    dave.read_until(rb"<presence[^>]*?(/>|>.*?</presence>)")
    dave.sock.close()
    dave_jid = jid_of(reply)
    send(dave_jid, "for dave, hibernating")
    # erin: online; she acknowledges the first of two messages
    erin, _ = _sm_login(server, "erin", "online")
    for body in ("for erin 1", "for erin 2"):
        send("erin@localhost", body)
    _ack_up_to(erin, "for erin 1", "for erin 2")

    # the server acknowledges to bob everything he sent (XEP-0198 §4): it has accepted all of it
    bob.send(f"<r xmlns='{SM}'/>")
    answer = bob.read_until(rf"<a xmlns={Q}{SM}{Q}[^>]*/>")
    h = re.search(rb"h=['\"](\d+)", answer)
    assert h, answer
    assert any(jid == dave_jid and ended is None for jid, ended, _ in db.sessions()), (
        "dave is not hibernating"
    )

    # alice: a TOTP code, accepted just now; the checks after the restart need its step and the next
    uri = re.search(r"otpauth://totp/\S+", prepared["totp"])
    assert uri, prepared
    secret = secret_of(uri.group(0))
    step = int(time.time() // 30) + (1 if time.time() % 30 > 20 else 0)  # the next step is accepted too
    alice, reply = sasl2(server, "alice", PASSWORDS["alice"])
    assert b"<task>TOTP</task>" in reply, reply
    code = totp_code(secret, step * 30)
    alice.send(f"<next xmlns='{SASL2}' task='TOTP'><totp xmlns='{MFA}'>{code}</totp></next>")
    assert b"<success" in alice.read_until(rb"</stream:features>|</failure>")
    state = db.durable_state()
    assert [row[-1] for row in state["accounts_totpdevice"]] == [step], state["accounts_totpdevice"]

    # mid-stream: bob is half-way through a stanza when the process dies
    bob.send("<message to='carol@localhost' type='chat'><body>half a mess")
    return BeforeTheKill(
        env=env,
        db=db,
        state=state,
        totp_secret=secret,
        totp_step=step,
        fast_token=token.group(1).decode(),
        fast_ua=ua,
        fast_count=1,
        app_secret=app.group(1),
        bob_sent=sent,
        bob_h=int(h.group(1)),
        hibernating_previd=previd.group(1).decode(),
        live=[str(jid) for jid, ended, _ in db.sessions() if ended is None],
        clients=[bob, frank, dave, erin, alice],
    )


@dataclass
class AfterTheKill:
    server: Server
    before: BeforeTheKill
    state: dict[str, list[tuple[object, ...]]]
    stack: contextlib.ExitStack
    log_before_stop: str = ""

    def stop_and_start(self) -> None:
        """A normal stop (SIGTERM, as systemd and Ctrl-C do), then a start on the same data."""
        self.server.proc.terminate()
        assert self.server.proc.wait(timeout=15) is not None
        self.log_before_stop = self.server.log_text()
        self.server = self.stack.enter_context(running_server(self.server.data_dir, {}, **self.before.env))


#: SQLite is the case that matters: the killed process itself was writing the database file. On
#: PostgreSQL the database outlives the process anyway; add "postgresql" to run the same cases there
#: (they pass the same way; about 25 s more on a busy 2-core machine).
KILLED_ON = ["sqlite"]


@pytest.fixture(scope="module", params=KILLED_ON)
def restarted(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AfterTheKill]:
    """A server killed with SIGKILL in the middle of it all, and started again on the same data."""
    with contextlib.ExitStack() as stack:
        env: dict[str, str] = {}
        data_dir = tmp_path_factory.mktemp(f"kill-{request.param}")
        if request.param == "postgresql":
            env["DATABASE_URL"] = stack.enter_context(fresh_postgres_database("xmppauth_faults"))
        data_dir.mkdir(parents=True, exist_ok=True)
        out = manage(data_dir, env, "shell", "-c", SETUP.format(accounts=KILL_ACCOUNTS))
        prepared = json.loads(out.strip().splitlines()[-1])
        db = Database(data_dir, env.get("DATABASE_URL", ""))
        with running_server(data_dir, {}, **env) as first:
            before = _before_the_kill(first, env, db, prepared)
            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait(timeout=10)
        for client in before.clients:
            client.close()
        server = stack.enter_context(running_server(data_dir, {}, **env))
        yield AfterTheKill(server, before, db.durable_state(), stack)


def test_after_kill_9_a_used_totp_code_is_still_refused_and_the_next_one_accepted(
    restarted: AfterTheKill,
) -> None:
    before, server = restarted.before, restarted.server
    if int(time.time() // 30) > before.totp_step + 1:
        pytest.fail("too slow: the code used before the kill is out of the tolerance window by now")
    for step, outcome in ((before.totp_step, b"already used"), (before.totp_step + 1, b"<success")):
        early = (step - 1) * 30 - time.time()  # a code is accepted from the step before its own on
        if early > 0:
            time.sleep(early + 0.2)
        client, reply = sasl2(server, "alice", PASSWORDS["alice"])
        assert b"<task>TOTP</task>" in reply, reply
        code = totp_code(before.totp_secret, step * 30)
        client.send(f"<next xmlns='{SASL2}' task='TOTP'><totp xmlns='{MFA}'>{code}</totp></next>")
        answer = client.read_until(rb"</failure>|</success>")
        assert outcome in answer, answer
        client.close()


def test_after_kill_9_the_durable_state_is_as_it_was(restarted: AfterTheKill) -> None:
    assert restarted.state == restarted.before.state
    # the sessions of the killed process are over in the records, and say why
    assert len(restarted.before.live) == 5, restarted.before.live  # bob, frank, dave, erin, alice
    ended = {jid: reason for jid, _, reason in restarted.before.db.sessions()}
    assert [ended[jid] for jid in restarted.before.live] == ["the server stopped"] * 5, ended


def test_after_kill_9_the_fast_token_works_and_a_used_count_is_still_refused(restarted: AfterTheKill) -> None:
    before, server = restarted.before, restarted.server
    replay, reply = fast_auth(server, "bob", before.fast_token, before.fast_ua, count=before.fast_count)
    assert b"<failure" in reply, reply
    assert b"already used" in reply, reply
    replay.close()
    again, reply = fast_auth(server, "bob", before.fast_token, before.fast_ua, count=before.fast_count + 1)
    assert b"<success" in reply, reply
    again.close()


def test_after_kill_9_the_roster_and_the_app_password_are_there(restarted: AfterTheKill) -> None:
    server = restarted.server
    bob, reply = sasl2(server, "bob", PASSWORDS["bob"])
    assert b"<success" in reply, reply
    bob.send(f"<iq type='get' id='roster'><query xmlns='{ROSTER}'/></iq>")
    roster = bob.read_until(rf"<iq(?=[^>]*id={Q}roster{Q})[^>]*?(/>|>.*?</iq>)").replace(b'"', b"'")
    for contact, name in (("alice@localhost", "Alice"), ("carol@localhost", "Carol")):
        item = rf"<item(?=[^>]*jid='{contact}')(?=[^>]*name='{name}')[^>]*><group>Friends</group>"
        assert re.search(item.encode(), roster), roster
    bob.close()
    bot, reply = sasl2(server, "bob", restarted.before.app_secret, tag="bot")
    assert b"<success" in reply, reply
    bot.close()


def test_after_kill_9_a_stored_message_is_delivered_at_the_next_login(restarted: AfterTheKill) -> None:
    carol, reply = sasl2(restarted.server, "carol", PASSWORDS["carol"])
    assert b"<success" in reply, reply
    carol.send("<presence/>")
    stored = carol.read_until(rb"for carol, stored</body>.*?</message>")
    assert b"urn:xmpp:delay" in stored, stored
    assert b"half a mess" not in stored + carol.quiet(0.3)  # never accepted: half a stanza
    carol.close()


def test_after_kill_9_the_hibernated_session_cannot_be_resumed_and_says_so(restarted: AfterTheKill) -> None:
    client = RawClient(restarted.server.c2s)
    client.starttls()
    assert b"<success" in client.scram("SCRAM-SHA-256", "dave", PASSWORDS["dave"])
    client.open_stream()
    client.send(f"<resume xmlns='{SM}' previd='{restarted.before.hibernating_previd}' h='0'/>")
    failed = client.read_until(rb"<failed[^>]*?(/>|>.*?</failed>)")
    assert b"item-not-found" in failed, failed
    client.close()


def test_after_kill_9_the_server_had_acknowledged_everything_its_sender_sent(restarted: AfterTheKill) -> None:
    """The premise of the next three: what follows was accepted by the server (XEP-0198 §4)."""
    assert restarted.before.bob_h == restarted.before.bob_sent


LOST_IN_MEMORY = (
    "known limit: a message delivered to an online client that has not acknowledged it lives only in "
    "the process's memory (consumer.py: StreamManagement.unacked) until the client does; keeping it "
    "costs a write per routed message, which the message archive of issue 14 makes anyway (the client "
    "then fetches it from the archive, XEP-0313)"
)


def next_login_gets(server: Server, user: str) -> list[str]:
    client, reply = sasl2(server, user, KILL_ACCOUNTS[user], tag="back")
    assert b"<success" in reply, reply
    client.send("<presence/>")  # initial presence: the stored messages come (XEP-0160)
    got = bodies(ping(client, "settled", 5))
    client.close()
    return got


def test_after_kill_9_a_message_for_a_hibernating_session_is_not_lost(restarted: AfterTheKill) -> None:
    assert next_login_gets(restarted.server, "dave") == ["for dave, hibernating"]


@pytest.mark.xfail(strict=True, reason=LOST_IN_MEMORY)
def test_after_kill_9_what_an_online_client_had_not_acknowledged_is_not_lost(restarted: AfterTheKill) -> None:
    assert next_login_gets(restarted.server, "erin") == ["for erin 2"]  # "for erin 1" was acknowledged


def test_after_kill_9_what_an_online_client_had_not_acknowledged_is_in_its_archive(
    restarted: AfterTheKill,
) -> None:
    """Not pushed again (the strict xfail above), but not lost either: the message archive kept it when it
    was routed, and a client fetches it there (XEP-0313; Bind2 clients are expected to, XEP-0386 §2.3)."""
    client, reply = sasl2(restarted.server, "erin", KILL_ACCOUNTS["erin"])
    assert b"<success" in reply, reply
    form = "<field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>"
    client.send(
        "<iq type='set' id='mam'><query xmlns='urn:xmpp:mam:2' queryid='q'>"
        f"<x xmlns='jabber:x:data' type='submit'>{form}</x></query></iq>"
    )
    got = client.read_until(rb"<iq[^>]*id=.mam.[^>]*?(/>|>.*?</iq>)")
    assert re.findall(rb"<body>(for erin [^<]*)</body>", got) == [b"for erin 1", b"for erin 2"], got
    client.close()


def test_after_kill_9_a_stored_message_sent_but_not_acknowledged_is_not_lost(restarted: AfterTheKill) -> None:
    assert next_login_gets(restarted.server, "frank") == ["for frank, stored"]


def test_a_normal_stop_keeps_what_the_server_accepted(restarted: AfterTheKill) -> None:
    """A stop (SIGTERM) ends every session with system-shutdown and stores what the server had accepted:
    what a live client had not acknowledged and what waited for a hibernating one (xmppauth/shutdown.py;
    before, both were lost). (The server of the cases above, stopped and started again: this comes last.)"""
    server = restarted.server
    bob, reply = sasl2(server, "bob", PASSWORDS["bob"], inline=f"<enable xmlns='{SM}'/>")
    assert b"<enabled" in reply, reply
    gina, _ = _sm_login(server, "gina", "online")
    hank, reply = _sm_login(server, "hank", "asleep", resume=True)
    hank.read_until(rb"<presence[^>]*?(/>|>.*?</presence>)")
    hank.sock.close()  # hibernates
    for to, body in (("gina@localhost", "for gina"), (jid_of(reply), "for hank")):
        bob.send(f"<message to='{to}' type='chat'><body>{body}</body></message>")
    gina.read_until(rb"for gina</body>")  # delivered, never acknowledged
    bob.send(f"<r xmlns='{SM}'/>")
    assert re.search(rf"h={Q}2{Q}".encode(), bob.read_until(rf"<a xmlns={Q}{SM}{Q}[^>]*/>"))  # accepted
    restarted.stop_and_start()
    for client in (bob, gina):
        told = client.read_to_close()
        assert parse_stream_error(told) == "system-shutdown", told
        assert b"the server is shutting down" in told
        client.close()
    assert "stopping: ending 3 stream(s) and session(s)" in restarted.log_before_stop
    got = next_login_gets(restarted.server, "gina"), next_login_gets(restarted.server, "hank")
    assert got == (["for gina"], ["for hank"])


# ---------------------------------------------------------------------- private services
def _pg_bin(name: str) -> str | None:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)
    return str(found[0]) if found else shutil.which(name)


class PrivatePostgres:
    """A PostgreSQL cluster of our own in a temporary directory, on a free port, that a test may stop
    and start (never the machine's shared one on 5432). Run as ``postgres`` when we are root."""

    def __init__(self) -> None:
        initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        if initdb is None or pg_ctl is None:
            pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
        self.pg_ctl = pg_ctl
        self.root = Path(tempfile.mkdtemp(prefix="xmppauth-pg-"))  # /tmp: the postgres user can reach it
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                shutil.chown(self.root, "postgres")
            except (LookupError, OSError) as exc:
                pytest.skip(f"running as root and cannot hand a directory to the postgres user: {exc}")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.data = self.root / "data"
        self.port = free_port()
        done = self._run(
            initdb, "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"
        )
        if done.returncode != 0:
            shutil.rmtree(self.root, ignore_errors=True)
            pytest.skip(f"initdb failed: {done.stderr.strip()[-300:]}")
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/xmppauth"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.as_user, *args], capture_output=True, text=True, check=False, timeout=60)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = self.root / "postgres.log"
        done = self._run(self.pg_ctl, "-D", str(self.data), "-o", options, "-l", str(log), "-w", "start")
        assert done.returncode == 0, done.stderr + done.stdout

    def stop(self) -> None:
        done = self._run(self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop")
        assert done.returncode == 0, done.stderr + done.stdout

    def create_database(self) -> None:
        import psycopg

        with psycopg.connect(
            f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True
        ) as conn:
            conn.execute("CREATE DATABASE xmppauth")

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self._run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


class PrivateRedis:
    """A redis-server of our own on a free port, without persistence, that a test may kill and restart
    (never the machine's shared one on 6379)."""

    def __init__(self, workdir: Path) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            pytest.skip("no redis-server on this machine")
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.binary is not None
        with (self.workdir / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--daemonize", "no", "--dir", str(self.workdir)],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            assert self.proc.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc = None

    def group_members(self, group: str) -> int:
        """How many channels are in a channels_redis group (its sorted set ``asgi:group:<group>``)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            key = f"asgi:group:{group}"
            s.sendall(f"*2\r\n$5\r\nZCARD\r\n${len(key)}\r\n{key}\r\n".encode())
            reply = s.recv(64)
        assert reply.startswith(b":"), reply
        return int(reply[1:].split(b"\r\n")[0])

    def destroy(self) -> None:
        if self.proc is not None:
            self.kill()


@dataclass
class Attempt:
    """One login attempt: how it ended ("success", "failure", "stream-error", "dropped", "hang")."""

    outcome: str
    seconds: float
    data: bytes

    @property
    def text(self) -> str:
        found = re.search(rb"<text[^>]*>([^<]+)</text>", self.data)
        return found.group(1).decode() if found else ""


def try_login(server: Server, user: str, secret: str, timeout: float = 10.0) -> tuple[Attempt, RawClient]:
    started = time.monotonic()
    client = RawClient(server.c2s_tls, direct_tls=True)
    client.open_stream()
    client.authenticate_plain(user, secret, software="fault tests", inline="<bind xmlns='urn:xmpp:bind:0'/>")
    try:
        data = client.read_until(rb"</stream:features>|</failure>|</stream:stream>", timeout=timeout)
    except AssertionError:
        data = client.buffer
        outcome = "stream-error" if parse_stream_error(data) else "dropped" if client.closed else "hang"
    else:
        outcome = (
            "success" if b"<success" in data else "failure" if b"<failure" in data
            else "stream-error" if parse_stream_error(data) else "dropped"
        )  # fmt: skip
    return Attempt(outcome, time.monotonic() - started, data), client


# ---------------------------------------------------------------------- 2. PostgreSQL restarts under load


@pytest.fixture(scope="module")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrivatePostgres, Server]]:
    pg = PrivatePostgres()
    try:
        pg.start()
        pg.create_database()
        env = {"DATABASE_URL": pg.url}
        data_dir = tmp_path_factory.mktemp("pg-restart")
        manage(data_dir, env, "shell", "-c", ACCOUNTS_ONLY.format(accounts=PASSWORDS))
        # The revocation poll is slowed to a minute: it shares the database connection, and would use
        # a dropped one before a login does at random (test_after_a_quiet_postgresql_restart…).
        with running_server(data_dir, {}, XMPP_REVOCATION_POLL_MS="60000", **env) as server:
            yield pg, server
    finally:
        pg.destroy()


class Chatter(threading.Thread):
    """The load: carol logs in again and again, and each time sends bob a message."""

    def __init__(self, server: Server) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.attempts: list[tuple[float, Attempt]] = []
        self.done = threading.Event()

    def run(self) -> None:
        number = 0
        while not self.done.is_set():
            number += 1
            attempt, client = try_login(self.server, "carol", PASSWORDS["carol"])
            if attempt.outcome == "success":
                client.send(f"<message to='bob@localhost' type='chat'><body>load {number}</body></message>")
                client.send("</stream:stream>")
            client.close()
            self.attempts.append((time.monotonic(), attempt))
            time.sleep(0.05)

    def stop(self) -> list[tuple[float, Attempt]]:
        self.done.set()
        self.join(timeout=15)
        assert not self.is_alive(), "a login hung"
        return self.attempts


def assert_clean(attempt: Attempt) -> None:
    """A login that could not be served: an answer with a text, at once; not silence, not a hang."""
    assert attempt.outcome in ("success", "failure", "stream-error"), attempt
    assert attempt.outcome == "success" or attempt.text, attempt
    assert attempt.seconds < 5, attempt


def test_a_postgresql_outage_under_load_gives_clean_errors_and_the_server_recovers_by_itself(
    pg_server: tuple[PrivatePostgres, Server],
) -> None:
    pg, server = pg_server
    alice, reply = sasl2(server, "alice", PASSWORDS["alice"], tag="chat")
    assert b"<success" in reply, reply
    bob, reply = sasl2(server, "bob", PASSWORDS["bob"], tag="chat")
    assert b"<success" in reply, reply
    bob_jid = jid_of(reply)
    dave, reply = sasl2(server, "dave", PASSWORDS["dave"], tag="roster")
    assert b"<success" in reply, reply
    for client in (alice, bob):
        client.send("<presence/>")
        ping(client, "ready", 5)
    chatter = Chatter(server)
    chatter.start()
    time.sleep(0.5)

    pg.stop()
    down = time.monotonic()
    # a login gets an answer at once, with a text
    attempt, client = try_login(server, "dave", PASSWORDS["dave"])
    client.close()
    assert attempt.outcome in ("failure", "stream-error"), attempt
    assert_clean(attempt)
    # the event loop is not wedged: sessions logged in before are served at once (pings, routing)
    for number in range(3):
        started = time.monotonic()
        ping(alice, f"down-{number}", 1.0)
        assert time.monotonic() - started < 1.0
        alice.send(f"<message to='{bob_jid}' type='chat'><body>while down {number}</body></message>")
        bob.read_until(f"while down {number}</body>", timeout=1.0)
        time.sleep(0.3)
    # a request that needs the database: an error for it, or a stream error with a text; never silence
    dave.send(f"<iq type='get' id='roster-down'><query xmlns='{ROSTER}'/></iq>")
    answer = dave.read_until(
        rf"<iq(?=[^>]*id={Q}roster-down{Q})[^>]*?(/>|>.*?</iq>)|</stream:stream>", timeout=5
    )
    assert re.search(rf"type={Q}error{Q}".encode(), answer) or parse_stream_error(answer), answer
    assert b"<text" in answer, answer
    dave.close()

    restarting = time.monotonic()  # a login that reaches PostgreSQL while pg_ctl still waits may succeed
    pg.start()
    back = time.monotonic()
    first, client = try_login(server, "dave", PASSWORDS["dave"])  # no restart of the server needed
    client.close()
    assert first.outcome == "success", first
    time.sleep(0.5)
    attempts = chatter.stop()
    for _, attempt in attempts:
        assert_clean(attempt)
    during = [attempt for when, attempt in attempts if down < when - attempt.seconds and when < restarting]
    after = [attempt for when, attempt in attempts if when - attempt.seconds > back]
    assert during, "the load went on during the outage"
    assert all(attempt.outcome != "success" for attempt in during), during
    assert after, "the load went on after the outage"
    assert all(attempt.outcome == "success" for attempt in after), after
    ping(alice, "after", 1.0)
    alice.send(f"<message to='{bob_jid}' type='chat'><body>after</body></message>")
    bob.read_until("after</body>", timeout=1.0)
    alice.close()
    bob.close()


def test_after_a_quiet_postgresql_restart_the_first_login_works(
    pg_server: tuple[PrivatePostgres, Server],
) -> None:
    """PostgreSQL restarts while the server's connection sits idle: the next login must not fail on the
    dropped connection (fixed in xmppauth/offloop.py: the first statement is run again on a new one)."""
    pg, server = pg_server
    for _ in range(2):
        attempt, client = try_login(server, "alice", PASSWORDS["alice"])  # the connection is open and used
        client.close()
        assert attempt.outcome == "success", attempt
        pg.stop()
        pg.start()
        attempt, client = try_login(server, "alice", PASSWORDS["alice"])
        client.close()
        assert attempt.outcome == "success", attempt
    assert "the database connection was lost while idle" in server.log_text()


def test_a_session_that_only_chats_lives_through_a_postgresql_outage(
    pg_server: tuple[PrivatePostgres, Server],
) -> None:
    """A resumed session records its activity with its first stanza, in the background: during an
    outage that record fails, and the session must not end for it (fixed in xmppauth/services.py)."""
    pg, server = pg_server
    bob, reply = sasl2(server, "bob", PASSWORDS["bob"], tag="listener")
    assert b"<success" in reply, reply
    bob.send("<presence/>")
    ping(bob, "available", 5)
    ua = str(uuid.uuid4())
    phone, reply = sasl2(
        server, "carol", PASSWORDS["carol"], ua=ua, inline=f"<enable xmlns='{SM}' resume='true'/>"
    )
    previd = re.search(rb"<enabled[^>]*id=['\"]([^'\"]+)", reply)
    assert previd, reply
    phone.sock.close()  # the network goes away; the session hibernates
    time.sleep(0.3)
    back = RawClient(server.c2s_tls, direct_tls=True)
    back.open_stream()
    resume = f"<resume xmlns='{SM}' previd='{previd.group(1).decode()}' h='0'/>"
    back.authenticate_plain("carol", PASSWORDS["carol"], ua=ua, software="fault tests", inline=resume)
    reply = back.read_until(rb"<resumed[^>]*/>|</failure>")
    assert b"<resumed" in reply, reply
    pg.stop()
    try:
        back.send("<message to='bob@localhost' type='chat'><body>still here</body></message>")
        bob.read_until("still here</body>", timeout=2)
        back.quiet(1.0)  # the stream lives on: a ping is answered, no stream error comes
    finally:
        pg.start()
    back.close()
    bob.close()


# ---------------------------------------------------------------------- 3. Redis goes away
CAM = "urn:xmpp:cam:0"


@dataclass
class RedisPair:
    redis: PrivateRedis
    first: Server  # where the revocations are made (XEP-0494)
    second: Server  # where the revoked streams are


@pytest.fixture(scope="module")
def redis_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisPair]:
    redis = PrivateRedis(tmp_path_factory.mktemp("redis"))
    redis.start()
    try:
        with fresh_postgres_database("xmppauth_faults") as database:
            env = {"DATABASE_URL": database, "CHANNEL_LAYER_URL": redis.url}
            one, two = tmp_path_factory.mktemp("redis-a"), tmp_path_factory.mktemp("redis-b")
            manage(one, env, "shell", "-c", ACCOUNTS_ONLY.format(accounts={"alice": PASSWORDS["alice"]}))
            with (
                running_server(one, {}, XMPP_NODE="a", **env) as first,
                running_server(two, {}, XMPP_NODE="b", **env) as second,
            ):
                yield RedisPair(redis, first, second)
    finally:
        redis.destroy()


def revoke_client(manager: RawClient, software: str) -> float:
    """``manager`` revokes (XEP-0494) its account's client named ``software``; when the answer came."""
    manager.send(f"<iq type='get' id='list-{software}'><list xmlns='{CAM}'/></iq>")
    listing = manager.read_until(rf"<iq(?=[^>]*id={Q}list-{software}{Q})[^>]*?(/>|>.*?</iq>)").decode()
    found = re.search(
        rf"<client [^>]*id=.(c\d+).[^>]*>(?:(?!</client>).)*{re.escape(software)}", listing, re.S
    )
    assert found, listing
    manager.send(f"<iq type='set' id='revoke-{software}'><revoke xmlns='{CAM}' id='{found.group(1)}'/></iq>")
    manager.read_until(rf"<iq(?=[^>]*id={Q}revoke-{software}{Q})[^>]*?(/>|>.*?</iq>)", timeout=5)
    return time.monotonic()


def ended_after(client: RawClient, since: float, timeout: float) -> float:
    """The stream ends with the revocation's stream error; how long after ``since``."""
    data = client.read_to_close(timeout=timeout)
    assert parse_stream_error(data) == "policy-violation", data
    assert b"revoked" in data, data
    return time.monotonic() - since


def test_without_redis_revocations_reach_the_other_process_by_the_poll_and_through_redis_once_it_is_back(
    redis_pair: RedisPair,
) -> None:
    pair = redis_pair
    laptop, reply = sasl2(pair.first, "alice", PASSWORDS["alice"], tag="laptop")
    assert b"<success" in reply, reply

    def phone(name: str) -> RawClient:
        client = RawClient(pair.second.c2s_tls, direct_tls=True)
        client.open_stream()
        client.authenticate_plain(
            "alice", PASSWORDS["alice"], software=name, inline="<bind xmlns='urn:xmpp:bind:0'/>"
        )
        assert b"<success" in client.read_until(rb"</stream:features>|</failure>")
        return client

    phones = {name: phone(name) for name in ("phone-1", "phone-2", "phone-3")}
    # with Redis: at once
    assert ended_after(phones["phone-1"], revoke_client(laptop, "phone-1"), 5) < 1.0

    pair.redis.kill()
    time.sleep(0.5)
    # without Redis: the other process reads the outbox table (every FULL_POLL seconds when the
    # revocation was made elsewhere); the process that made it answers at once all the same
    started = time.monotonic()
    answered = revoke_client(laptop, "phone-2")
    assert answered - started < 2.0, "the revocation waited for Redis"
    took = ended_after(phones["phone-2"], answered, FULL_POLL + 3)
    assert took < FULL_POLL + 1.5, took

    pair.redis.start()  # empty: the control group's members must join again by themselves
    rejoined = time.monotonic()
    while pair.redis.group_members("xmppauth.control") < 2:
        assert time.monotonic() - rejoined < 10, "the serving processes did not join the control group again"
        time.sleep(0.1)
    assert ended_after(phones["phone-3"], revoke_client(laptop, "phone-3"), 5) < 1.0
    laptop.close()
    # the outage is in each log once, with its traceback, and its end; not a traceback a second
    for server in (pair.first, pair.second):
        text = server.log_text()
        assert text.count("control channel failed") == 1, text[-3000:]
        assert "control channel works again after" in text, text[-3000:]


def test_logins_do_not_need_redis(redis_pair: RedisPair) -> None:
    """With Redis away the guessing limits count in each process (accounts/guessing.py) and logins go on
    (a strict xfail until that fallback: every login ended with internal-server-error)."""
    pair = redis_pair
    pair.redis.kill()
    try:
        attempt, client = try_login(pair.second, "alice", PASSWORDS["alice"])
        client.close()
    finally:
        pair.redis.start()
    assert_clean(attempt)
    assert attempt.outcome == "success", attempt
