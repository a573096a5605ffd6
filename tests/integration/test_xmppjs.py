"""xmpp.js (@xmpp/client 0.14 on Node) against the real server: STARTTLS, direct TLS and WebSocket.

xmpp.js prefers XEP-0388 SASL2 with XEP-0386 Bind2 whenever the server offers it, and falls back to
RFC 6120 SASL + resource binding otherwise. A raw WebSocket probe tells which the server offers, and
the tests hold xmpp.js to it. Run with -rP to see which path each transport took.

With SASL2, xmpp.js (@xmpp/stream-management) also enables XEP-0198 inline in Bind2 and, after a lost
connection, resumes inline in SASL2; the resumption test drops the transport under it and counts
every message at the application level.

The client is tests/interop/xmppjs/client.mjs; `make setup` installs its node_modules.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import time
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect as ws_connect

from tests.integration.rawclient import RawClient
from tests.integration.server import ACCOUNTS, ROOT, Server, running_server

NODE = shutil.which("node")
XMPPJS = ROOT / "tests" / "interop" / "xmppjs"
CLIENT = XMPPJS / "client.mjs"

NS_SASL1 = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_SASL2 = "urn:xmpp:sasl:2"
NS_BIND2 = "urn:xmpp:bind:0"
NS_SM = "urn:xmpp:sm:3"
NS_STREAMS = "http://etherx.jabber.org/streams"

TRANSPORTS = ["starttls", "direct-tls", "websocket"]
DEADLINE = 25.0  # seconds; client.mjs gives up by itself after 20

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        NODE is None,
        reason="node is not on the PATH: the xmpp.js interop tests need Node.js 20+ "
        "(https://nodejs.org/ or the system's nodejs package), then `make setup` for its node_modules",
    ),
]


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def installed() -> None:
    if not (XMPPJS / "node_modules" / "@xmpp" / "client" / "package.json").is_file():
        pytest.fail(f"xmpp.js is not installed in {XMPPJS.relative_to(ROOT)}/node_modules: run `make setup`")


@pytest.fixture(scope="module")
def server(installed: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("server")) as srv:
        yield srv


@pytest.fixture(scope="module")
def features(server: Server) -> ET.Element:
    """The pre-authentication stream features, read from a raw RFC 7395 WebSocket stream."""
    with ws_connect(f"ws://127.0.0.1:{server.http}/xmpp-websocket", subprotocols=["xmpp"]) as ws:  # type: ignore[list-item]
        ws.send("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>")
        assert str(ws.recv(timeout=10)).startswith("<open")
        features = ET.fromstring(ws.recv(timeout=10))
        ws.send("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>")
    assert features.tag == f"{{{NS_STREAMS}}}features"
    return features


@pytest.fixture(scope="module")
def sasl2_offered(features: ET.Element) -> bool:
    """Whether the server offers XEP-0388 (with Bind2 inline)."""
    authentication = features.find(f"{{{NS_SASL2}}}authentication")
    if authentication is None:
        return False
    # Bind2 rides inline in SASL2; the tests below expect the two together.
    assert authentication.find(f"{{{NS_SASL2}}}inline/{{{NS_BIND2}}}bind") is not None, ET.tostring(features)
    return True


@pytest.fixture(scope="module")
def sm_inline_offered(features: ET.Element, sasl2_offered: bool) -> bool:
    """Whether XEP-0198 rides inline too: <enable/> in Bind2 and <resume/> in SASL2 (XEP-0198 §9)."""
    if not sasl2_offered:
        return False
    inline = f"{{{NS_SASL2}}}authentication/{{{NS_SASL2}}}inline"
    in_bind2 = features.find(
        f"{inline}/{{{NS_BIND2}}}bind/{{{NS_BIND2}}}inline/{{{NS_BIND2}}}feature[@var='{NS_SM}']"
    )
    in_sasl2 = features.find(f"{inline}/{{{NS_SM}}}sm")
    # the one without the other would be odd: a session that can be resumed only from a non-SASL2 login
    assert (in_bind2 is None) == (in_sasl2 is None), ET.tostring(features)
    return in_bind2 is not None


def service(server: Server, transport: str) -> str:
    return {
        "starttls": f"xmpp://127.0.0.1:{server.c2s}",
        "direct-tls": f"xmpps://127.0.0.1:{server.c2s_tls}",
        "websocket": f"ws://127.0.0.1:{server.http}/xmpp-websocket",
    }[transport]


# ------------------------------------------------------------------------------------------ the client
@dataclass
class Run:
    """One client.mjs run: its JSON events, exit code and stderr."""

    argv: list[str]
    events: list[dict[str, Any]] = field(default_factory=list)
    returncode: int | None = None
    stderr: str = ""

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind]

    def successes(self) -> list[dict[str, Any]]:
        return [e for e in self.of("nonza") if e["name"] == "success"]

    def bodies(self) -> list[str]:
        return [str(e["body"]) for e in self.of("message")]

    @property
    def online(self) -> dict[str, Any]:
        found = self.of("online")
        assert len(found) == 1, self.explain()
        return found[0]

    @property
    def jid(self) -> str:
        return str(self.online["jid"])

    @property
    def resource(self) -> str:
        return self.jid.split("/", 1)[1]

    def sasl_profile(self) -> str | None:
        """From the <success/> seen during negotiation: 'sasl2' (XEP-0388) or 'sasl1' (RFC 6120)."""
        for e in self.of("nonza"):
            if e["name"] == "success":
                return {NS_SASL2: "sasl2", NS_SASL1: "sasl1"}.get(e["xmlns"])
        return None

    def explain(self) -> str:
        lines = "\n".join(json.dumps(e) for e in self.events)
        return f"{' '.join(self.argv)}\nexit {self.returncode}\n{lines}\nstderr:\n{self.stderr}"


class Client:
    """client.mjs as a child process whose JSON lines are read as they come."""

    def __init__(self, server: Server, transport: str, user: str, *actions: str, **opts: str) -> None:
        password = opts.pop("password") if "password" in opts else ACCOUNTS[user]
        args = ["--service", service(server, transport), "--username", user, "--password", password]
        for name, value in opts.items():
            if name in ("no_sasl2", "trace"):  # flags
                args.append(f"--{name.replace('_', '-')}")
            else:
                args += [f"--{name.replace('_', '-')}", value]
        assert NODE is not None
        self.run = Run([NODE, "--experimental-websocket", str(CLIENT), *args, *actions])
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> Client:
        env = {**os.environ, "NODE_TLS_REJECT_UNAUTHORIZED": "0", "NODE_NO_WARNINGS": "1"}
        self.proc = await asyncio.create_subprocess_exec(
            *self.run.argv,
            cwd=XMPPJS,
            env=env,
            stdin=asyncio.subprocess.PIPE,  # the go-ahead for a `hold` action; closed by finish()
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return self

    async def release(self) -> None:
        """Let a `hold` action go on."""
        assert self.proc is not None
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        await self.proc.stdin.drain()

    async def kill(self) -> Run:
        """End the child now (after a failed step) and collect what it printed."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.kill()
        return await self.finish()

    async def until(self, kind: str) -> dict[str, Any]:
        """Read events until one of `kind` (failing on an error event or the end of output)."""
        assert self.proc is not None
        assert self.proc.stdout is not None
        async with asyncio.timeout(DEADLINE):
            while line := await self.proc.stdout.readline():
                event = self._parse(line)
                if event["event"] == kind:
                    return event
                assert event["event"] != "error", self.run.explain()
        await self.finish()
        raise AssertionError(f"no {kind!r} event\n{self.run.explain()}")

    async def finish(self) -> Run:
        assert self.proc is not None
        try:
            async with asyncio.timeout(DEADLINE):
                out, err = await self.proc.communicate()
        except TimeoutError:
            self.proc.kill()
            out, err = await self.proc.communicate()
        for line in out.splitlines():
            self._parse(line)
        self.run.stderr = err.decode(errors="replace")
        self.run.returncode = self.proc.returncode
        return self.run

    def _parse(self, line: bytes) -> dict[str, Any]:
        try:
            event: dict[str, Any] = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}\n{self.run.explain()}") from None
        self.run.events.append(event)
        return event


async def xmppjs(server: Server, transport: str, user: str, *actions: str, **opts: str) -> Run:
    client = await Client(server, transport, user, *actions, **opts).start()
    return await client.finish()


def check_profile(run: Run, *, sasl2_offered: bool, tag: str) -> str:
    """Hold xmpp.js to what the server offers; returns a one-line description of the path taken."""
    profile = run.sasl_profile()
    assert run.online["sasl"] == profile, run.explain()
    if sasl2_offered:
        # XEP-0388 success without a stream restart, and XEP-0386 resource = <tag>~<stable id>.
        assert profile == "sasl2", run.explain()
        assert run.online["bind"] == "bind2", run.explain()
        assert "~" in run.resource, run.explain()
        assert run.resource.startswith(f"{tag}~"), run.explain()
        assert len(run.successes()) == 1, run.explain()
    else:
        assert profile == "sasl1", run.explain()
        assert run.online["bind"] == "rfc6120", run.explain()
        assert run.resource == tag, run.explain()
    return f"{profile} + {run.online['bind']}, jid {run.jid}"


def check_sm_enabled_inline(run: Run) -> str:
    """XEP-0198 enabled inline with Bind2: <success><bound><enabled id=… resume='true'/></bound></success>,
    and taken up by xmpp.js (its state after login); returns the resumption id."""
    success = run.successes()[0]
    assert f"{{{NS_BIND2}}}bound/{{{NS_SM}}}enabled" in success.get("nested", []), run.explain()
    enabled = success.get("sm", {})
    assert enabled.get("name") == "enabled", run.explain()
    assert enabled.get("resume") == "true", run.explain()
    assert enabled.get("id"), run.explain()
    assert int(enabled.get("max", "0")) > 0, run.explain()
    [state] = run.of("sm")
    assert state == {"event": "sm", "enabled": True, "id": enabled["id"], "max": enabled["max"]}, (
        run.explain()
    )
    return str(enabled["id"])


# ------------------------------------------------------------------------------------------ tests
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_xmppjs_logs_in_and_chats(
    server: Server, sasl2_offered: bool, sm_inline_offered: bool, transport: str, record_property: Any
) -> None:
    bob = await Client(
        server, transport, "bob", "presence", "wait", "1", "reply", "hi alice", resource="js"
    ).start()
    bob_jid = str((await bob.until("online"))["jid"])
    alice = await xmppjs(
        server, transport, "alice", "presence", "send", bob_jid, "hello bob", "wait", "1", resource="js"
    )
    bob_run = await bob.finish()
    assert alice.returncode == 0, alice.explain()
    assert bob_run.returncode == 0, bob_run.explain()

    assert alice.jid.startswith("alice@localhost/"), alice.explain()
    assert bob_jid.startswith("bob@localhost/"), bob_run.explain()
    [got] = bob_run.of("message")
    assert (got["from"], got["to"], got["type"], got["body"]) == (alice.jid, bob_jid, "chat", "hello bob")
    [got] = alice.of("message")
    assert (got["from"], got["to"], got["body"]) == (bob_jid, alice.jid, "hi alice")
    assert alice.of("offline"), alice.explain()  # a clean close of the stream, answered by the server

    path = check_profile(alice, sasl2_offered=sasl2_offered, tag="js")
    check_profile(bob_run, sasl2_offered=sasl2_offered, tag="js")
    if sm_inline_offered:
        check_sm_enabled_inline(alice)
        check_sm_enabled_inline(bob_run)
        path += ", XEP-0198 enabled inline"
    record_property("xmppjs_path", path)
    print(f"xmpp.js over {transport}: {path} (server offers SASL2: {sasl2_offered})")


class Bob:
    """bob on a raw STARTTLS stream (tests/integration/rawclient.py, blocking: run it in a thread)."""

    def __init__(self, server: Server, resource: str) -> None:
        self.raw = RawClient(server.c2s)
        self.jid = self.raw.login("bob", ACCOUNTS["bob"], resource)
        self.pings = 0

    def chat(self, to: str, *bodies: str) -> None:
        """Send the messages, then make sure the server has routed them: it handles a client's
        stanzas in order, so once it answers a ping sent after them they have been delivered to the
        recipient's session (written to its connection, or queued while the session hibernates)."""
        for body in bodies:
            self.raw.send(f"<message to='{to}' type='chat'><body>{body}</body></message>")
        self.pings += 1
        self.raw.send(
            f"<iq type='get' id='ping{self.pings}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
        )
        got = self.raw.read_until(f"<iq[^>]*id=.ping{self.pings}.")
        # nothing bounced: every message found alice's session, connected or not
        assert b"error" not in got, got

    def close(self) -> None:
        self.raw.close()


ACK_H = r"<a xmlns=.urn:xmpp:sm:3. h=.(\d+)./>"  # an XEP-0198 <a/> as xmpp.js writes it
RECONNECT_MS = 500  # @xmpp/reconnect's delay after the loss (its default is 1000)
# a fixed user agent per transport, as a real client keeps one (one per transport, so that a session
# left hibernating by a failed run cannot meet the next run's under the same resource)
ALICE_UA = {t: str(uuid.uuid5(uuid.NAMESPACE_URL, f"xmppauth-interop:xmppjs:alice:{t}")) for t in TRANSPORTS}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_xmppjs_resumes_a_dropped_session_and_every_message_arrives_once(
    server: Server, sm_inline_offered: bool, transport: str, record_property: Any
) -> None:
    """XEP-0198 through a dropped connection, as xmpp.js does it: enabled inline in Bind2, resumed
    inline in SASL2 by @xmpp/reconnect + @xmpp/stream-management.

    bob's messages to alice fall in four groups:
      before  handled by xmpp.js before the drop; some acknowledged with <a/> (the server asks with <r/>
              after five unacknowledged stanzas), the rest by the h='…' of the <resume/>: never again;
      lost    written by the server to the old connection but never handled (client.mjs `deaf` swallows
              them before xmpp.js's parser): not counted in h, so they must come again after the resume;
      during  sent while alice is away, queued by the hibernating session: delivered after the resume;
      after   sent on the resumed stream.
    @xmpp/stream-management does not deduplicate what it receives (it only counts stanzas for its h), so
    every retransmitted stanza reaches the application's "stanza" handler: exactly-once at the level of
    client.mjs's message events depends on the server honouring the h of <resume/>, and that is what is
    asserted, on bodies, in order.
    """
    # the server offers XEP-0198 inline (tests/proto hold its features to it): if the probe does not
    # find it, that is a regression to see, never a reason to skip the test
    assert sm_inline_offered, "the server does not offer XEP-0198 inline in SASL2/Bind2"
    before = [f"before {i}" for i in range(6)]
    lost = [f"lost {i}" for i in range(3)]
    during = [f"during {i}" for i in range(3)]
    after = ["after 0"]
    expected = before + lost + during + after

    bob = await asyncio.to_thread(Bob, server, f"resume-{transport}")
    alice = Client(
        server,
        transport,
        "alice",
        *("presence", "wait", str(len(before)), "deaf", "hold", "drop", "resumed"),
        *("wait", str(len(expected)), "stop"),
        resource="phone",
        user_agent_id=ALICE_UA[transport],
        reconnect=str(RECONNECT_MS),
        trace="1",  # the nonzas xmpp.js writes are checked too
    )
    try:
        await alice.start()
        jid = str((await alice.until("online"))["jid"])
        await asyncio.to_thread(bob.chat, jid, *before)
        await alice.until("deaf")
        await asyncio.to_thread(bob.chat, jid, *lost)
        await alice.release()
        dropped = await alice.until("dropped")
        await asyncio.to_thread(bob.chat, jid, *during)
        queued_at = time.time()
        reconnecting = await alice.until("reconnecting")
        resumed = await alice.until("resumed")
        await asyncio.to_thread(bob.chat, jid, *after)
        run = await alice.finish()
    except BaseException:
        print((await alice.kill()).explain())  # shown with the failure
        raise
    finally:
        await asyncio.to_thread(bob.close)
    assert run.returncode == 0, run.explain()

    # enabled inline, then resumed inline: a second SASL2 <success/> with <resumed/> and no <bound/>,
    # no stream features after it, the same full JID and no second "online" (Run.online checks one)
    previd = check_sm_enabled_inline(run)
    assert run.jid == jid, run.explain()
    _, second = run.successes()
    assert second["xmlns"] == NS_SASL2, run.explain()
    assert f"{{{NS_SM}}}resumed" in second["children"], run.explain()
    assert f"{{{NS_BIND2}}}bound" not in second["children"], run.explain()
    resumed_el = second["sm"]
    assert resumed_el == {"name": "resumed", "h": "1", "previd": previd}, run.explain()  # h: her presence
    after_second = run.events[run.events.index(second) + 1 :]
    assert not [e for e in after_second if e.get("name") == "stream:features"], run.explain()
    assert (resumed["jid"], resumed["id"]) == (jid, previd), run.explain()
    assert not run.of("sm-fail"), run.explain()  # nothing alice sent was given up

    # what xmpp.js had handled when the connection went: its presence echo and the `before` messages;
    # part of it acknowledged on request before the drop: the server asks after five stanzas (its
    # presence echo and `before 0..3`) and xmpp.js answers each <r/> with what it has handled so far
    handled = 1 + len(before)
    assert dropped["inbound"] == handled, run.explain()
    written = [(i, str(e["data"])) for i, e in enumerate(run.events) if e["event"] == "out"]
    dropped_at = run.events.index(dropped)
    acked = [int(h) for i, data in written if i < dropped_at for h in re.findall(ACK_H, data)]
    assert acked, run.explain()
    assert 5 <= acked[-1] < handled, run.explain()  # so the <resume/> must acknowledge the rest
    # on the new connection xmpp.js puts <resume h=…/> into <authenticate/> (with a Bind2 request
    # that the server must ignore since the resumption succeeds)
    again = [ET.fromstring(d) for i, d in written if i > dropped_at and d.startswith("<authenticate")]
    assert len(again) == 1, run.explain()  # one reconnection
    resume = again[0].find(f"{{{NS_SM}}}resume")
    assert resume is not None, run.explain()
    assert resume.attrib == {"h": str(handled), "previd": previd}, run.explain()
    # bob's `during` messages reached the server while alice was away, before xmpp.js even reconnected
    assert reconnecting["at"] / 1000 > queued_at, (queued_at, run.explain())

    got = run.bodies()
    twice = sorted(body for body, n in Counter(got).items() if n > 1)
    missing = [body for body in expected if body not in got]
    assert (twice, missing) == ([], []), run.explain()
    assert got == expected, run.explain()
    assert {e["from"] for e in run.of("message")} == {bob.jid}, run.explain()

    record_property("xmppjs_resume", f"{transport}: resumed {previd}")
    print(
        f"xmpp.js over {transport}: dropped with h={dropped['inbound']} ({dropped['ignored']} bytes swallowed "
        f"as lost), resumed inline after {resumed['at'] - reconnecting['at']} ms, {len(got)} messages once each"
    )


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_xmppjs_over_rfc6120_sasl_and_bind(server: Server, transport: str) -> None:
    """The RFC 6120 path stays usable: the client is made blind to <authentication xmlns='urn:xmpp:sasl:2'/>."""
    run = await xmppjs(server, transport, "carol", "presence", resource="legacy", no_sasl2="1")
    assert run.returncode == 0, run.explain()
    check_profile(run, sasl2_offered=False, tag="legacy")
    assert run.jid == "carol@localhost/legacy"
    assert any(e["name"] == "success" and e["xmlns"] == NS_SASL1 for e in run.of("nonza")), run.explain()


async def test_the_resource_is_stable_per_user_agent_id(server: Server, sasl2_offered: bool) -> None:
    ua, other = str(uuid.uuid4()), str(uuid.uuid4())
    # One after the other: without Bind2 the three would ask for the same resource.
    first = await xmppjs(server, "websocket", "alice", resource="phone", user_agent_id=ua)
    elsewhere = await xmppjs(server, "websocket", "alice", resource="phone", user_agent_id=other)
    again = await xmppjs(server, "websocket", "alice", resource="phone", user_agent_id=ua)
    for run in (first, elsewhere, again):
        assert run.returncode == 0, run.explain()
        check_profile(run, sasl2_offered=sasl2_offered, tag="phone")
    if sasl2_offered:
        assert again.jid == first.jid, (first.explain(), again.explain())
        assert elsewhere.jid != first.jid, (first.explain(), elsewhere.explain())


@pytest.mark.parametrize("hide_sasl2", [False, True], ids=["as-offered", "rfc6120"])
async def test_a_wrong_password_fails_cleanly(server: Server, sasl2_offered: bool, hide_sasl2: bool) -> None:
    opts = {"no_sasl2": "1"} if hide_sasl2 else {}
    run = await xmppjs(server, "starttls", "alice", "presence", password="not the password", **opts)
    assert run.returncode == 1, run.explain()
    assert not run.of("online"), run.explain()
    [error] = run.of("error")
    assert run.events[-1] is error, run.explain()
    assert error["stage"] == "login", run.explain()
    assert error["name"] == "SASLError", run.explain()
    assert error["condition"] == "not-authorized", run.explain()
    assert "not-authorized" in error["message"], run.explain()
    [failure] = [e for e in run.of("nonza") if e["name"] == "failure"]
    assert failure["xmlns"] == (NS_SASL2 if sasl2_offered and not hide_sasl2 else NS_SASL1), run.explain()
    assert "Traceback" not in server.log_text()


async def test_the_client_reports_bad_usage_without_connecting(installed: None) -> None:
    assert NODE is not None
    proc = await asyncio.create_subprocess_exec(
        NODE,
        str(CLIENT),
        "--service",
        "xmpp://127.0.0.1:1",
        "fly",
        cwd=XMPPJS,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2
    assert json.loads(out)["stage"] == "usage"


# ------------------------------------------------------------------------------------------ FAST (XEP-0484)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_xmppjs_gets_a_fast_token_and_reconnects_with_it_instead_of_the_password(
    server: Server, transport: str, tmp_path: Path
) -> None:
    token_file = tmp_path / "token.json"
    ua = str(uuid.uuid4())
    first = await xmppjs(server, transport, "alice", "presence", token_file=str(token_file), user_agent_id=ua)
    assert first.returncode == 0, first.explain()
    attempts = first.of("authenticate")
    assert len(attempts) == 1, first.explain()
    attempt = attempts[0]
    assert attempt["requestToken"] == "HT-SHA-256-NONE", first.explain()  # no token yet: it asks for one
    saved = first.of("token")
    assert len(saved) == 1, first.explain()
    assert saved[0]["mechanism"] == "HT-SHA-256-NONE", first.explain()
    assert token_file.exists()

    # The password is wrong now: only the token can let it in.
    second = await xmppjs(
        server, transport, "alice", "presence", password="wrong", token_file=str(token_file), user_agent_id=ua
    )
    assert second.returncode == 0, second.explain()
    [attempt] = second.of("authenticate")
    assert attempt["mechanism"] == "HT-SHA-256-NONE", second.explain()
    assert attempt["fast"] is True, second.explain()
    assert second.jid.startswith("alice@localhost/"), second.explain()
    assert second.sasl_profile() == "sasl2", second.explain()

    # Another installation (user-agent id) cannot use this token.
    third = await xmppjs(
        server,
        transport,
        "alice",
        password="wrong",
        token_file=str(token_file),
        user_agent_id=str(uuid.uuid4()),
    )
    assert third.returncode == 1, third.explain()
    failures = [e for e in third.of("nonza") if e["name"] == "failure"]
    assert failures, third.explain()
    assert third.of("token-deleted"), third.explain()  # credentials-expired: xmpp.js drops it
