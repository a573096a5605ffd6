"""Blocklists (XEP-0191) as routing sees them: kept in memory for the accounts bound in this process.

The one door for an account's blocklist: :func:`change` stores a block or an unblock, :func:`items`
reads it. Routing asks two questions on every stanza between accounts, without a query:

* :meth:`Blocking.blocks`: does the sending account block the address it writes to? (the stanza
  comes back ``not-acceptable`` with ``<blocked/>``);
* :meth:`Blocking.refuses`: does the receiving account block the sender? (presence and answers are
  dropped, messages and requests answered ``service-unavailable``: XEP-0191 §3.3).

Both read the lists kept in memory: always those of the accounts with a session bound in this process,
read when a session binds unless fresh (:func:`fresh`, :func:`load`), and, up to KEPT, of accounts that
were bound here before. An account bound only in another process is checked there (its process checks
what the cluster carries to it, ``xmppauth/cluster.py``); one bound nowhere is checked against the
database before a message is stored for it (:func:`refuses_stored`). A change in one process reaches
the others' copies through the cluster (``cluster.blocklist``).
"""

from __future__ import annotations

import functools
import logging
import time

from django.conf import settings
from django.db import connection, transaction

from accounts.models import User
from xmppauth import sending
from xmppauth.models import BlockedJid
from xmppauth.offloop import off_loop
from xmppauth.proto import xep0191_blocking as rules
from xmppauth.proto.jid import JID
from xmppauth.proto.replies import Refusal
from xmppauth.router import ROUTER

log = logging.getLogger("xmppauth.router")

_LISTS: dict[JID, frozenset[str]] = {}  # bare JID -> its blocklist (always kept for those bound here)
_LOADED: dict[JID, float] = {}  # when each was read (monotonic), the least recently read first
#: Lists kept at most; beyond, the least recently read of accounts not bound here are forgotten.
KEPT = 100_000
#: A list kept for an account not bound here is read again at its next bind once this old (seconds):
#: a change made while the cluster could not tell this process is not kept for long.
FRESH = 300.0


def items(account: JID) -> frozenset[str]:
    """The blocklist of ``account`` (bare) as this process knows it (empty: none, or not bound here)."""
    return _LISTS.get(account, frozenset())


@functools.cache
def _stored_sql() -> str:
    blocked, users = BlockedJid._meta.db_table, User._meta.db_table
    # table names from the models; the one value is a parameter
    return f"SELECT b.jid FROM {blocked} b JOIN {users} u ON u.id = b.user_id WHERE u.username = %s"  # noqa: S608


@off_loop
def _stored(localpart: str) -> list[str]:
    # read at every first bind of an account in this process: written out, the ORM's query building
    # would be most of its cost (docs/performance.md, issue 14)
    with connection.cursor() as cursor:
        cursor.execute(_stored_sql(), [localpart])
        return [row[0] for row in cursor.fetchall()]


def fresh(account: JID) -> bool:
    """This process knows the blocklist of ``account`` (bare) well enough for a new session of it:
    a session of it is bound here (the list is kept up to date), or it was read in the last FRESH
    seconds. A session binding here reads it first otherwise (:func:`load`): most logins of an account
    that logged in here before then cost no query."""
    if account not in _LISTS:
        return False
    return bool(ROUTER.here(account)) or time.monotonic() - _LOADED[account] < FRESH


async def load(account: JID) -> None:
    """Read the blocklist of ``account`` (bare), before a session of it binds here."""
    _keep(account, frozenset(await _stored(account.local or "")))


def _keep(account: JID, listed: frozenset[str]) -> None:
    _LISTS[account] = listed
    _LOADED.pop(account, None)
    _LOADED[account] = time.monotonic()
    if len(_LOADED) > KEPT:
        for old in list(_LOADED)[: len(_LOADED) - KEPT + KEPT // 10]:
            if not ROUTER.here(old):  # never the list of an account bound here: routing reads it
                del _LISTS[old], _LOADED[old]


async def reload(account: JID) -> None:
    """Another process changed the list: read it again if this process keeps it."""
    if account in _LISTS:
        await load(account)


@off_loop
def _refused(localpart: str, keys: tuple[str, ...]) -> bool:
    return BlockedJid.objects.filter(user__username=localpart, jid__in=keys).exists()


async def refuses_stored(account: JID, sender: JID) -> bool:
    """``account`` (bare, maybe bound nowhere) blocks ``sender``, as the database says."""
    if account in _LISTS:
        return rules.blocked(_LISTS[account], sender, owner=account)
    if sender.bare == account:
        return False
    return await _refused(account.local or "", rules.match_keys(sender))


@off_loop
def _refusing(localparts: list[str], keys: tuple[str, ...]) -> set[str]:
    rows = BlockedJid.objects.filter(user__username__in=localparts, jid__in=keys)
    return set(rows.values_list("user__username", flat=True))


async def refusing(accounts: list[JID], sender: JID) -> set[JID]:
    """Which of ``accounts`` (bare, on this server) block ``sender``, as the database says (one query)."""
    others = [account for account in accounts if account != sender.bare]
    if not others:
        return set()
    names = await _refusing([account.local or "" for account in others], rules.match_keys(sender))
    return {account for account in others if account.local in names}


@off_loop
def _change(localpart: str, request: rules.Block | rules.Unblock, limit: int, limit_bytes: int) -> list[str]:
    with transaction.atomic():
        user = User.objects.select_for_update().filter(username=localpart).first()
        if user is None:
            return []
        stored = set(BlockedJid.objects.filter(user=user).values_list("jid", flat=True))
        if isinstance(request, rules.Block):
            rules.check_size(stored, request, limit, limit_bytes)
            new = [jid for jid in request.jids if jid not in stored]
            BlockedJid.objects.bulk_create([BlockedJid(user=user, jid=jid) for jid in new])
            return new
        gone = sorted(stored) if request.everything else [jid for jid in request.jids if jid in stored]
        BlockedJid.objects.filter(user=user, jid__in=gone).delete()
        return gone


async def change(account: JID, request: rules.Block | rules.Unblock) -> list[str]:
    """Store a block or an unblock of ``account`` (bare); the JIDs it added or removed. Refusal when
    the list would grow past ``XMPP_MAX_BLOCKLIST_ITEMS``. This process's copy follows at once."""
    limit = int(settings.XMPP_MAX_BLOCKLIST_ITEMS)
    changed = await _change(account.local or "", request, limit, sending.answer_bytes())
    if account in _LISTS:
        current = set(_LISTS[account])
        if isinstance(request, rules.Block):
            current.update(changed)
        else:
            current.difference_update(changed)
        _keep(account, frozenset(current))
    return changed


def refusal() -> Refusal:
    """What the account's own stanza to a JID it blocks is answered with (XEP-0191 §3.3)."""
    return rules.blocked_refusal()


class Blocking:
    """The router's ``blocking``: the two questions of the module docstring, from memory."""

    def blocks(self, account: JID, to: JID) -> bool:
        listed = _LISTS.get(account)
        return listed is not None and len(listed) > 0 and rules.blocked(listed, to, owner=account)

    def refuses(self, account: JID, sender: JID) -> bool:
        listed = _LISTS.get(account)
        return listed is not None and len(listed) > 0 and rules.blocked(listed, sender, owner=account)
