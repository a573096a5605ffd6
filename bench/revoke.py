#!/usr/bin/env python3
"""Revocation latency of xmppauth, end to end: "revoke -> stream closed".

Run by hand (not a test); see bench/README.md.

    .venv/bin/python bench/revoke.py                                  # memory, then redis; ~1.5 min
    .venv/bin/python bench/revoke.py --layer memory --concurrent 8
    .venv/bin/python bench/revoke.py --via xep0494 --layer memory

The script starts ``manage.py serve`` with the bench harness (its own temp data dir, SQLite, accounts
made with ``manage.py adduser``), logs in N sessions (SASL2 + Bind2 + stream management over XEP-0368
direct TLS, each with its own user-agent id, i.e. its own client and grant) and keeps them open, each
read by a task that notes when the stream error arrives.  It then configures Django itself on the same
data dir (``DJANGO_SETTINGS_MODULE=xmppauth.settings``, ``django.setup()``), finds each session's
``Session`` row by its full JID, and revokes the sessions one by one (or ``--concurrent K`` at once):

* ``--via direct``: ``sessions_acl.revocation.revoke_session(id, actor="bench")`` in a worker thread
  of this process.  The call commits, then publishes the revocation on the channel layer
  (``transaction.on_commit``).  Two start points are measured: the commit (an ``on_commit`` hook
  registered before the publish one, in an outer ``atomic()`` around the call) and the return of the
  call (after the publish);
* ``--via xep0494``: a second session of the same account (its own client) sends
  ``<iq type='set'><revoke xmlns='urn:xmpp:cam:0' id='c<client id>'/></iq>``; t0 = the iq was written.

The end point is the moment the target's read returns the bytes that carry ``<stream:error>``; the
script then checks the condition (``policy-violation``), the text, ``</stream:stream>`` and the close.

Channel layers (``--layer``; each on a freshly started server, the same data dir):

* ``memory``: ``InMemoryChannelLayer`` in both processes.  The bench's publish reaches nobody; the
  server finds the revocation by polling the ``Revocation`` table every ``XMPP_REVOCATION_POLL_MS``
  (``--poll-ms``, default 250), so expect up to one poll interval + processing.
* ``redis``: both processes use ``CHANNEL_LAYER_URL`` (``--redis-url``, default db 13) and the
  server's poll is set to ``--redis-poll-ms`` (60000) so that the figure is the channel-layer path
  alone (a revocation the layer loses would show up as a timeout, not as a slow figure).

A random pause of 0..``--jitter-ms`` (default 250 = the memory poll interval) precedes each
revocation, so that revocations do not fall in phase with the server's poll timer.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import os
import random
import re
import resource
import shlex
import ssl
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from servers import ONE_ADDRESS, REPO_DIR, ServerStartError, XmppauthServer
from xmpp_client import (
    ALPN_XMPP_CLIENT,
    NS_CAM,
    ScramCache,
    Session,
    StreamEnd,
    attrs,
    gather_limited,
    login2,
    make_client_tls_context,
    watch_close,
)

DOMAIN = "localhost"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"
EXPECTED_CONDITION = "policy-violation"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pct(sorted_vals: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (the same rule as login_msg.py)."""
    if not sorted_vals:
        return float("nan")
    i = min(len(sorted_vals) - 1, max(0, round(q * (len(sorted_vals) - 1))))
    return sorted_vals[i]


def summary(values_s: list[float]) -> dict[str, float]:
    v = sorted(1000 * x for x in values_s)
    return {
        "n": len(v),
        "min": v[0] if v else float("nan"),
        "p50": pct(v, 0.5),
        "p90": pct(v, 0.9),
        "p99": pct(v, 0.99),
        "max": v[-1] if v else float("nan"),
        "mean": sum(v) / len(v) if v else float("nan"),
    }


# --------------------------------------------------------------------------- Django in this process


def setup_django(server: XmppauthServer) -> None:
    """Configure Django like the server: same data dir (SQLite DB, secret key), same DATABASE_URL.
    The channel layer is chosen per mode with ``override_settings`` (see ``channel_layer``)."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "xmppauth.settings"
    os.environ["XMPP_DATA_DIR"] = server.env["XMPP_DATA_DIR"]
    if "DATABASE_URL" in server.env:
        os.environ["DATABASE_URL"] = server.env["DATABASE_URL"]
    os.environ.pop("CHANNEL_LAYER_URL", None)
    os.environ["XMPP_LOG_LEVEL"] = "WARNING"  # this process only (the server's env was copied before)
    if str(REPO_DIR) not in sys.path:
        sys.path.insert(0, str(REPO_DIR))
    import django

    django.setup()


@contextlib.contextmanager
def channel_layer(redis_url: str | None) -> Iterator[None]:
    """This process's CHANNEL_LAYERS for one mode: what the server gets from CHANNEL_LAYER_URL
    (``xmppauth/settings.py``).  ``override_settings`` fires ``setting_changed``, which makes
    Channels drop the layer it built for the previous mode."""
    from django.test.utils import override_settings

    if redis_url:
        layers = {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {"hosts": [redis_url]},
            }
        }
    else:
        layers = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    with override_settings(CHANNEL_LAYERS=layers):
        yield


@dataclass
class RevokeTimes:
    call: float  # revoke_session() called (in the worker thread)
    commit: float  # the transaction committed (first on_commit callback, before the publish)
    published: float  # the publish callback returned
    returned: float  # the call returned


def revoke_direct(session_id: int) -> RevokeTimes:
    """``revoke_session`` inside an outer ``atomic()``: the inner block becomes a savepoint, so the
    commit (and with it the revocation's publish, registered with ``on_commit``) happens when the
    outer block exits.  Our two ``on_commit`` hooks run right before and right after the publish."""
    from django.db import transaction

    from sessions_acl.revocation import revoke_session

    marks: dict[str, float] = {}
    t_call = time.perf_counter()
    with transaction.atomic():
        transaction.on_commit(lambda: marks.__setitem__("commit", time.perf_counter()))
        revoke_session(session_id, actor="bench")
        transaction.on_commit(lambda: marks.__setitem__("published", time.perf_counter()))
    t_return = time.perf_counter()
    return RevokeTimes(t_call, marks["commit"], marks["published"], t_return)


def lookup_sessions(jids: list[str]) -> dict[str, int]:
    """Live ``Session`` rows by full JID."""
    from sessions_acl.models import Session as SessionRow

    rows = SessionRow.objects.filter(jid__in=jids, ended__isnull=True).values_list("jid", "id")
    return {jid: pk for jid, pk in rows}


def lookup_clients(pairs: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Client ids by (account, user-agent id)."""
    from sessions_acl.models import Client

    users = sorted({u for u, _ in pairs})
    rows = Client.objects.filter(user__username__in=users).values_list(
        "user__username", "user_agent_id", "id"
    )
    wanted = set(pairs)
    return {(u, ua): pk for u, ua, pk in rows if (u, ua) in wanted}


def ended_rows(session_ids: list[int]) -> int:
    from sessions_acl.models import Session as SessionRow

    return SessionRow.objects.filter(id__in=session_ids, ended__isnull=False).count()


def close_db() -> None:
    from django.db import connections

    connections.close_all()


# --------------------------------------------------------------------------- the measurement


@dataclass
class Target:
    idx: int
    account: str
    ua: str
    session: Session
    watcher: asyncio.Task[StreamEnd] | None = None
    session_id: int = 0
    client_id: int = 0
    revoked: bool = False


@dataclass
class Revoker:
    """XEP-0494: one session per account that revokes the others; a task notes its iq replies."""

    session: Session
    replies: dict[str, tuple[float, str, str]] = field(default_factory=dict)  # id -> (time, type, bytes)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


_IQ = re.compile(r"<(?:[\w.-]+:)?iq\b([^>]*?)(/>|>(.*?)</(?:[\w.-]+:)?iq\s*>)", re.S)


async def read_replies(r: Revoker) -> None:
    s = r.session
    while True:
        data = await s.reader.read(65536)
        if not data:
            raise ConnectionError(f"revoker {s.jid} closed by the server; tail {s.buf[-300:]!r}")
        now = time.perf_counter()
        s.buf += s._decoder.decode(data)
        end = 0
        for m in _IQ.finditer(s.buf):
            a = attrs(m.group(1))
            r.replies[a.get("id", "")] = (now, a.get("type", ""), m.group(0)[:600])
            end = m.end()
        if end:
            s.buf = s.buf[end:]
            r.arrived.set()


@dataclass
class Sample:
    target: int  # Target.idx
    end: StreamEnd | None
    t0: float  # the start point the mode is measured from (commit / iq written)
    times: RevokeTimes | None = None
    reply: tuple[float, str, str] | None = None  # XEP-0494: the revoker's iq reply
    error: str = ""


@dataclass
class Mode:
    layer: str
    via: str
    poll_ms: int
    redis_url: str | None


async def run_mode(
    a: argparse.Namespace,
    server: XmppauthServer,
    mode: Mode,
    accounts: list[str],
    tag: str,
    revokers_on: XmppauthServer | None = None,
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    pool = concurrent.futures.ThreadPoolExecutor(
        max_workers=max(4, a.concurrent), thread_name_prefix="revoke"
    )
    tls_ctx = make_client_tls_context([ALPN_XMPP_CLIENT])
    scram = ScramCache()
    n_total = a.sessions + a.warmup
    run_id = uuid.uuid4().hex[:8]
    targets: list[Target] = []
    revokers: dict[str, Revoker] = {}

    async def db(fn: Callable[..., Any], *args: Any) -> Any:
        return await loop.run_in_executor(pool, fn, *args)

    async def login(account: str, ua: str, res_tag: str, on: XmppauthServer = server) -> Session:
        assert on.c2s_tls_port is not None
        return await login2(
            on.host,
            on.c2s_tls_port,
            DOMAIN,
            account,
            a.password,
            tls_ctx=tls_ctx,
            scram_cache=scram,
            mechanism=a.mechanism,
            tag=res_tag,
            enable_sm=not a.no_sm,
            user_agent_id=ua,
            direct_tls=True,
            time_limit=a.timeout,
        )

    async def open_target(i: int) -> None:
        account = accounts[i % len(accounts)]
        ua = str(uuid.uuid5(uuid.NAMESPACE_URL, f"xmppauth-bench-revoke:{run_id}:{tag}:{i}"))
        s = await login(account, ua, "rv")
        targets.append(Target(i, account, ua, s))

    result: dict[str, Any] = {
        "layer": mode.layer,
        "via": mode.via,
        "server_poll_ms": mode.poll_ms,
        "redis_url": mode.redis_url,
        "sessions": a.sessions,
        "warmup": a.warmup,
        "concurrent": a.concurrent,
        "across": revokers_on is not None,
    }
    try:
        t_login = time.perf_counter()
        res = await gather_limited(n_total, a.login_concurrency, open_target)
        bad = [r for r in res if isinstance(r, BaseException)]
        if bad:
            raise RuntimeError(f"{len(bad)} of {n_total} logins failed, first: {bad[0]!r}")
        targets.sort(key=lambda t: t.idx)
        if mode.via == "xep0494":
            for account in sorted({t.account for t in targets}):
                ua = str(
                    uuid.uuid5(uuid.NAMESPACE_URL, f"xmppauth-bench-revoke:{run_id}:{tag}:revoker:{account}")
                )
                r = Revoker(await login(account, ua, "admin", revokers_on or server))
                r.task = asyncio.create_task(read_replies(r))
                revokers[account] = r
        log(f"  {len(targets)} sessions logged in in {time.perf_counter() - t_login:.1f}s")
        for t in targets:
            t.watcher = asyncio.create_task(watch_close(t.session, a.timeout))

        # the database rows of the sessions (by full JID) and of their clients (by user-agent id)
        deadline = time.perf_counter() + a.timeout
        while True:
            ids: dict[str, int] = await db(lookup_sessions, [t.session.jid for t in targets])
            if len(ids) == len(targets) or time.perf_counter() > deadline:
                break
            await asyncio.sleep(0.1)
        missing = [t.session.jid for t in targets if t.session.jid not in ids]
        if missing:
            raise RuntimeError(f"no live Session row for {len(missing)} JIDs, e.g. {missing[:3]}")
        for t in targets:
            t.session_id = ids[t.session.jid]
        if mode.via == "xep0494":
            cids: dict[tuple[str, str], int] = await db(lookup_clients, [(t.account, t.ua) for t in targets])
            for t in targets:
                t.client_id = cids[(t.account, t.ua)]
            if len(set(cids.values())) != len(targets):
                raise RuntimeError(
                    "two target sessions share a client: their user-agent ids are not distinct"
                )

        samples: list[Sample] = []
        collateral: list[str] = []
        order = list(range(len(targets)))
        for start in range(0, len(order), a.concurrent):
            batch = [targets[i] for i in order[start : start + a.concurrent]]
            await asyncio.sleep(random.uniform(0, a.jitter_ms / 1000))
            early = [t for t in targets if not t.revoked and t.watcher is not None and t.watcher.done()]
            if early:
                collateral.extend(f"{t.session.jid}: {_end_text(t)}" for t in early)
                for t in early:
                    t.revoked = True  # not measurable any more
                if len(collateral) > 20:
                    raise RuntimeError(
                        f"{len(collateral)} sessions ended without being revoked: {collateral[:3]}"
                    )
                batch = [t for t in batch if t not in early]
            got = await revoke_batch(a, mode, batch, revokers, db)
            samples.extend(got)
            failed = [x for x in samples if x.error]
            if len(failed) >= a.max_failures:
                result["aborted"] = (
                    f"stopped after {len(samples)} revocations: {len(failed)} failed "
                    f"(--max-failures {a.max_failures}), last: {failed[-1].error}"
                )
                log(f"  {result['aborted']}")
                break

        measured = [s for s in samples if s.target >= a.warmup]  # targets[i].idx == i
        result.update(analyse(mode, measured))
        ids_measured = [targets[s.target].session_id for s in measured]
        deadline = time.perf_counter() + 3.0  # the server ends the row after closing the stream
        while True:
            ended = await db(ended_rows, ids_measured)
            if ended >= len(ids_measured) or time.perf_counter() > deadline:
                break
            await asyncio.sleep(0.1)
        result["session_rows_ended"] = ended
        result["collateral_closures"] = collateral
        still_open = [t for t in targets if not t.revoked and t.watcher is not None and not t.watcher.done()]
        result["left_open"] = len(still_open)
        if revokers:
            dead = [acc for acc, r in revokers.items() if r.task is not None and r.task.done()]
            result["revokers_closed"] = dead
    finally:
        for t in targets:
            if t.watcher is not None:
                t.watcher.cancel()
        for r in revokers.values():
            if r.task is not None:
                r.task.cancel()
        tasks: list[asyncio.Task[Any]] = [t.watcher for t in targets if t.watcher is not None]
        tasks += [r.task for r in revokers.values() if r.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        open_sessions = [t.session for t in targets if not t.revoked] + [r.session for r in revokers.values()]
        await asyncio.gather(*(s.close(time_limit=2) for s in open_sessions), return_exceptions=True)
        for t in targets:
            t.session.abort()
        await loop.run_in_executor(pool, close_db)
        pool.shutdown(wait=False, cancel_futures=True)
    return result


def _end_text(t: Target) -> str:
    assert t.watcher is not None
    if t.watcher.cancelled():
        return "cancelled"
    e = t.watcher.exception()
    if e is not None:
        return f"{type(e).__name__}: {e}"
    end = t.watcher.result()
    return f"{end.condition or 'no stream error'} {end.text!r} {end.note}".strip()


async def revoke_batch(
    a: argparse.Namespace,
    mode: Mode,
    batch: list[Target],
    revokers: dict[str, Revoker],
    db: Callable[..., Awaitable[Any]],
) -> list[Sample]:
    """Revoke every target of ``batch`` at once, wait until each stream has ended (or timed out)."""
    for t in batch:
        t.revoked = True
    starts: list[tuple[float, RevokeTimes | None, str]] = []
    if mode.via == "direct":
        outcomes = await asyncio.gather(
            *(db(revoke_direct, t.session_id) for t in batch), return_exceptions=True
        )
        for o in outcomes:
            if isinstance(o, BaseException):
                starts.append((time.perf_counter(), None, f"revoke_session: {type(o).__name__}: {o}"))
            else:
                starts.append((o.commit, o, ""))
    else:
        for t in batch:
            s = revokers[t.account].session
            s.send(f"<iq type='set' id='rv{t.idx}'><revoke xmlns='{NS_CAM}' id='c{t.client_id}'/></iq>")
            starts.append((time.perf_counter(), None, ""))
    samples = []
    for t, (t0, times, err) in zip(batch, starts, strict=True):
        assert t.watcher is not None
        end: StreamEnd | None = None
        if not err:
            limit = max(0.0, t0 + a.timeout - time.perf_counter())
            try:
                end = await asyncio.wait_for(asyncio.shield(t.watcher), limit)
            except TimeoutError:
                err = f"stream not ended within {a.timeout:g}s of the revocation"
            except Exception as e:
                err = f"watcher failed: {type(e).__name__}: {e}"
        reply = None
        if mode.via == "xep0494":
            r = revokers[t.account]
            deadline = time.perf_counter() + a.timeout
            while f"rv{t.idx}" not in r.replies and time.perf_counter() < deadline:
                r.arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(r.arrived.wait(), max(0.0, deadline - time.perf_counter()))
            reply = r.replies.get(f"rv{t.idx}")
            if reply is None and not err:
                err = "no iq reply to the XEP-0494 revoke"
        samples.append(Sample(target=t.idx, end=end, t0=t0, times=times, reply=reply, error=err))
    return samples


def analyse(mode: Mode, samples: list[Sample]) -> dict[str, Any]:
    ok = [s for s in samples if s.end is not None]
    policy = [s for s in ok if s.end is not None and s.end.condition == EXPECTED_CONDITION]
    closed = [s for s in ok if s.end is not None and s.end.eof is not None]
    stream_end = [s for s in ok if s.end is not None and s.end.stream_closed]
    texts = sorted({s.end.text for s in ok if s.end is not None})
    conditions: dict[str, int] = {}
    for s in ok:
        assert s.end is not None
        conditions[s.end.condition or "(none)"] = conditions.get(s.end.condition or "(none)", 0) + 1
    out: dict[str, Any] = {
        "revocations": len(samples),
        "stream_errors_seen": len(ok),
        "policy_violation": len(policy),
        "conditions": conditions,
        "closed_by_server": len(closed),
        "stream_end_tag": len(stream_end),
        "texts": texts[:3],
        "distinct_texts": len(texts),
        "failures": [f"session {s.target}: {s.error}" for s in samples if s.error][:10],
        "bytes_before_error": [s.end.before for s in ok if s.end is not None and s.end.before][:3],
        "close_notes": sorted({s.end.note for s in ok if s.end is not None and s.end.note})[:3],
    }
    lat: dict[str, dict[str, float]] = {}
    if mode.via == "direct":
        timed = [s for s in ok if s.times is not None]
        lat["commit -> stream error"] = summary([s.end.seen - s.times.commit for s in timed])  # type: ignore[union-attr]
        lat["return -> stream error"] = summary([s.end.seen - s.times.returned for s in timed])  # type: ignore[union-attr]
        lat["call -> stream error"] = summary([s.end.seen - s.times.call for s in timed])  # type: ignore[union-attr]
        lat["revoke_session() call"] = summary([s.times.returned - s.times.call for s in timed])  # type: ignore[union-attr]
        lat["  of which commit -> published"] = summary([s.times.published - s.times.commit for s in timed])  # type: ignore[union-attr]
        negative = [s for s in timed if s.end.seen < s.times.returned]  # type: ignore[union-attr]
        out["error_before_return"] = len(negative)
    else:
        lat["iq written -> stream error"] = summary([s.end.seen - s.t0 for s in ok])  # type: ignore[union-attr]
        replied = [s for s in samples if s.reply is not None]
        lat["iq written -> iq reply"] = summary([s.reply[0] - s.t0 for s in replied])  # type: ignore[index]
        kinds: dict[str, int] = {}
        for s in replied:
            assert s.reply is not None
            key = s.reply[1] + (" password-reset-required" if "password-reset-required" in s.reply[2] else "")
            kinds[key] = kinds.get(key, 0) + 1
        out["iq_replies"] = kinds
    lat["stream error -> connection closed"] = summary(
        [s.end.eof - s.end.seen for s in closed if s.end is not None and s.end.eof is not None]
    )
    out["latency_ms"] = lat
    return out


# --------------------------------------------------------------------------- output


def print_mode(r: dict[str, Any], a: argparse.Namespace) -> None:
    layer = r["layer"]
    how = (
        "revoke_session(id, actor='bench') in a worker thread of the bench process"
        if r["via"] == "direct"
        else "XEP-0494 <revoke id='c<client id>'/> iq from another session (own client) of the same account"
    )
    if layer == "memory":
        path = (
            "in-memory channel layer in each process; the server polls the Revocation table every "
            f"{r['server_poll_ms']} ms"
        )
    else:
        path = (
            f"CHANNEL_LAYER_URL={r['redis_url']} in both processes; server XMPP_REVOCATION_POLL_MS="
            f"{r['server_poll_ms']} (so the figure is the channel-layer path alone)"
        )
    print(f"\n[layer={layer}, via={r['via']}] {path}")
    print(f"  revoked by: {how}")
    if r.get("fatal"):
        print(f"  FAILED: {r['fatal']}")
        return
    if r.get("aborted"):
        print(f"  ABORTED: {r['aborted']}")
    print(
        f"  revocations measured: {r['revocations']} (+{r['warmup']} warm-up not counted), "
        f"{r['concurrent']} at a time"
    )
    print(
        f"  streams ended with {EXPECTED_CONDITION}: {r['policy_violation']}/{r['revocations']}"
        f"  (conditions {r['conditions']}; </stream:stream> {r['stream_end_tag']}, connection closed "
        f"by the server {r['closed_by_server']}, Session row ended {r['session_rows_ended']})"
    )
    if r.get("texts"):
        more = r["distinct_texts"] - len(r["texts"])
        print(
            f"  stream error text: {', '.join(repr(t) for t in r['texts'])}"
            + (f" (and {more} more, one per revoking session)" if more > 0 else "")
        )
    if "iq_replies" in r:
        print(f"  XEP-0494 iq replies: {r['iq_replies']}")
    print(f"  {'ms':<34}{'n':>5}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}{'min':>9}")
    for name, st in r["latency_ms"].items():
        print(
            f"  {name:<34}{st['n']:>5}"
            + "".join(f"{st[k]:>9.1f}" for k in ("p50", "p90", "p99", "max", "min"))
        )
    if r.get("error_before_return"):
        print(
            f"  note: in {r['error_before_return']} revocation(s) the stream error reached the client "
            "before revoke_session() had returned (the publish is inside the call): 'return -> stream "
            "error' is negative there"
        )
    for key in ("failures", "collateral_closures", "bytes_before_error", "close_notes", "revokers_closed"):
        if r.get(key):
            print(f"  WARNING {key}: {r[key]}")
    if r.get("left_open"):
        print(f"  WARNING: {r['left_open']} session(s) never revoked are still open")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-N", "--sessions", type=int, default=200, help="measured revocations (default 200)")
    p.add_argument("--warmup", type=int, default=5, help="revocations before the measured ones (default 5)")
    p.add_argument("--layer", choices=("memory", "redis", "both"), default="both")
    p.add_argument("--via", choices=("direct", "xep0494", "both"), default="direct")
    p.add_argument("--concurrent", type=int, default=1, help="revocations started at once (default 1)")
    p.add_argument(
        "--accounts", type=int, default=10, help="accounts the sessions are spread over (default 10)"
    )
    p.add_argument("--password", default="bench-Passw0rd")
    p.add_argument(
        "--mechanism",
        default="PLAIN",
        choices=("PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512"),
        help="SASL2 mechanism of the logins (default PLAIN)",
    )
    p.add_argument("--no-sm", action="store_true", help="do not enable stream management in Bind2")
    p.add_argument(
        "--poll-ms", type=int, default=250, help="memory layer: server XMPP_REVOCATION_POLL_MS (250)"
    )
    p.add_argument(
        "--redis-url", default=DEFAULT_REDIS_URL, help=f"redis layer (default {DEFAULT_REDIS_URL})"
    )
    p.add_argument(
        "--redis-poll-ms", type=int, default=60000, help="redis layer: server poll (default 60000)"
    )
    p.add_argument(
        "--jitter-ms", type=float, default=250.0, help="random pause 0..J ms before each revocation (250)"
    )
    p.add_argument("--login-concurrency", type=int, default=16)
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per login / per stream end")
    p.add_argument(
        "--max-failures",
        type=int,
        default=3,
        help="stop a mode after this many revocations whose stream did not end in time (default 3)",
    )
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--client-cpu", type=int, default=1)
    p.add_argument("--no-pin", action="store_true", help="do not pin the server and this process to CPUs")
    p.add_argument("--keep", action="store_true", help="keep the server's temp dir")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument(
        "--across",
        action="store_true",
        help="two server processes on one fresh PostgreSQL database and Redis: the XEP-0494 revokers "
        "log in on the second, the targets on the first (implies --layer redis --via xep0494)",
    )
    a = p.parse_args(argv)
    if a.across:
        a.layer, a.via = "redis", "xep0494"
    if a.concurrent < 1 or a.sessions < 1 or a.warmup < 0:
        p.error("--concurrent and -N must be at least 1, --warmup at least 0")
    if not a.no_pin:
        cpus = os.sched_getaffinity(0)
        if (
            len(cpus) < 2
            or a.server_cpu not in cpus
            or a.client_cpu not in cpus
            or a.server_cpu == a.client_cpu
        ):
            log(f"note: cannot pin to CPUs {a.server_cpu}/{a.client_cpu} (have {sorted(cpus)}); not pinning")
            a.no_pin = True
    return a


def check_redis(url: str) -> str:
    """Ping the Redis server; returns a warning when someone else listens on the control group."""
    import redis

    r = redis.Redis.from_url(url, socket_timeout=5)
    r.ping()
    others = r.zcard("asgi:group:xmppauth.control")
    r.close()
    if others:
        return (
            f"note: {others} channel(s) are members of the xmppauth.control group in {url} (channels_redis "
            "keeps members for a day, so they may be left over from earlier runs; if another server uses "
            "this db it hears the bench's revocations too: pick another db with --redis-url)"
        )
    return ""


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    command = shlex.join([".venv/bin/python", "bench/revoke.py", *(sys.argv[1:] if argv is None else argv)])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * a.sessions + 1024)), hard))
    if not a.no_pin:
        os.sched_setaffinity(0, {a.client_cpu})
    layers = ["memory", "redis"] if a.layer == "both" else [a.layer]
    vias = ["direct", "xep0494"] if a.via == "both" else [a.via]
    accounts = [f"rvuser{i}" for i in range(max(1, a.accounts))]
    server = XmppauthServer(None if a.no_pin else a.server_cpu, keep=a.keep)
    server.env.update(ONE_ADDRESS)
    second: XmppauthServer | None = None
    results: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if a.across:
            # both processes on one database (a throw-away one, as the tests make it) and one Redis db
            sys.path.insert(0, str(REPO_DIR))
            from tests.integration.server import fresh_postgres_database

            database = stack.enter_context(fresh_postgres_database("bench_revoke"))
            second = XmppauthServer(None if a.no_pin else a.client_cpu, keep=a.keep)
            second.env.update(ONE_ADDRESS)
            for srv, node in ((server, "a"), (second, "b")):
                srv.env.update({"DATABASE_URL": database, "XMPP_NODE": node})
            done = server._manage("migrate", "-v0")
            if done.returncode != 0:
                log(f"FAILED: migrate: {done.stderr[-2000:]}")
                return 1
        return _run(a, command, server, second, layers, vias, accounts, results, t_start)
    return 1  # pragma: no cover - the with block returns


def _run(
    a: argparse.Namespace,
    command: str,
    server: XmppauthServer,
    second: XmppauthServer | None,
    layers: list[str],
    vias: list[str],
    accounts: list[str],
    results: list[dict[str, Any]],
    t_start: float,
) -> int:
    try:
        for li, layer in enumerate(layers):
            redis_url = a.redis_url if layer == "redis" else None
            poll = a.redis_poll_ms if layer == "redis" else a.poll_ms
            if redis_url:
                note = check_redis(redis_url)
                if note:
                    log(note)
                server.env["CHANNEL_LAYER_URL"] = redis_url
            else:
                server.env.pop("CHANNEL_LAYER_URL", None)
            server.env["XMPP_REVOCATION_POLL_MS"] = str(poll)
            if li == 0:
                server.start()
                log(f"creating {len(accounts)} accounts in {server.dir} ...")
                server.create_accounts(accounts, a.password)
                setup_django(server)
                if second is not None:
                    second.env["CHANNEL_LAYER_URL"] = server.env["CHANNEL_LAYER_URL"]
                    second.env["XMPP_REVOCATION_POLL_MS"] = str(poll)
                    second.start()
                    log(f"second process pid {second.pid}, direct TLS port {second.c2s_tls_port}")
            else:
                server.restart()  # a fresh process on the same data dir, with this layer's env
            code = server.code_fingerprint()
            log(f"[{layer}] server pid {server.pid}, direct TLS port {server.c2s_tls_port}, code {code}")
            with channel_layer(redis_url):
                for via in vias:
                    mode = Mode(layer, via, poll, redis_url)
                    t0 = time.perf_counter()
                    try:
                        r = asyncio.run(run_mode(a, server, mode, accounts, f"{layer}-{via}", second))
                    except (RuntimeError, OSError, ssl.SSLError, TimeoutError, ConnectionError) as e:
                        r = {"layer": layer, "via": via, "server_poll_ms": poll, "redis_url": redis_url}
                        r["fatal"] = f"{type(e).__name__}: {e}"
                        log(f"[{layer}/{via}] FAILED: {r['fatal']}\n{server.log_tail()}")
                    log(f"[{layer}/{via}] done in {time.perf_counter() - t0:.1f}s")
                    r["server_code"] = code
                    results.append(r)
            if server.proc is not None and server.proc.poll() is not None:
                log(f"server exited with code {server.proc.returncode}\n{server.log_tail()}")
                break
        version = server.version()
        uncommitted = server.uncommitted_files()
    except ServerStartError as e:
        log(f"FAILED: {e}")
        return 1
    finally:
        server.stop()
        if second is not None:
            second.stop()
    print()
    print(f"command: {command}")
    print(
        f"server: {version}; manage.py serve on CPU {a.server_cpu if not a.no_pin else '-'}, bench on CPU "
        f"{a.client_cpu if not a.no_pin else '-'}"
        + (
            f"; DATABASE_URL={os.environ['DATABASE_URL']}"
            if os.environ.get("DATABASE_URL")
            else "; SQLite in the server's temp data dir"
        )
        + (
            f"; a second process (XMPP_NODE=b, CPU {a.client_cpu if not a.no_pin else '-'}) holds the "
            "XEP-0494 revokers, the first (XMPP_NODE=a) the targets"
            if second is not None
            else ""
        )
    )
    if uncommitted:
        print(f"server files with uncommitted changes: {', '.join(uncommitted[:10])}")
    codes = {r.get("server_code") for r in results}
    if len(codes) > 1:
        print(
            "WARNING: the server code on disk changed between the modes (someone edited the working "
            f"tree during the run): {[(r['layer'], r['via'], r.get('server_code')) for r in results]}"
        )
    else:
        print(f"server code digest (manage.py, xmppauth/, accounts/, sessions_acl/): {codes.pop()}")
    print(
        f"configuration: N={a.sessions} sessions (+{a.warmup} warm-up) over {len(accounts)} accounts, "
        f"SASL2 {a.mechanism} + Bind2{'' if a.no_sm else ' + SM'} over direct TLS, one user-agent id "
        f"(client) per session; {a.concurrent} revocation(s) at a time, random pause "
        f"0-{a.jitter_ms:g} ms before each; t1 = the client read returning <stream:error>; "
        f"total run {time.perf_counter() - t_start:.0f}s"
    )
    for r in results:
        print_mode(r, a)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"command": command, "args": vars(a), "results": results}, f, indent=2, default=str)
    bad = any(
        r.get("fatal") or r.get("policy_violation") != r.get("revocations") or r.get("failures")
        for r in results
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
