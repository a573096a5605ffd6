"""Issue 12 figures: login timing of unknown accounts against wrong passwords, and what other users
feel during a guessing run, a stanza flood and a connection flood.

Run by hand, not a test (``.venv/bin/python bench/hardening.py --help`` for every knob; ~4 min with the
defaults). One xmppauth server in a fresh temp dir (``bench/servers.py``), accounts created once; the
server process is started twice on that data dir:

**Part 1, unknown account vs wrong password** (docs/security.md row 11): the guessing limits and the
connection rate limit are raised through the environment (``RAISED_FOR_PART1``) so that thousands of
failed attempts from one address are all checked. Per attempt, on an already-open TLS stream:

* ``scram`` -- RFC 6120 SASL SCRAM-SHA-256: sending ``<auth/>`` (client-first) -> the ``<challenge/>``
  (server-first), and sending ``<response/>`` (client-final, a proof made with a wrong password) -> the
  ``<failure/>``;
* ``scram2`` (not in the default ``--cases``) -- the same over XEP-0388 SASL2;
* ``plain2`` -- XEP-0388 SASL2 ``<authenticate mechanism='PLAIN'>`` -> the ``<failure/>``.

"unknown" attempts name an account that does not exist, "wrong" ones an existing account with a wrong
password; ``--pool`` names of each class, used in turn, all of the same length and alphabet. A stream
allows 3 failed attempts (``MAX_AUTH_FAILURES``), so ``--per-stream`` attempts are made on each stream,
then it is dropped and a new one opened (connect, STARTTLS, TLS, stream restart: not timed). The two
classes are interleaved in random order, balanced in every block of ``--block`` attempts, rather than
strictly alternated: with strict alternation every attempt but the first on a stream would follow one of
the other class, and anything the server still does for the previous attempt would be billed to the
other class. That carry-over is reported on its own (the time of an attempt by the class of the attempt
just before it on the same stream). Medians, p90, the median difference and a two-sided Mann-Whitney U
test (normal approximation, tie and continuity corrections, pure Python).

**Part 2, other users' latency** with the default limits: ``--quiet`` clients log in (RFC 6120,
SCRAM-SHA-256, from 127.0.0.1), and each sends ``--probe-rate`` probes a second, alternately an XEP-0199
ping to the server (round trip: send -> ``<iq type='result'/>``) and a chat message to the full JID of the
next quiet client (send -> delivery to that client; one-way, both ends in this process). One login probe
every ``--login-every`` s (SASL2 + Bind2, SCRAM-SHA-256, account ``prober``, with a user-agent id that
logged in before) from 127.0.0.1. Phases of ``--phase-seconds`` each, the load running in its own process
(``--role``) from its own loopback address:

* ``quiet``: nothing else;
* ``guess``: ``--attack-conns`` connections from 127.0.0.2 guessing passwords (``--attack-mechanism``,
  PLAIN by default: the server runs PBKDF2 for every checked guess) at the quiet accounts and ``prober``
  as fast as they can; a refused connection is retried after ``--attack-retry`` s;
* ``flood``: the account ``flooder`` from 127.0.0.3 writes chat messages (200-byte bodies) to a second
  session of its own, which reads them, as fast as TCP lets it (``--flood-kind``: ``self`` sends them to
  the flooding session's own full JID instead, ``whitespace`` sends spaces);
* ``connflood``: ``--connflood-rate`` new connections a second from 127.0.0.4, each sends a stream header
  and waits for the features (admitted) or a stream error (refused), then drops the connection;
* ``quiet-after``: nothing else again (how far the baseline itself moves).

CPU per phase from /proc: the server process, this process (the quiet clients), the load process, and
the rest of the machine ("others", every other process).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import random
import re
import resource
import shlex
import ssl
import string
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from servers import XmppauthServer
from xmpp_client import (
    _FEATURES_END,
    _SASL2_REPLY,
    _SASL_REPLY,
    ATTR_ID,
    NS_CLIENT,
    NS_SASL,
    NS_SASL2,
    NS_STREAMS,
    ScramCache,
    ScramClient,
    Session,
    XmppError,
    _login_on,
    _starttls,
    login,
    login2,
    make_client_tls_context,
    s_prefix,
)

DOMAIN = "localhost"
PASSWORD = "bench-password-0"  # the bench accounts' password
WRONG = "bench-password-X"  # same length, wrong
RAISED_FOR_PART1 = {
    "XMPP_GUESS_FREE_PER_ACCOUNT": "10000000",
    "XMPP_GUESS_FREE_PER_ADDRESS": "10000000",
    "XMPP_CONNECT_BURST": "1000000",
    "XMPP_CONNECTS_PER_SECOND_PER_ADDRESS": "1000000",
}
LIMIT_VARS = (
    "XMPP_GUESS_FREE_PER_ACCOUNT",
    "XMPP_GUESS_FREE_PER_ADDRESS",
    "XMPP_GUESS_LONGEST_WAIT",
    "XMPP_GUESS_FORGET",
    "XMPP_MAX_CONNECTIONS",
    "XMPP_MAX_CONNECTIONS_PER_ADDRESS",
    "XMPP_CONNECT_BURST",
    "XMPP_CONNECTS_PER_SECOND_PER_ADDRESS",
    "XMPP_READ_BYTES_PER_SECOND",
    "XMPP_READ_BURST_BYTES",
    "XMPP_MAX_OUTGOING_BYTES",
)
CLK_TCK = os.sysconf("SC_CLK_TCK")
SCRIPT = os.path.abspath(__file__)
PROBE_UA = str(uuid.uuid5(uuid.NAMESPACE_URL, "xmppauth-bench-hardening-prober"))

_P = r"(?:[\w.-]+:)?"
_CONDITION = re.compile(rf"<{_P}(?!text\b)([\w-]+)\b")
_TEXT = re.compile(rf"<{_P}text\b[^>]*>(.*?)</{_P}text\s*>", re.S)
_STANZA_START = re.compile(rf"<{_P}(iq|message)\b([^>]*)>")
_TYPE_ERROR = re.compile(r"\stype=(['\"])error\1")


# --------------------------------------------------------------------------- statistics


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linear between closest ranks."""
    if not values:
        return math.nan
    v = sorted(values)
    pos = (len(v) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def median(values: list[float]) -> float:
    return percentile(values, 50)


def mann_whitney(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Two-sided Mann-Whitney U test of a against b: (U of a, U/(n1*n2), p).  Normal approximation
    with the tie correction of the variance and a continuity correction of 0.5."""
    n1, n2 = len(a), len(b)
    if n1 == 0 or n2 == 0:
        return math.nan, math.nan, math.nan
    both = sorted([(x, 0) for x in a] + [(x, 1) for x in b])
    n = n1 + n2
    rank_a = 0.0
    ties = 0.0
    i = 0
    while i < n:
        j = i
        while j + 1 < n and both[j + 1][0] == both[i][0]:
            j += 1
        rank = (i + j) / 2.0 + 1.0  # the average rank of the tied group i..j
        t = j - i + 1
        if t > 1:
            ties += t**3 - t
        rank_a += rank * sum(1 for k in range(i, j + 1) if both[k][1] == 0)
        i = j + 1
    u = rank_a - n1 * (n1 + 1) / 2.0
    mu = n1 * n2 / 2.0
    var = n1 * n2 / 12.0 * ((n + 1) - ties / (n * (n - 1)))
    if var <= 0:
        return u, u / (n1 * n2), 1.0
    diff = u - mu
    z = (abs(diff) - 0.5) / math.sqrt(var) if abs(diff) >= 0.5 else 0.0
    return u, u / (n1 * n2), math.erfc(z / math.sqrt(2.0))


def us(ns: list[int]) -> list[float]:
    return [x / 1000.0 for x in ns]


def fmt(x: float, digits: int = 0) -> str:
    if math.isnan(x):
        return "-"
    return f"{x:,.{digits}f}"


def fmt_p(p: float) -> str:
    if math.isnan(p):
        return "-"
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"


# --------------------------------------------------------------------------- CPU and machine


def proc_ticks(pid: int) -> int:
    """utime + stime of a process (all its threads), in clock ticks; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def machine_ticks() -> int:
    """Busy clock ticks of the whole machine (all cores), from /proc/stat."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = f[3] + (f[4] if len(f) > 4 else 0)
    return sum(f[:8]) - idle


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "?"


@dataclass
class CpuWindow:
    """CPU of the server, this process, a load process and everyone else over a wall-clock window."""

    pids: dict[str, int]
    t0: float = 0.0
    start: dict[str, int] = field(default_factory=dict)
    machine0: int = 0

    def begin(self) -> None:
        self.t0 = time.monotonic()
        self.start = {k: proc_ticks(p) for k, p in self.pids.items()}
        self.machine0 = machine_ticks()

    def end(self) -> dict[str, float]:
        """% of one core for each pid name, and ``others``."""
        wall = time.monotonic() - self.t0
        used = {k: proc_ticks(p) - self.start[k] for k, p in self.pids.items()}
        machine = machine_ticks() - self.machine0
        out = {k: 100.0 * v / CLK_TCK / wall for k, v in used.items()}
        out["others"] = max(0.0, 100.0 * (machine - sum(used.values())) / CLK_TCK / wall)
        return out


# --------------------------------------------------------------------------- protocol helpers


async def open_secure(
    host: str, port: int, tls_ctx: ssl.SSLContext, local: str | None = None, time_limit: float = 10.0
) -> tuple[Session, str]:
    """TCP connect (from ``local``), STARTTLS, TLS, stream restart; the session and its features.
    A refused connection raises XmppError (the server's stream error is in its text)."""
    writer = None
    try:
        async with asyncio.timeout(time_limit):
            reader, writer = await asyncio.open_connection(
                host, port, local_addr=(local, 0) if local else None
            )
            s = Session(reader, writer)
            await _starttls(s, DOMAIN, tls_ctx)
            s.open_stream(DOMAIN)
            m = await s.expect(_FEATURES_END, "post-TLS stream features")
            return s, s_prefix(m)
    except BaseException:
        if writer is not None:
            writer.transport.abort()
        raise


def failure_of(element: str) -> tuple[str, str]:
    """(condition, text) of a ``<failure/>`` element's text."""
    inner = element.split(">", 1)[1] if ">" in element else ""
    cond = _CONDITION.search(inner)
    text = _TEXT.search(inner)
    return (cond.group(1) if cond else "?"), (text.group(1) if text else "")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def random_name(length: int, rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(length))


# --------------------------------------------------------------------------- part 1


@dataclass
class Attempt:
    cls: str  # "unknown" | "wrong"
    pred: str | None  # the class of the attempt just before it on the same stream (None: the first)
    first_ns: int | None  # client-first sent -> server-first received (SCRAM)
    final_ns: int  # client-final (or PLAIN) sent -> <failure/> received
    failure: str  # condition and text
    iterations: int | None = None
    salt_len: int | None = None


async def scram_attempt(
    s: Session, profile: str, user: str, cache: ScramCache, ua: str
) -> tuple[int, int, str, int, int]:
    mech = "SCRAM-SHA-256"
    scram = ScramClient(mech, user, WRONG, cache)
    if profile == "rfc6120":
        first = f"<auth xmlns='{NS_SASL}' mechanism='{mech}'>{b64(scram.first())}</auth>"
        reply = _SASL_REPLY
    else:
        first = (
            f"<authenticate xmlns='{NS_SASL2}' mechanism='{mech}'>"
            f"<initial-response>{b64(scram.first())}</initial-response>"
            f"<user-agent id='{ua}'><software>bench</software></user-agent></authenticate>"
        )
        reply = _SASL2_REPLY
    t0 = time.perf_counter_ns()
    s.send(first)
    m = await s.expect(reply, "server-first")
    t1 = time.perf_counter_ns()
    if m.group(1) != "challenge":
        raise XmppError(f"expected a challenge: {m.group(0)[:300]!r}")
    server_first = base64.b64decode((m.group(2) or "").strip())
    sf = dict(item.split("=", 1) for item in server_first.decode().split(","))
    final = b64(scram.final(server_first))
    ns = NS_SASL if profile == "rfc6120" else NS_SASL2
    t2 = time.perf_counter_ns()
    s.send(f"<response xmlns='{ns}'>{final}</response>")
    m = await s.expect(reply, "failure")
    t3 = time.perf_counter_ns()
    if m.group(1) != "failure":
        raise XmppError(f"expected a failure: {m.group(0)[:300]!r}")
    cond, text = failure_of(m.group(0))
    return t1 - t0, t3 - t2, f"{cond}: {text}", int(sf["i"]), len(base64.b64decode(sf["s"]))


async def plain2_attempt(s: Session, user: str, ua: str) -> tuple[int, str]:
    initial = b64(f"\0{user}\0{WRONG}".encode())
    msg = (
        f"<authenticate xmlns='{NS_SASL2}' mechanism='PLAIN'><initial-response>{initial}</initial-response>"
        f"<user-agent id='{ua}'><software>bench</software></user-agent></authenticate>"
    )
    t0 = time.perf_counter_ns()
    s.send(msg)
    m = await s.expect(_SASL2_REPLY, "failure")
    t1 = time.perf_counter_ns()
    if m.group(1) != "failure":
        raise XmppError(f"expected a failure: {m.group(0)[:300]!r}")
    cond, text = failure_of(m.group(0))
    return t1 - t0, f"{cond}: {text}"


def balanced_order(per_class: int, block: int, rng: random.Random) -> list[str]:
    out: list[str] = []
    left = {"unknown": per_class, "wrong": per_class}
    while left["unknown"] or left["wrong"]:
        half = block // 2
        chunk = ["unknown"] * min(half, left["unknown"]) + ["wrong"] * min(half, left["wrong"])
        left["unknown"] -= chunk.count("unknown")
        left["wrong"] -= chunk.count("wrong")
        rng.shuffle(chunk)
        out += chunk
    return out


@dataclass
class CaseResult:
    case: str
    attempts: list[Attempt]
    errors: list[str]
    streams: int
    seconds: float
    cpu: dict[str, float]


async def run_case(
    case: str,
    server: XmppauthServer,
    known: list[str],
    unknown: list[str],
    args: argparse.Namespace,
    rng: random.Random,
) -> CaseResult:
    tls_ctx = make_client_tls_context()
    cache = ScramCache()
    order = balanced_order(args.samples + args.warmup, args.block, rng)
    warm = 2 * args.warmup
    attempts: list[Attempt] = []
    errors: list[str] = []
    turn = Counter[str]()
    s: Session | None = None
    on_stream = 0
    pred: str | None = None
    streams = 0
    ua = ""
    cpu = CpuWindow({"server": server.pid, "client": os.getpid()})
    t_start = time.monotonic()
    for index, cls in enumerate(order):
        if index == warm:
            cpu.begin()
        if s is None or on_stream >= args.per_stream:
            if s is not None:
                s.abort()
            try:
                s, _ = await open_secure(server.host, server.c2s_port, tls_ctx)
            except (XmppError, OSError, TimeoutError) as e:
                errors.append(f"connect: {e}"[:300])
                s = None
                continue
            streams += 1
            on_stream, pred, ua = 0, None, str(uuid.uuid4())
        pool = unknown if cls == "unknown" else known
        user = pool[turn[cls] % len(pool)]
        turn[cls] += 1
        try:
            async with asyncio.timeout(args.timeout):
                if case == "plain2":
                    final, failure = await plain2_attempt(s, user, ua)
                    a = Attempt(cls, pred, None, final, failure)
                else:
                    profile = "rfc6120" if case == "scram" else "sasl2"
                    first, final, failure, iters, salt = await scram_attempt(s, profile, user, cache, ua)
                    a = Attempt(cls, pred, first, final, failure, iters, salt)
        except (XmppError, OSError, TimeoutError, ssl.SSLError, KeyError, ValueError) as e:
            errors.append(f"{cls} {user}: {type(e).__name__}: {e}"[:300])
            s.abort()
            s = None
            continue
        if index >= warm:
            attempts.append(a)
        on_stream += 1
        pred = cls
        if args.gap:
            await asyncio.sleep(args.gap)
    if s is not None:
        s.abort()
    return CaseResult(case, attempts, errors, streams, time.monotonic() - t_start, cpu.end())


CASE_TITLES = {
    "scram": "SCRAM-SHA-256, RFC 6120 SASL",
    "scram2": "SCRAM-SHA-256, XEP-0388 SASL2",
    "plain2": "PLAIN, XEP-0388 SASL2",
}


def part1_tables(results: list[CaseResult]) -> str:
    lines = [
        "| mechanism | measured | n (unknown / wrong) | median unknown µs | median wrong µs "
        "| p90 unknown µs | p90 wrong µs | Δ median (unknown - wrong) µs | U/(n₁n₂) | Mann-Whitney p "
        "| row 11 (p > 0.01 or \\|Δ\\| < 50 µs) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    carry = [
        "| mechanism | measured | n (after unknown / after wrong) | median after unknown µs "
        "| median after wrong µs | Δ median µs | Mann-Whitney p |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    notes: list[str] = []
    for r in results:
        metrics: list[tuple[str, str]] = []
        if r.case != "plain2":
            metrics.append(("client-first → server-first", "first_ns"))
        metrics.append(
            ("client-final → failure" if r.case != "plain2" else "authenticate → failure", "final_ns")
        )
        for label, attr in metrics:
            u = us([getattr(a, attr) for a in r.attempts if a.cls == "unknown"])
            w = us([getattr(a, attr) for a in r.attempts if a.cls == "wrong"])
            _, auc, p = mann_whitney(u, w)
            delta = median(u) - median(w)
            ok = "yes" if (p > 0.01 or abs(delta) < 50) else "**no**"
            lines.append(
                f"| {CASE_TITLES[r.case]} | {label} | {len(u)} / {len(w)} "
                f"| {fmt(median(u))} | {fmt(median(w))} "
                f"| {fmt(percentile(u, 90))} | {fmt(percentile(w, 90))} | {fmt(delta, 1)} | {auc:.3f} "
                f"| {fmt_p(p)} | {ok} |"
            )
            after_u = us([getattr(a, attr) for a in r.attempts if a.pred == "unknown"])
            after_w = us([getattr(a, attr) for a in r.attempts if a.pred == "wrong"])
            _, _, pc = mann_whitney(after_u, after_w)
            carry.append(
                f"| {CASE_TITLES[r.case]} | {label} | {len(after_u)} / {len(after_w)} "
                f"| {fmt(median(after_u))} "
                f"| {fmt(median(after_w))} | {fmt(median(after_u) - median(after_w), 1)} | {fmt_p(pc)} |"
            )
        by_cls: dict[str, Counter[str]] = {"unknown": Counter(), "wrong": Counter()}
        for a in r.attempts:
            by_cls[a.cls][a.failure] += 1
        same = set(by_cls["unknown"]) == set(by_cls["wrong"])
        notes.append(
            f"- {CASE_TITLES[r.case]}: {len(r.attempts)} attempts measured on {r.streams} streams in "
            f"{r.seconds:.0f} s (warm-up included); server CPU {r.cpu['server']:.0f} %, client "
            f"{r.cpu['client']:.0f} %, other processes {r.cpu['others']:.0f} % of a core; "
            f"{len(r.errors)} attempts lost to errors."
        )
        notes.append(
            f"  Failures: unknown {dict(by_cls['unknown'])}, wrong {dict(by_cls['wrong'])} "
            f"({'the same' if same else '**they differ**'})."
        )
        if r.case != "plain2":
            it = {
                c: sorted({a.iterations or 0 for a in r.attempts if a.cls == c}) for c in ("unknown", "wrong")
            }
            sl = {
                c: sorted({a.salt_len or 0 for a in r.attempts if a.cls == c}) for c in ("unknown", "wrong")
            }
            notes.append(
                f"  server-first: iterations unknown {it['unknown']}, wrong {it['wrong']}; "
                f"salt bytes unknown {sl['unknown']}, wrong {sl['wrong']}."
            )
        for e in r.errors[:3]:
            notes.append(f"  error: `{e}`")
    return (
        "\n".join(lines)
        + "\n\nCarry-over: the same times, grouped by the class of the attempt just before on the same "
        "stream (the first attempt of each stream left out):\n\n"
        + "\n".join(carry)
        + "\n\n"
        + "\n".join(notes)
    )


# --------------------------------------------------------------------------- part 2: the loads (own process)


async def role_attacker(a: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + a["duration"]
    tls_ctx = make_client_tls_context()
    cache = ScramCache()
    stats: Counter[str] = Counter()
    targets: list[str] = a["targets"]
    turn = [0]
    rng = random.Random()
    mech = a["mechanism"]
    samples: list[str] = []

    def classify(cond: str, text: str) -> str:
        if cond == "not-authorized":
            return "checked (not-authorized)"
        if cond == "temporary-auth-failure" and "your address" in text:
            return "refused unchecked (address limit)"
        if cond == "temporary-auth-failure" and "this account" in text:
            return "held (account limit: app passwords only)"
        return f"other: {cond}"

    async def one_guess(s: Session) -> None:
        user = targets[turn[0] % len(targets)]
        turn[0] += 1
        guess = "guess-" + random_name(10, rng)
        if mech == "PLAIN":
            initial = b64(f"\0{user}\0{guess}".encode())
            s.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{initial}</auth>")
            m = await s.expect(_SASL_REPLY, "PLAIN reply")
        else:
            scram = ScramClient(mech, user, guess, cache)
            s.send(f"<auth xmlns='{NS_SASL}' mechanism='{mech}'>{b64(scram.first())}</auth>")
            m = await s.expect(_SASL_REPLY, "server-first")
            if m.group(1) == "challenge":
                final = scram.final(base64.b64decode((m.group(2) or "").strip()))
                s.send(f"<response xmlns='{NS_SASL}'>{b64(final)}</response>")
                m = await s.expect(_SASL_REPLY, "SCRAM outcome")
        stats["attempts"] += 1
        if m.group(1) == "success":
            stats["success"] += 1
            return
        cond, text = failure_of(m.group(0))
        kind = classify(cond, text)
        stats[kind] += 1
        if kind.startswith("refused") and len(samples) < 1:
            samples.append(text)

    async def worker() -> None:
        while time.monotonic() < deadline:
            try:
                s, _ = await open_secure(a["host"], a["port"], tls_ctx, a["local"], 10.0)
            except XmppError as e:
                stats["connections refused" if "policy-violation" in str(e) else "connections closed"] += 1
                await asyncio.sleep(a["retry"])
                continue
            except (OSError, TimeoutError, ssl.SSLError):
                stats["connection errors"] += 1
                await asyncio.sleep(a["retry"])
                continue
            stats["connections admitted"] += 1
            try:
                for _ in range(3):
                    if time.monotonic() >= deadline:
                        break
                    async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                        await one_guess(s)
            except (XmppError, OSError, ssl.SSLError):
                stats["streams ended by the server"] += 1
            except TimeoutError:
                stats["guesses cut by the end of the run"] += 1
            finally:
                s.abort()

    await asyncio.gather(*(worker() for _ in range(a["conns"])))
    return {"stats": dict(stats), "refusal_text": samples[0] if samples else ""}


async def login_from(a: dict[str, Any], user: str, resource_: str) -> Session:
    """RFC 6120 login (STARTTLS, SCRAM-SHA-256, bind) on a connection from ``a["local"]``."""
    reader, writer = await asyncio.open_connection(a["host"], a["port"], local_addr=(a["local"], 0))
    s = Session(reader, writer)
    return await _login_on(
        s, time.perf_counter(), DOMAIN, user, PASSWORD, resource_, make_client_tls_context(), ScramCache(),
        "SCRAM-SHA-256",
    )  # fmt: skip


async def role_flooder(a: dict[str, Any]) -> dict[str, Any]:
    """``msg``: chat messages to a second session of the same account (the sink, which reads them);
    ``self``: to the flooding session's own full JID; ``whitespace``: spaces between stanzas."""
    s = await login_from(a, "flooder", "flood")
    sink = await login_from(a, "flooder", "sink") if a["kind"] == "msg" else s
    deadline = time.monotonic() + a["duration"]
    if a["kind"] == "whitespace":
        chunk = b" " * 16384
    else:
        one = f"<message to='{sink.jid}' type='chat' id='f'><body>{'x' * 200}</body></message>".encode()
        chunk = one * max(1, 16384 // len(one))
    per_chunk_msgs = 0 if a["kind"] == "whitespace" else chunk.count(b"<message ")
    sent = 0
    got = Counter[str]()
    ended = ""
    t0 = time.monotonic()

    async def drain_in(session: Session, count: bool) -> None:
        nonlocal ended
        tail = b""
        while True:
            try:
                data = await session.reader.read(65536)
            except (OSError, ssl.SSLError) as e:
                ended = ended or f"read: {type(e).__name__}"
                return
            if not data:
                ended = ended or "closed by the server"
                return
            if count:
                got["bytes"] += len(data)
                both = tail + data
                got["messages"] += both.count(b"<message ") - tail.count(b"<message ")
                tail = both[-16:]
            if b"stream:error" in data:
                at = data.find(b"stream:error")
                ended = "stream error: " + data[at : at + 120].decode(errors="replace")

    readers = [asyncio.create_task(drain_in(sink, True))]
    if sink is not s:
        readers.append(asyncio.create_task(drain_in(s, False)))
    writer = s.writer
    try:
        while time.monotonic() < deadline and not ended:
            writer.write(chunk)
            sent += len(chunk)
            try:
                async with asyncio.timeout(max(0.05, deadline - time.monotonic())):
                    await writer.drain()
            except TimeoutError:
                break
    except (OSError, ssl.SSLError) as e:
        ended = ended or f"write: {type(e).__name__}"
    wall = time.monotonic() - t0
    # stay alive to the end of the phase (its CPU is read then), and let the last messages arrive
    await asyncio.sleep(max(0.5, deadline - time.monotonic()))
    for r in readers:
        r.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    s.abort()
    sink.abort()
    return {
        "kind": a["kind"],
        "bytes_written": sent,
        "write_rate_kib_s": sent / 1024 / wall,
        "messages_written": sent // len(chunk) * per_chunk_msgs,
        "messages_back": got["messages"],
        "bytes_back": got["bytes"],
        "ended": ended,
        "seconds": wall,
    }


async def role_connflood(a: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + a["duration"]
    interval = 1.0 / a["rate"]
    stats: Counter[str] = Counter()
    answer_ms: dict[str, list[float]] = {"admitted": [], "refused": []}
    header = (
        f"<?xml version='1.0'?><stream:stream to='{DOMAIN}' version='1.0' xml:lang='en' "
        f"xmlns='{NS_CLIENT}' xmlns:stream='{NS_STREAMS}'>"
    ).encode()
    inflight = asyncio.Semaphore(a["max_inflight"])

    async def one() -> None:
        writer = None
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(5.0):
                reader, writer = await asyncio.open_connection(
                    a["host"], a["port"], local_addr=(a["local"], 0)
                )
                writer.write(header)
                buf = b""
                while True:
                    data = await reader.read(4096)
                    if not data:
                        stats["closed without an answer"] += 1
                        return
                    buf += data
                    if b"</stream:error>" in buf or (b"<stream:error" in buf and b"policy-violation" in buf):
                        stats["refused"] += 1
                        answer_ms["refused"].append((time.perf_counter() - t0) * 1000)
                        return
                    if b"</stream:features>" in buf:
                        stats["admitted"] += 1
                        answer_ms["admitted"].append((time.perf_counter() - t0) * 1000)
                        return
        except TimeoutError:
            stats["timed out (5 s)"] += 1
        except OSError as e:
            stats[f"error: {type(e).__name__}"] += 1
        finally:
            if writer is not None:
                writer.transport.abort()
            inflight.release()

    tasks = []
    next_t = time.monotonic()
    while time.monotonic() < deadline:
        if inflight.locked():
            stats["skipped: too many in flight"] += 1
        else:
            await inflight.acquire()
            stats["attempted"] += 1
            tasks.append(asyncio.create_task(one()))
        next_t += interval
        await asyncio.sleep(max(0.0, next_t - time.monotonic()))
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "stats": dict(stats),
        "rate_per_s": stats["attempted"] / a["duration"],
        "answer_ms_p50": {k: median(v) for k, v in answer_ms.items()},
    }


ROLES = {"attacker": role_attacker, "flooder": role_flooder, "connflood": role_connflood}


def run_role(role: str, role_args: str) -> None:
    result = asyncio.run(ROLES[role](json.loads(role_args)))
    ru = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_seconds"] = ru.ru_utime + ru.ru_stime
    print(json.dumps(result), flush=True)


# --------------------------------------------------------------------------- part 2: the quiet clients


@dataclass
class PhaseStats:
    ping: list[int] = field(default_factory=list)
    msg: list[int] = field(default_factory=list)
    errors: int = 0
    sent: int = 0
    logins: list[float] = field(default_factory=list)
    login_failures: list[str] = field(default_factory=list)


class Quiet:
    """The quiet clients: probes and their replies, attributed to the phase they were sent in."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sessions: list[Session] = []
        self.pending: dict[str, tuple[str, int, str]] = {}  # id -> (kind, sent at, phase)
        self.phase: str | None = None
        self.stats: dict[str, PhaseStats] = {}
        self.closed: list[str] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def login_all(self, host: str, port: int, names: list[str]) -> None:
        tls_ctx = make_client_tls_context()
        cache = ScramCache()
        for i, name in enumerate(names):
            s = await login(
                host, port, DOMAIN, name, PASSWORD, f"q{i}", tls_ctx=tls_ctx, scram_cache=cache,
                mechanism="SCRAM-SHA-256",
            )  # fmt: skip
            self.sessions.append(s)

    def start(self) -> None:
        for i, s in enumerate(self.sessions):
            self.tasks.append(asyncio.create_task(self._read(i, s)))
            self.tasks.append(asyncio.create_task(self._probe(i, s)))

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for s in self.sessions:
            s.abort()

    async def _read(self, i: int, s: Session) -> None:
        while True:
            try:
                data = await s.reader.read(65536)
            except (OSError, ssl.SSLError) as e:
                self.closed.append(f"q{i}: {type(e).__name__}")
                return
            now = time.perf_counter_ns()
            if not data:
                self.closed.append(f"q{i}: closed by the server: {s.buf[-200:]!r}")
                return
            s.buf += s._decoder.decode(data)
            end = 0
            for m in _STANZA_START.finditer(s.buf):
                end = m.end()
                ident = ATTR_ID.search(m.group(2))
                if ident is None:
                    continue
                entry = self.pending.pop(ident.group(2), None)
                if entry is None:
                    continue
                kind, sent, phase = entry
                st = self.stats[phase]
                if _TYPE_ERROR.search(m.group(2)):
                    st.errors += 1
                else:
                    (st.ping if kind == "ping" else st.msg).append(now - sent)
            if end:
                s.buf = s.buf[end:]
            elif len(s.buf) > 65536:
                s.buf = s.buf[-1024:]

    async def _probe(self, i: int, s: Session) -> None:
        partner = self.sessions[(i + 1) % len(self.sessions)].jid
        interval = 1.0 / self.args.probe_rate
        seq = 0
        await asyncio.sleep(random.uniform(0, interval))
        while True:
            await asyncio.sleep(interval * random.uniform(0.5, 1.5))
            phase = self.phase
            if phase is None:
                continue
            seq += 1
            kind = "ping" if seq % 2 else "msg"
            ident = f"{kind}{i}-{seq}"
            if kind == "ping":
                stanza = f"<iq type='get' id='{ident}' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>"
            else:
                stanza = (
                    f"<message type='chat' id='{ident}' to='{partner}'><body>probe {seq}</body></message>"
                )
            self.stats[phase].sent += 1
            self.pending[ident] = (kind, time.perf_counter_ns(), phase)
            s.send(stanza)

    def lost(self, phase: str) -> int:
        return sum(1 for _, _, p in self.pending.values() if p == phase)


async def login_prober(host: str, port: int, quiet: Quiet, stop: asyncio.Event, every: float) -> None:
    tls_ctx = make_client_tls_context()
    cache = ScramCache()
    while not stop.is_set():
        phase = quiet.phase
        if phase is not None:
            t0 = time.perf_counter()
            try:
                s = await login2(
                    host, port, DOMAIN, "prober", PASSWORD, tls_ctx=tls_ctx, scram_cache=cache,
                    mechanism="SCRAM-SHA-256", tag="probe", enable_sm=False, user_agent_id=PROBE_UA,
                    time_limit=10.0,
                )  # fmt: skip
                quiet.stats[phase].logins.append((time.perf_counter() - t0) * 1000)
                await s.close(2.0)
            except (XmppError, OSError, TimeoutError, ssl.SSLError) as e:
                quiet.stats[phase].login_failures.append(f"{type(e).__name__}: {e}"[:200])
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(every):
                await stop.wait()


@dataclass
class PhaseResult:
    name: str
    stats: PhaseStats
    lost: int
    cpu: dict[str, float]
    load: dict[str, Any]
    load_error: str = ""
    loadavg: str = ""


async def run_phase(
    name: str,
    server: XmppauthServer,
    quiet: Quiet,
    args: argparse.Namespace,
    role: str | None,
    role_args: dict[str, Any],
) -> PhaseResult:
    quiet.stats[name] = PhaseStats()
    proc = None
    pids = {"server": server.pid, "quiet clients": os.getpid()}
    if role is not None:
        role_args = {**role_args, "duration": args.ramp + args.phase_seconds + 0.5}
        argv = [
            *(["nice", "-n", str(args.load_nice)] if args.load_nice else []),
            sys.executable,
            SCRIPT,
            "--role",
            role,
            "--role-args",
            json.dumps(role_args),
        ]
        proc = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        pids["load"] = proc.pid
        await asyncio.sleep(args.ramp)
    cpu = CpuWindow(pids)
    cpu.begin()
    quiet.phase = name
    await asyncio.sleep(args.phase_seconds)
    quiet.phase = None
    used = cpu.end()
    load: dict[str, Any] = {}
    load_error = ""
    if proc is not None:
        try:
            async with asyncio.timeout(args.phase_seconds + 60):
                out, err = await proc.communicate()
            lines = out.decode().strip().splitlines()
            load = json.loads(lines[-1]) if lines else {}
            if proc.returncode:
                load_error = f"exit {proc.returncode}: {err.decode()[-600:]}"
        except (TimeoutError, json.JSONDecodeError, IndexError) as e:
            load_error = f"{type(e).__name__}: {e}"
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    await asyncio.sleep(args.grace)  # late replies still count; what has not come by now is lost
    return PhaseResult(name, quiet.stats[name], quiet.lost(name), used, load, load_error, loadavg())


def describe_load(r: PhaseResult) -> str:
    if r.load_error:
        return f"load process failed: {r.load_error}"
    if not r.load:
        return "—"
    if r.name == "guess":
        st = r.load.get("stats", {})
        guesses = ", ".join(
            f"{k}: {v}" for k, v in sorted(st.items()) if k != "attempts" and not k.startswith("conn")
        )
        conns = ", ".join(f"{k}: {v}" for k, v in sorted(st.items()) if k.startswith("conn"))
        return f"{st.get('attempts', 0)} guesses ({guesses}); {conns}"
    if r.name == "flood":
        n = r.load["messages_written"]
        msgs = f", ~{n:,} messages" if n else ""
        return (
            f"{r.load['bytes_written'] / 1024:,.0f} KiB written into the socket in {r.load['seconds']:.0f} s "
            f"({r.load['write_rate_kib_s']:,.0f} KiB/s{msgs}; the kernel's buffers hold what the server "
            f"has not read), {r.load['messages_back']:,} messages delivered "
            f"({r.load['messages_back'] / r.load['seconds']:,.0f}/s, "
            f"{r.load['bytes_back'] / 1024 / r.load['seconds']:,.0f} KiB/s); "
            f"{'ended: ' + r.load['ended'] if r.load['ended'] else 'stream still open at the end'}"
        )
    if r.name == "connflood":
        st = r.load.get("stats", {})
        p50 = r.load.get("answer_ms_p50", {})
        return (
            f"{st.get('attempted', 0)} connects ({r.load['rate_per_s']:.0f}/s): "
            f"admitted {st.get('admitted', 0)}, "
            f"refused {st.get('refused', 0)}"
            + "".join(f", {k} {v}" for k, v in st.items() if k not in ("attempted", "admitted", "refused"))
            + f"; answer p50 admitted {fmt(p50.get('admitted', math.nan), 1)} ms, "
            f"refused {fmt(p50.get('refused', math.nan), 1)} ms"
        )
    return json.dumps(r.load)[:300]


def part2_tables(results: list[PhaseResult]) -> str:
    base = results[0].stats
    b = {k: (median(us(getattr(base, k))), percentile(us(getattr(base, k)), 99)) for k in ("ping", "msg")}
    lines = [
        "| phase | probes sent | ping p50 µs | ping p99 µs | msg p50 µs | msg p99 µs "
        "| ratio to quiet: ping p50 / p99 | ratio to quiet: msg p50 / p99 | lost / error replies "
        "| logins ok (p50 ms, max ms) | server CPU % | load process CPU % | others CPU % | load avg after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    for r in results:
        st = r.stats
        row = [r.name, str(st.sent)]
        ratios = []
        for k in ("ping", "msg"):
            v = us(getattr(st, k))
            p50, p99 = median(v), percentile(v, 99)
            row += [fmt(p50), fmt(p99)]
            ratios.append(f"{p50 / b[k][0]:.2f} / {p99 / b[k][1]:.2f}")
        row += ratios
        row.append(f"{r.lost} / {st.errors}")
        n_login = len(st.logins) + len(st.login_failures)
        worst = max(st.logins, default=math.nan)
        row.append(f"{len(st.logins)}/{n_login} ({fmt(median(st.logins), 1)}, {fmt(worst, 1)})")
        row += [
            f"{r.cpu['server']:.0f}",
            f"{r.cpu['load']:.0f}" if "load" in r.cpu else "-",
            f"{r.cpu['others']:.0f}",
            r.loadavg,
        ]
        lines.append("| " + " | ".join(row) + " |")
    loads = ["", "| phase | what the load did |", "|---|---|"]
    for r in results:
        if r.name.startswith("quiet"):
            continue
        loads.append(f"| {r.name} | {describe_load(r)} |")
    notes = []
    for r in results:
        for f in r.stats.login_failures[:2]:
            notes.append(f"- {r.name}: login probe failed: `{f}`")
        if r.name == "guess" and r.load.get("refusal_text"):
            notes.append(f"- guess: a refused attempt is told: “{r.load['refusal_text']}”")
    return "\n".join(lines + loads) + ("\n\n" + "\n".join(notes) if notes else "")


# --------------------------------------------------------------------------- main


def limits_env(env: dict[str, str]) -> str:
    set_ = {k: env[k] for k in LIMIT_VARS if k in env}
    return ", ".join(f"{k}={v}" for k, v in set_.items()) or "none (the defaults)"


async def part2(server: XmppauthServer, args: argparse.Namespace, quiet_names: list[str]) -> str:
    quiet = Quiet(args)
    await quiet.login_all(server.host, server.c2s_port, quiet_names)
    # the prober's client logs in once before: a client the account knows (not held by its guessing limit)
    warm = await login2(
        server.host, server.c2s_port, DOMAIN, "prober", PASSWORD, tls_ctx=make_client_tls_context(),
        scram_cache=ScramCache(), mechanism="SCRAM-SHA-256", tag="probe", enable_sm=False,
        user_agent_id=PROBE_UA,
    )  # fmt: skip
    await warm.close()
    quiet.start()
    stop = asyncio.Event()
    prober = asyncio.create_task(login_prober(server.host, server.c2s_port, quiet, stop, args.login_every))
    common = {"host": server.host, "port": server.c2s_port}
    plan: list[tuple[str, str | None, dict[str, Any]]] = []
    for name in args.phases.split(","):
        if name.startswith("quiet"):
            plan.append((name, None, {}))
        elif name == "guess":
            plan.append(
                (
                    name,
                    "attacker",
                    {
                        **common,
                        "local": "127.0.0.2",
                        "conns": args.attack_conns,
                        "retry": args.attack_retry,
                        "mechanism": args.attack_mechanism,
                        "targets": [*quiet_names, "prober"],
                    },
                )
            )
        elif name == "flood":
            plan.append((name, "flooder", {**common, "local": "127.0.0.3", "kind": args.flood_kind}))
        elif name == "connflood":
            plan.append(
                (
                    name,
                    "connflood",
                    {**common, "local": "127.0.0.4", "rate": args.connflood_rate, "max_inflight": 500},
                )
            )
        else:
            raise SystemExit(f"unknown phase {name!r}")
    results = []
    try:
        for name, role, role_args in plan:
            print(f"  phase {name} ...", file=sys.stderr, flush=True)
            results.append(await run_phase(name, server, quiet, args, role, role_args))
            await asyncio.sleep(args.settle)
    finally:
        stop.set()
        await prober
        await quiet.stop()
    text = part2_tables(results)
    if quiet.closed:
        text += "\n\nQuiet streams that ended: " + "; ".join(quiet.closed[:5])
    return text


async def main_async(args: argparse.Namespace) -> str:
    rng = random.Random(args.seed)
    out: list[str] = []
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    load_start = loadavg()
    server = XmppauthServer(cpu=args.server_cpu, keep=args.keep)
    base_env = dict(server.env)
    try:
        known = [random_name(args.name_length, rng) for _ in range(args.pool)]
        unknown = [random_name(args.name_length, rng) for _ in range(args.pool)]
        quiet_names = [f"q{i:02d}" for i in range(args.quiet)]
        need_part2 = "2" in args.parts
        names = (known if "1" in args.parts else []) + (
            [*quiet_names, "prober", "flooder"] if need_part2 else []
        )
        t = time.monotonic()
        print(f"creating {len(names)} accounts in {server.dir} ...", file=sys.stderr, flush=True)
        server.create_accounts(names, PASSWORD)
        print(f"  {time.monotonic() - t:.0f} s", file=sys.stderr, flush=True)
        version = server.version()
        command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/hardening.py", *sys.argv[1:]])
        out.append(
            f"- started {started}; {version}; server code digest {server.code_fingerprint()}\n"
            f"- CPU: {cpu_model()}, {os.cpu_count()} cores; load average at the start {load_start}\n"
            f"- command: `{command}`"
        )
        if "1" in args.parts:
            server.env = {**base_env, **RAISED_FOR_PART1}
            gap = "no pause" if not args.gap else f"{args.gap * 1000:g} ms"
            server.start()
            print(f"part 1: server pid {server.pid}", file=sys.stderr, flush=True)
            results = []
            for case in args.cases.split(","):
                print(f"  case {case} ...", file=sys.stderr, flush=True)
                results.append(await run_case(case, server, known, unknown, args, rng))
            out.append(
                f"\n### Part 1: unknown account vs wrong password\n\n"
                f"Server limits from the environment: {limits_env(server.env)}. "
                f"{args.samples} measured attempts of each class per mechanism (after {args.warmup} of each "
                f"as warm-up), {args.per_stream} per TLS stream, {args.pool} names per class in turn, random "
                f"order balanced in blocks of {args.block}, {gap} between attempts; "
                f"load average after: {loadavg()}.\n\n" + part1_tables(results)
            )
        if need_part2:
            server.env = dict(base_env)
            if "1" in args.parts:
                server.restart()
            else:
                server.start()
            print(f"part 2: server pid {server.pid}", file=sys.stderr, flush=True)
            text = await part2(server, args, quiet_names)
            out.append(
                f"\n### Part 2: other users' latency\n\n"
                f"Server limits from the environment: {limits_env(server.env)}. {args.quiet} quiet clients, "
                f"{args.probe_rate:g} probes/s each (ping and message alternately), {args.phase_seconds:g} s "
                f"per phase (the load started {args.ramp:g} s before), one SASL2 login of `prober` every "
                f"{args.login_every:g} s; attacker {args.attack_conns} connections, {args.attack_mechanism}, "
                f"retry after a refused connection {args.attack_retry:g} s; flood kind {args.flood_kind}; "
                f"connection flood {args.connflood_rate:g}/s.\n\n" + text
            )
    finally:
        server.stop()
    out.append(f"\n- load average at the end: {loadavg()}")
    return "\n".join(out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default="12", help="which parts to run: 1, 2 or 12 (default)")
    g = p.add_argument_group("part 1")
    g.add_argument("--cases", default="scram,plain2", help="scram (RFC 6120), scram2 (SASL2), plain2 (SASL2)")
    g.add_argument("--samples", type=int, default=2000, help="measured attempts per class and case")
    g.add_argument("--warmup", type=int, default=100, help="unmeasured attempts per class first")
    g.add_argument("--per-stream", type=int, default=3, help="attempts per TLS stream (the server allows 3)")
    g.add_argument("--pool", type=int, default=16, help="names per class")
    g.add_argument("--name-length", type=int, default=8)
    g.add_argument("--block", type=int, default=100, help="the order is balanced in blocks of this many")
    g.add_argument("--gap", type=float, default=0.0, help="seconds between two attempts")
    g.add_argument("--timeout", type=float, default=10.0)
    g = p.add_argument_group("part 2")
    g.add_argument("--phases", default="quiet,guess,flood,connflood,quiet-after")
    g.add_argument("--phase-seconds", type=float, default=20.0)
    g.add_argument("--ramp", type=float, default=1.5, help="seconds a load runs before a phase is measured")
    g.add_argument("--settle", type=float, default=2.0, help="pause between phases")
    g.add_argument("--grace", type=float, default=2.0, help="late replies after a phase still count")
    g.add_argument("--quiet", type=int, default=20, help="quiet clients")
    g.add_argument("--probe-rate", type=float, default=4.0, help="probes a second per quiet client")
    g.add_argument("--login-every", type=float, default=2.0)
    g.add_argument("--attack-conns", type=int, default=50)
    g.add_argument("--attack-retry", type=float, default=0.2)
    g.add_argument("--attack-mechanism", default="PLAIN", choices=["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-1"])
    g.add_argument(
        "--flood-kind",
        default="msg",
        choices=["msg", "self", "whitespace"],
        help="msg: to a second session of the flooding account; self: to its own full JID",
    )
    g.add_argument("--connflood-rate", type=float, default=200.0)
    p.add_argument("--server-cpu", type=int, default=None, help="pin the server to this CPU (taskset)")
    p.add_argument(
        "--load-nice",
        type=int,
        default=0,
        help="run the load process at this niceness: on a two-core machine an attacker running flat out "
        "takes a core from the server and the quiet clients, which a real attacker's machine would not "
        "(19: it gets what they leave)",
    )
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--keep", action="store_true", help="keep the temp dir")
    p.add_argument("--markdown", help="also write the report to this file")
    p.add_argument("--role", choices=sorted(ROLES), help=argparse.SUPPRESS)
    p.add_argument("--role-args", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main() -> None:
    args = parse_args()
    if args.role:
        run_role(args.role, args.role_args)
        return
    report = asyncio.run(main_async(args))
    print(report)
    if args.markdown:
        Path(args.markdown).write_text(report + "\n")


if __name__ == "__main__":
    main()
