"""Second factors inside SASL2 over real sockets (issue 10): XEP-0400 TOTP as a task, the policy
around it (RFC 6120 SASL refused with a text, app passwords and FAST tokens exempt, the FAST token
only after the task), replay and enrolment over XMPP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import shutil
import struct
import time
import uuid
from collections.abc import Iterator
from urllib.parse import parse_qs, urlparse

import pytest

from tests.integration.rawclient import RawClient
from tests.integration.server import Server, running_server
from tests.integration.test_grants import app_password, fast_login, manage

pytestmark = pytest.mark.integration

SASL2 = "urn:xmpp:sasl:2"
MFA = "urn:xmpp:mfa:0"
FAST = "urn:xmpp:fast:0"
BIND2 = "<bind xmlns='urn:xmpp:bind:0'><tag>mfa</tag></bind>"


def totp_code(secret: bytes, moment: float, step_offset: int = 0) -> str:
    """RFC 6238 (SHA-1, 30 s, 6 digits), written here apart from the server's code."""
    counter = int(moment // 30) + step_offset
    digest = hmac.new(secret, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


def secret_of(uri: str) -> bytes:
    query = parse_qs(urlparse(uri).query)
    text = query["secret"][0]
    return base64.b32decode(text + "=" * (-len(text) % 8))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("mfa")) as srv:
        yield srv


def enrolled(server: Server) -> tuple[str, bytes]:
    """A fresh account with a confirmed authenticator app, enrolled by the operator."""
    name = f"mfa{uuid.uuid4().hex[:8]}"
    manage(server, "adduser", name, "correct-horse")
    out = manage(server, "totp", "add", name)
    uri = re.search(r"otpauth://totp/\S+", out)
    assert uri, out
    return name, secret_of(uri.group(0))


def fresh_code(secret: bytes) -> str:
    """A code of a time step no earlier test used: wait for the next step when this one is half gone."""
    now = time.time()
    if now % 30 > 25:
        time.sleep(30 - now % 30 + 0.2)
    return totp_code(secret, time.time())


def password_login(
    server: Server, name: str, *, inline: str = BIND2, ua: str | None = None
) -> tuple[RawClient, bytes]:
    client = RawClient(server.c2s_tls, direct_tls=True)
    features = client.open_stream()
    assert b"<authentication xmlns='urn:xmpp:sasl:2'>" in features
    client.authenticate_plain(name, "correct-horse", ua=ua, software="mfa tests", inline=inline)
    return client, client.read_until(rb"</continue>|</success>|</failure>")


def test_a_password_alone_opens_nothing_the_totp_task_does(server: Server) -> None:
    name, secret = enrolled(server)
    client, reply = password_login(server, name)
    assert b"<continue" in reply, reply
    assert b"<task>TOTP</task>" in reply, reply
    assert b"second factor" in reply  # the <text/>, for a client that cannot do tasks
    assert b"<success" not in reply
    client.send(f"<next xmlns='{SASL2}' task='TOTP'/>")
    challenge = client.read_until(rb"</task-data>|<task-data[^>]*/>")
    assert f"<totp xmlns='{MFA}'/>".encode() in challenge, challenge
    client.send(f"<task-data xmlns='{SASL2}'><totp xmlns='{MFA}'>{fresh_code(secret)}</totp></task-data>")
    success = client.read_until(rb"</success>")
    assert re.search(rb"<authorization-identifier>" + name.encode() + rb"@localhost/mfa~", success), success
    assert b"<bound" in success
    client.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
    client.read_until(rb"id=.p1.")
    sessions = manage(server, "listsessions", "--user", name)
    assert "PLAIN+TOTP" in sessions, sessions  # the session record says which factor the login used
    client.close()


def test_a_wrong_code_fails_the_login_with_a_text(server: Server) -> None:
    name, secret = enrolled(server)
    client, reply = password_login(server, name)
    assert b"<task>TOTP</task>" in reply, reply
    code = fresh_code(secret)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    client.send(f"<next xmlns='{SASL2}' task='TOTP'><totp xmlns='{MFA}'>{wrong}</totp></next>")
    failure = client.read_until(rb"</failure>")
    assert b"<not-authorized" in failure, failure
    assert b"<text" in failure
    assert b"<success" not in failure
    client.close()


def test_a_code_is_accepted_once_per_time_step(server: Server) -> None:
    name, secret = enrolled(server)
    code = fresh_code(secret)
    first, _ = password_login(server, name)
    first.send(f"<next xmlns='{SASL2}' task='TOTP'><totp xmlns='{MFA}'>{code}</totp></next>")
    assert b"<success" in first.read_until(rb"</success>|</failure>")
    again, _ = password_login(server, name)
    again.send(f"<next xmlns='{SASL2}' task='TOTP'><totp xmlns='{MFA}'>{code}</totp></next>")
    replay = again.read_until(rb"</success>|</failure>")
    assert b"<failure" in replay, replay
    assert b"already used" in replay, replay
    first.close()
    again.close()


def test_someone_guessing_codes_with_the_password_does_not_lock_the_owners_client_out(server: Server) -> None:
    """The wait after wrong codes (XMPP_TOTP_THROTTLE_*) holds every new client, and not a client that
    logged in to the account before: before, someone who had the password could keep the owner's own
    client waiting up to XMPP_TOTP_THROTTLE_MAX_SECONDS at every login (docs/security.md)."""
    name, secret = enrolled(server)
    owner_ua = str(uuid.uuid4())
    owner, _ = password_login(server, name, ua=owner_ua)
    owner.send(f"<next xmlns='{SASL2}' task='TOTP'><totp xmlns='{MFA}'>{fresh_code(secret)}</totp></next>")
    assert b"<success" in owner.read_until(rb"</success>|</failure>")
    owner.close()

    code = totp_code(secret, time.time(), 1)  # the next step's (one step of drift is accepted): unused
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for attempt in range(2):  # waits of 1 s, then 2 s
        if attempt:
            time.sleep(1.1)
        thief, _ = password_login(server, name, ua=str(uuid.uuid4()))
        thief.send(f"<next xmlns='{SASL2}' task='TOTP'><totp xmlns='{MFA}'>{wrong}</totp></next>")
        assert b"<not-authorized" in thief.read_until(rb"</failure>")
        thief.close()
    thief, _ = password_login(server, name, ua=str(uuid.uuid4()))
    thief.send(f"<next xmlns='{SASL2}' task='TOTP'><totp xmlns='{MFA}'>{code}</totp></next>")
    held = thief.read_until(rb"</success>|</failure>")
    assert b"too many wrong codes: try again in" in held, held  # even the right code waits
    thief.close()

    owner, _ = password_login(server, name, ua=owner_ua)
    owner.send(f"<next xmlns='{SASL2}' task='TOTP'><totp xmlns='{MFA}'>{code}</totp></next>")
    let_in = owner.read_until(rb"</success>|</failure>")
    assert b"<success" in let_in, let_in
    owner.close()


def test_rfc6120_sasl_is_refused_with_a_text_that_says_what_to_do(server: Server) -> None:
    name, _secret = enrolled(server)
    client = RawClient(server.c2s)
    client.starttls()
    reply = client.scram("SCRAM-SHA-256", name, "correct-horse")
    assert b"<failure" in reply, reply
    assert b"second factor" in reply, reply
    assert b"app password" in reply, reply
    client.close()


def test_an_app_password_is_exempt(server: Server) -> None:
    name, _secret = enrolled(server)
    _, secret = app_password(server, name, "bot", "messages.send")
    client = RawClient(server.c2s_tls, direct_tls=True)
    client.open_stream()
    client.authenticate_plain(name, secret, inline=BIND2)
    reply = client.read_until(rb"</continue>|</success>|</failure>")
    assert b"<success" in reply, reply
    assert b"<continue" not in reply
    client.close()


def test_the_fast_token_comes_after_the_task_and_a_fast_login_asks_for_none(server: Server) -> None:
    name, secret = enrolled(server)
    ua = str(uuid.uuid4())
    request = f"<request-token xmlns='{FAST}' mechanism='HT-SHA-256-NONE'/>"
    client, reply = password_login(server, name, inline=BIND2 + request, ua=ua)
    assert b"<continue" in reply, reply
    assert b"<token" not in reply  # nothing is handed out before the second factor
    client.send(f"<next xmlns='{SASL2}' task='TOTP'><totp xmlns='{MFA}'>{fresh_code(secret)}</totp></next>")
    success = client.read_until(rb"</success>")
    token = re.search(rb"<token xmlns='urn:xmpp:fast:0' token='([^']+)'", success)
    assert token, success
    client.close()
    again = fast_login(server, name, token.group(1).decode(), ua)
    assert b"<success" in again, again
    assert b"<continue" not in again


def test_enrolment_over_xmpp_makes_the_task_mandatory(server: Server) -> None:
    name = f"mfa{uuid.uuid4().hex[:8]}"
    manage(server, "adduser", name, "correct-horse")
    client, reply = password_login(server, name)
    assert b"<success" in reply, reply  # no factor yet: the password is enough
    client.send(f"<iq type='set' id='s1'><setup xmlns='{MFA}'/></iq>")
    answer = client.read_until(rb"id=.s1.[^>]*>.*?</iq>")
    uri = re.search(rb"otpauth://totp/[^<]+", answer)
    assert uri, answer
    secret = secret_of(uri.group(0).decode().replace("&amp;", "&"))
    client.send(f"<iq type='set' id='s2'><setup xmlns='{MFA}'>{fresh_code(secret)}</setup></iq>")
    confirmed = client.read_until(rb"id=.s2.[^>]*/?>")
    assert b"type='result'" in confirmed or b'type="result"' in confirmed, confirmed
    client.close()
    after, reply = password_login(server, name)
    assert b"<task>TOTP</task>" in reply, reply  # from now on the password alone opens nothing
    after.close()


CODE = re.compile(r"\b[2-9a-z]{4}-[2-9a-z]{4}-[2-9a-z]{4}-[2-9a-z]{4}\b")


def test_a_recovery_code_opens_the_account_once(server: Server) -> None:
    name, _secret = enrolled(server)
    codes = CODE.findall(manage(server, "mfa", "recovery", name))
    assert len(codes) == 10, codes
    client, reply = password_login(server, name)
    # one step: the client picks one of the second factors
    assert b"<tasks><task>TOTP</task><task>X-RECOVERY</task></tasks>" in reply, reply
    recovery = "urn:xmppauth:recovery:0"
    client.send(
        f"<next xmlns='{SASL2}' task='X-RECOVERY'><code xmlns='{recovery}'>{codes[0].upper()}</code></next>"
    )
    assert b"<success" in client.read_until(rb"</success>|</failure>")
    client.close()
    again, _ = password_login(server, name)
    again.send(f"<next xmlns='{SASL2}' task='X-RECOVERY'/>")
    assert f"<code xmlns='{recovery}'/>".encode() in again.read_until(rb"</task-data>")
    again.send(f"<task-data xmlns='{SASL2}'><code xmlns='{recovery}'>{codes[0]}</code></task-data>")
    used = again.read_until(rb"</success>|</failure>")
    assert b"<failure" in used, used
    assert b"already used" in used, used
    again.close()
    listed = manage(server, "mfa", "list", name)
    assert "9" in listed, listed  # nine left


def test_the_second_factor_policy_sets_up_an_app_during_the_login(server: Server) -> None:
    """XEP-0400 TOTP-INIT: the policy demands a factor the account lacks; the login sets one up."""
    name = f"mfa{uuid.uuid4().hex[:8]}"
    manage(server, "adduser", name, "correct-horse", "--password-login", "second-factor")
    client, reply = password_login(server, name)
    assert b"<tasks><task>TOTP-INIT</task></tasks>" in reply, reply
    client.send(f"<next xmlns='{SASL2}' task='TOTP-INIT'/>")
    challenge = client.read_until(rb"</task-data>")
    uri = re.search(rb"<setup xmlns='urn:xmpp:mfa:0'>(otpauth://totp/[^<]+)</setup>", challenge)
    assert uri, challenge
    secret = secret_of(uri.group(1).decode().replace("&amp;", "&"))
    client.send(f"<task-data xmlns='{SASL2}'><totp xmlns='{MFA}'>{fresh_code(secret)}</totp></task-data>")
    assert b"<success" in client.read_until(rb"</success>|</failure>")
    client.close()
    after, reply = password_login(server, name)
    assert b"<tasks><task>TOTP</task></tasks>" in reply, reply  # set up: from now on, the TOTP task
    after.send(
        f"<next xmlns='{SASL2}' task='TOTP'><totp xmlns='{MFA}'>{totp_code(secret, time.time(), 1)}</totp></next>"
    )
    assert b"<success" in after.read_until(rb"</success>|</failure>")  # the next step's code (drift)
    after.close()


def test_totp_init_with_a_wrong_code_leaves_nothing_set_up(server: Server) -> None:
    name = f"mfa{uuid.uuid4().hex[:8]}"
    manage(server, "adduser", name, "correct-horse", "--password-login", "second-factor")
    client, _ = password_login(server, name)
    client.send(f"<next xmlns='{SASL2}' task='TOTP-INIT'/>")
    client.read_until(rb"</task-data>")
    client.send(f"<task-data xmlns='{SASL2}'><totp xmlns='{MFA}'>000000</totp></task-data>")
    failure = client.read_until(rb"</failure>")
    assert b"<not-authorized" in failure, failure
    client.close()
    again, reply = password_login(server, name)
    assert b"<task>TOTP-INIT</task>" in reply, reply  # still nothing confirmed
    again.close()


# ------------------------------------------------------------------ clients that cannot do tasks
async def test_slixmpp_is_refused_with_the_text_that_says_what_to_do(server: Server) -> None:
    import asyncio

    import slixmpp

    name, _secret = enrolled(server)
    bot = slixmpp.ClientXMPP(f"{name}@localhost/slix", "correct-horse")
    bot.ca_certs = server.cert
    bot.enable_starttls, bot.enable_direct_tls = True, False
    failed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    online: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def on_failure(stanza: object) -> None:
        if not failed.done():
            failed.set_result(str(stanza))

    def on_start(_event: object) -> None:
        if not online.done():
            online.set_result(True)

    bot.add_event_handler("failed_auth", on_failure)
    bot.add_event_handler("session_start", on_start)
    bot.connect("127.0.0.1", server.c2s)
    try:
        failure = await asyncio.wait_for(failed, 20)  # RFC 6120 SASL: no task can be asked for
    finally:
        bot.disconnect()
    assert "second factor" in failure, failure
    assert "app password" in failure, failure
    assert not online.done()


@pytest.mark.skipif(
    shutil.which("node") is None, reason="node is not on the PATH (Node.js 20+; `make setup`)"
)
async def test_xmppjs_stops_at_the_task_and_is_told_why(server: Server) -> None:
    from tests.integration.test_xmppjs import xmppjs

    name, _secret = enrolled(server)
    run = await xmppjs(server, "direct-tls", name, "presence", password="correct-horse")
    assert run.returncode == 1, run.explain()
    assert not run.of("online"), run.explain()
    [continued] = [e for e in run.of("nonza") if e["name"] == "continue"]
    assert "{urn:xmpp:sasl:2}text" in continued["children"], run.explain()  # the <text/> that says why
    assert "{urn:xmpp:sasl:2}tasks" in continued["children"], run.explain()


def _security_log(server: Server, name: str) -> str:
    code = (
        "from sessions_acl.models import AuthEvent\n"
        f"for e in AuthEvent.objects.filter(user__username={name!r}).order_by('id'): print(e.kind, e.detail)"
    )
    return manage(server, "shell", "-c", code)


def test_the_owner_learns_that_someone_passed_the_password_and_not_the_factor(server: Server) -> None:
    """A wrong code, a login given up and a connection dropped at the task are each in the account's
    security log as what they are: someone has the password (found by an outside attack: they were
    logged as a plain failure, or not at all)."""
    name, _secret = enrolled(server)
    wrong, reply = password_login(server, name)
    assert b"<continue" in reply
    wrong.send(f"<next xmlns='{SASL2}' task='TOTP'><totp xmlns='{MFA}'>000000</totp></next>")
    wrong.read_until(rb"</failure>")
    wrong.close()
    gave_up, reply = password_login(server, name)
    gave_up.send(f"<abort xmlns='{SASL2}'/>")
    gave_up.read_until(rb"</failure>")
    gave_up.close()
    dropped, reply = password_login(server, name)
    dropped.close()  # at the task, without a word
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        log = _security_log(server, name)
        if "the connection ended" in log:
            break
        time.sleep(0.2)
    lines = [line for line in log.splitlines() if line.startswith("login-failed")]
    assert len(lines) == 3, log
    assert all("the password was right, the second factor was not passed" in line for line in lines), log
    assert "wrong code" in lines[0] or "too many wrong codes" in lines[0], log
    assert "the client gave up" in lines[1], log
    assert "the connection ended before an answer" in lines[2], log
