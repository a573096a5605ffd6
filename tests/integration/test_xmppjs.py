"""xmpp.js (@xmpp/client 0.14 on Node) against the real server: STARTTLS, direct TLS and WebSocket.

xmpp.js prefers XEP-0388 SASL2 with XEP-0386 Bind2 whenever the server offers it, and falls back to
RFC 6120 SASL + resource binding otherwise. A raw WebSocket probe tells which the server offers, and
the tests hold xmpp.js to it. Run with -rP to see which path each transport took.

The client is tests/interop/xmppjs/client.mjs; `make setup` installs its node_modules.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from websockets.sync.client import connect as ws_connect

from tests.integration.server import ACCOUNTS, ROOT, Server, running_server

NODE = shutil.which("node")
XMPPJS = ROOT / "tests" / "interop" / "xmppjs"
CLIENT = XMPPJS / "client.mjs"

NS_SASL1 = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_SASL2 = "urn:xmpp:sasl:2"
NS_BIND2 = "urn:xmpp:bind:0"
NS_STREAMS = "http://etherx.jabber.org/streams"

TRANSPORTS = ["starttls", "direct-tls", "websocket"]
DEADLINE = 25.0  # seconds; client.mjs gives up by itself after 20

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        NODE is None, reason="node is not installed: the xmpp.js interop tests need Node.js 20+"
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
def sasl2_offered(server: Server) -> bool:
    """Whether the server offers XEP-0388 (with Bind2 inline), read from a raw RFC 7395 WebSocket stream."""
    with ws_connect(f"ws://127.0.0.1:{server.http}/xmpp-websocket", subprotocols=["xmpp"]) as ws:  # type: ignore[list-item]
        ws.send("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>")
        assert str(ws.recv(timeout=10)).startswith("<open")
        features = ET.fromstring(ws.recv(timeout=10))
        ws.send("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>")
    assert features.tag == f"{{{NS_STREAMS}}}features"
    authentication = features.find(f"{{{NS_SASL2}}}authentication")
    if authentication is None:
        return False
    # Bind2 rides inline in SASL2; the tests below expect the two together.
    assert authentication.find(f"{{{NS_SASL2}}}inline/{{{NS_BIND2}}}bind") is not None, ET.tostring(features)
    return True


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
        password = opts.pop("password", ACCOUNTS[user])
        args = ["--service", service(server, transport), "--username", user, "--password", password]
        for name, value in opts.items():
            if name == "no_sasl2":
                args.append("--no-sasl2")
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
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return self

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
        successes = [e for e in run.of("nonza") if e["name"] == "success"]
        assert len(successes) == 1, run.explain()
    else:
        assert profile == "sasl1", run.explain()
        assert run.online["bind"] == "rfc6120", run.explain()
        assert run.resource == tag, run.explain()
    return f"{profile} + {run.online['bind']}, jid {run.jid}"


# ------------------------------------------------------------------------------------------ tests
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_xmppjs_logs_in_and_chats(
    server: Server, sasl2_offered: bool, transport: str, record_property: Any
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
    record_property("xmppjs_path", path)
    print(f"xmpp.js over {transport}: {path} (server offers SASL2: {sasl2_offered})")


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
