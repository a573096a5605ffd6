#!/usr/bin/env python3
"""Login and message-routing benchmark: xmppauth vs stock Prosody, same machine, same run.

Run by hand (not a test); prints a side-by-side table.  See bench/README.md.

    .venv/bin/python bench/login_msg.py                       # both targets, defaults
    .venv/bin/python bench/login_msg.py --target prosody --idle 500 --json /tmp/b.json

For every target the script starts the server in a temp dir (pinned to --server-cpu), creates
the accounts, pins itself (the load generator) to --client-cpu, then runs in this order:

  seq    N sequential logins (C=1): server CPU ms per login
  seq2   the same with XEP-0388 SASL2 + XEP-0386 Bind2 (+ XEP-0198 enabled inline)
  conc   C concurrent login loops for --login-duration s: logins/s, CPU ms per login
  conc2  the same with SASL2 + Bind2 (+ SM)
  fast   N sequential XEP-0484 FAST logins (SASL2 HT-SHA-256-NONE with a token from an earlier SASL2
         login + Bind2 + SM): server CPU ms per login, to compare with seq2
  fast-conc  the same as conc2 with FAST logins
  resume N sequential XEP-0198 resumes inline in SASL2: drop the TCP connection, reconnect,
         resume; server CPU ms per resume, p50/p99, messages sent while detached delivered
  msg    P sender->receiver pairs, W messages in flight per pair (closed loop): msgs/s,
         p50/p99 latency, server CPU us per routed message
  rate   the same pairs at a fixed offered rate (open loop): latency when not saturated
  idle   K authenticated, bound, idle sessions: server RSS before/after, per session

Each scenario runs on a freshly started server process (same data dir; --no-restart to share one).
seq2, conc2, fast, fast-conc and resume run only against servers that speak SASL2 (not Prosody 0.12:
"n/a").

A "login" is TCP connect + STARTTLS + SASL + stream restart + resource bind + close
(client sends </stream:stream>, waits for the server's, closes TLS/TCP).
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from servers import ONE_ADDRESS, BaseServer, ProsodyServer, ServerStartError, XmppauthServer, prosody_version
from xmpp_client import (
    ALPN_XMPP_CLIENT,
    ATTR_ID,
    ATTR_TYPE_ERROR,
    HT_NONE,
    MESSAGE_START,
    ScramCache,
    Session,
    gather_limited,
    login,
    login2,
    make_client_tls_context,
    resume2,
)

DOMAIN = "localhost"


# --------------------------------------------------------------------------- measurement helpers


class CpuSnap:
    """Server CPU (user+system of the server process, children not included), server RSS,
    and this process's (the load generator's) CPU, at one instant."""

    def __init__(self, proc: psutil.Process) -> None:
        t = proc.cpu_times()
        self.server = t.user + t.system
        self.rss = proc.memory_info().rss
        ru = resource.getrusage(resource.RUSAGE_SELF)
        self.client = ru.ru_utime + ru.ru_stime
        m = psutil.cpu_times()  # whole machine, to detect other load sharing the cores
        self.machine_busy = m.user + m.nice + m.system + getattr(m, "irq", 0.0) + getattr(m, "softirq", 0.0)
        self.wall = time.perf_counter()


@dataclass
class Delta:
    server_cpu: float
    client_cpu: float
    wall: float
    machine_busy: float = 0.0

    @classmethod
    def between(cls, a: CpuSnap, b: CpuSnap) -> Delta:
        return cls(b.server - a.server, b.client - a.client, b.wall - a.wall, b.machine_busy - a.machine_busy)

    @property
    def other_pct(self) -> float:
        """CPU used by every other process on the machine, in % of one core (/proc/stat)."""
        other = self.machine_busy - self.server_cpu - self.client_cpu
        return max(0.0, 100.0 * other / self.wall) if self.wall > 0 else 0.0

    @property
    def server_pct(self) -> float:
        return 100.0 * self.server_cpu / self.wall if self.wall > 0 else 0.0

    @property
    def client_pct(self) -> float:
        return 100.0 * self.client_cpu / self.wall if self.wall > 0 else 0.0


def pct(sorted_vals: list[float], q: float) -> float:
    if not sorted_vals:
        return float("nan")
    i = min(len(sorted_vals) - 1, max(0, round(q * (len(sorted_vals) - 1))))
    return sorted_vals[i]


@dataclass
class Ctx:
    args: argparse.Namespace
    server: BaseServer
    proc: psutil.Process
    tls_ctx: ssl.SSLContext
    scram: ScramCache
    accounts: list[str]
    direct_tls_ctx: ssl.SSLContext | None = None  # --sasl2-direct-tls: same settings + ALPN xmpp-client
    results: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    # XEP-0484 FAST: the current token per (account, installation), and how often the server rotated one
    fast_tokens: dict[tuple[str, str], str] = field(default_factory=dict)
    fast_rotations: int = 0
    _res_counter: int = 0

    def resource(self, tag: str) -> str:
        self._res_counter += 1
        return f"{tag}{self._res_counter}"

    async def login(self, account: str, res: str) -> Session:
        a = self.args
        s = await login(  # bounded by time_limit (one asyncio.timeout around the whole login)
            self.server.host,
            self.server.c2s_port,
            DOMAIN,
            account,
            a.password,
            res,
            tls_ctx=self.tls_ctx,
            scram_cache=self.scram,
            mechanism=a.mechanism,
            time_limit=a.timeout,
        )
        if "tls" not in self.results:
            self.results["tls"] = f"{s.tls_version} {s.tls_cipher}"
            self.results["mechanism"] = s.mechanism
        return s

    def _sasl2_endpoint(self) -> tuple[int, ssl.SSLContext, bool]:
        """(port, TLS context, direct TLS?) for the SASL2 scenarios: STARTTLS on the c2s port like
        every other scenario, or XEP-0368 direct TLS with --sasl2-direct-tls."""
        if self.args.sasl2_direct_tls:
            port = self.server.c2s_tls_port
            if port is None or self.direct_tls_ctx is None:
                raise RuntimeError(f"{self.server.name} has no direct-TLS listener")
            return port, self.direct_tls_ctx, True
        return self.server.c2s_port, self.tls_ctx, False

    async def login2(
        self,
        account: str,
        tag: str = "bench",
        enable_sm: bool = True,
        installation: str = "bench",
        request_token: str | None = None,
        fast_token: str | None = None,
    ) -> Session:
        """SASL2 + Bind2 login (+ SM enabled inline).  The user-agent id is stable per (account,
        ``installation``), as a real client keeps one per installation: the server records the client
        per id (one row, ``last_seen`` updated at every login) and derives the Bind2 resource from tag
        + id, so two sessions that may be open at once must use different installations.

        XEP-0484: ``request_token`` asks for a FAST token (``session.fast_token``); ``fast_token``
        logs in with one (HT-SHA-256-NONE) instead of --mechanism and the password."""
        a = self.args
        port, tls_ctx, direct = self._sasl2_endpoint()
        s = await login2(
            self.server.host,
            port,
            DOMAIN,
            account,
            a.password,
            tls_ctx=tls_ctx,
            scram_cache=self.scram,
            mechanism=HT_NONE if fast_token is not None else a.mechanism,
            tag=tag,
            enable_sm=enable_sm,
            user_agent_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"xmppauth-bench:{account}/{installation}")),
            direct_tls=direct,
            time_limit=a.timeout,
            request_token=request_token,
            fast_token=fast_token,
        )
        if "sasl2_transport" not in self.results:
            self.results["sasl2_transport"] = (
                f"direct TLS (XEP-0368, ALPN {ALPN_XMPP_CLIENT}) {s.tls_version} {s.tls_cipher}"
                if direct
                else f"STARTTLS {s.tls_version} {s.tls_cipher}"
            )
        return s

    async def resume2(self, account: str, old: Session, fallback_tag: str | None = "resume") -> Session:
        """Resume ``old`` (its SM state and user-agent id) inline in SASL2 on a new connection."""
        a = self.args
        assert old.sm is not None
        port, tls_ctx, direct = self._sasl2_endpoint()
        return await resume2(
            self.server.host,
            port,
            DOMAIN,
            account,
            a.password,
            old.sm,
            tls_ctx=tls_ctx,
            scram_cache=self.scram,
            mechanism=a.mechanism,
            user_agent_id=old.user_agent_id,
            fallback_tag=fallback_tag,
            direct_tls=direct,
            time_limit=a.timeout,
        )

    async def login_fast(self, account: str, installation: str = "bench") -> Session:
        """A FAST login with the token this (account, installation) got in ``request_fast_tokens``;
        a token the server rotates in ``<success/>`` replaces it, as a client would."""
        key = (account, installation)
        token = self.fast_tokens.get(key)
        if token is None:
            raise RuntimeError(f"no FAST token for {account}/{installation} (not requested in the warm-up)")
        s = await self.login2(account, installation=installation, fast_token=token)
        if s.fast_token and s.fast_token != token:
            self.fast_tokens[key] = s.fast_token
            self.fast_rotations += 1
        return s

    async def request_fast_token(self, account: str, installation: str = "bench") -> None:
        """A SASL2 login (--mechanism, password) with ``<request-token mechanism='HT-SHA-256-NONE'/>``."""
        s = await self.login2(account, installation=installation, request_token=HT_NONE)
        self.fast_tokens[(account, installation)] = s.fast_token
        await s.close(time_limit=self.args.timeout)

    def note_error(self, where: str, e: BaseException) -> None:
        msg = f"{where}: {type(e).__name__}: {e}"
        if len(self.errors) < 20:
            self.errors.append(msg[:600])


async def close_all(ctx: Ctx, sessions: list[Session]) -> None:
    """Close sessions (``</stream:stream>`` handshake) with at most C in flight; note failures."""
    res = await gather_limited(
        len(sessions), ctx.args.concurrency, lambda i: sessions[i].close(time_limit=ctx.args.timeout)
    )
    for r in res:
        if isinstance(r, BaseException):
            ctx.note_error("close", r)


# --------------------------------------------------------------------------- scenarios


async def one_login_cycle(
    ctx: Ctx, account: str, sasl2: bool = False, installation: str = "bench", fast: bool = False
) -> tuple[float, float]:
    """One full login + close; returns (seconds to bound, seconds including close).
    ``sasl2``: SASL2 + Bind2 + inline SM enable instead of RFC 6120 SASL + restart + bind;
    ``fast``: the same SASL2 login with the installation's XEP-0484 token instead of the password."""
    t0 = time.perf_counter()
    if fast:
        s = await ctx.login_fast(account, installation)
    elif sasl2:
        s = await ctx.login2(account, installation=installation)
    else:
        s = await ctx.login(account, ctx.resource("b"))
    t_bound = time.perf_counter() - t0
    await s.close(time_limit=ctx.args.timeout)
    return t_bound, time.perf_counter() - t0


async def warmup(ctx: Ctx) -> None:
    """Log in once with every account (fills the client's SCRAM key cache, so per-account
    PBKDF2 never lands in a measured phase) and at least --warmup-logins times."""
    for i in range(max(ctx.args.warmup_logins, len(ctx.accounts))):
        await one_login_cycle(ctx, ctx.accounts[i % len(ctx.accounts)])


async def scenario_idle(ctx: Ctx) -> None:
    a = ctx.args
    k = a.idle
    await asyncio.sleep(1.0)
    before = CpuSnap(ctx.proc)
    sessions: list[Session] = []

    async def open_one(i: int) -> Session:
        s = await ctx.login(ctx.accounts[i % len(ctx.accounts)], f"idle{i}")
        sessions.append(s)
        return s

    t0 = time.perf_counter()
    res = await gather_limited(k, a.concurrency, open_one)
    open_s = time.perf_counter() - t0
    failed = [r for r in res if isinstance(r, BaseException)]
    for e in failed[:3]:
        ctx.note_error("idle open", e)
    await asyncio.sleep(a.settle)
    after = CpuSnap(ctx.proc)
    # idle CPU of the server with K sessions open (timers, keepalives, ...)
    await asyncio.sleep(a.idle_watch)
    watched = CpuSnap(ctx.proc)
    idle_delta = Delta.between(after, watched)
    # one ping round trip on a few sessions proves they are still alive
    alive = 0
    for s in sessions[:: max(1, len(sessions) // 10)]:
        try:
            s.send(f"<iq type='get' id='p1' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>")
            await s.expect(_IQ_ID_P1, "ping reply", time_limit=a.timeout)
            alive += 1
        except (TimeoutError, OSError, ConnectionError, Exception) as e:
            ctx.note_error("idle ping", e)
    t1 = time.perf_counter()
    await close_all(ctx, sessions)
    close_s = time.perf_counter() - t1
    await asyncio.sleep(a.settle)
    closed = CpuSnap(ctx.proc)
    n = len(sessions)
    ctx.results["idle"] = {
        "sessions": n,
        "failed": len(failed),
        "rss_before_mib": before.rss / 2**20,
        "rss_after_mib": after.rss / 2**20,
        "kib_per_session": (after.rss - before.rss) / 1024 / n if n else float("nan"),
        "rss_after_close_mib": closed.rss / 2**20,
        "idle_server_cpu_pct": idle_delta.server_pct,
        "other_cpu_pct": Delta.between(before, closed).other_pct,
        "open_seconds": open_s,
        "close_seconds": close_s,
        "pinged_ok": alive,
    }


async def warmup_sasl2(ctx: Ctx) -> None:
    """One SASL2 login per account (at least --warmup-logins): the SASL2/Bind2 code paths are warm,
    and the server already knows every account's client (user-agent id), as it would a returning
    client's -- the measured logins update that record instead of creating it."""
    for i in range(max(ctx.args.warmup_logins, len(ctx.accounts))):
        await one_login_cycle(ctx, ctx.accounts[i % len(ctx.accounts)], sasl2=True)


def conc_installation(ctx: Ctx, worker: int) -> str:
    """The installation (user-agent id) worker ``worker`` of conc/conc2/fast-conc logs in with.

    Worker w logs in the accounts w, w+C, w+2C, ... (mod A); when C divides A no other worker ever
    uses them, so the warmed-up installation (one Bind2 resource per account) is safe; otherwise two
    workers could bind the same resource at once: one installation each."""
    return "bench" if len(ctx.accounts) % ctx.args.concurrency == 0 else f"c{worker}"


def conc_pairs(ctx: Ctx) -> list[tuple[str, str]]:
    """Every (account, installation) the concurrent scenarios may log in with."""
    c, n = ctx.args.concurrency, len(ctx.accounts)
    pairs = {(ctx.accounts[(w + j * c) % n], conc_installation(ctx, w)) for w in range(c) for j in range(n)}
    return sorted(pairs)


async def warmup_fast(ctx: Ctx, names: list[str]) -> None:
    """XEP-0484: one SASL2 login (--mechanism, password) with ``<request-token/>`` per account and
    installation the FAST scenarios use, then one FAST login with each token (at least
    --warmup-logins): the token is promoted from the server's "new" slot to "current" by its first
    use, so the measured logins all find it there, and the HT-* code paths are warm."""
    pairs = [(acc, "bench") for acc in ctx.accounts]
    if "fast-conc" in names:
        pairs = sorted(set(pairs) | set(conc_pairs(ctx)))
    for account, installation in pairs:
        if (account, installation) not in ctx.fast_tokens:
            await ctx.request_fast_token(account, installation)
    for i in range(max(ctx.args.warmup_logins, len(pairs))):
        account, installation = pairs[i % len(pairs)]
        await one_login_cycle(ctx, account, installation=installation, fast=True)


async def scenario_seq(ctx: Ctx, key: str = "seq", sasl2: bool = False, fast: bool = False) -> None:
    a = ctx.args
    lat: list[float] = []
    s0 = CpuSnap(ctx.proc)
    for i in range(a.logins):
        t_bound, _ = await one_login_cycle(ctx, ctx.accounts[i % len(ctx.accounts)], sasl2, fast=fast)
        lat.append(t_bound)
    s1 = CpuSnap(ctx.proc)
    d = Delta.between(s0, s1)
    lat.sort()
    ctx.results[key] = {
        "logins": a.logins,
        **({"token_rotations_so_far": ctx.fast_rotations} if fast else {}),
        "server_cpu_ms_per_login": 1000 * d.server_cpu / a.logins,
        "client_cpu_ms_per_login": 1000 * d.client_cpu / a.logins,
        "logins_per_s": a.logins / d.wall,
        "p50_ms": 1000 * pct(lat, 0.5),
        "p99_ms": 1000 * pct(lat, 0.99),
        "other_cpu_pct": d.other_pct,
    }


async def scenario_conc(ctx: Ctx, key: str = "conc", sasl2: bool = False, fast: bool = False) -> None:
    a = ctx.args
    lat: list[float] = []
    failures = 0
    deadline = time.perf_counter() + a.login_duration

    async def worker(w: int) -> None:
        nonlocal failures
        j = 0
        installation = conc_installation(ctx, w)
        while time.perf_counter() < deadline:
            account = ctx.accounts[(w + j * a.concurrency) % len(ctx.accounts)]
            j += 1
            try:
                t_bound, _ = await one_login_cycle(ctx, account, sasl2, installation, fast=fast)
                lat.append(t_bound)
            except (TimeoutError, OSError, ConnectionError, Exception) as e:
                failures += 1
                ctx.note_error(f"{key} login", e)
                if failures > 50:
                    raise

    s0 = CpuSnap(ctx.proc)
    async with asyncio.timeout(a.login_duration + 4 * a.timeout + 10):
        res = await asyncio.gather(*(worker(w) for w in range(a.concurrency)), return_exceptions=True)
    s1 = CpuSnap(ctx.proc)
    for r in res:
        if isinstance(r, BaseException):
            ctx.note_error(f"{key} worker", r)
    d = Delta.between(s0, s1)
    n = len(lat)
    lat.sort()
    ctx.results[key] = {
        "concurrency": a.concurrency,
        "logins": n,
        **({"token_rotations_so_far": ctx.fast_rotations} if fast else {}),
        "failed": failures,
        "logins_per_s": n / d.wall,
        "server_cpu_ms_per_login": 1000 * d.server_cpu / n if n else float("nan"),
        "server_cpu_pct": d.server_pct,
        "client_cpu_pct": d.client_pct,
        "p50_ms": 1000 * pct(lat, 0.5),
        "p99_ms": 1000 * pct(lat, 0.99),
        "other_cpu_pct": d.other_pct,
    }


@dataclass
class ResumeStats:
    """What the resume scenario counts over all its cycles (warm-up included)."""

    jid: str = ""
    cycles: int = 0
    resumed: int = 0
    failed: int = 0  # <success/> without <resumed/> (the server bound a new session instead)
    previd_mismatch: int = 0  # <resumed previd=…/> is not the id we resumed
    h_mismatch: int = 0  # <resumed h=…/> is not the number of stanzas we sent
    sent: int = 0  # messages sent to the session while it was detached
    delivered: int = 0
    lost: int = 0  # not received within --timeout after the resume
    duplicates: int = 0
    other: int = 0  # messages we did not send (or bounced errors)
    sender_errors: int = 0  # type='error' stanzas the sending session got back
    unexpected: list[str] = field(default_factory=list)  # bytes that were neither stanza nor <r/>
    seen: set[str] = field(default_factory=set)


async def resume_cycle(
    ctx: Ctx, s: Session, sender: Session, st: ResumeStats, tag: str, lat: list[float] | None
) -> Session:
    """Drop ``s``'s connection (no stream close), send --resume-msgs messages to its full JID while
    it is detached, reconnect and resume inline (latest previd and h), then wait until every one
    of those messages has been delivered on the resumed stream.  Returns the resumed session."""
    a = ctx.args
    assert s.sm is not None
    if s.buf.strip() and len(st.unexpected) < 20:
        st.unexpected.append(f"left in the buffer at abort: {s.buf[:400]!r}")
    s.abort()
    ids = [f"{tag}x{j}" for j in range(a.resume_msgs)]
    if ids:
        sender.send(
            "".join(
                f"<message to='{st.jid}' type='chat' id='{mid}'><body>sent while detached</body></message>"
                for mid in ids
            )
        )
        st.sent += len(ids)
    previd, h_out = s.sm.previd, s.sm.h_out
    st.cycles += 1
    t0 = time.perf_counter()
    s2 = await ctx.resume2(ctx.accounts[0], s)
    t = time.perf_counter() - t0
    if s2.resumed is None:
        st.failed += 1
        ctx.errors.append(f"resume {tag} failed: {s2.success[:500]!r}"[:600])
        if st.failed > 3:
            raise RuntimeError(f"{st.failed} resumes failed; last <success/>: {s2.success[:500]!r}")
        st.jid = s2.jid  # a new session was bound (Bind2 fallback): go on with it
    else:
        st.resumed += 1
        if lat is not None:
            lat.append(t)
        if s2.resumed.get("previd") != previd:
            st.previd_mismatch += 1
        if s2.resumed.get("h") != str(h_out):
            st.h_mismatch += 1
        if s2.jid != st.jid:
            ctx.errors.append(f"resume {tag}: authorization-identifier {s2.jid!r}, expected {st.jid!r}")
        if "bound" in s2.success and len(st.unexpected) < 20:  # Bind2 must be skipped on a resume
            st.unexpected.append(f"<success/> with both <resumed/> and <bound/>: {s2.success[:400]!r}")
    pending = set(ids)

    def take(messages: list[str]) -> None:
        for at in messages:
            mid = ATTR_ID.search(at)
            got = mid.group(2) if mid is not None else ""
            if got in pending:
                pending.discard(got)
                st.seen.add(got)
                st.delivered += 1
            elif got in st.seen:
                st.duplicates += 1
            else:
                st.other += 1

    try:
        async with asyncio.timeout(a.timeout):
            take(s2.sm_consume())
            while pending:
                take(await s2.sm_read())
    except TimeoutError:
        st.lost += len(pending)
        ctx.errors.append(
            f"resume {tag}: {len(pending)} message(s) sent while detached not delivered within "
            f"{a.timeout:g}s: {sorted(pending)}; buffer {s2.buf[-300:]!r}"[:600]
        )
    if s2.unexpected and len(st.unexpected) < 20:
        st.unexpected.extend(s2.unexpected[: 20 - len(st.unexpected)])
    return s2


async def count_errors(s: Session, st: ResumeStats) -> None:
    """The sending session should receive nothing; count bounced errors."""
    while True:
        data = await s.reader.read(65536)
        if not data:
            raise ConnectionError(f"sending session closed by the server; tail {s.buf[-200:]!r}")
        st.sender_errors += data.count(b"type='error'") + data.count(b'type="error"')


async def scenario_resume(ctx: Ctx) -> None:
    """One session (SASL2 + Bind2 + SM) resumed over and over; a second session sends it
    --resume-msgs messages every time its connection is down."""
    a = ctx.args
    n = a.resumes if a.resumes is not None else a.logins
    sender = await ctx.login(ctx.accounts[1], ctx.resource("rs"))
    s = await ctx.login2(ctx.accounts[0], tag="resume")
    st = ResumeStats(jid=s.jid)
    watch = asyncio.create_task(count_errors(sender, st))
    lat: list[float] = []
    try:
        async with asyncio.timeout((n + a.resume_warmup) * 4 * a.timeout + 30):
            for i in range(a.resume_warmup):
                s = await resume_cycle(ctx, s, sender, st, f"w{i}", None)
            s0 = CpuSnap(ctx.proc)
            for i in range(n):
                s = await resume_cycle(ctx, s, sender, st, f"r{i}", lat)
            s1 = CpuSnap(ctx.proc)
        if watch.done():
            raise RuntimeError(f"sending session failed: {watch.exception()!r}")
    finally:
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)
        await close_all(ctx, [s, sender])
    d = Delta.between(s0, s1)
    k = len(lat)
    lat.sort()
    ctx.results["resume"] = {
        "resumes": n,
        "measured": k,
        "warmup_resumes": a.resume_warmup,
        "failed": st.failed,
        "server_cpu_ms_per_resume": 1000 * d.server_cpu / n,
        "client_cpu_ms_per_resume": 1000 * d.client_cpu / n,
        "resumes_per_s": n / d.wall,
        "p50_ms": 1000 * pct(lat, 0.5),
        "p99_ms": 1000 * pct(lat, 0.99),
        "msgs_per_resume": a.resume_msgs,
        "msgs_sent": st.sent,
        "msgs_delivered": st.delivered,
        "lost": st.lost,
        "duplicates": st.duplicates,
        "other_msgs": st.other,
        "sender_errors": st.sender_errors,
        "previd_mismatch": st.previd_mismatch,
        "h_mismatch": st.h_mismatch,
        "final_previd": s.sm.previd if s.sm is not None else None,
        "final_h_in": s.sm.h_in if s.sm is not None else None,
        "unexpected": st.unexpected,
        "other_cpu_pct": d.other_pct,
    }


_IQ_ID_P1 = re.compile(r"<(?:[\w.-]+:)?iq\b[^>]*\sid=(['\"])p1\1[^>]*?(?:/>|>.*?</(?:[\w.-]+:)?iq\s*>)", re.S)


@dataclass
class Pair:
    idx: int
    sender: Session
    receiver: Session
    prefix: bytes
    suffix: bytes
    sent: list[float] = field(default_factory=list)
    received: int = 0
    sample: str = ""  # first bytes the receiver got, for diagnostics

    def build(self, n: int, now: float) -> bytes:
        base = len(self.sent)
        self.sent.extend([now] * n)
        p, s = self.prefix, self.suffix
        return b"".join(p + str(base + k).encode() + s for k in range(n))


@dataclass
class MsgState:
    measuring: bool = False
    sending: bool = True
    closed_loop: bool = True
    count: int = 0
    errors: int = 0
    prefixed: int = 0
    latencies: list[float] = field(default_factory=list)


async def receive_loop(pair: Pair, st: MsgState) -> None:
    """Count message stanzas arriving at the receiver; in closed-loop mode answer every
    received message by sending one more on the pair's sender (one write per read)."""
    r = pair.receiver
    reader = r.reader
    dec = codecs.getincrementaldecoder("utf-8")()
    buf = r.buf
    sent = pair.sent
    perf = time.perf_counter
    while True:
        data = await reader.read(262144)
        if not data:
            raise ConnectionError(f"pair {pair.idx}: receiver stream closed; tail {buf[-200:]!r}")
        text = dec.decode(data)
        if not pair.sample:
            pair.sample = text[:400]
        buf += text
        # last complete stanza ends with "</message>" or "</prefix:message>"; a start tag
        # never ends in "message>" because ours always carry attributes
        end = buf.rfind("message>")
        if end < 0:
            continue
        end += 8
        chunk, buf = buf[:end], buf[end:]
        now = perf()
        n = 0
        lats = []
        for m in MESSAGE_START.finditer(chunk):
            if m.group(1):
                st.prefixed += 1
            attrs = m.group(2)
            if ATTR_TYPE_ERROR.search(attrs):
                st.errors += 1
                continue
            mid = ATTR_ID.search(attrs)
            if mid is None or not mid.group(2).startswith("m"):
                continue
            n += 1
            lats.append(now - sent[int(mid.group(2)[1:])])
        pair.received += n
        if st.measuring:
            st.count += n
            st.latencies.extend(lats)
        if st.closed_loop and st.sending and n:
            pair.sender.writer.write(pair.build(n, perf()))


async def sender_drain(pair: Pair, st: MsgState) -> None:
    """Senders should receive nothing; count bounced errors if the server sends any."""
    reader = pair.sender.reader
    while True:
        data = await reader.read(65536)
        if not data:
            raise ConnectionError(f"pair {pair.idx}: sender stream closed")
        st.errors += data.count(b"type='error'") + data.count(b'type="error"')


async def open_pairs(ctx: Ctx) -> list[Pair]:
    a = ctx.args
    body = ("x" * a.body_size).encode()
    sessions: dict[int, Session] = {}

    async def open_one(i: int) -> None:
        sessions[i] = await ctx.login(ctx.accounts[i], f"m{i}")

    res = await gather_limited(2 * a.pairs, a.concurrency, open_one)
    bad = [r for r in res if isinstance(r, BaseException)]
    if bad:
        for s in sessions.values():
            s.abort_or_close()
        raise RuntimeError(f"could not log in message pairs: {bad[0]!r}")
    pairs = []
    for p in range(a.pairs):
        snd, rcv = sessions[2 * p], sessions[2 * p + 1]
        prefix = f"<message to='{rcv.jid}' type='chat' id='m".encode()
        suffix = b"'><body>" + body + b"</body></message>"
        pairs.append(Pair(p, snd, rcv, prefix, suffix))
    return pairs


async def run_messages(ctx: Ctx, key: str, rate: float | None) -> None:
    """Closed loop (rate None: W in flight per pair) or open loop at ``rate`` msgs/s total."""
    a = ctx.args
    pairs = await open_pairs(ctx)
    st = MsgState(closed_loop=rate is None)
    tasks = [asyncio.create_task(receive_loop(p, st)) for p in pairs]
    tasks += [asyncio.create_task(sender_drain(p, st)) for p in pairs]

    async def pacer() -> None:
        assert rate is not None
        t0 = time.perf_counter()
        total = 0
        i = 0
        n_pairs = len(pairs)
        while st.sending:
            now = time.perf_counter()
            due = int((now - t0) * rate) - total
            if due > 0:
                per = [due // n_pairs] * n_pairs
                for k in range(due % n_pairs):
                    per[(i + k) % n_pairs] += 1
                i = (i + due) % n_pairs
                for p, n in zip(pairs, per, strict=True):
                    if n:
                        p.sender.writer.write(p.build(n, now))
                total += due
            await asyncio.sleep(0.0005)

    def in_flight() -> int:
        return sum(len(p.sent) - p.received for p in pairs)

    try:
        async with asyncio.timeout(a.msg_warmup + a.msg_duration + a.drain + 30):
            if rate is None:
                for p in pairs:
                    p.sender.writer.write(p.build(a.window, time.perf_counter()))
            else:
                tasks.append(asyncio.create_task(pacer()))
            await asyncio.sleep(a.msg_warmup)
            _check_tasks(tasks)
            if not any(p.received for p in pairs):
                sample = next((p.sample for p in pairs if p.sample), "")
                raise RuntimeError(
                    f"no message delivered during the {a.msg_warmup:g}s warm-up ({in_flight()} in flight, "
                    f"{st.errors} errors); first bytes a receiver got: {sample!r}"
                )
            s0 = CpuSnap(ctx.proc)
            st.measuring = True
            await asyncio.sleep(a.msg_duration)
            st.measuring = False
            s1 = CpuSnap(ctx.proc)
            st.sending = False
            _check_tasks(tasks)
            t_drain = time.perf_counter() + a.drain
            while in_flight() > 0 and time.perf_counter() < t_drain:
                await asyncio.sleep(0.02)
                _check_tasks(tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await close_all(ctx, [s for p in pairs for s in (p.sender, p.receiver)])
    d = Delta.between(s0, s1)
    lat = sorted(st.latencies)
    ctx.results[key] = {
        "pairs": a.pairs,
        "window": a.window if rate is None else None,
        "offered_per_s": rate,
        "messages": st.count,
        "msgs_per_s": st.count / d.wall,
        "p50_ms": 1000 * pct(lat, 0.5),
        "p99_ms": 1000 * pct(lat, 0.99),
        "server_cpu_us_per_msg": 1e6 * d.server_cpu / st.count if st.count else float("nan"),
        "server_cpu_pct": d.server_pct,
        "client_cpu_pct": d.client_pct,
        "lost": in_flight(),
        "errors": st.errors,
        "prefixed_stanzas": st.prefixed,
        "other_cpu_pct": d.other_pct,
    }


def _check_tasks(tasks: list[asyncio.Task[None]]) -> None:
    for t in tasks:
        if t.done() and not t.cancelled() and t.exception() is not None:
            raise RuntimeError(f"message task failed: {t.exception()!r}")


# --------------------------------------------------------------------------- driver


SCENARIOS = ("seq", "seq2", "fast", "conc", "conc2", "fast-conc", "resume", "msg", "rate", "idle")
# XEP-0388 SASL2 + XEP-0386 Bind2 + XEP-0198 (+ XEP-0484 FAST): only for servers with supports_sasl2
SASL2_SCENARIOS = frozenset({"seq2", "conc2", "resume", "fast", "fast-conc"})
FAST_SCENARIOS = frozenset({"fast", "fast-conc"})


def scenario_groups(names: list[str], restart_each: bool) -> list[list[str]]:
    """Which scenarios share one server process.  By default every scenario gets a freshly
    started (and warmed-up) process, so that no figure depends on what ran before it: stock
    Prosody's CPU per login grows with the number of logins it has served (5.7 -> 8.4 ms over its
    first 2000 logins in one test, its incremental Lua GC walking a heap that keeps growing), and
    the idle-session RSS baseline must not include heap grown by earlier scenarios.  With
    ``--no-restart`` only ``idle`` is isolated."""
    if restart_each:
        return [[n] for n in names]
    groups: list[list[str]] = [[]]
    for name in names:
        if name == "idle":
            groups += [["idle"], []]
        else:
            groups[-1].append(name)
    return [g for g in groups if g]


async def run_target(ctx: Ctx, names: list[str]) -> None:
    a = ctx.args
    try:
        await warmup(ctx)
    except Exception as e:
        ctx.note_error("warm-up", e)
        ctx.results.setdefault("failed_scenarios", []).extend(names)
        log(f"  [{ctx.server.name}] warm-up FAILED, skipping {', '.join(names)}: {type(e).__name__}: {e}")
        return
    if SASL2_SCENARIOS.intersection(names):
        try:
            await warmup_sasl2(ctx)
        except Exception as e:
            ctx.note_error("SASL2 warm-up", e)
            failed = [n for n in names if n in SASL2_SCENARIOS]
            ctx.results.setdefault("failed_scenarios", []).extend(failed)
            names = [n for n in names if n not in SASL2_SCENARIOS]
            log(f"  [{ctx.server.name}] SASL2 warm-up FAILED, skipping {', '.join(failed)}: {e}")
    if FAST_SCENARIOS.intersection(names):
        try:
            await warmup_fast(ctx, names)
        except Exception as e:
            ctx.note_error("FAST warm-up", e)
            failed = [n for n in names if n in FAST_SCENARIOS]
            ctx.results.setdefault("failed_scenarios", []).extend(failed)
            names = [n for n in names if n not in FAST_SCENARIOS]
            log(f"  [{ctx.server.name}] FAST warm-up FAILED, skipping {', '.join(failed)}: {e}")
    steps: dict[str, Callable[[], Awaitable[None]]] = {
        "idle": lambda: scenario_idle(ctx),
        "seq": lambda: scenario_seq(ctx),
        "seq2": lambda: scenario_seq(ctx, "seq2", sasl2=True),
        "conc": lambda: scenario_conc(ctx),
        "conc2": lambda: scenario_conc(ctx, "conc2", sasl2=True),
        "fast": lambda: scenario_seq(ctx, "fast", fast=True),
        "fast-conc": lambda: scenario_conc(ctx, "fast-conc", fast=True),
        "resume": lambda: scenario_resume(ctx),
        "msg": lambda: run_messages(ctx, "msg", None),
        "rate": lambda: run_messages(ctx, "rate", a.msg_rate),
    }
    for name in names:
        if name == "rate" and not a.msg_rate:
            continue
        if a.wait_quiet > 0:
            await wait_quiet(a.wait_quiet)
        t0 = time.perf_counter()
        log(f"  [{ctx.server.name}] {name} ...")
        try:
            await steps[name]()
        except (TimeoutError, OSError, ConnectionError, RuntimeError, Exception) as e:
            ctx.note_error(name, e)
            ctx.results.setdefault("failed_scenarios", []).append(name)
            log(f"  [{ctx.server.name}] {name} FAILED: {type(e).__name__}: {e}")
            if ctx.server.proc is not None and ctx.server.proc.poll() is not None:
                log(f"  server exited (code {ctx.server.proc.returncode})\n{ctx.server.log_tail()}")
                return
        else:
            log(
                f"  [{ctx.server.name}] {name} done in {time.perf_counter() - t0:.1f}s: "
                f"{ctx.results.get(name)}"
            )


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_server(name: str, a: argparse.Namespace) -> BaseServer:
    cpu = None if a.no_pin else a.server_cpu
    if name == "prosody":
        return ProsodyServer(
            cpu, keep=a.keep, log_level=a.prosody_log_level, nagle=a.prosody_nagle, extra=a.prosody_extra
        )
    server = XmppauthServer(cpu, keep=a.keep)
    server.env.update(ONE_ADDRESS)  # every client of the bench comes from 127.0.0.1
    return server


async def wait_quiet(max_wait: float, threshold: float = 15.0) -> None:
    """Wait (at most ``max_wait`` s) until the machine is quiet: less than ``threshold`` % of one
    core busy over 2 s, counting every process (ours are idle at this point)."""
    deadline = time.monotonic() + max_wait
    while True:
        psutil.cpu_percent(interval=None)
        await asyncio.sleep(2.0)
        busy = psutil.cpu_percent(interval=None) * (os.cpu_count() or 1)
        if busy < threshold:
            return
        if time.monotonic() >= deadline:
            log(f"  machine still busy ({busy:.0f}% of a core used by other processes); measuring anyway")
            return
        log(f"  waiting for a quiet machine: {busy:.0f}% of a core busy ...")


def bench_target(
    name: str, a: argparse.Namespace, tls_ctx: ssl.SSLContext, scram: ScramCache
) -> dict[str, Any]:
    n_accounts = max(a.accounts, 2 * a.pairs, a.concurrency, 2)
    accounts = [f"user{i}" for i in range(n_accounts)]
    out: dict[str, Any] = {"target": name}
    server = make_server(name, a)
    scenarios = a.scenarios
    if not server.supports_sasl2:
        out["not_applicable"] = [n for n in scenarios if n in SASL2_SCENARIOS]
        scenarios = [n for n in scenarios if n not in SASL2_SCENARIOS]
        if out["not_applicable"]:
            log(f"[{name}] no SASL2/Bind2: {', '.join(out['not_applicable'])} n/a")
        if not scenarios:
            server.stop()
            return out
    try:
        log(f"[{name}] creating {n_accounts} accounts in {server.dir} ...")
        t0 = time.perf_counter()
        if name == "prosody":
            server.create_accounts(accounts, a.password)
            server.start()
        else:
            # xmppauth creates its DB/secret/cert on first run: start it, then add users
            server.start()
            server.create_accounts(accounts, a.password)
        out["version"] = server.version()
        if isinstance(server, XmppauthServer):
            out["uncommitted_server_files"] = server.uncommitted_files()
        log(f"[{name}] setup {time.perf_counter() - t0:.1f}s")
        ctx = Ctx(
            a,
            server,
            psutil.Process(server.pid),
            tls_ctx,
            scram,
            accounts,
            direct_tls_ctx=make_client_tls_context([ALPN_XMPP_CLIENT]),
            results=out,
        )
        for gi, group in enumerate(scenario_groups(scenarios, not a.no_restart)):
            if gi > 0:
                server.restart()  # fresh process, same accounts and certificate
                ctx.proc = psutil.Process(server.pid)
            fingerprint = server.code_fingerprint()
            if fingerprint:
                out.setdefault("server_code", {}).update(dict.fromkeys(group, fingerprint))
            log(
                f"[{name}] pid {server.pid}, c2s {server.host}:{server.c2s_port}: {', '.join(group)}"
                + (f" (server code {fingerprint})" if fingerprint else "")
            )
            asyncio.run(run_target(ctx, group))
            if server.proc is not None and server.proc.poll() is not None:
                ctx.errors.append(f"server exited with code {server.proc.returncode}")
                break
        out["errors"] = ctx.errors
        if ctx.errors:
            out["log_tail"] = server.log_tail()
    except Exception as e:  # report, stop this server, go on with the next target
        out["fatal"] = f"{type(e).__name__}: {e}"
        log(f"[{name}] FAILED: {e}")
        if not isinstance(e, ServerStartError):
            log(server.log_tail())
    finally:
        server.stop()
    return out


def machine_line(a: argparse.Namespace) -> str:
    model = "?"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        for ln in subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout.splitlines():
            if ln.startswith("Model name"):
                model = ln.split(":", 1)[1].strip()
                break
    prosody_v = prosody_version() if shutil.which("prosodyctl") else "-"
    pin = (
        "no pinning"
        if a.no_pin
        else f"server on CPU {a.server_cpu} (taskset), load generator on CPU {a.client_cpu}"
    )
    return (
        f"CPU: {model}; nproc {os.cpu_count()}; kernel {platform.release()}; "
        f"Python {platform.python_version()}; {ssl.OPENSSL_VERSION}; prosody: {prosody_v}; {pin}"
    )


def fmt(v: Any, spec: str) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and v != v:
        return "n/a"
    return format(v, spec)


ROWS: list[tuple[str, str, str, str]] = [
    # (label, scenario, field, format)
    ("login, sequential: server CPU ms/login", "seq", "server_cpu_ms_per_login", ".2f"),
    ("login, sequential: logins/s", "seq", "logins_per_s", ".0f"),
    ("login, sequential: p50 / p99 ms (connect..bound)", "seq", "p50_ms|p99_ms", ".2f"),
    ("login SASL2+Bind2+SM, sequential: server CPU ms/login", "seq2", "server_cpu_ms_per_login", ".2f"),
    ("login SASL2+Bind2+SM, sequential: logins/s", "seq2", "logins_per_s", ".0f"),
    ("login SASL2+Bind2+SM, sequential: p50 / p99 ms", "seq2", "p50_ms|p99_ms", ".2f"),
    ("login FAST+Bind2+SM, sequential: server CPU ms/login", "fast", "server_cpu_ms_per_login", ".2f"),
    ("login FAST+Bind2+SM, sequential: logins/s", "fast", "logins_per_s", ".0f"),
    ("login FAST+Bind2+SM, sequential: p50 / p99 ms", "fast", "p50_ms|p99_ms", ".2f"),
    ("login, C concurrent: logins/s", "conc", "logins_per_s", ".0f"),
    ("login, C concurrent: server CPU ms/login", "conc", "server_cpu_ms_per_login", ".2f"),
    ("login, C concurrent: server CPU %", "conc", "server_cpu_pct", ".0f"),
    ("login, C concurrent: client CPU %", "conc", "client_cpu_pct", ".0f"),
    ("login, C concurrent: p50 / p99 ms", "conc", "p50_ms|p99_ms", ".1f"),
    ("login, C concurrent: failed", "conc", "failed", "d"),
    ("login SASL2+Bind2+SM, C concurrent: logins/s", "conc2", "logins_per_s", ".0f"),
    ("login SASL2+Bind2+SM, C concurrent: server CPU ms/login", "conc2", "server_cpu_ms_per_login", ".2f"),
    (
        "login SASL2+Bind2+SM, C concurrent: server / client CPU %",
        "conc2",
        "server_cpu_pct|client_cpu_pct",
        ".0f",
    ),
    ("login SASL2+Bind2+SM, C concurrent: p50 / p99 ms", "conc2", "p50_ms|p99_ms", ".1f"),
    ("login SASL2+Bind2+SM, C concurrent: failed", "conc2", "failed", "d"),
    ("login FAST+Bind2+SM, C concurrent: logins/s", "fast-conc", "logins_per_s", ".0f"),
    ("login FAST+Bind2+SM, C concurrent: server CPU ms/login", "fast-conc", "server_cpu_ms_per_login", ".2f"),
    (
        "login FAST+Bind2+SM, C concurrent: server / client CPU %",
        "fast-conc",
        "server_cpu_pct|client_cpu_pct",
        ".0f",
    ),
    ("login FAST+Bind2+SM, C concurrent: p50 / p99 ms", "fast-conc", "p50_ms|p99_ms", ".1f"),
    ("login FAST+Bind2+SM, C concurrent: failed", "fast-conc", "failed", "d"),
    ("SM resume in SASL2, sequential: server CPU ms/resume", "resume", "server_cpu_ms_per_resume", ".2f"),
    ("SM resume in SASL2, sequential: resumes/s", "resume", "resumes_per_s", ".0f"),
    ("SM resume in SASL2: p50 / p99 ms (connect..resumed)", "resume", "p50_ms|p99_ms", ".2f"),
    ("SM resume in SASL2: resumed / failed", "resume", "measured|failed", "d"),
    ("SM resume: msgs sent while detached / delivered", "resume", "msgs_sent|msgs_delivered", "d"),
    ("SM resume: msgs lost / duplicated", "resume", "lost|duplicates", "d"),
    ("msgs closed loop: msgs/s", "msg", "msgs_per_s", ".0f"),
    ("msgs closed loop: p50 / p99 ms", "msg", "p50_ms|p99_ms", ".2f"),
    ("msgs closed loop: server CPU us/msg", "msg", "server_cpu_us_per_msg", ".1f"),
    ("msgs closed loop: server / client CPU %", "msg", "server_cpu_pct|client_cpu_pct", ".0f"),
    ("msgs closed loop: lost / errors", "msg", "lost|errors", "d"),
    ("msgs open loop: offered / achieved msgs/s", "rate", "offered_per_s|msgs_per_s", ".0f"),
    ("msgs open loop: p50 / p99 ms", "rate", "p50_ms|p99_ms", ".2f"),
    ("msgs open loop: server CPU us/msg", "rate", "server_cpu_us_per_msg", ".1f"),
    ("msgs open loop: server / client CPU %", "rate", "server_cpu_pct|client_cpu_pct", ".0f"),
    ("idle sessions: opened / failed / pinged ok", "idle", "sessions|failed|pinged_ok", "d"),
    ("idle sessions: RSS before -> after MiB", "idle", "rss_before_mib|rss_after_mib", ".1f"),
    ("idle sessions: RSS KiB per session", "idle", "kib_per_session", ".1f"),
    ("idle sessions: RSS after closing all MiB", "idle", "rss_after_close_mib", ".1f"),
    ("idle sessions: server CPU % while idle", "idle", "idle_server_cpu_pct", ".2f"),
]


def print_table(results: list[dict[str, Any]], a: argparse.Namespace) -> None:
    names = [r["target"] for r in results]
    w0 = max(len(r[0]) for r in ROWS) + 2
    extra = [str(r.get(k, "-")) for r in results for k in ("tls", "mechanism", "version")]
    w = max(22, *(len(n) + 2 for n in names + extra))
    lines = [f"{'':<{w0}}" + "".join(f"{n:>{w}}" for n in names)]
    for label, scen, fields, spec in ROWS:
        if not any(
            scen in r or scen in r.get("not_applicable", []) or scen in r.get("failed_scenarios", [])
            for r in results
        ) and not any("fatal" in r for r in results):
            continue  # a scenario nobody ran: no row
        cells = []
        for r in results:
            d = r.get(scen)
            if not isinstance(d, dict):
                if scen in r.get("not_applicable", []):
                    cells.append("n/a")
                else:
                    cells.append("fail" if scen in r.get("failed_scenarios", []) or "fatal" in r else "-")
                continue
            cells.append(" / ".join(fmt(d.get(f), spec) for f in fields.split("|")))
        lines.append(f"{label:<{w0}}" + "".join(f"{c:>{w}}" for c in cells))
    cells = []
    for r in results:
        vals = [r[k].get("other_cpu_pct") for k in SCENARIOS if isinstance(r.get(k), dict)]
        cells.append(" / ".join(fmt(v, ".0f") for v in vals) if vals else "-")
    lines.append(f"{'other processes CPU % (per scenario)':<{w0}}" + "".join(f"{c:>{w}}" for c in cells))
    for key, label in (("tls", "TLS"), ("mechanism", "SASL mechanism"), ("version", "server version")):
        lines.append(f"{label:<{w0}}" + "".join(f"{r.get(key, '-')!s:>{w}}" for r in results))
    print()
    print(
        f"Parameters: N={a.logins} sequential logins, C={a.concurrency} for {a.login_duration:g}s, "
        f"P={a.pairs} pairs x W={a.window} in flight, {a.body_size}-byte bodies, {a.msg_warmup:g}s warm-up + "
        f"{a.msg_duration:g}s measured, open loop {a.msg_rate:g} msgs/s, K={a.idle} idle sessions, "
        f"prosody nagle={'true (stock)' if a.prosody_nagle else 'false'}, "
        f"prosody log level {a.prosody_log_level}"
        + (f", prosody extra config: {a.prosody_extra}" if a.prosody_extra else "")
    )
    if SASL2_SCENARIOS.intersection(a.scenarios):
        n_res = a.resumes if a.resumes is not None else a.logins
        print(
            "SASL2 scenarios: SASL2 + Bind2 with SM enabled inline, over "
            f"{'direct TLS (XEP-0368)' if a.sasl2_direct_tls else 'STARTTLS (as seq)'}; "
            f"resume: {n_res} resumes "
            f"(+{a.resume_warmup} warm-up), {a.resume_msgs} message(s) sent to the session while detached "
            "per resume (their routing and retransmission are in the CPU per resume)"
        )
    if FAST_SCENARIOS.intersection(a.scenarios):
        print(
            "FAST scenarios: the same SASL2 + Bind2 + SM login with XEP-0484 HT-SHA-256-NONE and a token "
            f"requested in an earlier SASL2 {a.mechanism} login (<request-token/>), same user-agent id; "
            "the server's HMAC in <additional-data/> is verified"
        )
    print(machine_line(a))
    print()
    print("\n".join(lines))
    busy = [
        f"{r['target']}/{k} {r[k]['other_cpu_pct']:.0f}%"
        for r in results
        for k in SCENARIOS
        if isinstance(r.get(k), dict) and r[k].get("other_cpu_pct", 0) > 10
    ]
    if busy:
        print(
            "\nWARNING: other processes used CPU during the measurement (% of one core): "
            + ", ".join(busy)
            + ". They share the server's and the client's cores; rerun on a quiet machine before trusting "
            "throughput and latency (per-login / per-message CPU is less affected)."
        )
    for r in results:
        for key in ("msg", "rate"):
            d = r.get(key)
            if isinstance(d, dict) and d.get("prefixed_stanzas"):
                print(
                    f"\nnote: {r['target']} ({key}): {d['prefixed_stanzas']} routed <message/> stanzas "
                    "arrived with a namespace prefix (e.g. <ns1:message xmlns:ns1='jabber:client'>) "
                    "instead of the stream's default namespace"
                )
        codes = r.get("server_code") or {}
        if len(set(codes.values())) > 1:
            print(
                f"\nWARNING: {r['target']}: the server code on disk changed between scenarios (the "
                "working tree was edited during the run); each scenario ran the code of its own "
                f"server start: {codes}"
            )
        if r.get("uncommitted_server_files"):
            print(
                f"\nnote: {r['target']} ran with uncommitted changes in: "
                + ", ".join(r["uncommitted_server_files"][:10])
            )
        if r.get("not_applicable"):
            print(
                f"\nn/a: {r['target']} has no XEP-0388 SASL2 / XEP-0386 Bind2 / XEP-0484 FAST "
                f"({', '.join(r['not_applicable'])} not run)"
            )
        if r.get("sasl2_transport"):
            print(f"\n{r['target']}: SASL2 scenarios over {r['sasl2_transport']}")
        rotated = max(
            (r[k].get("token_rotations_so_far", 0) for k in FAST_SCENARIOS if isinstance(r.get(k), dict)),
            default=0,
        )
        if rotated:
            print(f"\nnote: {r['target']}: the server rotated {rotated} FAST token(s) while measuring")
        d = r.get("resume")
        if isinstance(d, dict):
            odd = {
                k: d[k]
                for k in ("previd_mismatch", "h_mismatch", "other_msgs", "sender_errors", "failed")
                if d.get(k)
            }
            if odd:
                print(f"\nWARNING: {r['target']} (resume): {odd}")
            for u in d.get("unexpected", [])[:5]:
                print(f"WARNING: {r['target']} (resume): unexpected bytes on a resumed stream: {u!r}")
        if r.get("fatal"):
            print(f"\n{r['target']}: FATAL: {r['fatal']}")
        if r.get("errors"):
            print(f"\n{r['target']}: {len(r['errors'])} error(s), first ones:")
            for e in r["errors"][:5]:
                print(f"  - {e}")
            if r.get("log_tail"):
                print(r["log_tail"])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", choices=("prosody", "xmppauth", "both"), default="both")
    p.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated subset of {','.join(SCENARIOS)} (run in the given order)",
    )
    p.add_argument(
        "-N", "--logins", type=int, default=500, help="sequential logins for CPU/login (default 500)"
    )
    p.add_argument("-C", "--concurrency", type=int, default=16, help="concurrent login loops (default 16)")
    p.add_argument(
        "--login-duration", type=float, default=10.0, help="seconds of concurrent logins (default 10)"
    )
    p.add_argument("-P", "--pairs", type=int, default=16, help="sender/receiver session pairs (default 16)")
    p.add_argument("-W", "--window", type=int, default=16, help="messages in flight per pair (default 16)")
    p.add_argument("--msg-duration", type=float, default=10.0, help="measured seconds per message run")
    p.add_argument("--msg-warmup", type=float, default=2.0, help="unmeasured seconds before each message run")
    p.add_argument(
        "--msg-rate", type=float, default=1000.0, help="open-loop offered msgs/s in total (0: skip)"
    )
    p.add_argument("--drain", type=float, default=5.0, help="max seconds to wait for in-flight messages")
    p.add_argument("--body-size", type=int, default=250, help="message body bytes (default 250)")
    p.add_argument("-K", "--idle", type=int, default=1000, help="idle authenticated sessions (default 1000)")
    p.add_argument("--idle-watch", type=float, default=5.0, help="seconds to watch server CPU while idle")
    p.add_argument("--settle", type=float, default=2.0, help="seconds to wait before RSS readings")
    p.add_argument("--accounts", type=int, default=64, help="accounts user0.. (raised to max(2P, C))")
    p.add_argument("--password", default="bench-Passw0rd")
    p.add_argument(
        "--mechanism",
        default="SCRAM-SHA-1",
        choices=("SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"),
        help="SASL mechanism (Prosody 0.12 offers SCRAM-SHA-1 and PLAIN)",
    )
    p.add_argument("--warmup-logins", type=int, default=20)
    p.add_argument(
        "--resumes", type=int, default=None, help="resume: measured resumes (default: N, the -N value)"
    )
    p.add_argument("--resume-warmup", type=int, default=20, help="resume: unmeasured resumes first")
    p.add_argument(
        "--resume-msgs",
        type=int,
        default=2,
        help="resume: messages sent to the session while it is detached, per resume (default 2)",
    )
    p.add_argument(
        "--sasl2-direct-tls",
        action="store_true",
        help="seq2/conc2/resume: XEP-0368 direct TLS (ALPN xmpp-client) instead of STARTTLS",
    )
    p.add_argument("--timeout", type=float, default=10.0, help="per-step protocol timeout, seconds")
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--client-cpu", type=int, default=1)
    p.add_argument("--no-pin", action="store_true", help="do not pin server and load generator to CPUs")
    p.add_argument(
        "--prosody-nagle",
        action="store_true",
        help="keep Prosody's stock network_settings.nagle=true (adds a ~40 ms delayed-ACK stall per login)",
    )
    p.add_argument(
        "--prosody-extra",
        default="",
        help="extra Lua lines for the Prosody config, e.g. 'gc = { mode = \"generational\" }'",
    )
    p.add_argument("--prosody-log-level", default="warn", choices=("debug", "info", "warn", "error"))
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=120.0,
        help="before each scenario, wait up to this many s for other processes to go quiet (0: don't)",
    )
    p.add_argument(
        "--no-restart",
        action="store_true",
        help="run seq/conc/msg/rate on one server process (idle still gets a fresh one)",
    )
    p.add_argument("--keep", action="store_true", help="keep the servers' temp dirs")
    p.add_argument("--json", help="also write all results to this JSON file")
    a = p.parse_args(argv)
    a.scenarios = [s.strip() for s in a.scenarios.split(",") if s.strip()]
    unknown = set(a.scenarios) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenarios: {sorted(unknown)}")
    if not a.no_pin:
        cpus = os.sched_getaffinity(0)
        if (
            len(cpus) < 2
            or a.server_cpu not in cpus
            or a.client_cpu not in cpus
            or a.server_cpu == a.client_cpu
        ):
            log(
                f"note: cannot pin to CPUs {a.server_cpu}/{a.client_cpu} "
                f"(available {sorted(cpus)}); not pinning"
            )
            a.no_pin = True
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, min(hard, 4 * a.idle + 1024))
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))  # inherited by the servers too
    if not a.no_pin:
        os.sched_setaffinity(0, {a.client_cpu})
    tls_ctx = make_client_tls_context()
    scram = ScramCache()
    targets = ["prosody", "xmppauth"] if a.target == "both" else [a.target]
    results = [bench_target(t, a, tls_ctx, scram) for t in targets]
    print_table(results, a)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(
                {"args": vars(a), "machine": machine_line(a), "results": results}, f, indent=2, default=str
            )
    return 1 if any(r.get("fatal") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
