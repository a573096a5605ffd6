"""The reference client (xmppauth/client) run as a command against a real server: every transport, the
SASL2 tasks (TOTP, X-RECOVERY, TOTP-INIT, XEP-0480 upgrade), FAST tokens, and its exit codes."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from tests.integration.rawclient import Session
from tests.integration.server import ROOT, Server, running_server
from tests.integration.test_grants import manage
from tests.integration.test_mfa import CODE, secret_of, totp_code
from xmppauth.client.fasttoken import FastToken, TokenFile
from xmppauth.client.session import AuthFailed, LoginOptions, login
from xmppauth.client.tasks import Answers
from xmppauth.client.transport import Transport

pytestmark = pytest.mark.integration

PASSWORD = "correct-horse"
SASL2 = "urn:xmpp:sasl:2"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("refclient")) as srv:
        yield srv


class Run:
    def __init__(self, done: subprocess.CompletedProcess[str]) -> None:
        self.code = done.returncode
        self.stderr = done.stderr
        self.lines: list[dict[str, Any]] = [json.loads(line) for line in done.stdout.splitlines()]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["event"] == name]

    def one(self, name: str) -> dict[str, Any]:
        found = self.events(name)
        assert len(found) == 1, (name, self.lines, self.stderr)
        return found[0]

    def __repr__(self) -> str:
        return f"exit {self.code}: {self.lines} {self.stderr}"


def client(server: Server, jid: str, *args: str, transport: str = "tls", trust: bool = True) -> Run:
    connect = ["--url", f"ws://127.0.0.1:{server.http}/xmpp-websocket"] if transport == "ws" else [
        "--host", "127.0.0.1", "--port", str(server.c2s if transport == "starttls" else server.c2s_tls),
    ]  # fmt: skip
    cmd = [sys.executable, "-m", "xmppauth.client", jid, "--json", "--transport", transport, *connect]
    cmd += ["--cafile", str(server.cert)] if trust else []
    env = {k: v for k, v in os.environ.items() if k != "XMPPAUTH_PASSWORD"}
    done = subprocess.run(
        [*cmd, *args], cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
    )
    return Run(done)


def account(server: Server, *, totp: bool = False, policy: str | None = None) -> tuple[str, bytes]:
    """A fresh account (with a confirmed authenticator app if ``totp``); its JID and the app's secret."""
    name = f"ref{uuid.uuid4().hex[:8]}"
    manage(server, "adduser", name, PASSWORD, *(["--password-login", policy] if policy else []))
    secret = b""
    if totp:
        uri = re.search(r"otpauth://totp/\S+", manage(server, "totp", "add", name))
        assert uri
        secret = secret_of(uri.group(0))
    return f"{name}@localhost", secret


def b32(secret: bytes) -> str:
    return base64.b32encode(secret).decode().rstrip("=")


def fresh_step() -> None:
    """Not too close to the end of a TOTP step: a code computed now is still current at the server."""
    if time.time() % 30 > 27:
        time.sleep(30 - time.time() % 30 + 0.2)


# ---------------------------------------------------------------------- transports
@pytest.mark.parametrize("transport", ["starttls", "tls", "ws"])
def test_it_logs_in_pings_and_closes_over_each_transport(server: Server, transport: str) -> None:
    run = client(server, "alice@localhost", "--password", "wonderland", "--ping", transport=transport)
    assert run.code == 0, run
    connected = run.one("connected")
    assert connected["transport"] == transport
    if transport != "ws":
        assert re.search(r"TLSv1\.[23]$", connected["detail"]), connected
    assert "SCRAM-SHA-256" in run.one("offered")["mechanisms"]
    success = run.one("success")
    assert re.fullmatch(r"alice@localhost/refclient~\S+", success["jid"]), success
    assert success["bound"] is True
    assert success["tasks"] == []
    assert run.one("ping")["ms"] >= 0
    assert [line["event"] for line in run.lines][-1] == "closed"


def test_it_refuses_an_untrusted_certificate_unless_told_to(server: Server) -> None:
    refused = client(server, "alice@localhost", "--password", "wonderland", trust=False)
    assert refused.code == 3, refused
    assert "certificate" in refused.one("error")["message"].lower()
    assert not refused.events("success")
    accepted = client(server, "alice@localhost", "--password", "wonderland", "--insecure", trust=False)
    assert accepted.code == 0, accepted


def test_plain_logs_in_and_a_message_is_delivered(server: Server, bob: Session) -> None:
    run = client(
        server, "alice@localhost", "--password", "wonderland", "--mechanism", "PLAIN",
        "--send", f"{bob.jid}:hello from the reference client",
    )  # fmt: skip
    assert run.code == 0, run
    assert run.one("sent")["to"] == bob.jid
    assert b"hello from the reference client" in bob.expect("</message>")


def test_a_wrong_password_exits_1_with_the_condition(server: Server) -> None:
    run = client(server, "alice@localhost", "--password", "not-it")
    assert run.code == 1, run
    assert run.one("failure")["condition"] == "not-authorized"
    assert not run.events("success")


def test_a_missing_password_without_a_prompt_is_a_usage_error(server: Server) -> None:
    run = client(server, "alice@localhost", "--no-prompt")
    assert run.code == 2, run
    assert "password is needed" in run.one("error")["message"]


# ---------------------------------------------------------------------- second factors
def test_totp_with_the_secret_succeeds(server: Server) -> None:
    jid, secret = account(server, totp=True)
    fresh_step()
    run = client(server, jid, "--password", PASSWORD, "--totp-secret", b32(secret), "--no-prompt")
    assert run.code == 0, run
    assert "TOTP" in run.one("tasks")["tasks"]
    assert run.one("task")["task"] == "TOTP"
    assert run.one("success")["tasks"] == ["TOTP"]


def test_a_wrong_totp_code_exits_1_with_the_servers_text(server: Server) -> None:
    jid, secret = account(server, totp=True)
    now = time.time()
    current = {totp_code(secret, now, offset) for offset in (-1, 0, 1, 2)}
    wrong = next(code for code in ("000000", "000001", "000002", "000003", "000004") if code not in current)
    run = client(server, jid, "--password", PASSWORD, "--totp-code", wrong)
    assert run.code == 1, run
    failure = run.one("failure")
    assert failure["condition"] == "not-authorized"
    assert failure["text"] == "wrong code"
    assert not run.events("success")


def test_no_code_and_no_prompt_aborts_saying_a_code_is_needed(server: Server) -> None:
    jid, _ = account(server, totp=True)
    run = client(server, jid, "--password", PASSWORD, "--no-prompt")
    assert run.code == 1, run
    failure = run.one("failure")
    assert failure["condition"] == "aborted"
    assert "second factor is needed" in failure["text"]
    assert not run.events("task")


def test_a_recovery_code_works_once(server: Server) -> None:
    jid, _ = account(server, totp=True)
    codes = CODE.findall(manage(server, "mfa", "recovery", jid.split("@")[0]))
    assert codes
    first = client(server, jid, "--password", PASSWORD, "--recovery-code", codes[0], "--no-prompt")
    assert first.code == 0, first
    assert first.one("tasks")["tasks"] == ["TOTP", "X-RECOVERY"]
    assert first.one("success")["tasks"] == ["X-RECOVERY"]
    again = client(server, jid, "--password", PASSWORD, "--recovery-code", codes[0], "--no-prompt")
    assert again.code == 1, again
    assert "already used" in again.one("failure")["text"]


def test_totp_init_sets_up_an_authenticator_that_the_next_login_asks_for(server: Server) -> None:
    """--totp-from-init answers TOTP-INIT with a code from the URI it received (documented in cli.py);
    the test takes the secret from the ``setup`` line and logs in again with a code of its own."""
    jid, _ = account(server, policy="second-factor")
    fresh_step()
    run = client(server, jid, "--password", PASSWORD, "--totp-from-init", "--no-prompt")
    assert run.code == 0, run
    assert run.one("tasks")["tasks"] == ["TOTP-INIT"]
    uri = run.one("setup")["uri"]
    assert uri.startswith("otpauth://totp/"), uri
    next_step = totp_code(secret_of(uri), time.time(), 1)  # the server accepts one step ahead; never used yet
    after = client(server, jid, "--password", PASSWORD, "--totp-code", next_step, "--no-prompt")
    assert after.code == 0, after
    assert after.one("tasks")["tasks"] == ["TOTP"]  # set up: the account now asks for TOTP


def test_totp_init_without_a_code_and_no_prompt_exits_1(server: Server) -> None:
    jid, _ = account(server, policy="second-factor")
    run = client(server, jid, "--password", PASSWORD, "--no-prompt")
    assert run.code == 1, run
    assert run.one("setup")["uri"].startswith("otpauth://totp/")
    assert "TOTP code is needed" in run.one("failure")["text"]


def test_the_scram_upgrade_task_stores_sha512_keys(server: Server) -> None:
    jid, _ = account(server)
    name = jid.split("@")[0]
    drop = (
        f"from accounts.models import User; u = User.objects.get(username='{name}'); "
        "u.scram.pop('SHA-512'); u.save(update_fields=['scram'])"
    )
    manage(server, "shell", "-c", drop)
    before = client(server, jid, "--password", PASSWORD, "--mechanism", "SCRAM-SHA-512")
    assert before.code == 1, before  # control: no SHA-512 keys yet
    run = client(server, jid, "--password", PASSWORD, "--upgrade")
    assert run.code == 0, run
    assert run.one("success")["tasks"] == ["UPGR-SCRAM-SHA-512"]
    after = client(server, jid, "--password", PASSWORD, "--mechanism", "SCRAM-SHA-512")
    assert after.code == 0, after


# ---------------------------------------------------------------------- FAST
def test_a_fast_token_is_stored_then_logs_in_without_a_task(server: Server, tmp_path: Path) -> None:
    jid, secret = account(server, totp=True)
    path = tmp_path / "token.json"
    fresh_step()
    first = client(
        server, jid, "--password", PASSWORD, "--totp-secret", b32(secret), "--fast-token-file", str(path)
    )
    assert first.code == 0, first
    assert first.one("token")["expiry"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = json.loads(path.read_text())
    assert stored["mechanism"] == "HT-SHA-256-NONE"
    assert stored["jid"] == jid
    # no password and no code: only the token can log this in
    second = client(
        server, jid, "--no-prompt", "--fast-token-file", str(path), "--ping", transport="starttls"
    )
    assert second.code == 0, second
    assert second.one("fast")["used"] is True
    assert not second.events("tasks")
    assert second.one("success")["tasks"] == []
    assert second.one("success")["jid"].startswith(f"{jid}/refclient~")


def test_a_refused_fast_token_is_deleted_and_the_password_is_used(server: Server, tmp_path: Path) -> None:
    jid, _ = account(server)
    path = tmp_path / "token.json"
    first = client(server, jid, "--password", PASSWORD, "--fast-token-file", str(path))
    assert first.code == 0, first
    stored = json.loads(path.read_text())
    path.write_text(json.dumps({**stored, "token": "not-the-token"}))
    run = client(server, jid, "--password", PASSWORD, "--fast-token-file", str(path))
    assert run.code == 0, run
    fast = run.one("fast")
    assert fast["used"] is False
    assert fast["condition"] in ("not-authorized", "credentials-expired")
    assert run.one("authenticate")["mechanism"] == "SCRAM-SHA-256"
    assert json.loads(path.read_text())["token"] not in ("not-the-token", stored["token"])  # a new one


def test_a_wrong_password_without_a_token_exits_1(server: Server, tmp_path: Path) -> None:
    path = tmp_path / "token.json"
    run = client(server, "alice@localhost", "--password", "not-it", "--fast-token-file", str(path))
    assert run.code == 1, run
    assert run.one("failure")["condition"] == "not-authorized"
    assert not path.exists()


# ---------------------------------------------------------------------- the client checks the server
class FakeServer(Transport):
    """Answers ``<authenticate/>`` with a SCRAM challenge (or nothing for HT-*), then ``<success/>``
    with a server proof that is wrong: the client must refuse it."""

    def __init__(self) -> None:
        super().__init__("localhost", 5.0)
        self.sent: list[str] = []
        self.replies: list[str] = []

    async def _write(self, text: str) -> None:
        self.sent.append(text)
        if "<authenticate" in text and "SCRAM" in text:
            initial = re.search(r"<initial-response>([^<]+)<", text)
            assert initial
            nonce = base64.b64decode(initial.group(1)).decode().split("r=")[1]
            first = f"r={nonce}server,s={base64.b64encode(b'salt').decode()},i=4096"
            self.replies.append(
                f"<challenge xmlns='{SASL2}'>{base64.b64encode(first.encode()).decode()}</challenge>"
            )
        elif "<response" in text or "<authenticate" in text:
            bogus = base64.b64encode(b"v=" + base64.b64encode(b"x" * 32)).decode()
            self.replies.append(
                f"<success xmlns='{SASL2}'><additional-data>{bogus}</additional-data>"
                "<authorization-identifier>alice@localhost/r</authorization-identifier></success>"
            )

    async def receive(self) -> etree._Element:
        return etree.fromstring(self.replies.pop(0))


def _features() -> etree._Element:
    return etree.fromstring(
        f"<features xmlns='http://etherx.jabber.org/streams'><authentication xmlns='{SASL2}'>"
        "<mechanism>SCRAM-SHA-256</mechanism><inline><fast xmlns='urn:xmpp:fast:0'>"
        "<mechanism>HT-SHA-256-NONE</mechanism></fast></inline></authentication></features>"
    )


@pytest.mark.parametrize("with_token", [False, True])
def test_a_server_that_cannot_prove_itself_is_refused(tmp_path: Path, with_token: bool) -> None:
    tokens = TokenFile(tmp_path / "token.json")
    if with_token:
        tokens.save(FastToken(token="t", expiry="", mechanism="HT-SHA-256-NONE", user_agent_id="u", jid=""))
    options = LoginOptions(
        username="alice", domain="localhost", mechanism="SCRAM-SHA-256", tag="t", software="s",
        user_agent_id="u", upgrade=False,
    )  # fmt: skip
    lines: list[tuple[str, str]] = []
    fake = FakeServer()
    with pytest.raises(AuthFailed) as failed:
        asyncio.run(
            login(
                fake,
                _features(),
                options,
                answers=Answers(prompt=False),
                password=lambda: "wonderland",
                tokens=tokens,
                report=lambda event, message, **data: lines.append((event, message)),
            )
        )
    assert failed.value.condition == "server-not-verified"
    assert f"mechanism='{'HT-SHA-256-NONE' if with_token else 'SCRAM-SHA-256'}'" in fake.sent[0]
    assert not any(event == "success" for event, _ in lines)
