"""Second factors across two server processes sharing one PostgreSQL database (issue 10): a TOTP code
accepted by one process is refused by the other in the same time step, a recovery code used on one is
used up on the other, and a security key registered through one process opens logins on the other.

Uses the PostgreSQL on 127.0.0.1:5432 that this project's machines run (a fresh database per module)."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.integration.rawclient import RawClient
from tests.integration.server import (
    ROOT,
    Server,
    fresh_postgres_database,
    migrate,
    running_server,
    server_env,
)
from tests.integration.test_mfa import BIND2, MFA, SASL2, fresh_code, secret_of
from tests.integration.test_webauthn_task import _REGISTER, assertion_element, options_of
from xmppauth.client.softkey import SoftKey

pytestmark = pytest.mark.integration

PASSWORD = "correct-horse"


class Pair:
    """Two serving processes, one database, one factor key (as a real deployment must share it)."""

    def __init__(self, database: str, key: str, first: Server, second: Server) -> None:
        self.env = {"DATABASE_URL": database, "XMPP_FACTOR_KEY": key}
        self.first, self.second = first, second

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=server_env(self.first.data_dir, **self.env),
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr + done.stdout
        return done.stdout


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    key = Fernet.generate_key().decode()
    with fresh_postgres_database() as database:
        env = {"DATABASE_URL": database, "XMPP_FACTOR_KEY": key}
        one, two = tmp_path_factory.mktemp("mfa-a"), tmp_path_factory.mktemp("mfa-b")
        migrate(one, **env)
        with (
            running_server(one, {}, XMPP_NODE="a", **env) as first,
            running_server(two, {}, XMPP_NODE="b", **env) as second,
        ):
            yield Pair(database, key, first, second)


def account(pair: Pair) -> str:
    name = f"two{uuid.uuid4().hex[:8]}"
    pair.manage("adduser", name, PASSWORD)
    return name


def password_login(server: Server, name: str) -> tuple[RawClient, bytes]:
    client = RawClient(server.c2s_tls, direct_tls=True)
    client.open_stream()
    client.authenticate_plain(name, PASSWORD, software="two processes", inline=BIND2)
    return client, client.read_until(rb"</continue>|</success>|</failure>")


def answer(server: Server, name: str, payload: str) -> bytes:
    client, reply = password_login(server, name)
    assert b"<continue" in reply, reply
    client.send(payload)
    result = client.read_until(rb"</success>|</failure>")
    client.close()
    return result


def test_a_totp_code_is_accepted_once_whichever_process_sees_it(pair: Pair) -> None:
    name = account(pair)
    uri = re.search(r"otpauth://totp/\S+", pair.manage("totp", "add", name))
    assert uri
    code = fresh_code(secret_of(uri.group(0)))
    totp = f"<next xmlns='{SASL2}' task='TOTP'><totp xmlns='{MFA}'>{code}</totp></next>"
    first = answer(pair.first, name, totp)
    assert b"<success" in first, first
    replayed = answer(pair.second, name, totp)
    assert b"<failure" in replayed, replayed
    assert b"already used" in replayed


def test_a_recovery_code_used_on_one_process_is_used_up_on_the_other(pair: Pair) -> None:
    name = account(pair)
    out = pair.manage("mfa", "recovery", name, "--count", "2")
    codes = re.findall(r"^\s+(\S{4}-\S{4}-\S{4}-\S{4})$", out, re.MULTILINE)
    assert len(codes) == 2, out
    use = f"<next xmlns='{SASL2}' task='X-RECOVERY'><code xmlns='urn:xmppauth:recovery:0'>{codes[0]}</code></next>"
    assert b"<success" in answer(pair.second, name, use)
    again = answer(pair.first, name, use)
    assert b"already used" in again, again
    other = use.replace(codes[0], codes[1])
    assert b"<success" in answer(pair.first, name, other)  # control: the other code still works there


def test_a_key_registered_through_one_process_opens_logins_on_the_other(pair: Pair, tmp_path: Path) -> None:
    name = account(pair)
    path = tmp_path / "key.json"
    origin = f"http://localhost:{pair.first.http}"
    values = f"NAME, ORIGIN, PATH = {name!r}, {origin!r}, {str(path)!r}\n"
    pair.manage("shell", "-c", values + _REGISTER)
    key = SoftKey.load(path)
    for server in (pair.second, pair.first):
        client, reply = password_login(server, name)
        assert b"<task>X-WEBAUTHN</task>" in reply, reply
        client.send(f"<next xmlns='{SASL2}' task='X-WEBAUTHN'/>")
        options = options_of(client.read_until(rb"</task-data>"))
        client.send(assertion_element(key.get(options, origin)))
        result = client.read_until(rb"</success>|</failure>")
        assert b"<success" in result, result
        client.close()
