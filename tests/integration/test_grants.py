"""Per-session grants on real streams: every scope allowed and refused, revocation end to end, FAST.

The server runs in its own process (``manage.py serve``); app passwords, revocations and listings
go through the management commands, which are separate processes that reach the server through
the database (the embedded in-memory channel layer does not cross processes); revocations made
over XMPP (XEP-0494) travel through the server's channel layer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.integration.rawclient import RawClient, Session, parse_stream_error
from tests.integration.server import ROOT, Server, redis_url, running_server, server_env

pytestmark = pytest.mark.integration

SASL2 = "urn:xmpp:sasl:2"
FAST = "urn:xmpp:fast:0"
CAM = "urn:xmpp:cam:0"
ROSTER = "jabber:iq:roster"
COMMANDS = "http://jabber.org/protocol/commands"
STANZA_ERRORS = "urn:ietf:params:xml:ns:xmpp-stanzas"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("grants"), XMPP_SM_RESUME_SECONDS="30") as srv:
        done = srv.manage("adduser", "root", "rootpass", "--staff")
        assert done.returncode == 0, done.stderr
        yield srv


def manage(server: Server, *args: str) -> str:
    done = server.manage(*args)
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def app_password(
    server: Server, user: str, label: str, *scopes: str, expires_days: float | None = None
) -> tuple[int, str]:
    extra = ["--expires-days", str(expires_days)] if expires_days is not None else []
    out = manage(server, "apppassword", "create", user, label, "--scopes", ",".join(scopes), *extra)
    match = re.search(r"app password (\d+) for \S+ \(.*\): (\S+)", out)
    assert match, out
    return int(match.group(1)), match.group(2)


def live_grant(server: Server, jid: str) -> str:
    """The grant id ``listsessions`` shows for the live session of this full JID."""
    for line in manage(server, "listsessions", "--user", jid.split("@")[0]).splitlines():
        cells = line.split()
        if cells and cells[1] == jid:
            return cells[6]  # session, jid, transport, address, mechanism, (credential), grant
    raise AssertionError(f"{jid} is not listed as live")


def forbidden(reply: bytes, scope: str) -> None:
    assert b"type='error'" in reply, reply
    assert b"<forbidden" in reply, reply
    assert scope.encode() in reply, reply  # the text names the missing scope


# ---------------------------------------------------------------------- one positive, one negative per scope
def test_messages_send_allows_sending(server: Server, bob: Session) -> None:
    _, secret = app_password(server, "alice", "sender", "messages.send")
    bot = Session(server, "alice", secret)
    assert bot.ok, bot.reply
    bot.send(f"<message to='{bob.jid}' type='chat' id='m1'><body>hello from the bot</body></message>")
    assert b"hello from the bot" in bob.expect("</message>")
    bot.close()


def test_without_messages_send_a_message_is_refused_and_not_delivered(server: Server, bob: Session) -> None:
    _, secret = app_password(server, "alice", "no-send", "presence")
    bot = Session(server, "alice", secret)
    bot.send(f"<message to='{bob.jid}' type='chat' id='m2'><body>should not arrive</body></message>")
    forbidden(bot.expect("</message>"), "messages.send")
    arrived = bot.mark(bob, "the bot's presence")  # control: what the bot may send does arrive
    assert b"should not arrive" not in arrived, arrived
    assert b"should not arrive" not in bob.quiet()
    bot.close()


def test_messages_receive_allows_receiving(server: Server, bob: Session) -> None:
    _, secret = app_password(server, "alice", "reader", "messages.receive")
    reader = Session(server, "alice", secret)
    bob.send(f"<message to='{reader.jid}' type='chat'><body>for the reader</body></message>")
    assert b"for the reader" in reader.expect("</message>")
    reader.close()


def waits_for_a_client_that_may_receive(server: Server, bob: Session, stanza_id: str, body: str) -> None:
    """For routing, a session without messages.receive is not there: bob's message to it waits in
    the account's offline store (XEP-0160), bob is told nothing, and alice's next client that may
    receive gets it, stamped with when it came (XEP-0203)."""
    assert stanza_id.encode() not in bob.quiet(0.3)
    full = Session(server, "alice", "wonderland")
    full.send("<presence/>")
    stored = full.expect(f"{body}</body>.*?</message>")
    assert f"from='{bob.jid}'".encode() in stored, stored
    assert b"urn:xmpp:delay" in stored, stored
    full.close()


def test_without_messages_receive_nothing_is_delivered_and_the_message_waits(
    server: Server, bob: Session
) -> None:
    _, secret = app_password(server, "alice", "deaf", "messages.send")
    deaf = Session(server, "alice", secret)
    bob.send(f"<message to='{deaf.jid}' type='chat' id='m3'><body>unheard</body></message>")
    assert b"unheard" not in deaf.quiet()
    waits_for_a_client_that_may_receive(server, bob, "m3", "unheard")
    # control: what deaf may receive from bob does arrive: the error to a message deaf sent him
    deaf.send(f"<message to='{bob.jid}' type='chat' id='d1'><body>from deaf</body></message>")
    bob.expect("from deaf")
    bob.send(
        f"<message to='{deaf.jid}' type='error' id='d1'><error type='cancel'>"
        f"<service-unavailable xmlns='{STANZA_ERRORS}'/></error></message>"
    )
    bounced = deaf.expect("</message>")
    assert b"id='d1'" in bounced, bounced
    assert b"unheard" not in bounced, bounced
    deaf.close()


def test_presence_allows_sending_and_receiving_presence(server: Server) -> None:
    _, secret = app_password(server, "alice", "status", "presence")
    status = Session(server, "alice", secret)
    status.send("<presence><show>away</show></presence>")
    assert b"<show>away</show>" in status.expect("</presence>")  # RFC 6121 §4.2.2: the broadcast includes us
    status.close()


def test_without_presence_presence_is_refused(server: Server) -> None:
    _, secret = app_password(server, "alice", "no-presence", "messages.send")
    bot = Session(server, "alice", secret)
    bot.send("<presence/>")
    forbidden(bot.expect("</presence>"), "presence")
    bot.close()


def test_roster_read_allows_reading_the_roster(server: Server) -> None:
    _, secret = app_password(server, "alice", "roster-reader", "roster.read")
    reader = Session(server, "alice", secret)
    reader.send(f"<iq type='get' id='r1'><query xmlns='{ROSTER}'/></iq>")
    reply = reader.expect("</iq>|<iq[^>]*/>")
    assert b"type='result'" in reply, reply
    assert ROSTER.encode() in reply, reply
    reader.close()


def test_without_roster_read_the_roster_is_refused(server: Server) -> None:
    _, secret = app_password(server, "alice", "no-roster", "messages.send")
    bot = Session(server, "alice", secret)
    bot.send(f"<iq type='get' id='r2'><query xmlns='{ROSTER}'/></iq>")
    forbidden(bot.expect("</iq>"), "roster.read")
    bot.close()


def test_roster_write_allows_changing_the_roster(server: Server) -> None:
    _, secret = app_password(server, "alice", "roster-writer", "roster.write", "roster.read")
    writer = Session(server, "alice", secret)
    writer.send(f"<iq type='get' id='w0'><query xmlns='{ROSTER}'/></iq>")  # now an interested resource
    writer.expect("id=.w0.[^>]*?(/>|>.*?</iq>)")
    writer.send(
        f"<iq type='set' id='w1'><query xmlns='{ROSTER}'><item jid='carol@localhost' name='Carol'/></query></iq>"
    )
    reply = writer.expect("id=.w1.[^>]*?(/>|>.*?</iq>)")
    assert b"type='result'" in reply, reply
    push = writer.expect("<item [^>]*carol@localhost[^>]*/>.*?</iq>")  # RFC 6121 §2.1.6 roster push
    assert b"type='set'" in push, push
    writer.send(f"<iq type='get' id='w3'><query xmlns='{ROSTER}'/></iq>")
    listing = writer.expect("id=.w3.[^>]*?(/>|>.*?</iq>)")
    assert b"jid='carol@localhost'" in listing, listing
    assert b"name='Carol'" in listing, listing
    writer.close()


def test_without_roster_write_the_roster_cannot_change(server: Server) -> None:
    _, secret = app_password(server, "alice", "roster-ro", "roster.read")
    reader = Session(server, "alice", secret)
    reader.send(
        f"<iq type='set' id='w2'><query xmlns='{ROSTER}'><item jid='mallory@localhost'/></query></iq>"
    )
    forbidden(reader.expect("</iq>"), "roster.write")
    reader.close()


def test_clients_manage_allows_listing_clients(server: Server) -> None:
    owner = Session(server, "alice", "wonderland", software="owner")
    owner.send(f"<iq type='get' id='c1'><list xmlns='{CAM}'/></iq>")
    reply = owner.expect("</iq>")
    assert b"<clients" in reply, reply
    assert b"owner" in reply, reply
    owner.close()


def test_an_app_password_can_never_manage_clients(server: Server) -> None:
    _, secret = app_password(
        server,
        "alice",
        "everything-allowed",
        "messages.send",
        "messages.receive",
        "presence",
        "roster.read",
        "roster.write",
    )
    bot = Session(server, "alice", secret)
    bot.send(f"<iq type='get' id='c2'><list xmlns='{CAM}'/></iq>")
    forbidden(bot.expect("</iq>"), "clients.manage")
    bot.close()
    done = server.manage("apppassword", "create", "alice", "sneaky", "--scopes", "clients.manage")
    assert done.returncode != 0
    assert "can never carry clients.manage" in done.stderr


ONLINE_NUM = (
    f"<iq type='set' id='a1' to='localhost'><command xmlns='{COMMANDS}' action='execute' "
    "node='http://jabber.org/protocol/admin#get-online-users-num'/></iq>"
)


def test_admin_allows_server_administration_to_staff(server: Server) -> None:
    root = Session(server, "root", "rootpass")
    root.send(ONLINE_NUM)
    reply = root.expect("</iq>")
    assert b"status='completed'" in reply or b'status="completed"' in reply, reply
    assert b"onlineusersnum" in reply
    root.close()


def test_without_admin_server_administration_is_refused(server: Server) -> None:
    alice = Session(server, "alice", "wonderland")
    alice.send(ONLINE_NUM)
    forbidden(alice.expect("</iq>"), "admin")
    alice.close()


def test_staff_discover_the_admin_commands_and_others_see_none(server: Server) -> None:
    query = (
        "<iq type='get' id='d1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items' "
        f"node='{COMMANDS}'/></iq>"
    )
    root = Session(server, "root", "rootpass")
    root.send(query)
    items = root.expect("</iq>")
    assert b"node='http://jabber.org/protocol/admin#end-user-session'" in items, items
    alice = Session(server, "alice", "wonderland")
    alice.send(query)
    listing = alice.expect("id=.d1.[^>]*?(/>|>.*?</iq>)")
    assert b"type='result'" in listing, listing
    assert b"<item" not in listing, listing
    alice.send(
        "<iq type='get' id='d2' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
    )
    assert f"var='{COMMANDS}'".encode() in alice.expect("</iq>")
    root.close()
    alice.close()


def test_a_bot_limited_to_messages_send_is_refused_everything_else(server: Server, bob: Session) -> None:
    _, secret = app_password(server, "alice", "bot", "messages.send")
    bot = Session(server, "alice", secret)
    bot.send(f"<message to='{bob.jid}' type='chat'><body>bot says hi</body></message>")
    assert b"bot says hi" in bob.expect("</message>")
    refused = {
        "presence": "<presence/>",
        "roster.read": f"<iq type='get' id='x1'><query xmlns='{ROSTER}'/></iq>",
        "roster.write": f"<iq type='set' id='x2'><query xmlns='{ROSTER}'><item jid='eve@localhost'/></query></iq>",
        "clients.manage": f"<iq type='get' id='x3'><list xmlns='{CAM}'/></iq>",
        "admin": ONLINE_NUM.replace("id='a1'", "id='x4'"),
        "messages.receive": "<iq type='set' id='x5'><enable xmlns='urn:xmpp:carbons:2'/></iq>",
    }
    for scope, stanza in refused.items():
        bot.send(stanza)
        forbidden(bot.expect("</presence>|</iq>"), scope)
    bob.send(f"<message to='{bot.jid}' type='chat' id='b9'><body>no reply expected</body></message>")
    assert b"no reply expected" not in bot.quiet()  # routed: the bot is there for nothing bob sends
    waits_for_a_client_that_may_receive(server, bob, "b9", "no reply expected")
    bot.close()


# ---------------------------------------------------------------------- account policy
def test_password_logins_off_refuses_the_password_with_a_reason_and_admits_app_passwords(
    server: Server,
) -> None:
    manage(server, "adduser", "erin", "erinpass", "--password-login", "off")
    refused = Session(server, "erin", "erinpass")
    assert not refused.ok
    assert b"<not-authorized" in refused.reply, refused.reply
    assert b"turned off" in refused.reply, refused.reply
    _, secret = app_password(server, "erin", "bot", "messages.send")
    assert Session(server, "erin", secret).ok


# ---------------------------------------------------------------------- revocation, end to end
def session_ids(server: Server, user: str) -> dict[str, tuple[int, int]]:
    """jid -> (session id, grant id) of the live sessions of ``user``."""
    out = manage(server, "listsessions", "--user", user)
    result = {}
    for line in out.splitlines()[1:]:
        cells = line.split()
        if len(cells) > 6 and cells[0].isdigit():
            result[cells[1]] = (int(cells[0]), int(cells[-5]) if cells[-5].isdigit() else 0)
    return result


def closed_within(session: Session, started: float, limit: float = 1.0) -> tuple[str, float]:
    data = session.raw.read_to_close(timeout=5)
    elapsed = time.monotonic() - started
    condition = parse_stream_error(data)
    assert condition == "policy-violation", data
    assert elapsed < limit, f"closed {elapsed:.3f} s after the revocation committed"
    text = re.search(rb"<text[^>]*>([^<]*)</text>", data)
    return (text.group(1).decode() if text else ""), elapsed


def test_revoking_a_session_from_the_command_line_closes_it_within_a_second(server: Server) -> None:
    victim = Session(server, "carol", "singer")
    other = Session(server, "carol", "singer")
    sid, _ = session_ids(server, "carol")[victim.jid]
    done = server.manage("revoke", "session", str(sid), "--reason", "testing")
    started = time.monotonic()
    assert done.returncode == 0, done.stderr
    text, _ = closed_within(victim, started)
    assert "ended by the operator" in text
    assert "testing" in text
    other.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert b"type='result'" in other.expect("</iq>|<iq[^>]*/>")  # the other session lives on
    listing = manage(server, "listsessions", "--user", "carol", "--all")
    assert "ended by the operator" in listing
    other.close()


def test_revoking_an_app_password_closes_its_sessions_and_it_stops_working(server: Server) -> None:
    app_id, secret = app_password(server, "carol", "doomed", "messages.send")
    bot = Session(server, "carol", secret)
    assert bot.ok
    done = server.manage("revoke", "app-password", str(app_id))
    started = time.monotonic()
    assert done.returncode == 0, done.stderr
    text, _ = closed_within(bot, started)
    assert "app password was revoked" in text
    again = Session(server, "carol", secret)
    assert not again.ok
    assert b"<not-authorized" in again.reply


def test_revoking_a_grant_closes_every_session_holding_it(server: Server) -> None:
    ua = str(uuid.uuid4())
    first = Session(server, "carol", "singer", ua=ua)
    _, grant_id = session_ids(server, "carol")[first.jid]
    done = server.manage("revoke", "grant", str(grant_id))
    started = time.monotonic()
    assert done.returncode == 0, done.stderr
    text, _ = closed_within(first, started)
    assert "grant was revoked" in text


def revoke_over_xep0494(laptop: Session, software: str) -> float:
    """``laptop`` lists its account's clients and revokes the one whose software is ``software``;
    returns when the revoke went out."""
    laptop.send(f"<iq type='get' id='l1'><list xmlns='{CAM}'/></iq>")
    listing = laptop.expect("</iq>").decode()
    found = re.search(
        rf"<client [^>]*id=.(c\d+).[^>]*>(?:(?!</client>).)*{re.escape(software)}", listing, re.S
    )
    assert found, listing
    laptop.send(f"<iq type='set' id='l2'><revoke xmlns='{CAM}' id='{found.group(1)}'/></iq>")
    return time.monotonic()


def test_a_client_revokes_another_over_xep0494_and_its_stream_closes_at_once(server: Server) -> None:
    phone = Session(
        server,
        "alice",
        "wonderland",
        software="phone-app",
        extra=f"<request-token xmlns='{FAST}' mechanism='HT-SHA-256-NONE'/>",
    )
    assert b"<token" in phone.reply
    token = re.search(rb"token='([^']+)'", phone.reply).group(1).decode()  # type: ignore[union-attr]
    laptop = Session(server, "alice", "wonderland", software="laptop-app")
    started = revoke_over_xep0494(laptop, "phone-app")
    text, _ = closed_within(phone, started)
    assert "client was revoked" in text
    assert "XEP-0494" in text
    answer = laptop.expect("</iq>")
    assert b"password-reset-required" in answer, answer  # it had used the password
    # Its FAST token died with the commit.
    fast = fast_login(server, "alice", token, phone.ua)
    assert b"credentials-expired" in fast, fast
    laptop.close()


def test_a_password_change_ends_the_other_sessions_with_a_reason(server: Server) -> None:
    manage(server, "adduser", "dave", "old-password")
    victim = Session(server, "dave", "old-password")
    done = server.manage("adduser", "dave", "new-password")
    started = time.monotonic()
    assert done.returncode == 0
    # Logged in with the new password before the server heard of the change (its poll): not meant.
    fresh = Session(server, "dave", "new-password")
    assert fresh.ok
    text, _ = closed_within(victim, started)
    assert "password was changed" in text
    time.sleep(0.5)  # the same revocation would reach the other sessions within milliseconds
    fresh.send("<iq type='get' id='still-here'><ping xmlns='urn:xmpp:ping'/></iq>")
    answer = fresh.expect("still-here")
    assert re.search(rb"type=.result.", answer), (
        f"a login after the change was ended with the old ones: {answer!r}"
    )
    assert Session(server, "dave", "new-password").ok


def test_a_login_with_the_new_password_before_the_server_hears_of_the_change_stays(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # A slow poll (and the in-memory channel layer of another process) leaves seconds between the
    # change's commit and the server applying it: "every other session" means those open before it.
    with running_server(tmp_path_factory.mktemp("slow-poll"), XMPP_REVOCATION_POLL_MS="2500") as slow:
        victim = Session(slow, "bob", "builder")
        assert slow.manage("adduser", "bob", "new-password").returncode == 0
        fresh = Session(slow, "bob", "new-password")
        assert fresh.ok
        data = victim.raw.read_to_close(timeout=10)
        assert parse_stream_error(data) == "policy-violation", data
        assert b"password was changed" in data
        time.sleep(0.5)  # the same revocation would reach the other sessions within milliseconds
        fresh.send("<iq type='get' id='still-here'><ping xmlns='urn:xmpp:ping'/></iq>")
        answer = fresh.expect("still-here")
        assert re.search(rb"type=.result.", answer), f"the login after the change was ended: {answer!r}"


def test_an_expiring_app_password_ends_its_session_when_it_expires(server: Server) -> None:
    _, secret = app_password(server, "carol", "short-lived", "messages.send", expires_days=2.5 / 86400)
    bot = Session(server, "carol", secret)
    assert bot.ok
    data = bot.raw.read_to_close(timeout=8)
    assert parse_stream_error(data) == "policy-violation", data
    assert b"expired" in data, data


def test_a_revoked_hibernating_session_cannot_be_resumed(server: Server) -> None:
    sm = "<enable xmlns='urn:xmpp:sm:3' resume='true'/>"
    phone = RawClient(server.c2s_tls, direct_tls=True)
    phone.open_stream()
    token = base64.b64encode(b"\0carol\0singer").decode()
    phone.send(
        f"<authenticate xmlns='{SASL2}' mechanism='PLAIN'><initial-response>{token}</initial-response>"
        f"<bind xmlns='urn:xmpp:bind:0'><tag>t</tag>{sm}</bind></authenticate>"
    )
    reply = phone.read_until(rb"</stream:features>")
    previd = re.search(rb"<enabled xmlns='urn:xmpp:sm:3' id='([^']+)'", reply).group(1).decode()  # type: ignore[union-attr]
    jid = re.search(rb"<authorization-identifier>([^<]+)<", reply).group(1).decode()  # type: ignore[union-attr]
    sid, _ = session_ids(server, "carol")[jid]
    phone.sock.close()  # gone without a word: the session hibernates
    time.sleep(0.3)
    manage(server, "revoke", "session", str(sid))
    time.sleep(1.0)
    back = RawClient(server.c2s_tls, direct_tls=True)
    back.open_stream()
    back.send(
        f"<authenticate xmlns='{SASL2}' mechanism='PLAIN'><initial-response>{token}</initial-response>"
        f"<resume xmlns='urn:xmpp:sm:3' previd='{previd}' h='0'/></authenticate>"
    )
    answer = back.read_until(rb"</success>|</failure>")
    assert b"<failed" in answer, answer
    assert b"<resumed" not in answer, answer
    back.close()


def test_changing_a_grants_scopes_applies_to_its_live_session(server: Server, bob: Session) -> None:
    _, secret = app_password(server, "carol", "changing", "messages.send", "presence")
    watcher = Session(server, "carol", "singer")
    watcher.send("<presence/>")
    watcher.expect("</presence>|<presence[^>]*/>")
    bot = Session(server, "carol", secret)
    _, grant_id = session_ids(server, "carol")[bot.jid]
    bot.send("<presence/>")
    assert b"type='error'" not in bot.expect("</presence>|<presence[^>]*/>")
    assert bot.jid.encode() in watcher.expect(f"<presence[^>]*{re.escape(bot.jid)}[^>]*/?>")
    done = server.manage("setscopes", str(grant_id), "messages.send")
    started = time.monotonic()
    assert done.returncode == 0, done.stderr
    while True:  # the change lands within a second; until then presence still goes through
        bot.send("<presence/>")
        reply = bot.expect("</presence>|<presence[^>]*/>")
        if b"<forbidden" in reply:
            break
        assert time.monotonic() - started < 1.0, "the new scopes took more than a second"
        time.sleep(0.05)
    forbidden(reply, "presence")
    # its presence is withdrawn (after the ones the retries sent while the change was on its way)
    watcher.expect(f"<presence(?=[^>]*{re.escape(bot.jid)})(?=[^>]*type=.unavailable.)[^>]*/?>")
    bot.send(f"<message to='{bob.jid}' type='chat'><body>still allowed</body></message>")
    assert b"still allowed" in bob.expect("</message>")  # no reconnect needed
    refused = server.manage("setscopes", str(grant_id), "messages.send,admin")
    assert refused.returncode != 0
    assert "can never carry admin" in refused.stderr
    bot.close()


def test_an_in_band_password_change_ends_the_other_sessions_and_keeps_this_one(server: Server) -> None:
    manage(server, "adduser", "frank", "first-password")
    laptop = Session(server, "frank", "first-password")
    phone = Session(server, "frank", "first-password")
    _, secret = app_password(
        server, "frank", "bot", "messages.send", "presence", "roster.read", "roster.write"
    )
    bot = Session(server, "frank", secret)
    change = (
        "<iq type='set' id='pw1'><query xmlns='jabber:iq:register'><username>frank</username>"
        "<password>{}</password></query></iq>"
    )
    bot.send(change.format("from-the-bot"))
    forbidden(bot.expect("</iq>"), "clients.manage")  # an app password can never change the password
    laptop.send(change.format(""))
    assert b"not-acceptable" in laptop.expect("</iq>")
    laptop.send(change.format("second-password"))
    assert b"type='result'" in laptop.expect("id=.pw1.[^>]*?(/>|>.*?</iq>)")
    started = time.monotonic()
    text, _ = closed_within(phone, started)
    assert "password was changed by frank@localhost/" in text
    assert "XEP-0077" in text
    laptop.send("<iq type='get' id='p2'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert b"type='result'" in laptop.expect("id=.p2.[^>]*?(/>|>.*?</iq>)")  # the changer goes on
    assert not Session(server, "frank", "first-password").ok
    assert Session(server, "frank", "second-password").ok
    closed_within(bot, started, limit=5.0)  # every other session ends, the bot's too...
    assert Session(server, "frank", secret).ok  # ...but app passwords stay valid


# ---------------------------------------------------------------------- FAST on real streams
def fast_login(
    server: Server, user: str, token: str, ua: str, *, mechanism: str = "HT-SHA-256-NONE", extra: str = ""
) -> bytes:
    client = RawClient(server.c2s_tls, direct_tls=True)
    client.open_stream()
    cb = b""
    if mechanism == "HT-SHA-256-EXPR":
        cb = client.channel_binding("tls-exporter")
    elif mechanism == "HT-SHA-256-ENDP":
        cb = client.channel_binding("tls-server-end-point")
    mac = hmac.new(token.encode(), b"Initiator" + cb, hashlib.sha256).digest()
    initial = base64.b64encode(user.encode() + b"\0" + mac).decode()
    client.send(
        f"<authenticate xmlns='{SASL2}' mechanism='{mechanism}'><initial-response>{initial}</initial-response>"
        f"<user-agent id='{ua}'/><fast xmlns='{FAST}'{extra}/></authenticate>"
    )
    reply = client.read_until(rb"</success>|</failure>")
    if b"<success" in reply:
        data = re.search(rb"<additional-data>([^<]+)</additional-data>", reply)
        assert data is not None
        expected = hmac.new(token.encode(), b"Responder" + cb, hashlib.sha256).digest()
        assert base64.b64decode(data.group(1)) == expected  # the server proves it knows the token too
    client.close()
    return reply


@pytest.mark.parametrize("mechanism", ["HT-SHA-256-NONE", "HT-SHA-256-ENDP", "HT-SHA-256-EXPR"])
def test_a_fast_token_logs_in_with_its_mechanism_only(server: Server, mechanism: str) -> None:
    first = Session(
        server, "carol", "singer", extra=f"<request-token xmlns='{FAST}' mechanism='{mechanism}'/>"
    )
    token = re.search(rb"<token xmlns='urn:xmpp:fast:0' [^>]*token='([^']+)'", first.reply)
    assert token, first.reply
    first.close()
    assert b"<success" in fast_login(server, "carol", token.group(1).decode(), first.ua, mechanism=mechanism)
    other = "HT-SHA-256-NONE" if mechanism != "HT-SHA-256-NONE" else "HT-SHA-256-EXPR"
    assert b"credentials-expired" in fast_login(
        server, "carol", token.group(1).decode(), first.ua, mechanism=other
    )
    assert b"credentials-expired" in fast_login(
        server, "carol", token.group(1).decode(), str(uuid.uuid4()), mechanism=mechanism
    )


def test_a_fast_token_stops_working_once_invalidated(server: Server) -> None:
    first = Session(
        server, "carol", "singer", extra=f"<request-token xmlns='{FAST}' mechanism='HT-SHA-256-NONE'/>"
    )
    token = re.search(rb"token='([^']+)'", first.reply).group(1).decode()  # type: ignore[union-attr]
    first.close()
    assert b"<success" in fast_login(server, "carol", token, first.ua, extra=" invalidate='true'")
    assert b"credentials-expired" in fast_login(server, "carol", token, first.ua)


# ---------------------------------------------------------------------- across processes, through Redis
def test_a_revocation_reaches_the_server_through_redis_without_the_poll(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """With CHANNEL_LAYER_URL the commit is published on Redis and heard at once by every serving
    process; the outbox poll is slowed to a minute here, so only the channel layer can be in time."""
    redis_env = {"CHANNEL_LAYER_URL": redis_url(7), "XMPP_REVOCATION_POLL_MS": "60000"}
    data_dir = tmp_path_factory.mktemp("redis")
    with running_server(data_dir, {"alice": "wonderland"}, **redis_env) as srv:
        victim = Session(srv, "alice", "wonderland")
        assert victim.ok, victim.reply
        listing = subprocess.run(
            [sys.executable, "manage.py", "listsessions", "--user", "alice"],
            cwd=ROOT,
            env=server_env(data_dir, **redis_env),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        sid = next(line.split()[0] for line in listing.splitlines() if victim.jid in line)
        done = subprocess.run(
            [sys.executable, "manage.py", "revoke", "session", sid],
            cwd=ROOT,
            env=server_env(data_dir, **redis_env),
            capture_output=True,
            text=True,
            check=False,
        )
        started = time.monotonic()
        assert done.returncode == 0, done.stderr
        text, _ = closed_within(victim, started)
        assert "ended by the operator" in text


def test_a_revocation_made_in_the_serving_process_needs_no_poll(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """XEP-0494 revocations are made by the server itself: the in-memory channel layer carries them
    (the outbox poll is slowed to a minute here)."""
    with running_server(
        tmp_path_factory.mktemp("inproc"), {"alice": "wonderland"}, XMPP_REVOCATION_POLL_MS="60000"
    ) as srv:
        phone = Session(srv, "alice", "wonderland", software="phone-app")
        laptop = Session(srv, "alice", "wonderland", software="laptop-app")
        started = revoke_over_xep0494(laptop, "phone-app")
        text, _ = closed_within(phone, started)
        assert "client was revoked" in text
