"""Password guessing over real sockets, with the default limits (issue 12, item 1; accounts/guessing.py).

Before the limits, 60 wrong SASL2 PLAIN passwords for one account from one address took 2.2 s at four
connections at a time, and the right password from the same address was accepted right after. Now:
the account's first 5 wrong guesses are checked, then each must wait 1, 2, 4 … 20 s; attempts that
come early are refused unchecked with ``temporary-auth-failure`` and a text saying how long to wait;
the owner still gets in from a client that logged in before, with a FAST token or an app password;
an unknown account answers exactly like a known one; the address's own limit (20 free) holds
every name tried from it; the counts are the same whichever mechanism and transport the guesses use,
and only the checked attempts reach the security log.

The test servers of other modules raise the limits (tests/integration/server.py); this one runs
with the defaults. Clients come from several loopback addresses (127.0.0.x) as from several machines.
"""

from __future__ import annotations

import base64
import re
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import websockets

from tests.integration.rawclient import RawClient
from tests.integration.server import (
    Server,
    fresh_postgres_database,
    migrate,
    redis_url,
    running_server,
    server_env,
)
from tests.integration.test_grants import app_password, fast_login, manage
from tests.integration.test_mfa import BIND2, FAST, MFA, SASL2, enrolled, fresh_code

pytestmark = pytest.mark.integration

PASSWORD = "correct-horse"
DEFAULTS = {"XMPP_GUESS_FREE_PER_ACCOUNT": "5", "XMPP_GUESS_FREE_PER_ADDRESS": "20"}
ACCOUNT_TEXT = "too many failed attempts for this account"
ADDRESS_TEXT = "too many failed attempts from your address"
REDIS_URL = redis_url(0)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("guessing"), {}, **DEFAULTS) as srv:
        assert server_env(srv.data_dir, **DEFAULTS)["XMPP_GUESS_FREE_PER_ACCOUNT"] == "5"
        yield srv


_sources = iter(range(2, 250))


def new_address() -> str:
    """A loopback address no other test of this module uses."""
    return f"127.0.0.{next(_sources)}"


def account(server: Server) -> str:
    name = f"g{uuid.uuid4().hex[:8]}"
    manage(server, "adduser", name, PASSWORD)
    return name


def attempt(
    server: Server, name: str, password: str, *, source: str, ua: str | None = None, inline: str = ""
) -> bytes:
    """One SASL2 PLAIN login over direct TLS; the server's answer (success or failure)."""
    client = RawClient(server.c2s_tls, direct_tls=True, source=source)
    try:
        client.open_stream()
        client.authenticate_plain(name, password, ua=ua, software="guessing tests", inline=inline)
        return client.read_until(rb"</success>|</failure>|</continue>")
    finally:
        client.close()


def outcome(reply: bytes) -> str:
    if b"<success" in reply:
        return "success"
    if b"<not-authorized" in reply:
        return "checked"
    if b"<temporary-auth-failure" in reply:
        return "refused"
    raise AssertionError(reply)


def login_failures_logged(server: Server, name: str) -> int:
    code = (
        "from sessions_acl.models import AuthEvent\n"
        f"print(AuthEvent.objects.filter(user__username={name!r}, kind=AuthEvent.Kind.LOGIN_FAILED).count())"
    )
    return int(manage(server, "shell", "-c", code).split()[-1])


def test_a_burst_of_guesses_gets_a_handful_checked_and_the_owner_still_gets_in(server: Server) -> None:
    name = account(server)
    home = new_address()
    known = str(uuid.uuid4())
    first = attempt(
        server, name, PASSWORD, source=home, ua=known,
        inline=BIND2 + f"<request-token xmlns='{FAST}' mechanism='HT-SHA-256-NONE'/>",
    )  # fmt: skip
    token = re.search(rb"<token xmlns='urn:xmpp:fast:0' token='([^']+)'", first)
    assert token, first
    _, app_secret = app_password(server, name, "bot", "messages.send")

    attacker = new_address()
    with ThreadPoolExecutor(4) as pool:  # four connections at a time, as the issue measured
        replies = list(pool.map(lambda i: attempt(server, name, f"guess{i}", source=attacker), range(60)))
    outcomes = [outcome(reply) for reply in replies]
    assert outcomes.count("checked") <= 8, outcomes  # 5 free, then one per wait of 1, 2 s …
    assert outcomes.count("refused") >= 52, outcomes
    refused = next(reply for reply in replies if outcome(reply) == "refused")
    assert ACCOUNT_TEXT.encode() in refused, refused
    assert re.search(rb"try again in \d+ s", refused), refused

    # right after a guess was checked, the right password from a new client is held too (and is
    # told what still works) ...
    _guess_until_checked(server, name)
    held = attempt(server, name, PASSWORD, source=new_address())
    assert outcome(held) == "refused", held
    assert b"app passwords, FAST tokens and clients that logged in here before still work" in held
    # ... but not the owner: the client that logged in before, its FAST token, an app password
    assert outcome(attempt(server, name, PASSWORD, source=new_address(), ua=known)) == "success"
    assert b"<success" in fast_login(server, name, token.group(1).decode(), known)
    assert outcome(attempt(server, name, app_secret, source=new_address())) == "success"
    # only the checked guesses wrote to the security log
    assert login_failures_logged(server, name) == outcomes.count("checked") + 1  # and the one just before


def _guess_until_checked(server: Server, name: str) -> None:
    """Guess (from new addresses) until a guess is checked, waiting as each refusal says."""
    for _ in range(10):
        reply = attempt(server, name, "one more guess", source=new_address())
        if outcome(reply) == "checked":
            return
        wait = re.search(rb"try again in (\d+) s", reply)
        assert wait, reply
        time.sleep(int(wait.group(1)))
    raise AssertionError("no guess was checked")


def test_an_unknown_account_is_limited_exactly_like_a_known_one(server: Server) -> None:
    known, unknown = account(server), f"nobody{uuid.uuid4().hex[:8]}"
    seen = {}
    for name in (known, unknown):
        source = new_address()
        seen[name] = [
            re.sub(rb"\d+ s", b"N s", attempt(server, name, "wrong", source=source)) for _ in range(8)
        ]
    assert seen[known] == seen[unknown]
    assert [outcome(reply) for reply in seen[known]] == ["checked"] * 6 + ["refused"] * 2


def test_the_address_limit_holds_every_name_tried_from_it(server: Server) -> None:
    names = [account(server) for _ in range(3)]
    crowd = new_address()
    outcomes = [outcome(attempt(server, f"spray{i}", "password1", source=crowd)) for i in range(21)]
    assert outcomes == ["checked"] * 21  # 20 free, then the first of the waits
    refused = attempt(server, names[0], PASSWORD, source=crowd)  # even a right password, from there
    assert outcome(refused) == "refused", refused
    assert ADDRESS_TEXT.encode() in refused
    assert outcome(attempt(server, names[1], PASSWORD, source=new_address())) == "success"


def test_scram_plain_and_websocket_guesses_count_together(server: Server) -> None:
    name = account(server)
    for i in range(3):
        client = RawClient(server.c2s, source=new_address())
        client.starttls()
        assert outcome(client.scram("SCRAM-SHA-256", name, f"scram{i}")) == "checked"
        client.close()
    for i in range(3):
        assert outcome(attempt(server, name, f"plain{i}", source=new_address())) == "checked"
    # the 7th attempt, over WebSocket, finds the account waiting
    reply = _websocket_plain(server, name, PASSWORD)
    assert outcome(reply) == "refused", reply
    assert ACCOUNT_TEXT.encode() in reply


def test_wrong_fast_tokens_count_against_the_address(server: Server) -> None:
    name = account(server)
    source = new_address()
    ua = str(uuid.uuid4())
    replies = [_fast_guess(server, name, ua, source) for _ in range(22)]
    outcomes = [b"temporary-auth-failure" in r for r in replies]
    assert outcomes.count(False) == 21, replies[-1]  # 20 free and the first of the waits were checked
    assert ADDRESS_TEXT.encode() in replies[-1]


def _fast_guess(server: Server, name: str, ua: str, source: str) -> bytes:
    client = RawClient(server.c2s_tls, direct_tls=True, source=source)
    try:
        client.open_stream()
        initial = base64.b64encode(name.encode() + b"\0" + b"x" * 32).decode()
        client.send(
            f"<authenticate xmlns='{SASL2}' mechanism='HT-SHA-256-NONE'><initial-response>{initial}"
            f"</initial-response><user-agent id='{ua}'/><fast xmlns='{FAST}' count='1'/></authenticate>"
        )
        return client.read_until(rb"</success>|</failure>")
    finally:
        client.close()


def _websocket_plain(server: Server, name: str, password: str) -> bytes:
    import asyncio

    async def run() -> bytes:
        url = f"ws://127.0.0.1:{server.http}/xmpp-websocket"
        async with websockets.connect(url, subprotocols=["xmpp"]) as ws:  # type: ignore[list-item]
            await ws.send("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>")
            while b"</stream:features>" not in (frame := _bytes(await ws.recv())):
                pass
            token = base64.b64encode(f"\0{name}\0{password}".encode()).decode()
            await ws.send(
                f"<authenticate xmlns='{SASL2}' mechanism='PLAIN'><initial-response>{token}</initial-response>"
                f"<user-agent id='{uuid.uuid4()}'/></authenticate>"
            )
            while not re.search(rb"</failure>|</success>", frame := _bytes(await ws.recv())):
                pass
            return frame

    return asyncio.run(run())


def _bytes(frame: str | bytes) -> bytes:
    return frame.encode() if isinstance(frame, str) else frame


def test_guesses_on_one_process_hold_the_account_on_another(tmp_path: Path) -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5).ping()
    except redis.RedisError:
        pytest.skip("no Redis at 127.0.0.1:6379 (.ci/run starts one)")
    with fresh_postgres_database() as database:
        env = {"DATABASE_URL": database, "CHANNEL_LAYER_URL": REDIS_URL, **DEFAULTS}
        one, two = tmp_path / "a", tmp_path / "b"
        migrate(one, **env)
        with (
            running_server(one, {}, XMPP_NODE="a", **env) as first,
            running_server(two, {}, XMPP_NODE="b", **env) as second,
        ):
            name = account(first)
            for i in range(6):
                assert outcome(attempt(first, name, f"wrong{i}", source=new_address())) == "checked"
            reply = attempt(second, name, PASSWORD, source=new_address())
            assert outcome(reply) == "refused", reply
            assert ACCOUNT_TEXT.encode() in reply


def test_wrong_second_factor_codes_count_like_wrong_passwords(server: Server) -> None:
    name, secret = enrolled(server)  # the password is "correct-horse", like PASSWORD
    known = str(uuid.uuid4())
    owner = attempt(server, name, PASSWORD, source=new_address(), ua=known)
    assert b"<task>TOTP</task>" in owner, owner
    # (the owner's client passes the factor once, so that it is known to the account)
    code = fresh_code(secret)
    client = RawClient(server.c2s_tls, direct_tls=True, source=new_address())
    client.open_stream()
    client.authenticate_plain(name, PASSWORD, ua=known, software="guessing tests")
    client.read_until(rb"</continue>")
    client.send(f"<next xmlns='{SASL2}' task='TOTP'><totp xmlns='{MFA}'>{code}</totp></next>")
    assert b"<success" in client.read_until(rb"</success>|</failure>")
    client.close()

    # someone with the password, guessing codes from new clients: each code guess counts on the account
    outcomes = []
    for i in range(6):  # 5 free and the first of the waits
        guesser = RawClient(server.c2s_tls, direct_tls=True, source=new_address())
        guesser.open_stream()
        guesser.authenticate_plain(name, PASSWORD, software="guessing tests")
        step = guesser.read_until(rb"</continue>|</failure>")
        if b"<continue" not in step:
            outcomes.append(outcome(step))
            break
        guesser.send(f"<next xmlns='{SASL2}' task='TOTP'><totp xmlns='{MFA}'>{i:06d}</totp></next>")
        outcomes.append(outcome(guesser.read_until(rb"</success>|</failure>")))
        guesser.close()
    assert outcomes == ["checked"] * 6, outcomes
    # the seventh is held at the password step already: the account is waiting, for guessers ...
    held = attempt(server, name, PASSWORD, source=new_address())
    assert outcome(held) == "refused", held
    assert ACCOUNT_TEXT.encode() in held
    # ... not for the owner's client, which still gets to its factor
    assert b"<task>TOTP</task>" in attempt(server, name, PASSWORD, source=new_address(), ua=known)
