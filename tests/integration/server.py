"""A real server process for integration tests: `manage.py serve` on free loopback ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: The machine's PostgreSQL (trust auth), for the multi-process configuration's tests.
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
ACCOUNTS = {"alice": "wonderland", "bob": "builder", "carol": "singer"}


def redis_url(db: int) -> str:
    """The machine's Redis, database ``db`` for this test process: pytest-xdist's workers (gw0, gw1)
    get databases 8 apart, so two workers' tests never flush or count in each other's."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    offset = 8 * int(worker) if worker.isdigit() else 0
    return f"redis://127.0.0.1:6379/{(db + offset) % 16}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"port {port} did not open")


@dataclass
class Server:
    data_dir: Path
    http: int
    c2s: int
    c2s_tls: int
    proc: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str] = field(default_factory=dict)  # what running_server was given (DATABASE_URL…)
    #: the admin site's own listener (XMPP_ADMIN_HTTP): everything ``http`` serves, plus /admin/; None
    #: when the test gave XMPP_ADMIN_HTTP itself ('public', 'off')
    admin_http: int | None = None

    @property
    def cert(self) -> Path:
        return self.data_dir / "tls" / "localhost.crt"

    def manage(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=server_env(self.data_dir, **self.env),
            capture_output=True,
            text=True,
            check=False,
        )

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def server_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XMPP_", "DJANGO_", "DATABASE_URL"))}
    env.update(
        {
            "XMPP_DATA_DIR": str(data_dir),
            "DJANGO_SETTINGS_MODULE": "xmppauth.settings",
            # tests of other things fail logins on purpose, many from one address: the guessing limits
            # are tested with their defaults by tests/integration/test_guessing.py, which sets these
            "XMPP_GUESS_FREE_PER_ACCOUNT": "100000",
            "XMPP_GUESS_FREE_PER_ADDRESS": "100000",
            # and connect from one address in bursts (tests/integration/test_connection_limits.py sets these)
            "XMPP_CONNECT_BURST": "100000",
            "XMPP_MAX_CONNECTIONS_PER_ADDRESS": "100000",
            # and send megabytes at once (the read rate is tested by tests/integration/test_floods.py)
            "XMPP_READ_BYTES_PER_SECOND": "0",
            # the tests of stored messages log in with Bind2 and want them sent, as RFC 6120 clients
            # get them; XEP-0386's rule (fetch them from the archive) is tested by test_bind2_archive.py
            "XMPP_BIND2_OFFLINE_FROM_ARCHIVE": "0",
            **extra,
        }
    )
    return env


@contextmanager
def fresh_postgres_database(prefix: str = "xmppauth_test") -> Iterator[str]:
    """A new, empty PostgreSQL database for one test module; its URL. Dropped afterwards."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgres://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrate(data_dir: Path, **env: str) -> None:
    """``manage.py migrate`` for the database ``env`` names (a fresh PostgreSQL one, say)."""
    done = subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"],
        cwd=ROOT, env=server_env(data_dir, **env), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


@contextmanager
def running_server(data_dir: Path, accounts: dict[str, str] | None = None, **env: str) -> Iterator[Server]:
    data_dir.mkdir(parents=True, exist_ok=True)
    wanted = list((accounts if accounts is not None else ACCOUNTS).items())
    if wanted:  # ``manage.py adduser`` for each, in one process (each manage.py costs a second or two)
        # The web password hash (Django's PBKDF2, ~0.25 s each) made with one round: it records its count,
        # so the server checks it as it is (and strengthens it at a first portal login); the XMPP logins
        # use the SCRAM keys, made as always. Only these tests' accounts: a minute of the suite's time.
        code = (
            "import io\nfrom django.core.management import call_command\n"
            "from django.contrib.auth.hashers import PBKDF2PasswordHasher\n"
            "PBKDF2PasswordHasher.iterations = 1\n"
            f"for name, password in {wanted!r}:\n"
            "    call_command('adduser', name, password, stdout=io.StringIO())\n"
        )
        done = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", code],
            cwd=ROOT,
            env=server_env(data_dir, **env),
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    http, c2s, c2s_tls = free_port(), free_port(), free_port()
    admin_http = None if "XMPP_ADMIN_HTTP" in env else free_port()
    admin_env = {} if admin_http is None else {"XMPP_ADMIN_HTTP": f"127.0.0.1:{admin_http}"}
    log = data_dir / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "serve",
                "--http",
                f"127.0.0.1:{http}",
                "--c2s",
                f"127.0.0.1:{c2s}",
                "--c2s-tls",
                f"127.0.0.1:{c2s_tls}",
            ],
            cwd=ROOT,
            env=server_env(data_dir, XMPP_LOG_LEVEL="INFO", **admin_env, **env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(data_dir, http, c2s, c2s_tls, proc, log, dict(env), admin_http)
    try:
        for port in (http, c2s, c2s_tls, *([] if admin_http is None else [admin_http])):
            wait_for_port(port, proc)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
