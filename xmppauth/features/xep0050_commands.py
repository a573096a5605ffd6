"""XEP-0050 ad-hoc commands carrying XEP-0133 service administration.

Registered (:mod:`xmppauth.features`) for ``http://jabber.org/protocol/commands``, listed among the
server's features, and for disco#info and disco#items of the server's node of that name (XEP-0050
§2.1, §2.2: the command list, whose items only sessions with the ``admin`` scope see).

The driver hands over iq requests with a ``<command xmlns='http://jabber.org/protocol/commands'/>``
payload addressed to the server; only sessions whose grant carries the ``admin`` scope get here
(checked before :func:`handle` runs). Three XEP-0133 commands are offered:

* ``get-online-users-num`` (XEP-0133 §4.15) and ``get-registered-users-num`` (§4.13): one stage,
  answered at once with ``status='completed'`` and a ``jabber:x:data`` result form (XEP-0004
  §3.1) whose hidden ``FORM_TYPE`` is ``http://jabber.org/protocol/admin`` (XEP-0068).
  Registered users are the active accounts; online users are the accounts with at least one
  session in this process, and the form adds the number of sessions as ``x-onlinesessionsnum``
  (an unregistered field, hence the ``x-`` prefix XEP-0068 asks for).
* ``end-user-session`` (XEP-0133 §4.5): two stages. ``execute`` answers ``status='executing'``
  with a form asking for ``accountjids``; submitting it (``complete``, or ``execute``, the
  default action of the form's ``<actions execute='complete'/>``, XEP-0050 §4.2) ends every
  session and FAST token of each account named and completes with an info note. All accounts
  are checked before any is touched: one unknown account or foreign domain refuses the whole
  request with ``bad-request`` naming them. A full JID names its account: every session of the
  account ends, not only that resource's.

Command sessions (XEP-0050 §3.3, §4.1 ``sessionid``) are random (:mod:`secrets`), bound to the node
and to the full JID that started them, and kept in memory for :data:`SESSION_LIFETIME` seconds
(at most :data:`MAX_SESSIONS`, the oldest dropped first). A sessionid that is unknown, expired,
already used, or presented by someone else is ``bad-request`` with ``<bad-sessionid/>``
(XEP-0050 §4.4). Ended and expired sessions are forgotten, so they cannot be told apart from
unknown ones, and the ``not-allowed``/``<session-expired/>`` that §4.4 defines for them is not
used. A refused submission leaves its session open, so the administrator can correct the form
and submit again. A submitted ``<x type='cancel'/>`` is refused as a bad payload, although
XEP-0050 §3.5.1 says to treat it as a submission: for a command that ends sessions, a form the
client meant to cancel must not act.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from lxml import etree

from accounts.models import User
from sessions_acl.access import ADMIN as ADMIN_SCOPE
from sessions_acl.revocation import end_user_sessions
from xmppauth import features
from xmppauth.offloop import off_loop
from xmppauth.proto import ns
from xmppauth.proto.errors import StanzaErrorCondition
from xmppauth.proto.jid import JID, InvalidJID, prep_domain
from xmppauth.proto.replies import Refusal, iq_error, iq_reply
from xmppauth.router import ROUTER

NS = ns.COMMANDS  # XEP-0050
DATA = ns.DATA_FORMS  # XEP-0004
ADMIN = ns.ADMIN  # XEP-0133, also the FORM_TYPE of its forms

NODE_ONLINE_USERS_NUM = f"{ADMIN}#get-online-users-num"
NODE_REGISTERED_USERS_NUM = f"{ADMIN}#get-registered-users-num"
NODE_END_USER_SESSION = f"{ADMIN}#end-user-session"

#: Seconds a multi-stage command session stays open (XEP-0050 leaves the timeout to the responder).
SESSION_LIFETIME = 600.0
#: Open command sessions kept at most; beyond it the oldest is dropped.
MAX_SESSIONS = 256

END_SESSION_REASON = "ended by a server administrator"

_COMMANDS: dict[str, str] = {
    NODE_ONLINE_USERS_NUM: "Get Number of Online Users",
    NODE_REGISTERED_USERS_NUM: "Get Number of Registered Users",
    NODE_END_USER_SESSION: "End User Session",
}

# XEP-0050 §4.1: the actions a requester may name.
_ACTIONS = frozenset({"execute", "cancel", "complete", "next", "prev"})

_Q_COMMAND = ns.qname(NS, "command")
_Q_X = ns.qname(DATA, "x")
_Q_FIELD = ns.qname(DATA, "field")
_Q_VALUE = ns.qname(DATA, "value")


@dataclass(frozen=True)
class _Session:
    node: str
    owner: str
    expires: float


#: Open command sessions by sessionid (this process only; a session lives on one stream anyway).
_sessions: dict[str, _Session] = {}
#: The clock sessions expire by (a module attribute so tests can move time on).
_clock: Callable[[], float] = time.monotonic


# ---------------------------------------------------------------------------------- the handlers
async def _on_command(context: features.IqContext, stanza: etree._Element, payload: etree._Element) -> None:
    await context.answer(
        await handle(stanza, payload, actor=f"{context.jid} (XEP-0133)", online=ROUTER.online_counts)
    )


async def _on_discovery(context: features.IqContext, stanza: etree._Element, payload: etree._Element) -> None:
    """XEP-0050 §2: the command list (the XEP-0133 commands, to sessions that may run them)."""
    namespace = etree.QName(payload).namespace or ""
    reply = iq_reply(stanza, "result")
    query = etree.SubElement(reply, ns.qname(namespace, "query"), nsmap=ns.default(namespace))
    query.set("node", NS)
    if namespace == ns.DISCO_INFO:
        etree.SubElement(query, ns.qname(namespace, "identity"), category="automation", type="command-list")
    elif context.access.allows(ADMIN_SCOPE):
        for node, name in command_items():
            etree.SubElement(
                query, ns.qname(namespace, "item"), jid=settings.XMPP_DOMAIN, node=node, name=name
            )
    await context.answer(reply)


features.register(NS, _on_command, server_feature=True)
features.register_node(NS, _on_discovery)


# ---------------------------------------------------------------------------------- public API
def command_items() -> list[tuple[str, str]]:
    """``(node, name)`` of every command, for disco#items on node
    ``http://jabber.org/protocol/commands`` (XEP-0050 §2.2; the item's jid is the server)."""
    return list(_COMMANDS.items())


async def handle(
    stanza: etree._Element,
    payload: etree._Element,
    *,
    actor: str,
    online: Callable[[], tuple[int, int]],
) -> etree._Element:
    """Run one stage of an ad-hoc command (XEP-0050 §2.4) and return the reply iq.

    ``stanza`` is the request (``from`` stamped with the sender's full JID), ``payload`` its
    ``<command/>``; ``actor`` names the administrator in the security log and in the text the
    ended streams are closed with; ``online()`` gives (online accounts, online sessions) from
    the in-process router. Never raises for a client's mistake: every refusal is an error reply.
    """
    try:
        return await _dispatch(stanza, payload, actor=actor, online=online)
    except Refusal as refusal:
        return iq_error(stanza, refusal)


# ---------------------------------------------------------------------------------- dispatch
async def _dispatch(
    stanza: etree._Element,
    payload: etree._Element,
    *,
    actor: str,
    online: Callable[[], tuple[int, int]],
) -> etree._Element:
    if payload.tag != _Q_COMMAND:
        raise Refusal(StanzaErrorCondition.BAD_REQUEST, "not an ad-hoc command")
    if stanza.get("type") != "set":
        # XEP-0050 §2.4: commands are executed with iq type='set'.
        raise Refusal(StanzaErrorCondition.BAD_REQUEST, "commands are executed with an iq of type set")
    node = payload.get("node", "")
    if node not in _COMMANDS:
        raise Refusal(StanzaErrorCondition.ITEM_NOT_FOUND, f"no command {node!r}" if node else "no node")
    action = payload.get("action") or "execute"  # XEP-0050 §4.1: execute is the default
    if action not in _ACTIONS:
        raise Refusal(
            StanzaErrorCondition.BAD_REQUEST,
            f"unknown action {action!r}",
            application=(NS, "malformed-action"),
        )
    sender = stanza.get("from", "")
    sessionid = payload.get("sessionid")

    if sessionid is None:
        if action != "execute":
            raise Refusal(
                StanzaErrorCondition.BAD_REQUEST,
                f"the {action!r} action continues a command and needs its sessionid",
                application=(NS, "bad-sessionid"),
            )
        return await _start(stanza, node, online)

    session = _claim(sessionid, node, sender)
    if action == "cancel":
        # XEP-0050 §2.4.3: the session ends, the answer says so.
        reply, _command = _command_reply(stanza, node, sessionid, "canceled")
        return reply
    if action in ("next", "prev"):
        _keep(sessionid, session)
        raise Refusal(
            StanzaErrorCondition.BAD_REQUEST,
            "this command has a single form: complete it or cancel it",
            application=(NS, "bad-action"),
        )
    # Only end-user-session opens sessions, so the node is that one here.
    try:
        return await _end_user_session_submit(stanza, payload, sessionid, actor=actor)
    except Refusal:
        _keep(sessionid, session)
        raise


async def _start(stanza: etree._Element, node: str, online: Callable[[], tuple[int, int]]) -> etree._Element:
    """The first (for two commands the only) stage of a command."""
    if node == NODE_END_USER_SESSION:
        sessionid = _open(node, stanza.get("from", ""))
        reply, command = _command_reply(stanza, node, sessionid, "executing")
        actions = etree.SubElement(command, ns.qname(NS, "actions"), execute="complete")
        etree.SubElement(actions, ns.qname(NS, "complete"))
        form = _form(command, "form")
        etree.SubElement(form, ns.qname(DATA, "title")).text = "Ending a User Session"
        etree.SubElement(
            form, ns.qname(DATA, "instructions")
        ).text = "Fill out this form to end every session and FAST token of the accounts."
        _hidden_form_type(form)
        field = _field(form, "accountjids", "jid-multi", "The Jabber ID(s) for which to end sessions")
        etree.SubElement(field, ns.qname(DATA, "required"))
        return reply

    reply, command = _command_reply(stanza, node, secrets.token_urlsafe(16), "completed")
    form = _form(command, "result")
    _hidden_form_type(form)
    if node == NODE_ONLINE_USERS_NUM:
        accounts, sessions = online()
        _field(form, "onlineusersnum", "text-single", "The number of online users", str(accounts))
        _field(form, "x-onlinesessionsnum", "text-single", "The number of online sessions", str(sessions))
    else:  # NODE_REGISTERED_USERS_NUM
        count = await _registered_count()
        _field(form, "registeredusersnum", "text-single", "The number of registered users", str(count))
    return reply


# ---------------------------------------------------------------------------------- end-user-session
async def _end_user_session_submit(
    stanza: etree._Element, payload: etree._Element, sessionid: str, *, actor: str
) -> etree._Element:
    """XEP-0133 §4.5, second stage: end the sessions of the accounts in ``accountjids``."""
    form = payload.find(_Q_X)
    if form is None or form.get("type") != "submit":
        raise Refusal(
            StanzaErrorCondition.BAD_REQUEST,
            "submit the form (jabber:x:data type='submit')",
            application=(NS, "bad-payload"),
        )
    form_type = _values(form, "FORM_TYPE")
    if form_type and form_type != [ADMIN]:
        raise Refusal(
            StanzaErrorCondition.BAD_REQUEST, f"the FORM_TYPE is not {ADMIN}", application=(NS, "bad-payload")
        )
    raw = _values(form, "accountjids")
    if not raw:
        raise Refusal(
            StanzaErrorCondition.BAD_REQUEST, "accountjids is required", application=(NS, "bad-payload")
        )

    domain = prep_domain(settings.XMPP_DOMAIN)
    problems: list[str] = []
    accounts: dict[str, JID] = {}  # localpart -> bare JID, in the order given, without repeats
    for value in raw:
        try:
            jid = JID.parse(value).bare
        except InvalidJID:
            problems.append(f"{value} (not a valid JID)")
            continue
        if jid.local is None or jid.domain != domain:
            problems.append(f"{value} (not an account of {domain})")
            continue
        accounts.setdefault(jid.local, jid)

    unknown = await _end_sessions(list(accounts), actor, proceed=not problems)
    problems.extend(f"{accounts[local]} (no such account)" for local in unknown)
    if problems:
        raise Refusal(StanzaErrorCondition.BAD_REQUEST, "cannot end the sessions of " + ", ".join(problems))

    reply, command = _command_reply(stanza, NODE_END_USER_SESSION, sessionid, "completed")
    count = len(accounts)
    names = ", ".join(str(jid) for jid in accounts.values())
    note = etree.SubElement(command, ns.qname(NS, "note"), type="info")
    note.text = f"Ended every session and FAST token of {count} account{'' if count == 1 else 's'}: {names}."
    return reply


def _end_sessions_sync(localparts: list[str], actor: str, *, proceed: bool) -> list[str]:
    """End every session and FAST token of the accounts and return [], or return the names that
    are no account and do nothing; with ``proceed`` false only look. One transaction: the
    revocations are published when all of them are written."""
    with transaction.atomic():
        users = {user.username: user for user in User.objects.filter(username__in=localparts)}
        unknown = [local for local in localparts if local not in users]
        if unknown or not proceed:
            return unknown
        for local in localparts:
            end_user_sessions(users[local], actor=actor, reason=END_SESSION_REASON)
    return []


def _registered_count_sync() -> int:
    return User.objects.filter(is_active=True).count()


_end_sessions = off_loop(_end_sessions_sync)
_registered_count = off_loop(_registered_count_sync)


# ---------------------------------------------------------------------------------- sessions
def _sweep(now: float) -> None:
    for sessionid in [sid for sid, session in _sessions.items() if session.expires <= now]:
        del _sessions[sessionid]


def _open(node: str, owner: str) -> str:
    now = _clock()
    _sweep(now)
    while len(_sessions) >= MAX_SESSIONS:
        del _sessions[min(_sessions, key=lambda sid: _sessions[sid].expires)]
    sessionid = secrets.token_urlsafe(16)
    _sessions[sessionid] = _Session(node, owner, now + SESSION_LIFETIME)
    return sessionid


def _claim(sessionid: str, node: str, owner: str) -> _Session:
    """Take the session out of the table (so a concurrent request cannot use it too) or refuse."""
    _sweep(_clock())
    session = _sessions.get(sessionid)
    if session is None or session.node != node or session.owner != owner:
        raise Refusal(
            StanzaErrorCondition.BAD_REQUEST,
            "no such command session (unknown, expired or finished)",
            application=(NS, "bad-sessionid"),
        )
    del _sessions[sessionid]
    return session


def _keep(sessionid: str, session: _Session) -> None:
    """Put a claimed session back, unchanged (its expiry still counts from the start)."""
    if session.expires > _clock():
        _sessions[sessionid] = session


# ---------------------------------------------------------------------------------- builders
def _command_reply(
    stanza: etree._Element, node: str, sessionid: str, status: str
) -> tuple[etree._Element, etree._Element]:
    reply = iq_reply(stanza, "result")
    command = etree.SubElement(reply, _Q_COMMAND, nsmap=ns.default(NS))
    command.set("node", node)
    command.set("sessionid", sessionid)
    command.set("status", status)
    return reply, command


def _form(parent: etree._Element, form_type: str) -> etree._Element:
    form = etree.SubElement(parent, _Q_X, nsmap=ns.default(DATA))
    form.set("type", form_type)
    return form


def _hidden_form_type(form: etree._Element) -> None:
    field = etree.SubElement(form, _Q_FIELD, type="hidden", var="FORM_TYPE")
    etree.SubElement(field, _Q_VALUE).text = ADMIN


def _field(
    form: etree._Element, var: str, field_type: str, label: str, value: str | None = None
) -> etree._Element:
    field = etree.SubElement(form, _Q_FIELD, type=field_type, label=label, var=var)
    if value is not None:
        etree.SubElement(field, _Q_VALUE).text = value
    return field


def _values(form: etree._Element, var: str) -> list[str]:
    """The non-empty values of the form's field ``var`` (XEP-0004 §3.2), stripped."""
    for field in form.iter(_Q_FIELD):
        if field.get("var") == var:
            return [text for value in field.iter(_Q_VALUE) if (text := (value.text or "").strip())]
    return []
