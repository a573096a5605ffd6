"""FAST logins racing on real sockets: two server processes share one PostgreSQL database (issue 8).

One client (one account, one user-agent id) logs in with one token many times, four at a time,
alternating between the two processes, as a client with several connections behind a load balancer
would. SASL2 without Bind2, so no login ends another's stream (`conflict`): every login must succeed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from tests.integration.rawclient import RawClient, Session
from tests.integration.server import (
    Server,
    fresh_postgres_database,
    migrate,
    running_server,
)
from tests.integration.test_grants import FAST, SASL2, fast_login

pytestmark = pytest.mark.integration

LOGINS = 40
AT_ONCE = 4
ROUNDS = 10
# The first AT_ONCE logins of a round go out together, the later ones this much after the earlier
# (seconds, one value per round in turn): how far apart two racing logins are decides whether
# one reads the token before the other's change commits and writes after it.
STAGGER = (0.0, 0.0005, 0.001, 0.002)
TOKEN = re.compile(rb"<token xmlns=['\"]urn:xmpp:fast:0['\"][^>]*token=['\"]([^'\"]+)['\"]")


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with fresh_postgres_database("xmppauth_race") as url:
        yield url


@pytest.fixture(scope="module")
def servers(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    """Two `serve` processes on one database: one secret key (it masks the stored tokens), a node
    name each."""
    shared = {"DATABASE_URL": database, "DJANGO_SECRET_KEY": f"race-{uuid.uuid4().hex}"}
    first, second = tmp_path_factory.mktemp("race-a"), tmp_path_factory.mktemp("race-b")
    migrate(first, **shared)
    with (
        running_server(first, {"alice": "wonderland"}, XMPP_NODE="race-a", **shared) as a,
        running_server(Path(second), {}, XMPP_NODE="race-b", **shared) as b,
    ):
        yield a, b


def new_token(server: Server) -> tuple[str, str]:
    """A password login that asks for a token: (the token, the client's user-agent id)."""
    session = Session(
        server, "alice", "wonderland", extra=f"<request-token xmlns='{FAST}' mechanism='HT-SHA-256-NONE'/>"
    )
    assert session.ok, session.reply
    session.close()
    found = TOKEN.search(session.reply)
    assert found, session.reply
    return found.group(1).decode(), session.ua


def ready_fast_login(server: Server, token: str, ua: str) -> Callable[[], bytes]:
    """An HT-SHA-256-NONE login (as ``fast_login``) up to the point of sending ``<authenticate/>``:
    TLS and the stream are open, so that several can be sent at the same moment."""
    client = RawClient(server.c2s_tls, direct_tls=True)
    client.open_stream()
    mac = hmac.new(token.encode(), b"Initiator", hashlib.sha256).digest()
    initial = base64.b64encode(b"alice\0" + mac).decode()
    authenticate = (
        f"<authenticate xmlns='{SASL2}' mechanism='HT-SHA-256-NONE'><initial-response>{initial}</initial-response>"
        f"<user-agent id='{ua}'/><fast xmlns='{FAST}'/></authenticate>"
    )

    def send() -> bytes:
        try:
            client.send(authenticate)
            return client.read_until(rb"</success>|</failure>")
        except AssertionError as error:  # the stream ended without an answer (a stream error)
            return str(error).encode()
        finally:
            client.close()

    return send


def burst(servers: tuple[Server, Server], token: str, ua: str, stagger: float = 0.0) -> list[bytes]:
    """LOGINS FAST logins with ``token``, AT_ONCE at a time, alternating between the processes;
    the first AT_ONCE are sent together, ``stagger`` seconds apart."""
    first = [ready_fast_login(servers[i % 2], token, ua) for i in range(AT_ONCE)]
    start = threading.Barrier(AT_ONCE)

    def login(i: int) -> bytes:
        if i < AT_ONCE:
            start.wait(timeout=10)
            time.sleep(i // 2 * stagger)
            return first[i]()
        try:
            return fast_login(servers[i % 2], "alice", token, ua)
        except AssertionError as error:
            return str(error).encode()

    with ThreadPoolExecutor(max_workers=AT_ONCE) as pool:
        return list(pool.map(login, range(LOGINS)))


def refused(replies: list[bytes]) -> list[str]:
    """The SASL failure condition or stream error of every login that did not succeed."""
    conditions = []
    for reply in replies:
        if b"<success" not in reply:
            found = re.search(rb"<(?:failure|stream:error)[^>]*>\s*<([a-z-]+)", reply)
            conditions.append(found.group(1).decode() if found else reply.decode(errors="replace")[:200])
    return conditions


def test_many_first_uses_of_one_new_token_across_two_processes_all_succeed(
    servers: tuple[Server, Server],
) -> None:
    """XEP-0484: the first use of a new token moves it to the current slot (and retires an older
    one); logins racing with that first use must neither fail nor retire the token itself."""
    for round_ in range(ROUNDS):
        token, ua = new_token(servers[0])
        replies = burst(servers, token, ua, STAGGER[round_ % len(STAGGER)])
        failed = refused(replies)
        assert failed == [], f"round {round_}: {len(failed)} of {LOGINS} FAST logins refused: {failed}"
        assert b"<success" in fast_login(servers[1], "alice", token, ua)


def test_many_logins_with_a_token_due_for_rotation_across_two_processes_all_succeed(
    servers: tuple[Server, Server], database: str
) -> None:
    """A token due for rotation brings a new one: every racing login succeeds, and afterwards both
    the token they used and every token the server handed out log in."""
    token, ua = new_token(servers[0])
    assert b"<success" in fast_login(servers[0], "alice", token, ua)  # now the current token
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("UPDATE sessions_acl_fasttoken SET issued = now() - interval '2 days'")

    replies = burst(servers, token, ua)

    failed = refused(replies)
    assert failed == [], f"{len(failed)} of {LOGINS} FAST logins refused: {failed}"
    handed_out = [found.group(1).decode() for reply in replies if (found := TOKEN.search(reply))]
    assert handed_out, "a login with a token due for rotation brings a new one"
    assert b"<success" in fast_login(servers[1], "alice", token, ua)
    for new in handed_out:
        assert b"<success" in fast_login(servers[0], "alice", new, ua), "a token handed out does not log in"
