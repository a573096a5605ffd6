"""Server CPU per login, sequentially: a small, repeatable measurement (and optional py-spy profile).

Starts ``manage.py serve`` pinned to one CPU (``taskset``), creates one account, runs ``N`` sequential logins
(TCP connect, STARTTLS, TLS 1.3, SCRAM-SHA-1, restart, bind, close) with the bench's lean client pinned to
another CPU, and prints the server's CPU time per login from ``/proc/PID/stat`` (utime + stime of all its
threads), once per round and the median over the rounds::

    .venv/bin/python bench/login_profile.py                      # 3 rounds of 400 logins
    .venv/bin/python bench/login_profile.py -N 1000 --rounds 5
    .venv/bin/python bench/login_profile.py --py-spy /tmp/prof   # + py-spy --gil of one extra round
    .venv/bin/python bench/login_profile.py --repo /tmp/a --repo /tmp/b  # A/B: rounds alternate
    .venv/bin/python bench/login_profile.py --attach PID:PORT    # a server that is already running

Every round of a tree runs on the same server process, after ``--warmup`` unmeasured logins; with several
trees, all servers run at once (idle but for the one measured) and their rounds alternate, so that a busy
spell on a shared machine hits both. Each round also prints the CPU the rest of the machine used. The CPU
figure includes whatever the server does for the client's close; it does not include the client. ``/proc``
counts in clock ticks (10 ms), so a round should last a few seconds at least.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

from servers import stop_process  # noqa: E402 - needs the sys.path entry above
from xmpp_client import (  # noqa: E402 - needs the sys.path entry above
    ScramCache,
    login,
    make_client_tls_context,
)

CLK_TCK = os.sysconf("SC_CLK_TCK")
USER, PASSWORD, DOMAIN = "alice", "wonderland", "localhost"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of ``pid`` (fields 14 and 15 of /proc/PID/stat)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Server:
    """``manage.py serve`` from ``repo`` in a temp data dir, pinned to ``cpu``."""

    def __init__(self, repo: Path, cpu: int | None, data_dir: Path | None, env: dict[str, str]) -> None:
        self.repo = repo
        self.python = str(REPO_DIR / ".venv" / "bin" / "python")
        if not Path(self.python).exists():
            self.python = sys.executable
        self.tmp = Path(tempfile.mkdtemp(prefix="login-profile-"))
        self.data_dir = data_dir or self.tmp / "data"
        self.env = {
            **os.environ,
            "XMPP_DATA_DIR": str(self.data_dir),
            "XMPP_LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            "XMPP_ADMIN_HTTP": "off",  # not the fixed default port two servers (A/B) would share
            **env,
        }
        self.cpu = cpu
        self.c2s_port, self.tls_port, self.http_port = free_port(), free_port(), free_port()
        self.log_path = self.tmp / "server.out"
        self.proc: subprocess.Popen[bytes] | None = None

    def _manage(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.python, str(self.repo / "manage.py"), *args],
            capture_output=True,
            text=True,
            timeout=300,
            env=self.env,
            cwd=str(self.repo),
        )

    def start(self, timeout: float = 90.0) -> None:
        r = self._manage("adduser", USER, PASSWORD)
        if r.returncode != 0 and "exist" not in (r.stdout + r.stderr).lower():
            raise RuntimeError(f"adduser failed (rc={r.returncode}):\n{(r.stderr or r.stdout)[-2000:]}")
        argv = [
            self.python, str(self.repo / "manage.py"), "serve",
            "--http", f"127.0.0.1:{self.http_port}",
            "--c2s", f"127.0.0.1:{self.c2s_port}",
            "--c2s-tls", f"127.0.0.1:{self.tls_port}",
        ]  # fmt: skip
        if self.cpu is not None and shutil.which("taskset"):
            argv = ["taskset", "-c", str(self.cpu), *argv]
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=str(self.repo),
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with code {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.tls_port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"server not listening after {timeout:.0f}s:\n{self.log_tail()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(no log: {exc})"

    def stop(self) -> None:
        stop_process(self.proc)
        shutil.rmtree(self.tmp, ignore_errors=True)


async def run_logins(port: int, n: int) -> float:
    """``n`` sequential logins + closes; returns the wall time."""
    tls_ctx = make_client_tls_context()
    cache = ScramCache()
    t0 = time.perf_counter()
    for i in range(n):
        s = await login(
            "127.0.0.1", port, DOMAIN, USER, PASSWORD, f"r{i}", tls_ctx=tls_ctx, scram_cache=cache
        )
        await s.close()
    return time.perf_counter() - t0


class Target:
    """What one row of results measures: a server process (started here or attached to) and its port."""

    def __init__(self, label: str, pid: int, port: int, server: Server | None = None) -> None:
        self.label, self.pid, self.port, self.server = label, pid, port, server
        self.rounds: list[dict[str, float]] = []

    @property
    def median(self) -> float:
        return statistics.median(row["ms_per_login"] for row in self.rounds)


def busy_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of the whole machine so far, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal
    return total - idle, total


def wait_quiet(below_pct: float, max_wait: float, exclude: list[int]) -> float:
    """Wait (up to ``max_wait`` s) until other processes use less than ``below_pct`` % of a core over 1 s.

    Returns their last measured use. ``exclude``: pids whose CPU does not count (the servers, this client).
    """
    deadline = time.monotonic() + max_wait
    while True:
        busy0, _ = busy_ticks()
        own0 = sum(cpu_seconds(pid) for pid in exclude)
        time.sleep(1.0)
        busy1, _ = busy_ticks()
        own1 = sum(cpu_seconds(pid) for pid in exclude)
        others = 100 * max(0.0, (busy1 - busy0) / CLK_TCK - (own1 - own0))
        if others < below_pct or time.monotonic() >= deadline:
            return others


def measure(target: Target, n: int) -> dict[str, float]:
    """``n`` logins against ``target``: its CPU per login, logins/s and what everything else used."""
    busy0, _ = busy_ticks()
    c0, me0 = cpu_seconds(target.pid), time.process_time()
    wall0 = time.perf_counter()
    wall = asyncio.run(run_logins(target.port, n))
    time.sleep(0.2)  # let the server finish the last close
    used, mine = cpu_seconds(target.pid) - c0, time.process_time() - me0
    busy1, _ = busy_ticks()
    elapsed = time.perf_counter() - wall0
    others = max(0.0, (busy1 - busy0) / CLK_TCK - used - mine)
    return {
        "ms_per_login": 1000 * used / n,
        "logins_per_s": n / wall,
        "others_cpu_pct": 100 * others / elapsed,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-N", type=int, default=400, help="logins per round (default 400)")
    p.add_argument("--rounds", type=int, default=3, help="measured rounds per server (default 3)")
    p.add_argument("--warmup", type=int, default=50, help="unmeasured logins first (default 50)")
    p.add_argument("--server-cpu", type=int, default=0, help="CPU the server is pinned to (-1: none)")
    p.add_argument("--client-cpu", type=int, default=1, help="CPU this client is pinned to (-1: none)")
    p.add_argument(
        "--repo",
        type=Path,
        action="append",
        help="tree whose manage.py is served (default: this one); repeat it to compare trees, whose "
        "rounds then alternate so that they share the machine's conditions",
    )
    p.add_argument("--data-dir", type=Path, help="XMPP_DATA_DIR (default: a fresh temp dir per server)")
    p.add_argument("--env", action="append", default=[], metavar="K=V", help="extra server environment")
    p.add_argument("--attach", metavar="PID:PORT", help="measure a running server (STARTTLS port)")
    p.add_argument("--py-spy", metavar="PREFIX", help="profile one extra round: PREFIX.txt (collapsed)")
    p.add_argument("--py-spy-rate", type=int, default=500)
    p.add_argument(
        "--quiet-below",
        type=float,
        default=15.0,
        metavar="PCT",
        help="before each round wait until other processes use less than PCT %% of a core (default 15; 0: "
        "do not wait), for at most --max-wait s",
    )
    p.add_argument("--max-wait", type=float, default=120.0)
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)

    if args.client_cpu >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.client_cpu})
    targets: list[Target] = []
    try:
        if args.attach:
            pid_text, _, port_text = args.attach.partition(":")
            targets.append(Target(f"pid {pid_text}", int(pid_text), int(port_text)))
        else:
            env = dict(item.split("=", 1) for item in args.env)
            cpu = None if args.server_cpu < 0 else args.server_cpu
            for repo in args.repo or [REPO_DIR]:
                server = Server(repo.resolve(), cpu, args.data_dir, env)
                targets.append(Target(str(repo), 0, 0, server))
                server.start()
                targets[-1].pid, targets[-1].port = server.pid, server.c2s_port
        for target in targets:
            if args.warmup:
                asyncio.run(run_logins(target.port, args.warmup))
        for r in range(args.rounds):
            order = targets if r % 2 == 0 else targets[::-1]
            for target in order:
                if args.quiet_below > 0:
                    pids = [os.getpid(), *(t.pid for t in targets)]
                    wait_quiet(args.quiet_below, args.max_wait, pids)
                row = measure(target, args.N)
                target.rounds.append(row)
                print(
                    f"round {r + 1} {target.label}: server CPU {row['ms_per_login']:.2f} ms/login, "
                    f"{row['logins_per_s']:.0f} logins/s, other processes {row['others_cpu_pct']:.0f} % "
                    "of a core",
                    flush=True,
                )
        for target in targets:
            print(
                f"median: {target.median:.2f} ms/login over {args.rounds} x {args.N} logins  {target.label}"
            )
        if len(targets) > 1:
            base = targets[0].median
            for target in targets[1:]:
                change = 100 * (target.median - base) / base
                print(f"{target.label}: {change:+.1f} % against {targets[0].label}")
        if args.py_spy:
            for target in targets:
                profile(target, args)
        if args.json:
            results = {t.label: {"rounds": t.rounds, "median_ms_per_login": t.median} for t in targets}
            args.json.write_text(json.dumps(results, indent=1))
    except Exception:
        for target in targets:
            if target.server is not None:
                print(target.server.log_tail(), file=sys.stderr)
        raise
    finally:
        for target in targets:
            if target.server is not None:
                target.server.stop()
    return 0


def profile(target: Target, args: argparse.Namespace) -> None:
    spy = shutil.which("py-spy", path=str(REPO_DIR / ".venv" / "bin")) or shutil.which("py-spy")
    if spy is None:
        raise RuntimeError("py-spy not found")
    suffix = "" if len(args.repo or [None]) == 1 else "-" + Path(target.label).name
    out = f"{args.py_spy}{suffix}.txt"
    cmd = [spy, "record", "--gil", "-r", str(args.py_spy_rate), "-p", str(target.pid), "-f", "raw", "-o", out]
    spy_proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)
    try:
        asyncio.run(run_logins(target.port, args.N))
    finally:
        spy_proc.send_signal(signal.SIGINT)
        spy_proc.wait(timeout=30)
    print(f"py-spy profile (collapsed stacks) of {target.label}: {out}")


if __name__ == "__main__":
    sys.exit(main())
