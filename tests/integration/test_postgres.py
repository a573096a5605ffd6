"""The same server on PostgreSQL: logins (whose reads are hand-written SQL), grants, FAST, revocation.

Uses the PostgreSQL on 127.0.0.1:5432 (trust authentication) that this project's machines run and
`.ci/run` starts; each run creates its own database and drops it afterwards.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.integration.rawclient import RawClient, parse_stream_error
from tests.integration.server import (
    ROOT,
    Server,
    fresh_postgres_database,
    migrate,
    running_server,
    server_env,
)

pytestmark = pytest.mark.integration

SASL2 = "urn:xmpp:sasl:2"
FAST = "urn:xmpp:fast:0"


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(scope="module")
def server(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("pg")
    migrate(data_dir, DATABASE_URL=database)
    with running_server(data_dir, {"alice": "wonderland"}, DATABASE_URL=database) as srv:
        yield srv


def manage(server: Server, database: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT, env=server_env(server.data_dir, DATABASE_URL=database), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def sasl2_plain(
    server: Server, user: str, secret: str, ua: str, extra: str = "", tag: str = "pg"
) -> tuple[RawClient, bytes]:
    client = RawClient(server.c2s_tls, direct_tls=True)
    client.open_stream()
    client.authenticate_plain(
        user, secret, ua=ua, inline=f"<bind xmlns='urn:xmpp:bind:0'><tag>{tag}</tag></bind>{extra}"
    )
    return client, client.read_until(rb"</stream:features>|</failure>")


def test_password_app_password_fast_and_revocation_on_postgresql(server: Server, database: str) -> None:
    ua = str(uuid.uuid4())
    phone, reply = sasl2_plain(
        server, "alice", "wonderland", ua, f"<request-token xmlns='{FAST}' mechanism='HT-SHA-256-NONE'/>"
    )
    assert b"<success" in reply, reply
    token = re.search(rb"token='([^']+)'", reply)
    assert token, reply
    phone.close()
    phone, reply = sasl2_plain(server, "alice", "wonderland", ua)  # the one-read reconnect
    assert b"<success" in reply, reply

    out = manage(server, database, "apppassword", "create", "alice", "bot", "--scopes", "messages.send")
    secret = out.split(": ", 1)[1].split()[0]
    bot, reply = sasl2_plain(server, "alice", secret, str(uuid.uuid4()))
    assert b"<success" in reply, reply
    bot.send("<presence/>")
    refused = bot.read_until(rb"</presence>")
    assert b"forbidden" in refused, refused
    bot.close()
    wrong, reply = sasl2_plain(server, "alice", "not-the-password", str(uuid.uuid4()))
    assert b"not-authorized" in reply, reply
    wrong.close()

    mac = hmac.new(token.group(1), b"Initiator", hashlib.sha256).digest()
    initial = base64.b64encode(b"alice" + bytes([0]) + mac).decode()
    streams = []
    for tag in ("fast1", "fast2"):  # the first use moves the token to 'current'; the second is one read
        fast = RawClient(server.c2s_tls, direct_tls=True)
        fast.open_stream()
        fast.send(
            f"<authenticate xmlns='{SASL2}' mechanism='HT-SHA-256-NONE'><initial-response>{initial}"
            f"</initial-response><user-agent id='{ua}'/><fast xmlns='{FAST}'/>"
            f"<bind xmlns='urn:xmpp:bind:0'><tag>{tag}</tag></bind></authenticate>"
        )
        assert b"<success" in fast.read_until(rb"</stream:features>|</failure>")
        streams.append(fast)

    listing = manage(server, database, "listsessions", "--user", "alice")
    assert "HT-SHA-256-NONE (fast)" in listing, listing
    manage(server, database, "revoke", "user", "alice")
    started = time.monotonic()
    for stream in (phone, *streams):
        data = stream.read_to_close(timeout=5)
        assert parse_stream_error(data) == "policy-violation", data
    assert time.monotonic() - started < 1.0


# What a login reads, counted on PostgreSQL: the stored SCRAM keys in one query, then (for a client that
# logged in within the last minute) the whole decision in one more, which writes nothing.
_COUNT_LOGIN_QUERIES = """
import json, uuid
import django
django.setup()
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from sessions_acl import login, loginreads
from sessions_acl.models import FastToken

ua = str(uuid.uuid4())

def authorize(credential_id, **extra):
    return login.authorize(
        "alice", credential_id=credential_id, mechanism="SCRAM-SHA-256", user_agent_id=ua, **extra
    )

first = authorize("", software="Chat", device="phone", fast_request="HT-SHA-256-NONE")
token = FastToken.objects.get(slot="new", client_id=first.client_id).pk
authorize(f"fast:{token}")  # the token's first use moves it to 'current' (a write, as it should)
counts = {}
with CaptureQueriesContext(connection) as queries:
    found = loginreads.credentials("alice", timezone.now())
counts["credentials"] = (len(queries), found is not None)
for name, credential_id in (("password", ""), ("fast", f"fast:{token}")):
    with CaptureQueriesContext(connection) as queries:
        outcome = authorize(credential_id, software="Chat", device="phone")
    counts[name] = (len(queries), type(outcome).__name__)
print(json.dumps(counts))
"""


def test_a_repeat_login_reads_in_one_query_and_writes_nothing_on_postgresql(
    server: Server, database: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _COUNT_LOGIN_QUERIES],
        cwd=ROOT, env=server_env(server.data_dir, DATABASE_URL=database), capture_output=True, text=True,
        check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    assert counts == {
        "credentials": [1, True],
        "password": [1, "Authorization"],
        "fast": [1, "Authorization"],
    }, counts
