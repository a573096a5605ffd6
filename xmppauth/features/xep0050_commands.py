"""XEP-0050 ad-hoc commands: the command registry, command sessions, and the dispatch of each stage.

Implements XEP-0050 §2.1, §2.2 (disco of the command list), §2.4 (execution with ``execute``,
``complete`` and ``cancel``; §4.1 actions and ``sessionid``; §4.4 errors) and the XEP-0004 §3.1
forms the commands answer with. The commands themselves live in their own modules and register
here with :func:`register_command` at import (XEP-0133 administration: :mod:`.xep0133_admin`).

Registered (:mod:`xmppauth.features`) for ``http://jabber.org/protocol/commands``, listed among the
server's features, and for disco#info and disco#items of the server's node of that name: the
command list, whose items only sessions with the ``admin`` scope see. Only those sessions get to
run a command at all: ``sessions_acl.access`` requires ``admin`` for the whole namespace before
:func:`handle` runs.

A command has one or two stages. ``start`` answers the first ``execute``: at once with
``status='completed'``, or, for a command that also has a ``submit``, with ``status='executing'``
and a form; the submission (``complete``, or ``execute``, the default action of the form's
``<actions execute='complete'/>``, XEP-0050 §4.2) is handed to ``submit``. ``next`` and ``prev``
are ``bad-action``: no command has more than one form.

Command sessions (XEP-0050 §3.3, §4.1 ``sessionid``) are random (:mod:`secrets`), bound to the node
and to the full JID that started them, and kept in memory for :data:`SESSION_LIFETIME` seconds
(at most :data:`MAX_SESSIONS`, the oldest dropped first); only a command with a ``submit`` opens
one, the others get a sessionid nobody can continue. A sessionid that is unknown, expired,
already used, or presented by someone else is ``bad-request`` with ``<bad-sessionid/>``
(XEP-0050 §4.4). Ended and expired sessions are forgotten, so they cannot be told apart from
unknown ones, and the ``not-allowed``/``<session-expired/>`` that §4.4 defines for them is not
used. A refused submission leaves its session open, so the administrator can correct the form
and submit again. A submitted ``<x type='cancel'/>`` is refused as a bad payload
(:func:`submitted_form`), although XEP-0050 §3.5.1 says to treat it as a submission: for a
command that ends sessions, a form the client meant to cancel must not act.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from django.conf import settings
from lxml import etree

from sessions_acl.access import ADMIN as ADMIN_SCOPE
from xmppauth import features
from xmppauth.plugins import import_submodules
from xmppauth.proto import ns
from xmppauth.proto.errors import StanzaErrorCondition
from xmppauth.proto.replies import Refusal, iq_error, iq_reply
from xmppauth.router import ROUTER

NS = ns.COMMANDS  # XEP-0050
DATA = ns.DATA_FORMS  # XEP-0004

#: Seconds a multi-stage command session stays open (XEP-0050 leaves the timeout to the responder).
SESSION_LIFETIME = 600.0
#: Open command sessions kept at most; beyond it the oldest is dropped.
MAX_SESSIONS = 256

# XEP-0050 §4.1: the actions a requester may name.
_ACTIONS = frozenset({"execute", "cancel", "complete", "next", "prev"})

_Q_COMMAND = ns.qname(NS, "command")
_Q_X = ns.qname(DATA, "x")
_Q_FIELD = ns.qname(DATA, "field")
_Q_VALUE = ns.qname(DATA, "value")


@dataclass(frozen=True, kw_only=True, slots=True)
class CommandRequest:
    """One stage of a command, as the command's code sees it."""

    stanza: etree._Element  # the iq, ``from`` stamped with the sender's full JID
    payload: etree._Element  # its ``<command/>``
    node: str  # the command
    sessionid: str  # of this execution; open only while a command with a later stage waits for it
    actor: str  # names the administrator in the security log and in the texts the commands write
    online: Callable[[], tuple[int, int]]  # (online accounts, online sessions) of the in-process router


Stage = Callable[[CommandRequest], Awaitable[etree._Element]]
"""``stage(request)``: the reply iq (built with :func:`command_reply`). A client's mistake is a
:class:`~xmppauth.proto.replies.Refusal`, which :func:`handle` answers as an error."""


@dataclass(frozen=True, slots=True)
class _Command:
    name: str
    start: Stage
    submit: Stage | None


@dataclass(frozen=True)
class _Session:
    node: str
    owner: str
    expires: float
    submit: Stage


#: The commands by node, in the order they were registered (the order of the command list).
_commands: dict[str, _Command] = {}
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
    """XEP-0050 §2: the command list (the registered commands, to sessions that may run them)."""
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
def register_command(node: str, name: str, *, start: Stage, submit: Stage | None = None) -> None:
    """Offer the command ``node``, listed as ``name``: ``start`` answers its first stage and, if
    given, ``submit`` the form that stage asked for (the first stage then opens a session)."""
    if node in _commands:
        raise ValueError(f"two commands {node}")
    _commands[node] = _Command(name, start, submit)


def command_items() -> list[tuple[str, str]]:
    """``(node, name)`` of every command, for disco#items on node
    ``http://jabber.org/protocol/commands`` (XEP-0050 §2.2; the item's jid is the server)."""
    return [(node, command.name) for node, command in _registered().items()]


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
def _registered() -> dict[str, _Command]:
    """The commands, once every module of :mod:`xmppauth.features` (each registers its own) is imported."""
    import_submodules(features.__name__)
    return _commands


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
    command = _registered().get(node)
    if command is None:
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
    session: _Session | None = None
    if sessionid is None:
        if action != "execute":
            raise Refusal(
                StanzaErrorCondition.BAD_REQUEST,
                f"the {action!r} action continues a command and needs its sessionid",
                application=(NS, "bad-sessionid"),
            )
        # The first stage: a command with a later stage opens a session for it.
        sessionid = (
            secrets.token_urlsafe(16) if command.submit is None else _open(node, sender, command.submit)
        )
    else:
        session = _claim(sessionid, node, sender)
    request = CommandRequest(
        stanza=stanza, payload=payload, node=node, sessionid=sessionid, actor=actor, online=online
    )
    if session is None:
        return await command.start(request)
    # A later stage of the session just claimed.
    if action == "cancel":
        # XEP-0050 §2.4.3: the session ends, the answer says so.
        reply, _command = command_reply(request, "canceled")
        return reply
    if action in ("next", "prev"):
        _keep(sessionid, session)
        raise Refusal(
            StanzaErrorCondition.BAD_REQUEST,
            "this command has a single form: complete it or cancel it",
            application=(NS, "bad-action"),
        )
    try:
        return await session.submit(request)
    except Refusal:
        _keep(sessionid, session)
        raise


# ---------------------------------------------------------------------------------- sessions
def _sweep(now: float) -> None:
    for sessionid in [sid for sid, session in _sessions.items() if session.expires <= now]:
        del _sessions[sessionid]


def _open(node: str, owner: str, submit: Stage) -> str:
    now = _clock()
    _sweep(now)
    while len(_sessions) >= MAX_SESSIONS:
        del _sessions[min(_sessions, key=lambda sid: _sessions[sid].expires)]
    sessionid = secrets.token_urlsafe(16)
    _sessions[sessionid] = _Session(node, owner, now + SESSION_LIFETIME, submit)
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
def command_reply(request: CommandRequest, status: str) -> tuple[etree._Element, etree._Element]:
    """The result iq of ``request`` and its ``<command/>`` (node, sessionid, ``status``), to fill in."""
    reply = iq_reply(request.stanza, "result")
    command = etree.SubElement(reply, _Q_COMMAND, nsmap=ns.default(NS))
    command.set("node", request.node)
    command.set("sessionid", request.sessionid)
    command.set("status", status)
    return reply, command


def data_form(parent: etree._Element, form_type: str) -> etree._Element:
    """An empty ``jabber:x:data`` form of ``form_type`` (XEP-0004 §3.1: form, result…) in ``parent``."""
    form = etree.SubElement(parent, _Q_X, nsmap=ns.default(DATA))
    form.set("type", form_type)
    return form


def hidden_form_type(form: etree._Element, registered_as: str) -> None:
    """The hidden ``FORM_TYPE`` field (XEP-0068): the namespace that says what the form's fields mean."""
    field = etree.SubElement(form, _Q_FIELD, type="hidden", var="FORM_TYPE")
    etree.SubElement(field, _Q_VALUE).text = registered_as


def data_field(
    form: etree._Element, var: str, field_type: str, label: str, value: str | None = None
) -> etree._Element:
    """A field of ``form`` (XEP-0004 §3.2), with its value if given."""
    field = etree.SubElement(form, _Q_FIELD, type=field_type, label=label, var=var)
    if value is not None:
        etree.SubElement(field, _Q_VALUE).text = value
    return field


def field_values(form: etree._Element, var: str) -> list[str]:
    """The non-empty values of the form's field ``var`` (XEP-0004 §3.2), stripped."""
    for field in form.iter(_Q_FIELD):
        if field.get("var") == var:
            return [text for value in field.iter(_Q_VALUE) if (text := (value.text or "").strip())]
    return []


def submitted_form(payload: etree._Element, registered_as: str) -> etree._Element:
    """The form a later stage submits in ``payload``, or a ``bad-payload`` refusal: no form, one not
    of type ``submit`` (``cancel`` too, see the module's header), or another ``FORM_TYPE``."""
    form = payload.find(_Q_X)
    if form is None or form.get("type") != "submit":
        raise Refusal(
            StanzaErrorCondition.BAD_REQUEST,
            "submit the form (jabber:x:data type='submit')",
            application=(NS, "bad-payload"),
        )
    form_type = field_values(form, "FORM_TYPE")
    if form_type and form_type != [registered_as]:
        raise Refusal(
            StanzaErrorCondition.BAD_REQUEST,
            f"the FORM_TYPE is not {registered_as}",
            application=(NS, "bad-payload"),
        )
    return form
