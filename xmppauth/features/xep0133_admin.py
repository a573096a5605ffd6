"""XEP-0133 service administration: three of its commands, run as XEP-0050 ad-hoc commands.

Implements XEP-0133 §4.5 (end-user-session), §4.13 (get-registered-users-num) and §4.15
(get-online-users-num), with the XEP-0068 ``FORM_TYPE`` ``http://jabber.org/protocol/admin``.
Each registers with :func:`.xep0050_commands.register_command` at import; that module runs them
(stages, sessions, errors, the command list) for sessions whose grant carries the ``admin`` scope.

* ``get-online-users-num`` (§4.15) and ``get-registered-users-num`` (§4.13): one stage,
  answered at once with ``status='completed'`` and a ``jabber:x:data`` result form (XEP-0004
  §3.1) whose hidden ``FORM_TYPE`` is ``http://jabber.org/protocol/admin`` (XEP-0068).
  Registered users are the active accounts; online users are the accounts with at least one
  session in this process, and the form adds the number of sessions as ``x-onlinesessionsnum``
  (an unregistered field, hence the ``x-`` prefix XEP-0068 asks for).
* ``end-user-session`` (§4.5): two stages. ``execute`` answers ``status='executing'`` with a form
  asking for ``accountjids``; submitting it ends every session and FAST token of each account
  named and completes with an info note. All accounts are checked before any is touched: one
  unknown account or foreign domain refuses the whole request with ``bad-request`` naming them
  (the command session stays open for a corrected form). A full JID names its account: every
  session of the account ends, not only that resource's.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from lxml import etree

from accounts.models import User
from sessions_acl.revocation import end_user_sessions
from xmppauth.features import xep0050_commands as adhoc
from xmppauth.offloop import off_loop
from xmppauth.proto import ns
from xmppauth.proto.errors import StanzaErrorCondition
from xmppauth.proto.jid import JID, InvalidJID, prep_domain
from xmppauth.proto.replies import Refusal

ADMIN = ns.ADMIN  # XEP-0133, also the FORM_TYPE of its forms

NODE_ONLINE_USERS_NUM = f"{ADMIN}#get-online-users-num"
NODE_REGISTERED_USERS_NUM = f"{ADMIN}#get-registered-users-num"
NODE_END_USER_SESSION = f"{ADMIN}#end-user-session"

END_SESSION_REASON = "ended by a server administrator"


# ---------------------------------------------------------------------------------- one-stage commands
def _completed_with_result(request: adhoc.CommandRequest) -> tuple[etree._Element, etree._Element]:
    """The completed reply and its result form, to add the fields to."""
    reply, command = adhoc.command_reply(request, "completed")
    form = adhoc.data_form(command, "result")
    adhoc.hidden_form_type(form, ADMIN)
    return reply, form


async def _online_users_num(request: adhoc.CommandRequest) -> etree._Element:
    """XEP-0133 §4.15, with the number of sessions as ``x-onlinesessionsnum``."""
    reply, form = _completed_with_result(request)
    accounts, sessions = request.online()
    adhoc.data_field(form, "onlineusersnum", "text-single", "The number of online users", str(accounts))
    adhoc.data_field(
        form, "x-onlinesessionsnum", "text-single", "The number of online sessions", str(sessions)
    )
    return reply


async def _registered_users_num(request: adhoc.CommandRequest) -> etree._Element:
    """XEP-0133 §4.13: the active accounts."""
    reply, form = _completed_with_result(request)
    count = await _registered_count()
    adhoc.data_field(form, "registeredusersnum", "text-single", "The number of registered users", str(count))
    return reply


# ---------------------------------------------------------------------------------- end-user-session
async def _end_user_session_start(request: adhoc.CommandRequest) -> etree._Element:
    """XEP-0133 §4.5, first stage: the form asking for ``accountjids``."""
    reply, command = adhoc.command_reply(request, "executing")
    actions = etree.SubElement(command, ns.qname(ns.COMMANDS, "actions"), execute="complete")
    etree.SubElement(actions, ns.qname(ns.COMMANDS, "complete"))
    form = adhoc.data_form(command, "form")
    etree.SubElement(form, ns.qname(ns.DATA_FORMS, "title")).text = "Ending a User Session"
    etree.SubElement(
        form, ns.qname(ns.DATA_FORMS, "instructions")
    ).text = "Fill out this form to end every session and FAST token of the accounts."
    adhoc.hidden_form_type(form, ADMIN)
    field = adhoc.data_field(form, "accountjids", "jid-multi", "The Jabber ID(s) for which to end sessions")
    etree.SubElement(field, ns.qname(ns.DATA_FORMS, "required"))
    return reply


async def _end_user_session_submit(request: adhoc.CommandRequest) -> etree._Element:
    """XEP-0133 §4.5, second stage: end the sessions of the accounts in ``accountjids``."""
    form = adhoc.submitted_form(request.payload, ADMIN)
    raw = adhoc.field_values(form, "accountjids")
    if not raw:
        raise Refusal(
            StanzaErrorCondition.BAD_REQUEST,
            "accountjids is required",
            application=(ns.COMMANDS, "bad-payload"),
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

    unknown = await _end_sessions(list(accounts), request.actor, proceed=not problems)
    problems.extend(f"{accounts[local]} (no such account)" for local in unknown)
    if problems:
        raise Refusal(StanzaErrorCondition.BAD_REQUEST, "cannot end the sessions of " + ", ".join(problems))

    reply, command = adhoc.command_reply(request, "completed")
    count = len(accounts)
    names = ", ".join(str(jid) for jid in accounts.values())
    note = etree.SubElement(command, ns.qname(ns.COMMANDS, "note"), type="info")
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


# The order of the command list.
adhoc.register_command(NODE_ONLINE_USERS_NUM, "Get Number of Online Users", start=_online_users_num)
adhoc.register_command(
    NODE_REGISTERED_USERS_NUM, "Get Number of Registered Users", start=_registered_users_num
)
adhoc.register_command(
    NODE_END_USER_SESSION,
    "End User Session",
    start=_end_user_session_start,
    submit=_end_user_session_submit,
)
