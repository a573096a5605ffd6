"""No ghost sessions after a crash (issue 8): whatever raises while a stream is handled ends THAT
stream with ``<internal-server-error/>`` and the session with it, cleaned up like any other end.

The server runs with a test-only fault injector (tests/integration/faults/): writing a function's
name into ``$XMPP_DATA_DIR/fault`` makes its next call raise. Each case logs in, writes the fault,
provokes the step, and checks what users see afterwards:

- the stream that failed gets the stream error (or, hibernating, has no stream to get it);
- the account's other resource hears that it went unavailable (if it was available);
- ``manage.py listsessions`` no longer lists it as live;
- it is not in the router: an iq to its full JID is answered with ``service-unavailable`` (a ghost
  would swallow it), and binding the same resource again is not a "resource conflict";
- nothing sent to it is lost: a message in flight is kept offline and delivered when the account
  comes back, and a chat to the bare JID with nobody left is bounced to its sender.

On the code before the fix every fault case fails (checked): the exception escaped the consumer
(or the timer, or the task), and the connection dropped without a stream error or did not drop at
all. Of the natural cases, the ids that passed ``isdigit()`` (``c²``, ``c٣``, 5000 digits) fail.

After the fix of the XEP-0494 id parsing, ``c²`` itself no longer raises; the crash of that very
step is provoked with the fault ``services.cam_revoke`` instead.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.integration.rawclient import SASL, RawClient, b64, parse_stream_error
from tests.integration.server import Server, running_server
from tests.integration.test_grants import CAM, ONLINE_NUM, ROSTER, manage, session_ids
from tests.integration.test_session_features import bodies
from xmppauth.proto.sasl import ScramClient

pytestmark = pytest.mark.integration

PASSWORD = "crash-test-pw"
SM = "urn:xmpp:sm:3"
SASL2 = "urn:xmpp:sasl:2"
Q = "['\"]"  # either attribute quote
_numbers = itertools.count(1)
USERS = [f"crash{number}" for number in range(1, 31)]  # made with the server: more than there are cases
_fresh = iter(USERS)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(
        tmp_path_factory.mktemp("crash"),
        {"bob": "builder"} | {name: PASSWORD for name in USERS},
        DJANGO_SETTINGS_MODULE="tests.integration.faults.settings",
        XMPP_SM_ACK_REQUEST_SECONDS="1",
    ) as srv:
        yield srv


@pytest.fixture
def user(server: Server) -> str:
    """A fresh account for each case, so that no case sees another's sessions or stored messages."""
    return next(_fresh)


@pytest.fixture
def bob(server: Server) -> Iterator[RawClient]:
    client = RawClient(server.c2s)
    client.login("bob", "builder", f"desk{next(_numbers)}")
    yield client
    client.close()


# ---------------------------------------------------------------------- small steps
def inject(server: Server, fault: str) -> None:
    (server.data_dir / "fault").write_text(fault)


def assert_fired(server: Server, fault: str) -> None:
    """The fault file is gone: the step was reached (the server may close a stream just before)."""
    deadline = time.monotonic() + 5
    while (server.data_dir / "fault").exists():
        assert time.monotonic() < deadline, f"the step with {fault!r} was never reached"
        time.sleep(0.02)


def presence_of(jid: str, *, unavailable: bool) -> str:
    kind = f"(?=[^>]*type={Q}unavailable{Q})" if unavailable else f"(?![^>]*type={Q})"
    return f"<presence(?=[^>]*from={Q}{re.escape(jid)}{Q}){kind}[^>]*>"


@dataclass
class Client:
    raw: RawClient
    jid: str
    previd: str = ""


def login(server: Server, user: str, resource: str, *, sm: bool = False, available: bool = True) -> Client:
    raw = RawClient(server.c2s)
    jid = raw.login(user, PASSWORD, resource)
    previd = ""
    if sm:
        raw.send(f"<enable xmlns='{SM}' resume='true'/>")
        enabled = raw.read_until(rb"<enabled[^>]*/>")
        found = re.search(rb"id=['\"]([^'\"]+)", enabled)
        assert found, enabled
        previd = found.group(1).decode()
    if available:
        raw.send("<presence/>")
        raw.read_until(presence_of(jid, unavailable=False))
    return Client(raw, jid, previd)


def stream_error(client: RawClient) -> str | None:
    """The condition of the stream error the server closes the stream with (None: no error)."""
    return parse_stream_error(client.read_to_close(timeout=5))


def assert_logged_once(server: Server, fault: str) -> None:
    """The exception went to the log with its traceback, once."""
    name, _, moment = fault.partition(" ")
    line = f"InjectedFault: injected fault in {name} ({moment or 'before'})"
    deadline = time.monotonic() + 5
    while line not in (text := server.log_text()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert text.count(line) == 1, text[-3000:]
    assert "Traceback (most recent call last)" in text


def scram_then_open(server: Server, user: str) -> RawClient:
    """STARTTLS and SCRAM, then the post-authentication stream header (no bind yet)."""
    raw = RawClient(server.c2s)
    raw.starttls()
    assert b"<success" in raw.scram("SCRAM-SHA-256", user, PASSWORD)
    raw.open_stream()
    return raw


def resume(server: Server, user: str, previd: str) -> RawClient:
    raw = scram_then_open(server, user)
    raw.send(f"<resume xmlns='{SM}' previd='{previd}' h='0'/>")
    return raw


def sasl2_plain(server: Server, user: str, extra: str = "") -> RawClient:
    raw = RawClient(server.c2s_tls, direct_tls=True)
    raw.open_stream()
    raw.authenticate_plain(
        user, PASSWORD, ua="0f4c8e1a-6b55-4f3e-9d7e-2a1b3c4d5e6f", software="crash test", inline=extra
    )
    return raw


def iq_reply(client: RawClient, stanza_id: str) -> bytes:
    return client.read_until(rf"<iq(?=[^>]*id={Q}{stanza_id}{Q})[^>]*?(/>|>.*?</iq>)", timeout=5)


def assert_gone(
    server: Server,
    bob: RawClient,
    user: str,
    jid: str,
    *,
    watcher: Client,
    was_available: bool,
    kept: tuple[str, ...] = (),
) -> None:
    """What users see once the session at ``jid`` ended after a crash."""
    resource = jid.rsplit("/", 1)[1]
    if was_available:
        watcher.raw.read_until(presence_of(jid, unavailable=True), timeout=5)
    assert jid not in session_ids(server, user), "its session record is still live"
    # not in the router: RFC 6121 §8.5.3.2.2, an iq to a resource that is not there is answered
    number = next(_numbers)
    bob.send(f"<iq type='get' id='ping{number}' to='{jid}'><ping xmlns='urn:xmpp:ping'/></iq>")
    answer = iq_reply(bob, f"ping{number}")
    assert re.search(f"type={Q}error{Q}".encode(), answer), answer
    assert b"<service-unavailable" in answer, answer
    watcher.raw.send("</stream:stream>")
    watcher.raw.read_to_close(timeout=5)
    # nobody of the account left: a chat to the bare JID waits in its offline store (XEP-0160), not in
    # a ghost; bob is told nothing
    anyone = f"anyone {number}?"
    bob.send(f"<message to='{user}@localhost' type='chat' id='bare{number}'><body>{anyone}</body></message>")
    assert f"bare{number}".encode() not in bob.read_for(0.3)
    # the resource can be bound again, without a conflict with a leftover session
    again = RawClient(server.c2s)
    assert again.login(user, PASSWORD, resource) == jid
    assert f"resource conflict on {jid}" not in server.log_text()
    again.send("<presence/>")
    # what was on its way to the session that crashed, and the chat since: kept offline, delivered now
    waited = (*kept, anyone)
    pattern = "".join(f".*?{re.escape(body)}</body>" for body in waited)
    stored = again.read_until(pattern + ".*?</message>", timeout=5)
    assert bodies(stored)[-len(waited) :] == list(waited)
    assert b"urn:xmpp:delay" in stored, stored
    again.close()


# ---------------------------------------------------------------------- the natural case
@pytest.mark.parametrize(
    "client_id",
    ["c²", "a²", "c٣", "c+1", "c 1", "c" + "9" * 5000, "c9223372036854775808"],
    ids=["superscript", "superscript-app", "arabic-indic", "sign", "space", "5000-digits", "above-2^63"],
)
def test_a_xep0494_revoke_of_an_id_that_is_no_number_is_item_not_found(
    server: Server, user: str, client_id: str
) -> None:
    """Issue 8: ``'c²'`` passed isdigit() and failed int(); the stream then dropped without a word
    and stayed in the router and the session table."""
    watcher = login(server, user, "watcher")
    laptop = login(server, user, "laptop")
    laptop.raw.send(f"<iq type='set' id='rv'><revoke xmlns='{CAM}' id='{client_id}'/></iq>")
    answer = iq_reply(laptop.raw, "rv")
    assert re.search(f"type={Q}error{Q}".encode(), answer), answer
    assert b"<item-not-found" in answer, answer
    laptop.raw.send("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert re.search(f"type={Q}result{Q}".encode(), iq_reply(laptop.raw, "p1"))  # the stream lives on
    assert laptop.jid in session_ids(server, user)
    assert re.search(presence_of(laptop.jid, unavailable=True).encode(), watcher.raw.quiet(0.3)) is None
    laptop.raw.close()
    watcher.raw.close()


# ---------------------------------------------------------------------- before there is a session
def _scram_auth(server: Server, user: str) -> RawClient:
    raw = RawClient(server.c2s)
    raw.starttls()
    client = ScramClient("SHA-256", user, PASSWORD)
    raw.send(f"<auth xmlns='{SASL}' mechanism='SCRAM-SHA-256'>{b64(client.first())}</auth>")
    return raw


def _sasl2(server: Server, user: str) -> RawClient:
    return sasl2_plain(server, user, "<bind xmlns='urn:xmpp:bind:0'><tag>victim</tag></bind>")


def _upgrade_task(server: Server, user: str) -> RawClient:
    """XEP-0480: an account without SHA-512 credentials logs in with its password and asks for them."""
    code = (
        f"from accounts.models import User; u = User.objects.get(username='{user}'); "
        "u.scram.pop('SHA-512'); u.save(update_fields=['scram'])"
    )
    manage(server, "shell", "-c", code)
    raw = sasl2_plain(server, user, "<upgrade xmlns='urn:xmpp:sasl:upgrade:0'>UPGR-SCRAM-SHA-512</upgrade>")
    raw.read_until(rb"</continue>")
    raw.send(f"<next xmlns='{SASL2}' task='UPGR-SCRAM-SHA-512'/>")
    return raw


def _bind(server: Server, user: str) -> RawClient:
    raw = scram_then_open(server, user)
    raw.send(
        "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
        "<resource>victim</resource></bind></iq>"
    )
    return raw


BEFORE_SESSION: dict[str, Callable[[Server, str], RawClient]] = {
    "services.scram_credentials": _scram_auth,
    "services.authorize": _sasl2,
    "upgrade.salt_challenge": _upgrade_task,
    "services.open_session": _bind,
    "StreamConsumer._bind": _bind,
    "StreamConsumer._bind after": _bind,  # bound, registered, recorded: then it fails
}


@pytest.mark.parametrize("fault", list(BEFORE_SESSION))
def test_a_fault_before_the_session_exists_ends_the_stream_and_leaves_nothing(
    server: Server, bob: RawClient, user: str, fault: str
) -> None:
    watcher = login(server, user, "watcher")
    inject(server, fault)
    victim = BEFORE_SESSION[fault](server, user)
    assert stream_error(victim) == "internal-server-error"
    assert_fired(server, fault)
    assert_logged_once(server, fault)
    assert_gone(server, bob, user, f"{user}@localhost/victim", watcher=watcher, was_available=False)


# ---------------------------------------------------------------------- a bound session
@dataclass(frozen=True)
class Bound:
    provoke: Callable[[Server, Client, RawClient], object]
    sm: bool = False
    available: bool = True  # before the provocation
    kept: tuple[str, ...] = ()  # messages on their way to it: kept offline


def _send(stanza: str) -> Callable[[Server, Client, RawClient], object]:
    return lambda _server, victim, _bob: victim.raw.send(stanza)


def _bob_writes(_server: Server, victim: Client, bob: RawClient) -> None:
    bob.send(f"<message to='{victim.jid}' type='chat'><body>in flight</body></message>")


def _operator_revokes(server: Server, victim: Client, _bob: RawClient) -> None:
    sid, _ = session_ids(server, victim.jid.split("@")[0])[victim.jid]
    manage(server, "revoke", "session", str(sid))


BOUND: dict[str, Bound] = {
    "ROUTER.route": Bound(_send("<message to='bob@localhost' type='chat'><body>hello</body></message>")),
    "roster.handle": Bound(_send(f"<iq type='get' id='r1'><query xmlns='{ROSTER}'/></iq>")),
    "register.handle": Bound(_send("<iq type='get' id='g1'><query xmlns='jabber:iq:register'/></iq>")),
    "adhoc.handle": Bound(_send(ONLINE_NUM)),  # the account is staff in this case
    "services.cam_list": Bound(_send(f"<iq type='get' id='l1'><list xmlns='{CAM}'/></iq>")),
    # issue 8's own step: a XEP-0494 revoke whose handling fails
    "services.cam_revoke": Bound(_send(f"<iq type='set' id='v1'><revoke xmlns='{CAM}' id='c1'/></iq>")),
    # initial presence: stored messages are fetched for it (XEP-0160)
    "services.take_offline": Bound(_send("<presence/>"), available=False),
    # the XEP-0198 acknowledgement timer (1 s in this server) asks for an <a/>
    "C2SStream.request_ack": Bound(lambda *_: None, sm=True),
    # bob's message is delivered by bob's task: the session delivered to ends, not bob's
    "C2SStream.send_raw": Bound(_bob_writes, kept=("in flight",)),
    # the control listener: a revocation whose closing of the stream fails
    "StreamConsumer._close": Bound(_operator_revokes),
}


@pytest.mark.parametrize("fault", list(BOUND))
def test_a_fault_in_a_bound_session_ends_that_stream_and_its_session(
    server: Server, bob: RawClient, user: str, fault: str
) -> None:
    case = BOUND[fault]
    if fault == "adhoc.handle":
        manage(server, "adduser", user, PASSWORD, "--staff")  # sets the password again: logins after it stay
    watcher = login(server, user, "watcher")
    victim = login(server, user, "victim", sm=case.sm, available=case.available)
    if case.available:
        watcher.raw.read_until(presence_of(victim.jid, unavailable=False))
    inject(server, fault)
    case.provoke(server, victim, bob)
    assert stream_error(victim.raw) == "internal-server-error"
    assert_fired(server, fault)
    assert_logged_once(server, fault)
    assert_gone(server, bob, user, victim.jid, watcher=watcher, was_available=True, kept=case.kept)


# ---------------------------------------------------------------------- hibernating and resuming
def _hibernate(server: Server, user: str) -> tuple[Client, Client]:
    """A watcher and a victim with resumable XEP-0198, both available; the victim's connection
    drops without a word, and its session hibernates."""
    watcher = login(server, user, "watcher")
    victim = login(server, user, "victim", sm=True)
    watcher.raw.read_until(presence_of(victim.jid, unavailable=False))
    victim.raw.sock.close()
    time.sleep(0.3)
    return watcher, victim


@pytest.mark.parametrize(
    "fault", ["StreamConsumer.take_over", "services.resume_session", "services.touch_session"]
)
def test_a_fault_while_resuming_ends_the_session(
    server: Server, bob: RawClient, user: str, fault: str
) -> None:
    watcher, victim = _hibernate(server, user)
    bob.send(f"<message to='{victim.jid}' type='chat'><body>while away</body></message>")
    time.sleep(0.2)  # queued for the hibernating session
    if fault != "services.touch_session":
        inject(server, fault)
    back = resume(server, user, victim.previd)
    if fault == "services.touch_session":
        # the resumed session records its activity with its first stanza, in the background
        assert b"<resumed" in back.read_until(rb"<resumed[^>]*/>")
        inject(server, fault)
        back.send("<message to='bob@localhost' type='chat'><body>back again</body></message>")
    assert stream_error(back) == "internal-server-error"
    assert_fired(server, fault)
    assert_logged_once(server, fault)
    assert_gone(server, bob, user, victim.jid, watcher=watcher, was_available=True, kept=("while away",))


def test_a_fault_while_hibernating_ends_the_session(server: Server, bob: RawClient, user: str) -> None:
    fault = "C2SStream.queue_detached"
    watcher, victim = _hibernate(server, user)
    inject(server, fault)
    # a message goes to the offline store at once (stored_delivery.StoredDelivery.store_while_away); an iq waits in memory
    bob.send(f"<message to='{victim.jid}' type='chat'><body>while away</body></message>")
    bob.send(f"<iq type='get' id='away' to='{victim.jid}'><ping xmlns='urn:xmpp:ping'/></iq>")
    watcher.raw.read_until(presence_of(victim.jid, unavailable=True), timeout=5)
    assert_fired(server, fault)
    assert_logged_once(server, fault)
    back = resume(server, user, victim.previd)
    assert b"<failed" in back.read_until(rb"<failed[^>]*?(/>|>.*?</failed>)")  # nothing to resume
    back.close()
    # (its unavailable presence was read above)
    assert_gone(server, bob, user, victim.jid, watcher=watcher, was_available=False, kept=("while away",))


# ---------------------------------------------------------------------- the clean-up itself
def test_a_fault_in_the_clean_up_still_takes_the_session_out_of_the_router(
    server: Server, bob: RawClient, user: str
) -> None:
    fault = "ROUTER.session_ended"
    watcher = login(server, user, "watcher")
    victim = login(server, user, "victim")
    watcher.raw.read_until(presence_of(victim.jid, unavailable=False))
    inject(server, fault)
    victim.raw.send("</stream:stream>")  # an ordinary goodbye; leaving the router fails
    goodbye = victim.raw.read_to_close(timeout=5)
    assert parse_stream_error(goodbye) is None, goodbye
    assert goodbye.endswith(b"</stream:stream>"), goodbye  # closed with the footer, not dropped
    assert_fired(server, fault)
    assert_logged_once(server, fault)
    assert_gone(server, bob, user, victim.jid, watcher=watcher, was_available=True)
