"""Start/stop the servers under test for bench/login_msg.py, each in its own temp dir.

* ``ProsodyServer``: stock Debian prosody, config rendered from bench/prosody/prosody.cfg.lua.in.
* ``XmppauthServer``: this project's ``manage.py serve`` with ``XMPP_DATA_DIR`` set.

Both run in the foreground as a child process of the bench, optionally pinned to one CPU
with ``taskset`` (so every thread they create inherits the affinity).  ``pid`` is the
process whose CPU time and RSS are read.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
PROSODY_TEMPLATE = BENCH_DIR / "prosody" / "prosody.cfg.lua.in"


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, then SIGKILL after 10 s; nothing if the process is gone already."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=10)


class ServerStartError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(host: str, port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerStartError(f"server exited with code {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise ServerStartError(f"server not listening on {host}:{port} after {timeout:.0f}s")


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return f"(no log: {e})"
    return "\n".join(text.splitlines()[-lines:])


def make_cert(directory: Path, domain: str = "localhost") -> tuple[Path, Path]:
    """Self-signed ECDSA P-256 certificate for ``domain`` (same key type as xmppauth's)."""
    key, crt = directory / f"{domain}.key", directory / f"{domain}.crt"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", str(key), "-out", str(crt), "-days", "30",
            "-subj", f"/CN={domain}", "-addext", f"subjectAltName=DNS:{domain}",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return key, crt


class BaseServer:
    name = "server"
    domain = "localhost"
    # XEP-0388 SASL2 + XEP-0386 Bind2 + XEP-0198 inline resume (the seq2/conc2/resume scenarios)
    supports_sasl2 = False
    c2s_tls_port: int | None = None  # XEP-0368 direct TLS listener, when the server has one

    def __init__(self, cpu: int | None, keep: bool = False) -> None:
        self.cpu = cpu
        self.keep = keep
        self.dir = Path(tempfile.mkdtemp(prefix=f"bench-{self.name}-"))
        self.host = "127.0.0.1"
        self.c2s_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "server.out"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _pin(self, argv: list[str]) -> list[str]:
        if self.cpu is None:
            return argv
        if shutil.which("taskset"):
            return ["taskset", "-c", str(self.cpu), *argv]
        return argv

    def _popen(self, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        out = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        preexec = None
        if self.cpu is not None and not shutil.which("taskset"):
            cpu = self.cpu

            def preexec() -> None:
                os.sched_setaffinity(0, {cpu})

        self.proc = subprocess.Popen(
            self._pin(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=str(cwd or self.dir),
            preexec_fn=preexec,
            start_new_session=True,
        )
        out.close()

    def log_tail(self) -> str:
        return f"--- {self.log_path} (tail) ---\n{tail(self.log_path)}"

    def stop(self) -> None:
        """Terminate the server and remove its temp dir (unless ``keep``)."""
        self.terminate()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def restart(self) -> None:
        """Fresh server process on the same data (accounts, certificate), on new ports."""
        self.terminate()
        self._new_ports()
        self.start()

    def _new_ports(self) -> None:
        self.c2s_port = free_port()

    def terminate(self) -> None:
        stop_process(self.proc)

    # implemented by subclasses
    def start(self) -> None:
        raise NotImplementedError

    def create_accounts(self, names: list[str], password: str) -> None:
        raise NotImplementedError

    def version(self) -> str:
        return ""

    def code_fingerprint(self) -> str:
        """A digest of the server code a (re)start just loaded ("" when not applicable)."""
        return ""


# --------------------------------------------------------------------------- prosody


class ProsodyServer(BaseServer):
    name = "prosody"
    supports_sasl2 = False  # 0.12 has neither SASL2 nor Bind2 (mod_sasl2 & co. are community modules)

    def __init__(
        self,
        cpu: int | None,
        keep: bool = False,
        log_level: str = "warn",
        nagle: bool = False,
        extra: str = "",
    ) -> None:
        super().__init__(cpu, keep)
        self.extra = extra
        self.log_level = log_level
        self.nagle = nagle
        self.cfg = self.dir / "prosody.cfg.lua"
        self.log_path = self.dir / "prosody.out"

    def _prepare(self) -> None:
        """Data dir, certificate and config (idempotent; the config follows the current port)."""
        if not (self.dir / "certs").exists():
            (self.dir / "data").mkdir(exist_ok=True)
            (self.dir / "certs").mkdir()
            make_cert(self.dir / "certs", self.domain)
        text = PROSODY_TEMPLATE.read_text()
        for k, v in {
            "DIR": str(self.dir),
            "C2S_PORT": str(self.c2s_port),
            "LOG_LEVEL": self.log_level,
            "NAGLE": "true" if self.nagle else "false",
            "EXTRA": self.extra,
        }.items():
            text = text.replace(f"@{k}@", v)
        self.cfg.write_text(text)

    def _prosodyctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["prosodyctl", "--config", str(self.cfg), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=str(self.dir),
        )

    def create_accounts(self, names: list[str], password: str) -> None:
        """Register the first account with ``prosodyctl register`` (the supported tool), then
        clone its internal_hashed record for the others: same salt, iteration count and
        StoredKey/ServerKey as ``prosodyctl`` would have written for the same password, apart
        from the salt being shared.  ~70 ms per prosodyctl call would otherwise dominate setup.
        """
        self._prepare()
        r = self._prosodyctl("register", names[0], self.domain, password)
        acc_dir = self.dir / "data" / self.domain.replace(".", "%2e") / "accounts"
        first = acc_dir / f"{names[0]}.dat"
        if r.returncode != 0 or not first.exists():
            raise ServerStartError(f"prosodyctl register failed: rc={r.returncode} {r.stdout} {r.stderr}")
        record = first.read_bytes()
        for n in names[1:]:
            (acc_dir / f"{n}.dat").write_bytes(record)

    def start(self) -> None:
        self._prepare()
        exe = shutil.which("prosody")
        if exe is None:
            raise ServerStartError("prosody is not installed (apt-get install -y prosody)")
        self._popen([exe, "-F", "--config", str(self.cfg)])
        try:
            wait_port(self.host, self.c2s_port, self.proc, 30)  # type: ignore[arg-type]
        except ServerStartError as e:
            raise ServerStartError(f"{e}\n{self.log_tail()}\n{tail(self.dir / 'prosody.log')}") from None

    def log_tail(self) -> str:
        return super().log_tail() + f"\n--- prosody.log (tail) ---\n{tail(self.dir / 'prosody.log')}"

    def version(self) -> str:
        return prosody_version()


def prosody_version() -> str:
    try:
        out = subprocess.run(["prosodyctl", "about"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    first = out.strip().splitlines()[0] if out.strip() else "?"
    lua = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Lua version")), "")
    return f"{first} ({lua})" if lua else first


# --------------------------------------------------------------------------- xmppauth


#: For a benchmark whose every client comes from 127.0.0.1, hundreds in a burst: the per-address limits
#: would refuse most of them (bench/hardening.py measures those limits with their defaults).
ONE_ADDRESS = {
    "XMPP_MAX_CONNECTIONS_PER_ADDRESS": "100000",
    "XMPP_CONNECT_BURST": "100000",
    "XMPP_CONNECTS_PER_SECOND_PER_ADDRESS": "100000",
    "XMPP_GUESS_FREE_PER_ADDRESS": "100000",
}


class XmppauthServer(BaseServer):
    name = "xmppauth"
    supports_sasl2 = True

    def __init__(self, cpu: int | None, keep: bool = False) -> None:
        super().__init__(cpu, keep)
        self.http_port = free_port()
        self.c2s_tls_port = free_port()
        self.python = str(REPO_DIR / ".venv" / "bin" / "python")
        if not Path(self.python).exists():
            self.python = sys.executable
        self.env = {**os.environ, "XMPP_DATA_DIR": str(self.dir / "data"), "PYTHONUNBUFFERED": "1"}
        self.env.setdefault("XMPP_ADMIN_HTTP", "off")  # not the fixed default port two servers would share
        (self.dir / "data").mkdir()

    def _new_ports(self) -> None:
        self.c2s_port, self.http_port, self.c2s_tls_port = free_port(), free_port(), free_port()

    def _manage(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.python, str(REPO_DIR / "manage.py"), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            cwd=str(REPO_DIR),
        )

    def start(self) -> None:
        if not (REPO_DIR / "manage.py").exists():
            raise ServerStartError(f"{REPO_DIR / 'manage.py'} does not exist (server not written yet?)")
        argv = [
            self.python, str(REPO_DIR / "manage.py"), "serve",
            "--http", f"{self.host}:{self.http_port}",
            "--c2s", f"{self.host}:{self.c2s_port}",
            "--c2s-tls", f"{self.host}:{self.c2s_tls_port}",
        ]  # fmt: skip
        self._popen(argv, env=self.env, cwd=REPO_DIR)
        try:
            wait_port(self.host, self.c2s_port, self.proc, 60)  # type: ignore[arg-type]
        except ServerStartError as e:
            raise ServerStartError(f"{e}\n{self.log_tail()}") from None

    def create_accounts(self, names: list[str], password: str) -> None:
        """``manage.py adduser NAME PASSWORD`` for every account.  All of them are first tried
        in one Django process through ``call_command('adduser', ...)`` (the same command, one
        interpreter start-up instead of N); if that fails, one subprocess per account."""
        script = (
            "from django.core.management import call_command\n"
            f"for n in {names!r}:\n"
            f"    call_command('adduser', n, {password!r})\n"
        )
        r = self._manage("shell", "-c", script, timeout=60 + 5 * len(names))
        if r.returncode == 0:
            return
        first_err = (r.stderr or r.stdout)[-1500:]
        for n in names:
            r = self._manage("adduser", n, password)
            if r.returncode != 0:
                raise ServerStartError(
                    f"manage.py adduser {n} failed (rc={r.returncode}):\n{(r.stderr or r.stdout)[-2000:]}\n"
                    f"(batch attempt via 'manage.py shell' said:\n{first_err})"
                )

    def version(self) -> str:
        try:
            out = subprocess.run(
                ["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        dirty = " + uncommitted changes" if self.uncommitted_files() else ""
        return f"xmppauth {out or '(uncommitted)'}{dirty}"

    def uncommitted_files(self) -> list[str]:
        """Server files that differ from HEAD (read-only plumbing; a file whose stat changed but
        whose content did not may be listed too)."""
        try:
            r = subprocess.run(
                ["git", "-C", str(REPO_DIR), "diff-index", "--name-only", "HEAD", "--", *SERVER_CODE],
                capture_output=True,
                text=True,
                timeout=10,
            )
        except (OSError, subprocess.TimeoutExpired):
            return []
        return r.stdout.split() if r.returncode == 0 else []

    def code_fingerprint(self) -> str:
        """sha256 over the server's Python files as they are on disk now: other people may edit the
        working tree while the bench runs, and every scenario restarts the server."""
        h = hashlib.sha256()
        for top in SERVER_CODE:
            path = REPO_DIR / top
            files = [path] if path.is_file() else sorted(path.rglob("*.py"))
            for f in files:
                with contextlib.suppress(OSError):
                    h.update(str(f.relative_to(REPO_DIR)).encode() + b"\0" + f.read_bytes() + b"\0")
        return h.hexdigest()[:12]


# what ``manage.py serve`` runs (the fingerprint and the uncommitted-changes check cover these)
SERVER_CODE = ("manage.py", "xmppauth", "accounts", "sessions_acl")
