#!/bin/bash
# Server instructions per login, counted by callgrind: repeatable whatever else the machine is doing.
#
#   bench/login_callgrind.sh [TREE] [N]     # TREE: a checkout (default: this one), N logins (default 100)
#   WORK=refusals bench/login_callgrind.sh [TREE] [N]   # instead: N connections the rate limit refuses
#
# Starts `manage.py serve` of TREE under valgrind (callgrind) with a fresh data directory and one account,
# makes 5 unmeasured logins, has the server make a full garbage collection (gc.collect() on SIGUSR1, see
# below), zeroes the counters (callgrind_control -z), makes N sequential logins with bench/login_profile.py's
# client (TCP, STARTTLS, TLS 1.3, SCRAM-SHA-1, bind, close), dumps the counters (callgrind_control -d) and
# prints the instructions per login, and how many of them the garbage collector took. With WORK=refusals
# the window holds N connections from 127.0.0.9 after its connect burst is spent, each refused by the rate
# limit (connect, stream header, read to the end of the stream, close), one after another; the server
# admits 1 connect a second from it (the least it can be set to), and the script says how many it admitted. Python under valgrind
# is ~50x slower: 100 logins take about half a minute. To compare two trees, run it for each
# (git archive REV | tar -x -C DIR).
#
# Two things outside the login path used to fall into the measured window in some runs and not others:
# - A fresh server makes one full (generation 2) collection of its ~97,000 objects some 100-130 logins after
#   it starts (what its first logins import and cache pushes the collector's long-lived-pending count past
#   a quarter of the heap; none follows in the next 2,000 logins): ~35 M instructions, i.e. ~350,000 per
#   login over 100 logins. The gc.collect() before the window takes it out (docs/performance.md, 2026-12-07).
# - A login more than 60 s after the client's last one writes its last-seen times (sessions_acl/login.py,
#   SEEN_GRANULARITY): a few million instructions more. The script warns when the run lasted that long.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
tree=$(cd "${1:-$here}" && pwd)
n=${2:-100}
work=${WORK:-logins}
if [ "$work" = refusals ]; then  # the fewest admitted connects the settings allow: a burst of 1, then 1 a second
  export XMPP_CONNECT_BURST=1 XMPP_CONNECTS_PER_SECOND_PER_ADDRESS=1
fi
python=$here/.venv/bin/python
tmp=$(mktemp -d /tmp/login-callgrind.XXXX)
export XMPP_DATA_DIR=$tmp/data XMPP_LOG_LEVEL=WARNING PYTHONUNBUFFERED=1 GC_DONE=$tmp/gc-done
export XMPP_ADMIN_HTTP=${XMPP_ADMIN_HTTP:-off}  # no admin listener on the fixed default port
free_port() { "$python" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"; }
c2s=$(free_port); tls=$(free_port); http=$(free_port)
(cd "$tree" && "$python" manage.py adduser benchuser bench-Passw0rd >/dev/null)
# manage.py, with a SIGUSR1 handler that makes a full collection and says so in $GC_DONE
wrapper='import gc, os, runpy, signal, sys
def collect(*_):
    gc.collect()
    open(os.environ["GC_DONE"], "w").close()
signal.signal(signal.SIGUSR1, collect)
sys.argv = sys.argv[1:]
runpy.run_path("manage.py", run_name="__main__")'
(cd "$tree" && exec valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.%p.out" "$python" -c "$wrapper" \
    manage.py serve --http "127.0.0.1:$http" --c2s "127.0.0.1:$c2s" --c2s-tls "127.0.0.1:$tls" \
    >"$tmp/server.log" 2>&1) &
server=$!
trap 'kill -9 $server 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do (echo >"/dev/tcp/127.0.0.1/$c2s") 2>/dev/null && break; sleep 1; done
"$python" - "$here/bench" "$c2s" "$n" "$server" "$work" <<'PY'
import asyncio, os, signal, socket, subprocess, sys, time
sys.path.insert(0, sys.argv[1])
import login_profile
port, n, server, work = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
login_profile.USER, login_profile.PASSWORD = "benchuser", "bench-Passw0rd"

def refused(count):
    admitted = 0
    header = (b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' to='localhost' version='1.0'"
              b" xmlns:stream='http://etherx.jabber.org/streams'>")
    for _ in range(count):
        with socket.create_connection(("127.0.0.1", port), timeout=60, source_address=("127.0.0.9", 0)) as s:
            s.sendall(header)
            data = b""
            while (chunk := s.recv(4096)) and b"</stream:stream>" not in data + chunk and b"<stream:features" not in data + chunk:
                data += chunk
            if b"<stream:features" in data + chunk:
                s.sendall(b"</stream:stream>")
                admitted += 1
    return admitted

start = time.monotonic()
if work == "refusals":
    refused(10)  # the connect burst admitted, then refused ones
else:
    asyncio.run(login_profile.run_logins(port, 5))
os.kill(int(server), signal.SIGUSR1)
while not os.path.exists(os.environ["GC_DONE"]):
    time.sleep(0.1)
subprocess.run(["callgrind_control", "-z", server], check=True, capture_output=True)
if work == "refusals" and (admitted := refused(n)):
    print(f"warning: {admitted} of the {n} connections were admitted (the rate limit refilled)", file=sys.stderr)
elif work != "refusals":
    asyncio.run(login_profile.run_logins(port, n))
subprocess.run(["callgrind_control", "-d", server], check=True, capture_output=True)
if time.monotonic() - start > 55:
    print(f"warning: the logins took {time.monotonic() - start:.0f} s: some may have written last-seen times"
          " (SEEN_GRANULARITY); use fewer logins for figures comparable with other runs", file=sys.stderr)
PY
dumps=("$tmp"/cg.*.out.*); dump=${dumps[0]}
total=$(grep -h '^totals:' "$dump" | awk '{print $2}')
gc=$(callgrind_annotate --inclusive=yes --threshold=100 "$dump" 2>/dev/null \
    | awk '/gcmodule\.c:gc_collect_main / && !seen {gsub(",", "", $1); print $1; seen = 1}')
what=${work%s}
echo "$tree: $((total / n)) instructions per ${what/refusal/refused connection} ($n $work, $total in all;" \
    "garbage collector $(( ${gc:-0} / n )) per ${what/refusal/refused connection}; dump in $tmp)"
