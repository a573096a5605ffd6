#!/bin/bash
# Server instructions per login, counted by callgrind: repeatable whatever else the machine is doing.
#
#   bench/login_callgrind.sh [TREE] [N]     # TREE: a checkout (default: this one), N logins (default 100)
#
# Starts `manage.py serve` of TREE under valgrind (callgrind) with a fresh data directory and one account,
# makes 5 unmeasured logins, zeroes the counters (callgrind_control -z), makes N sequential logins with
# bench/login_profile.py's client (TCP, STARTTLS, TLS 1.3, SCRAM-SHA-1, bind, close), dumps the counters
# (callgrind_control -d) and prints the instructions per login. Python under valgrind is ~50x slower:
# 100 logins take a few minutes. To compare two trees, run it for each (git archive REV | tar -x -C DIR).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
tree=$(cd "${1:-$here}" && pwd)
n=${2:-100}
python=$here/.venv/bin/python
tmp=$(mktemp -d /tmp/login-callgrind.XXXX)
export XMPP_DATA_DIR=$tmp/data XMPP_LOG_LEVEL=WARNING PYTHONUNBUFFERED=1
free_port() { "$python" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"; }
c2s=$(free_port); tls=$(free_port); http=$(free_port)
(cd "$tree" && "$python" manage.py adduser benchuser bench-Passw0rd >/dev/null)
(cd "$tree" && exec valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.%p.out" "$python" manage.py serve \
    --http "127.0.0.1:$http" --c2s "127.0.0.1:$c2s" --c2s-tls "127.0.0.1:$tls" >"$tmp/server.log" 2>&1) &
server=$!
trap 'kill -9 $server 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do (echo >"/dev/tcp/127.0.0.1/$c2s") 2>/dev/null && break; sleep 1; done
"$python" - "$here/bench" "$c2s" "$n" "$server" <<'PY'
import asyncio, subprocess, sys
sys.path.insert(0, sys.argv[1])
import login_profile
port, n, server = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
login_profile.USER, login_profile.PASSWORD = "benchuser", "bench-Passw0rd"
asyncio.run(login_profile.run_logins(port, 5))
subprocess.run(["callgrind_control", "-z", server], check=True, capture_output=True)
asyncio.run(login_profile.run_logins(port, n))
subprocess.run(["callgrind_control", "-d", server], check=True, capture_output=True)
PY
total=$(grep -h '^totals:' "$tmp"/cg.*.out.* | head -1 | awk '{print $2}')
echo "$tree: $((total / n)) instructions per login ($n logins, $total in all; dump in $tmp)"
