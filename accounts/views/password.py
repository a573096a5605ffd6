"""The password step of the web sign-in and of re-authentication: Django's ``authenticate`` behind a
throttle of failed attempts.

The throttle is deliberately simple (issue 12 replaces it). Failed passwords are counted in Django's
cache under two keys, the username and the client's address; after more than :data:`FREE` failures
on a key, each further attempt on it must wait 2^(n - free - 1) seconds after the last failure (at
most :data:`MAX_WAIT`), and is refused unchecked while it waits. A key is forgotten :data:`FORGET`
seconds after its last failure; a right password clears its username's count (not its address's:
signing in to one's own account must not reset the count of guesses at others').

With the default cache (local memory) each process counts on its own; a shared cache (``CACHES``)
makes the count the same on every process. Attempts on one key take turns (``cache.add`` of a turn
key, atomic in every cache Django ships): one at a time is checked and counted, and an attempt that finds
the turn taken is refused unchecked, so a burst of guesses sent at once is no faster than one after
another (an outside attack got 40 parallel guesses checked before this). A stopgap, said in docs/web.md.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from django.contrib.auth import authenticate
from django.core.cache import cache
from django.http import HttpRequest

from ..lookup import BadName, localpart_from
from ..models import User
from . import guard

#: Failures allowed on a key before the waits begin.
FREE = {"user": 3, "address": 10}
MAX_WAIT = 300
FORGET = 900
TURN_SECONDS = 30  # a turn left by a crashed check is free again after this

#: Texts for the person, by short code.
MESSAGES = {
    "wrong": "Wrong username or password.",
    "wrong_password": "Wrong password.",
    "throttled": "Too many failed attempts: try again in {seconds} s.",
}


@dataclass(frozen=True)
class PasswordCheck:
    """The verdict: the account when the password was right (``user``); when not, ``text`` for the
    person, ``reason`` its short code (a key of :data:`MESSAGES`) and ``known``, the account the name
    belongs to (for its security log), if any."""

    user: User | None
    text: str = ""
    reason: str = ""
    known: User | None = None


def check_password(request: HttpRequest, name: str, password: str) -> PasswordCheck:
    """Check the password of the account ``name`` (a localpart or a whole address), throttled."""
    try:
        username = localpart_from(name.strip())
    except BadName:
        username = name.strip()
    keys = _keys(username, guard.client_address(request))
    turns = [f"{key}.turn" for key, _free in keys]
    taken = [turn for turn in turns if cache.add(turn, 1, TURN_SECONDS)]
    try:
        if len(taken) < len(turns):  # another attempt on this name or from this address is being checked
            return PasswordCheck(None, MESSAGES["throttled"].format(seconds=1), "throttled")
        wait = _wait(keys)
        if wait:
            return PasswordCheck(None, MESSAGES["throttled"].format(seconds=wait), "throttled")
        user = authenticate(request, username=username, password=password)
        if isinstance(user, User):
            cache.delete(keys[0][0])
            return PasswordCheck(user)
        _count_failure(keys)
        known = User.objects.filter(username=username).first()
        return PasswordCheck(None, MESSAGES["wrong"], "wrong", known)
    finally:
        cache.delete_many(taken)


def _keys(username: str, address: str) -> list[tuple[str, int]]:
    """The cache keys (hashed: any text is a valid key) and their free failures; the username's first."""

    def key(kind: str, value: str) -> str:
        return f"portal.password.{kind}.{hashlib.sha256(value.encode()).hexdigest()}"

    return [(key("user", username), FREE["user"]), (key("address", address), FREE["address"])]


def _wait(keys: list[tuple[str, int]]) -> int:
    """Whole seconds until every key allows an attempt again, 0 if they all do now."""
    now = guard.clock()
    longest = 0.0
    for key, free in keys:
        count, last = cache.get(key, (0, 0.0))
        if count > free:
            longest = max(longest, last + min(2 ** (count - free - 1), MAX_WAIT) - now)
    return max(0, math.ceil(longest))


def _count_failure(keys: list[tuple[str, int]]) -> None:
    now = guard.clock()
    for key, _free in keys:
        count, _last = cache.get(key, (0, 0.0))
        cache.set(key, (count + 1, now), FORGET)
