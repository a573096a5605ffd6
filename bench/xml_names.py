"""What distinct names cost the process: libxml2's name dictionary behind the stream parser.

lxml has libxml2 intern element and attribute names, namespace prefixes and URIs, and some text
in a string dictionary. This script feeds ``-n`` distinct strings of one kind through
``xmppauth.proto.xml.StreamParser`` (TCP or RFC 7395 framed mode), 100 per stanza, dropping every
element as soon as it is handed out (as the server does once it has routed a stanza), and prints,
for each kind and mode, measured in a fresh interpreter:

* ``RSS peak``: growth of the highest resident set seen during the run (sampled every 1,000 items);
* ``RSS fed``: growth of the resident set while the parser is still alive;
* ``RSS dropped``: growth left after the parser is dropped too (the stream ended) and a full
  garbage collection;
* ``dict+``: entries added to the *thread's* lxml dictionary (``etree.memory_debugger.dict_size``),
  the one lxml never frees while the thread lives.

    .venv/bin/python bench/xml_names.py memory                     # all kinds, both modes, 1,000,000 each
    .venv/bin/python bench/xml_names.py memory -n 200000 --kinds element,namespace --modes tcp
    .venv/bin/python bench/xml_names.py sessions                   # most one live stream's dictionary holds
    .venv/bin/python bench/xml_names.py speed                      # µs per 261-byte message stanza
    .venv/bin/python bench/xml_names.py speed -n 10000 --repeat 9
    .venv/bin/python bench/xml_names.py speed --callgrind           # instructions: steady on a busy machine

``speed`` times ``StreamParser`` alone on ``-n`` chat messages of 261 bytes each, fed one stanza per
``feed()`` (TCP) or per ``feed_frame()`` (framed), best of ``--repeat`` rounds, plus the same with
every stanza carrying a name never seen before; ``--callgrind`` counts instructions instead (the
difference between a process that feeds the stanzas and one that only prepares them, each under
valgrind's callgrind, divided by ``-n``). To compare two trees, run the script with
``PYTHONPATH`` pointing at the other tree (``git archive HEAD xmppauth | tar -x -C /tmp/before``;
``PYTHONPATH=/tmp/before .venv/bin/python bench/xml_names.py speed``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, os.environ.get("PYTHONPATH") or str(Path(__file__).resolve().parents[1]))

from lxml import etree

from xmppauth.proto.xml import ElementReceived, StreamParser

PER_STANZA = 100
HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>"
)
OPEN = b"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='example.com' version='1.0'/>"
_WS = " \t\n"


def _blank(i: int) -> str:
    """A whitespace run of 20 characters, distinct for each i < 3**20."""
    digits = []
    for _ in range(20):
        i, r = divmod(i, 3)
        digits.append(_WS[r])
    return "".join(digits)


# Each kind: a function from a running number to one item of a stanza's payload.
KINDS: dict[str, Callable[[int], str]] = {
    "element": lambda i: f"<e{i}/>",
    "attribute": lambda i: f"<x a{i}=''/>",
    "prefix": lambda i: f"<p{i}:x xmlns:p{i}='urn:x'/>",
    "namespace": lambda i: f"<x xmlns='urn:x:{i}'/>",
    "text7": lambda i: f"<body>x{i:06d}</body>",
    "text20": lambda i: f"<body>y{i:019d}</body>",
    "value7": lambda i: f"<x v='x{i:06d}'/>",
    "value20": lambda i: f"<x v='y{i:019d}'/>",
    "blank20": lambda i: f"<b>{_blank(i)}</b>",
}


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def thread_dict_size() -> int:
    return int(etree.memory_debugger.dict_size())


def stanzas(kind: str, n: int, start: int = 0) -> Iterator[bytes]:
    item = KINDS[kind]
    for base in range(start, start + n, PER_STANZA):
        payload = "".join(item(i) for i in range(base, min(base + PER_STANZA, start + n)))
        yield f"<message to='bob@example.com' id='m{base}'>{payload}</message>".encode()


def new_parser(mode: str) -> StreamParser:
    parser = StreamParser(max_stanza_bytes=1 << 20, max_depth=8, framed=mode == "framed")
    if mode == "framed":
        parser.feed_frame(OPEN)
    else:
        parser.feed(HEADER)
    return parser


def run(parser: StreamParser, mode: str, kind: str, n: int, start: int = 0) -> int:
    """Feed ``n`` items; return the highest resident set seen (sampled every 1,000 items)."""
    feed = parser.feed_frame if mode == "framed" else parser.feed
    high = 0
    for i, data in enumerate(stanzas(kind, n, start)):
        for event in feed(data):
            assert isinstance(event, ElementReceived)
        if i % 10 == 0:
            high = max(high, rss())
    return max(high, rss())


def child(kind: str, mode: str, n: int) -> dict[str, float]:
    warm = new_parser(mode)
    run(warm, mode, kind, 10 * PER_STANZA, start=10**9)  # warm up the allocator and lxml
    del warm
    gc.collect()
    rss0, dict0 = rss(), thread_dict_size()
    t0 = time.perf_counter()
    parser = new_parser(mode)
    peak = run(parser, mode, kind, n)
    seconds = time.perf_counter() - t0
    gc.collect()
    rss1, dict1 = rss(), thread_dict_size()
    del parser
    gc.collect()
    rss2, dict2 = rss(), thread_dict_size()
    return {
        "peak_mb": (peak - rss0) / 1e6,
        "fed_mb": (rss1 - rss0) / 1e6,
        "dropped_mb": (rss2 - rss0) / 1e6,
        "dict_fed": dict1 - dict0,
        "dict_dropped": dict2 - dict0,
        "seconds": seconds,
    }


def sessions_child(kind: str, count: int) -> dict[str, float]:
    """``count`` live TCP parsers, each with as many distinct items as one epoch takes."""
    from xmppauth.proto.xml import EPOCH_BYTES  # not in trees before the epochs

    warm = new_parser("tcp")
    run(warm, "tcp", kind, 10 * PER_STANZA, start=10**9)
    del warm
    gc.collect()
    base = rss()
    parsers = []
    first = 0
    for _ in range(count):
        parser = new_parser("tcp")
        for data in stanzas(kind, 10**8, first):
            if parser._fed - parser._epoch + len(data) >= EPOCH_BYTES:
                break  # one stanza more would start a new epoch
            parser.feed(data)
            first += PER_STANZA
        parsers.append(parser)
    gc.collect()
    return {"kb_per_session": (rss() - base) / count / 1e3, "items_per_session": first / count}


def sessions(args: argparse.Namespace) -> None:
    from xmppauth.proto.xml import EPOCH_BYTES

    print(f"{args.sessions} live TCP parsers, each with one epoch ({EPOCH_BYTES:,} bytes) of new items")
    for kind in args.kinds.split(","):
        out = subprocess.run(
            [sys.executable, __file__, "_sessions", kind, str(args.sessions)],
            check=True,
            capture_output=True,
            text=True,
            env=os.environ,
        ).stdout
        r = json.loads(out)
        print(f"{kind:<10} {r['items_per_session']:>8,.0f} items {r['kb_per_session']:>7.0f} kB per session")


def memory(args: argparse.Namespace) -> None:
    print(f"lxml {etree.LXML_VERSION}, libxml2 {etree.LIBXML_VERSION}; {args.n:,} distinct items per row")
    print(
        f"{'kind':<10} {'mode':<7} {'RSS peak':>10} {'RSS fed':>10} {'RSS dropped':>12} "
        f"{'dict+ fed':>10} {'dict+ dropped':>14} {'s':>6}"
    )
    for kind in args.kinds.split(","):
        for mode in args.modes.split(","):
            out = subprocess.run(
                [sys.executable, __file__, "_child", kind, mode, str(args.n)],
                check=True,
                capture_output=True,
                text=True,
                env=os.environ,
            ).stdout
            r = json.loads(out)
            print(
                f"{kind:<10} {mode:<7} {r['peak_mb']:>7.1f} MB {r['fed_mb']:>7.1f} MB "
                f"{r['dropped_mb']:>9.1f} MB "
                f"{r['dict_fed']:>10,} {r['dict_dropped']:>14,} {r['seconds']:>6.1f}",
                flush=True,
            )


# ----------------------------------------------------------------------------------- speed

MESSAGE = (
    "<message to='romeo@example.net/orchard' from='juliet@example.com/balcony' type='chat' "
    "id='{id:06d}' xml:lang='en'><body>Art thou not Romeo, and a Montague?"
    "</body><active xmlns='http://jabber.org/protocol/chatstates'/><{tag} xmlns='urn:xmpp:receipts'/>"
    "</message>"
)


def messages(n: int, fresh_names: bool, round_no: int) -> list[bytes]:
    out = []
    for i in range(n):
        tag = f"q{round_no % 10}{i:05d}" if fresh_names else "request"  # as long as "request"
        out.append(MESSAGE.format(id=i, tag=tag).encode())
    return out


def speed_child(mode: str, fresh: bool, n: int, feed_them: bool) -> None:
    """One measured process for ``--callgrind``: the same set-up, with or without the feeding."""
    data = messages(n, fresh, 0)
    parser = new_parser(mode)
    feed = parser.feed_frame if mode == "framed" else parser.feed
    gc.collect()
    if feed_them:
        for stanza in data:
            feed(stanza)


def instructions(mode: str, fresh: bool, n: int, feed_them: bool) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        child = ["_speed", mode, str(int(fresh)), str(n), str(int(feed_them))]
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__, *child],
            check=True,
            capture_output=True,
            env=os.environ,
        )
        for line in out.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError("no totals in the callgrind output")


def speed(args: argparse.Namespace) -> None:
    sample = messages(1, False, 0)[0]
    how = "instructions under callgrind" if args.callgrind else f"best of {args.repeat}"
    print(f"lxml {etree.LXML_VERSION}; {args.n:,} stanzas of {len(sample)} bytes, {how}")
    for mode in ("tcp", "framed"):
        for fresh in (False, True):
            what = "a new name in each" if fresh else "the same names"
            if args.callgrind:
                cost = instructions(mode, fresh, args.n, True) - instructions(mode, fresh, args.n, False)
                print(f"{mode:<7} {what:<20} {cost / args.n:10,.0f} instructions/stanza", flush=True)
                continue
            best = float("inf")
            for round_no in range(args.repeat):
                data = messages(args.n, fresh, round_no)
                parser = new_parser(mode)
                feed = parser.feed_frame if mode == "framed" else parser.feed
                gc.collect()
                t0 = time.perf_counter()
                for stanza in data:
                    feed(stanza)
                best = min(best, time.perf_counter() - t0)
            print(f"{mode:<7} {what:<20} {best / args.n * 1e6:6.2f} µs/stanza", flush=True)


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "_child":
        print(json.dumps(child(sys.argv[2], sys.argv[3], int(sys.argv[4]))))
        return
    if len(sys.argv) == 4 and sys.argv[1] == "_sessions":
        print(json.dumps(sessions_child(sys.argv[2], int(sys.argv[3]))))
        return
    if len(sys.argv) == 6 and sys.argv[1] == "_speed":
        speed_child(sys.argv[2], sys.argv[3] == "1", int(sys.argv[4]), sys.argv[5] == "1")
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    m = sub.add_parser("memory", help="RSS and dictionary growth per kind of distinct string")
    m.add_argument("-n", type=int, default=1_000_000)
    m.add_argument("--kinds", default=",".join(KINDS))
    m.add_argument("--modes", default="tcp,framed")
    h = sub.add_parser("sessions", help="memory a live stream parser holds at most (one epoch of new names)")
    h.add_argument("-s", "--sessions", type=int, default=100)
    h.add_argument("--kinds", default="text7,element,attribute,prefix,namespace,blank20")
    s = sub.add_parser("speed", help="µs per 261-byte message stanza")
    s.add_argument("-n", type=int, default=10_000)
    s.add_argument("--repeat", type=int, default=7)
    s.add_argument("--callgrind", action="store_true", help="count instructions (valgrind) instead of time")
    args = ap.parse_args()
    {"memory": memory, "sessions": sessions, "speed": speed}[args.command](args)


if __name__ == "__main__":
    main()
