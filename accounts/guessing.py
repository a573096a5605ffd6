"""Limits on password and code guessing: per address and per account, with a growing wait.

The one door for "may this attempt be checked at all?" (issue 12). Every attempt at a secret that a
person could guess (a SCRAM proof, a PLAIN password, a FAST token, a TOTP or recovery code) first
*claims* a turn on two keys, the client's address (an IPv6 address by its /64) and the account name
as typed (known or not: an unknown account is limited exactly like a known one, so the limit tells
nothing about which names exist). The claim counts the attempt as a failure in advance; an attempt
that succeeds gives its claims back (:meth:`Claim.give_back`), and ends the wait it started, so that
only failures (and attempts cut off halfway) stay counted and make others wait.

On each key the first ``free`` attempts pass at once; after them every attempt must wait, after the
previous one that passed, 1 s, then 2, 4, ... up to ``longest`` seconds (``XMPP_GUESS_LONGEST_WAIT``,
20 s by default: three guesses a minute). An attempt that comes too early is refused without being
checked or counted, and is told how long to wait. A key is forgotten ``XMPP_GUESS_FORGET`` seconds
after its last counted attempt.

The owner is never locked out by someone guessing at their account: the account key does not apply
to a client that has logged in to this account before with the password (its user-agent id, checked
by the caller), to FAST tokens or to app passwords (the caller keeps checking those while the account
is limited; they are far too long to guess). The address key applies to everything.

Counts live in Django's cache: local memory for one process; the shared cache (Redis or the
database, :mod:`xmppauth.settings`) when several processes serve. The two operations that matter
are atomic in every backend Django ships: ``incr`` gives every attempt a number of its own, and the
wait after an attempt is claimed with ``add`` (set if absent), so that of attempts sent at once only
one gets each turn: parallel guessing is no faster than guessing one at a time. A refused attempt
costs one read and no write; nothing here touches the database tables of accounts or logs.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache

from accounts.localcache import LocalCache
from xmppauth.proto.netaddr import address_key

log = logging.getLogger("xmppauth.guessing")

#: Clock for the waits announced (the waits themselves are the cache's expiry times).
clock: Callable[[], float] = time.time


@dataclass(frozen=True)
class Limit:
    """One kind of key: attempts that pass at once, then waits doubling from 1 s up to ``longest``."""

    kind: str
    free: int
    longest: int
    forget: int

    def wait_after(self, number: int) -> int:
        """The wait after the ``number``-th counted attempt (0 within the free ones)."""
        if number <= self.free:
            return 0
        return int(min(2 ** min(number - self.free - 1, 30), self.longest))


def address_limit() -> Limit:
    return Limit(
        "address",
        settings.XMPP_GUESS_FREE_PER_ADDRESS,
        settings.XMPP_GUESS_LONGEST_WAIT,
        settings.XMPP_GUESS_FORGET,
    )


def account_limit() -> Limit:
    return Limit(
        "account",
        settings.XMPP_GUESS_FREE_PER_ACCOUNT,
        settings.XMPP_GUESS_LONGEST_WAIT,
        settings.XMPP_GUESS_FORGET,
    )


@dataclass
class Claim:
    """Turns taken for one attempt; give them back with :meth:`give_back` if it succeeds."""

    keys: list[str] = field(default_factory=list)
    #: the waits this attempt started (key, its end): a success ends them, nobody need wait for it
    waits: list[tuple[str, float]] = field(default_factory=list)
    store: BaseCache | None = None  # where the turns were taken

    def give_back(self) -> None:
        """The attempt succeeded: it no longer counts as a failure on any of its keys."""
        keys, self.keys = self.keys, []
        waits, self.waits = self.waits, []
        if self.store is None or not (keys or waits):
            return
        try:
            for key in keys:
                with contextlib.suppress(ValueError):  # forgotten meanwhile: nothing to give back
                    self.store.decr(key)
            for gap, until in waits:
                if self.store.get(gap) == until:  # still the wait this attempt started
                    self.store.delete(gap)
        except Exception as exc:  # the shared cache failed meanwhile: the turns stay counted
            _shared_failed(exc)


@dataclass(frozen=True)
class Verdict:
    """The outcome of :func:`claim`: ``wait`` > 0 refuses the attempt for ``wait`` seconds on the key
    ``scope`` ("address": refuse it unchecked; "account": only credentials no one can guess, app
    passwords, may still be checked); ``claim`` holds the turns taken (on the address key when the
    account refused) for :meth:`Claim.give_back` if the attempt succeeds."""

    claim: Claim
    wait: int = 0
    scope: str = ""

    @property
    def refused(self) -> bool:
        return self.wait > 0


def _key(limit: Limit, value: str) -> str:
    # hashed: any text is a valid cache key, and names are not kept in the clear
    return f"guess.{limit.kind}.{hashlib.sha256(value.encode('utf-8', 'surrogatepass')).hexdigest()[:40]}"


def claim(address: str, account: str, *, account_exempt: Callable[[], bool] | None = None) -> Verdict:
    """Claim a turn for one attempt from ``address`` at ``account`` (the name as typed, known or not).

    ``account_exempt`` is asked only when the account key would refuse: True lets the attempt go on
    under the address key alone (a client that logged in here before). An empty ``account`` (a
    FAST token) is limited by the address alone.

    When the shared cache (Redis, the database) fails, the process counts on its own for
    :data:`FALLBACK_SECONDS` before it tries the shared one again: logins go on, each process
    limiting what it sees, and the failure is logged (once a minute)."""
    store = _store()
    try:
        return _claim(store, address, account, account_exempt)
    except Exception as exc:
        if store is _LOCAL:
            raise
        _shared_failed(exc)
        return _claim(_LOCAL, address, account, account_exempt)


def _claim(
    store: BaseCache, address: str, account: str, account_exempt: Callable[[], bool] | None
) -> Verdict:
    keys = [(address_limit(), address_key(address))]
    if account:
        keys.append((account_limit(), account))
    taken = Claim(store=store)
    for limit, value in keys:
        wait = _take(store, limit, _key(limit, value), taken)
        if wait and limit.kind == "account" and account_exempt is not None and account_exempt():
            continue
        if wait:
            # the address turn stays taken when the account refuses: app passwords may still be tried
            return Verdict(taken, wait=wait, scope=limit.kind)
        taken.keys.append(f"{_key(limit, value)}.n")
    return Verdict(taken)


#: The process's own counts while the shared cache is failing.
_LOCAL: BaseCache = LocalCache("xmppauth-guessing-fallback", {"OPTIONS": {"MAX_ENTRIES": 200_000}})
FALLBACK_SECONDS = 10.0
_fallback_until = 0.0
_last_logged = -60.0


def _store() -> BaseCache:
    return _LOCAL if time.monotonic() < _fallback_until else caches["default"]


def _shared_failed(exc: Exception) -> None:
    global _fallback_until, _last_logged
    now = time.monotonic()
    _fallback_until = now + FALLBACK_SECONDS
    if now - _last_logged >= 60.0:
        _last_logged = now
        log.warning(
            "the shared cache failed (%s: %s): guessing limits are counted by this process alone for now",
            type(exc).__name__,
            exc,
        )


def _take(cache: BaseCache, limit: Limit, key: str, taken: Claim) -> int:
    """Count one attempt on ``key`` and return 0 (the wait it starts noted in ``taken``), or refuse it
    (uncounted): the seconds to wait."""
    now = clock()
    gap = f"{key}.gap"
    until = cache.get(gap)  # the end of the wait the last attempt started, kept a second longer
    if until is not None:
        if float(until) > now:  # in a wait: refused with a read, nothing written
            return max(1, math.ceil(float(until) - now))
        # over, but still stored: the entry outlives its wait by up to a second (the database cache keeps
        # expiry times in whole seconds, and would end a 1 s wait at once if given no more)
        cache.delete(gap)
    number = _incr(cache, f"{key}.n", limit.forget)
    wait = limit.wait_after(number)
    if not wait:
        return 0
    if cache.add(gap, now + wait, wait + 1):  # this attempt took the turn; the next waits
        taken.waits.append((gap, now + wait))
        cache.touch(f"{key}.n", limit.forget)
        if number == limit.free + 1:
            log.warning(
                "guessing limit reached on an %s key: further attempts wait (up to %d s)",
                limit.kind,
                limit.longest,
            )
        return 0
    # another attempt took this turn at the same moment
    with contextlib.suppress(ValueError):
        cache.decr(f"{key}.n")
    until = cache.get(gap)
    return max(1, math.ceil((until if until is not None else now + 1) - now))


def _incr(cache: BaseCache, key: str, forget: int) -> int:
    for _ in range(3):
        try:
            return int(cache.incr(key))
        except ValueError:  # no count yet (or it was just forgotten)
            if cache.add(key, 1, forget):
                return 1
    return int(cache.incr(key))


def refusal_text(verdict: Verdict) -> str:
    """What a refused attempt is told (the same for known and unknown accounts)."""
    if verdict.scope == "account":
        return (
            f"too many failed attempts for this account: try again in {verdict.wait} s "
            "(app passwords, FAST tokens and clients that logged in here before still work)"
        )
    return f"too many failed attempts from your address: try again in {verdict.wait} s"
