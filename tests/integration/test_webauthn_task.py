"""WebAuthn inside SASL2 over real sockets (issue 10): the X-WEBAUTHN task (docs/protocol/webauthn-task.md)
with a software authenticator, by hand and with the reference client over every transport; a replayed
assertion, another origin and a cloned key fail with a text; the FAST token comes after the task and a
FAST login asks for none; RFC 6120 SASL is refused; the session record names the factor."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.rawclient import RawClient
from tests.integration.server import Server, running_server
from tests.integration.test_grants import fast_login, manage
from tests.integration.test_mfa import BIND2, FAST, SASL2, password_login
from tests.integration.test_refclient import client
from xmppauth.client.softkey import SoftKey

pytestmark = pytest.mark.integration

WEBAUTHN = "urn:xmppauth:webauthn:0"
PASSWORD = "correct-horse"

# Registration happens in a browser (the portal); here the server's own code registers a software key,
# in the server's database, as the portal's view would.
_REGISTER = """
from accounts import webauthn
from accounts.models import User
from xmppauth.client.softkey import SoftKey
user = User.objects.get(username=NAME)
options, ceremony = webauthn.registration_options(user)
key, answer = SoftKey.create(options, ORIGIN)
webauthn.register(user, ceremony, answer, "soft key")
from pathlib import Path
key.save(Path(PATH))
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("webauthn")) as srv:
        yield srv


def origin(server: Server) -> str:
    """The page a browser client would be served from: this server's own HTTP port on localhost."""
    return f"http://localhost:{server.http}"


def with_key(server: Server, tmp_path: Path) -> tuple[str, Path]:
    """A fresh account with a registered software key; its name and the key's file."""
    name = f"wa{uuid.uuid4().hex[:8]}"
    manage(server, "adduser", name, PASSWORD)
    path = tmp_path / f"{name}.key"
    values = f"NAME, ORIGIN, PATH = {name!r}, {origin(server)!r}, {str(path)!r}\n"
    done = server.manage("shell", "-c", values + _REGISTER)
    assert done.returncode == 0, done.stderr
    assert path.exists(), done.stderr
    return name, path


def options_of(reply: bytes) -> str:
    found = re.search(rb"<options xmlns='" + WEBAUTHN.encode() + rb"'>([^<]+)</options>", reply)
    assert found, reply
    return found.group(1).decode().replace("&quot;", '"').replace("&amp;", "&")


def assertion_element(answer: str) -> str:
    escaped = answer.replace("&", "&amp;").replace("<", "&lt;")
    return f"<task-data xmlns='{SASL2}'><assertion xmlns='{WEBAUTHN}'>{escaped}</assertion></task-data>"


def start_task(
    server: Server, name: str, *, inline: str = BIND2, ua: str | None = None
) -> tuple[RawClient, str]:
    """A password login up to the server's request options; the client and the options' JSON."""
    raw, reply = password_login(server, name, inline=inline, ua=ua)
    assert b"<task>X-WEBAUTHN</task>" in reply, reply
    raw.send(f"<next xmlns='{SASL2}' task='X-WEBAUTHN'/>")
    return raw, options_of(raw.read_until(rb"</task-data>"))


def test_a_security_key_opens_the_account_its_password_alone_does_not(server: Server, tmp_path: Path) -> None:
    name, path = with_key(server, tmp_path)
    key = SoftKey.load(path)
    raw, options = start_task(server, name)
    parsed = json.loads(options)
    assert parsed["rpId"] == "localhost"
    assert [c["id"] for c in parsed["allowCredentials"]] == [key.credential_id]
    raw.send(assertion_element(key.get(options, origin(server))))
    success = raw.read_until(rb"</success>|</failure>")
    assert b"<success" in success, success
    assert re.search(rb"<authorization-identifier>" + name.encode() + rb"@localhost/mfa~", success), success
    raw.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
    raw.read_until(rb"id=.p1.")
    assert "PLAIN+X-WEBAUTHN" in manage(server, "listsessions", "--user", name)
    raw.close()


def test_a_replayed_assertion_and_another_origin_fail_with_a_text(server: Server, tmp_path: Path) -> None:
    name, path = with_key(server, tmp_path)
    key = SoftKey.load(path)
    raw, options = start_task(server, name)
    answer = key.get(options, origin(server))
    raw.send(assertion_element(answer))
    assert b"<success" in raw.read_until(rb"</success>|</failure>")
    raw.close()
    again, _ = start_task(server, name)  # a new login: a new challenge, which the old answer does not sign
    again.send(assertion_element(answer))
    failure = again.read_until(rb"</failure>")
    assert b"<not-authorized xmlns=" in failure, failure
    assert b"could not be verified" in failure, failure
    again.close()
    phished, options = start_task(server, name)
    phished.send(assertion_element(key.get(options, "https://xmpp-login.evil.example")))
    failure = phished.read_until(rb"</failure>")
    assert b"answered for another site" in failure, failure
    phished.close()


def test_a_cloned_key_is_refused_and_flagged(server: Server, tmp_path: Path) -> None:
    name, path = with_key(server, tmp_path)
    key = SoftKey.load(path)
    for _ in range(2):
        raw, options = start_task(server, name)
        raw.send(assertion_element(key.get(options, origin(server))))
        assert b"<success" in raw.read_until(rb"</success>|</failure>")
        raw.close()
    clone = SoftKey.load(path)
    clone.sign_count = 0  # a copy taken when the key was new
    raw, options = start_task(server, name)
    raw.send(assertion_element(clone.get(options, origin(server))))
    failure = raw.read_until(rb"</failure>")
    assert b"signature counter went backwards" in failure, failure
    raw.close()
    assert "went backwards" in manage(server, "mfa", "list", name)


def test_a_malformed_answer_is_a_malformed_request(server: Server, tmp_path: Path) -> None:
    name, _ = with_key(server, tmp_path)
    raw, _ = start_task(server, name)
    raw.send(f"<task-data xmlns='{SASL2}'><totp xmlns='urn:xmpp:mfa:0'>123456</totp></task-data>")
    failure = raw.read_until(rb"</failure>")
    assert b"<malformed-request xmlns=" in failure, failure
    assert b"assertion" in failure, failure
    raw.close()


def test_fast_comes_after_the_key_and_skips_it(server: Server, tmp_path: Path) -> None:
    name, path = with_key(server, tmp_path)
    ua = str(uuid.uuid4())
    request = f"<request-token xmlns='{FAST}' mechanism='HT-SHA-256-NONE'/>"
    raw, options = start_task(server, name, inline=BIND2 + request, ua=ua)
    raw.send(assertion_element(SoftKey.load(path).get(options, origin(server))))
    success = raw.read_until(rb"</success>")
    token = re.search(rb"<token xmlns='urn:xmpp:fast:0' token='([^']+)'", success)
    assert token, success
    raw.close()
    again = fast_login(server, name, token.group(1).decode(), ua)
    assert b"<success" in again, again
    assert b"<continue" not in again, again


@pytest.mark.parametrize("transport", ["starttls", "tls", "ws"])
def test_the_reference_client_answers_with_its_software_key(
    server: Server, tmp_path: Path, transport: str
) -> None:
    name, path = with_key(server, tmp_path)
    args = ["--password", PASSWORD, "--no-prompt", "--webauthn-origin", origin(server)]
    refused = client(server, f"{name}@localhost", *args, transport=transport)
    assert refused.code == 1, refused
    assert refused.one("failure")["condition"] == "aborted"
    assert "--webauthn-key" in refused.one("failure")["text"]
    run = client(server, f"{name}@localhost", *args, "--webauthn-key", str(path), transport=transport)
    assert run.code == 0, run
    assert run.one("success")["tasks"] == ["X-WEBAUTHN"]
    assert SoftKey.load(path).sign_count == 1  # the key file keeps its counter


def test_rfc6120_sasl_is_refused_for_an_account_with_a_key(server: Server, tmp_path: Path) -> None:
    name, _ = with_key(server, tmp_path)
    raw = RawClient(server.c2s)
    raw.starttls()
    reply = raw.scram("SCRAM-SHA-256", name, PASSWORD)
    assert b"<failure" in reply, reply
    assert b"second factor" in reply, reply
    raw.close()
