"""CPU an idle server uses: start ``manage.py serve`` with nobody connected, read its utime + stime
from /proc over a window, print the share of one core.

    .venv/bin/python bench/idle_cpu.py                          # 20 s window, default settings
    .venv/bin/python bench/idle_cpu.py --env XMPP_REVOCATION_POLL_MS=60000 --seconds 30
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import REPO_DIR, free_port, stop_process, wait_port


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--settle", type=float, default=5.0, help="wait this long after start-up first")
    parser.add_argument("--env", action="append", default=[], help="K=V for the server")
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.env)
    ports = [free_port() for _ in range(3)]
    with tempfile.TemporaryDirectory() as data_dir:
        env = {**os.environ, "XMPP_DATA_DIR": data_dir, "XMPP_ADMIN_HTTP": "off", **extra}
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--http", f"127.0.0.1:{ports[0]}",
             "--c2s", f"127.0.0.1:{ports[1]}", "--c2s-tls", f"127.0.0.1:{ports[2]}"],
            cwd=REPO_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_port("127.0.0.1", ports[1], proc, 60)
            time.sleep(args.settle)
            before = cpu_seconds(proc.pid)
            time.sleep(args.seconds)
            used = cpu_seconds(proc.pid) - before
        finally:
            stop_process(proc)
    settings = " ".join(args.env) or "default settings"
    print(
        f"idle server CPU: {100 * used / args.seconds:.2f} % of a core over {args.seconds:.0f} s ({settings})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
