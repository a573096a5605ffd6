"""``manage.py serve`` and the admin's own listener (XMPP_ADMIN_HTTP, ``--admin-http``; xmppauth/listeners.py;
docs/security.md row 22), over real sockets: where it listens and says so, ``public`` and ``off``, and the
errors of a bad value or a port it cannot have. The admin and the portal on the listeners of the shared
server: tests/security/test_portal.py; the gate itself: tests/web/test_admin_listener.py.

One data directory for the module, migrated once, so that each ``serve`` here starts in a second or two.
"""

from __future__ import annotations

import http.client
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.integration.server import ROOT, migrate, server_env

pytestmark = pytest.mark.integration

READY = re.compile(r"^(domain:|CommandError|Error)")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("admin-listener")
    migrate(path)
    return path


def serve_command(*args: str) -> list[str]:
    return [sys.executable, "manage.py", "serve", "--c2s", "off", "--c2s-tls", "off", *args]


@contextmanager
def serving(data_dir: Path, *args: str, **env: str) -> Iterator[list[str]]:
    """``serve`` with ``args`` (no XMPP listeners) until it is ready; the lines it wrote by then."""
    proc = subprocess.Popen(
        serve_command(*args),
        cwd=ROOT,
        env=server_env(data_dir, PYTHONUNBUFFERED="1", **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines: list[str] = []
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("domain:") or time.monotonic() > deadline:
                break
        assert any(line.startswith("domain:") for line in lines), "\n".join(lines)
        yield lines
        proc.terminate()
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def failing(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``serve`` that must stop at once: its exit and output."""
    done = subprocess.run(
        serve_command(*args),
        cwd=ROOT,
        env=server_env(data_dir, **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    return done


def port_of(lines: list[str], prefix: str) -> int:
    line = next((line for line in lines if line.startswith(prefix)), None)
    assert line is not None, (prefix, lines)
    return int(line.removeprefix(prefix).split("/", 1)[0].split()[0])


def get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status, response.getheader("Location") or ""
    finally:
        conn.close()


ANONYMOUS_ADMIN = (302, "/admin/login/?next=/admin/")  # the admin sends an anonymous visitor to sign in


def test_serve_listens_for_the_admin_apart_and_says_where(data_dir: Path) -> None:
    with serving(data_dir, "--http", "127.0.0.1:0", "--admin-http", "127.0.0.1:0") as lines:
        public = port_of(lines, "HTTP/WebSocket on http://127.0.0.1:")
        admin = port_of(lines, "Admin on http://127.0.0.1:")
        assert f"Admin on http://127.0.0.1:{admin}/admin/" in lines
        assert admin != public
        assert get(admin, "/admin/") == ANONYMOUS_ADMIN
        assert get(admin, "/signin/")[0] == 200  # the admin listener serves the portal too
        assert get(public, "/admin/")[0] == 404
        assert get(public, "/admin/login/")[0] == 404
        assert get(public, "/signin/")[0] == 200


def test_with_http_off_the_admin_listener_still_serves(data_dir: Path) -> None:
    with serving(data_dir, "--http", "off", "--admin-http", "127.0.0.1:0") as lines:
        assert not any(line.startswith("HTTP/WebSocket on") for line in lines), lines
        admin = port_of(lines, "Admin on http://127.0.0.1:")
        assert get(admin, "/admin/") == ANONYMOUS_ADMIN
        assert get(admin, "/signin/")[0] == 200


def test_public_serves_the_admin_on_the_public_listener(data_dir: Path) -> None:
    with serving(data_dir, "--http", "127.0.0.1:0", "--admin-http", "public") as lines:
        public = port_of(lines, "HTTP/WebSocket on http://127.0.0.1:")
        assert f"Admin on http://127.0.0.1:{public}/admin/ (on the public listener: 'public')" in lines
        assert get(public, "/admin/") == ANONYMOUS_ADMIN


def test_off_serves_no_admin_over_http(data_dir: Path) -> None:
    with serving(data_dir, "--http", "127.0.0.1:0", XMPP_ADMIN_HTTP="off") as lines:  # the setting this time
        public = port_of(lines, "HTTP/WebSocket on http://127.0.0.1:")
        assert "Admin: not served over HTTP ('off')" in lines
        assert get(public, "/admin/")[0] == 404
        assert get(public, "/admin/login/")[0] == 404
        assert get(public, "/signin/")[0] == 200


def test_the_default_is_a_loopback_listener_of_its_own(data_dir: Path) -> None:
    code = "from django.conf import settings; print('setting:', settings.XMPP_ADMIN_HTTP)"
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT, env=server_env(data_dir), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert "setting: 127.0.0.1:8001" in done.stdout.splitlines(), done.stdout + done.stderr


def test_a_bad_setting_stops_serve_with_the_setting_and_the_forms_named(data_dir: Path) -> None:
    done = failing(data_dir, "--http", "127.0.0.1:0", XMPP_ADMIN_HTTP="everywhere")
    assert "XMPP_ADMIN_HTTP is 'everywhere': expected HOST:PORT" in done.stderr, done.stderr
    assert "'public'" in done.stderr
    assert "'off'" in done.stderr


def test_a_bad_option_is_a_usage_error(data_dir: Path) -> None:
    done = failing(data_dir, "--admin-http", "everywhere")
    assert done.returncode == 2
    assert "argument --admin-http: 'everywhere': expected HOST:PORT" in done.stderr, done.stderr


def test_an_admin_port_that_is_taken_is_a_clear_error(data_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = failing(data_dir, "--http", "127.0.0.1:0", "--admin-http", f"127.0.0.1:{port}")
    assert f"cannot listen for the admin site on 127.0.0.1:{port}" in done.stderr, done.stdout + done.stderr
    assert "--admin-http" in done.stderr


def test_the_admin_listener_cannot_be_the_public_one(data_dir: Path) -> None:
    done = failing(data_dir, "--http", "127.0.0.1:8123", "--admin-http", "127.0.0.1:8123")
    assert "--http and the admin listener (--admin-http or XMPP_ADMIN_HTTP) are both 127.0.0.1:8123" in (
        done.stderr
    ), done.stderr
