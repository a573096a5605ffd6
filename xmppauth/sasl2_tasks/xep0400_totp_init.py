"""XEP-0400 Multi-Factor Authentication with TOTP: the ``TOTP-INIT`` task, setting up an authenticator
app during the login.

Offered after a password login of an account whose policy demands a second factor
(``xmpp_password_login = second-factor``) and that has none yet (``sessions_acl.login.authorize``
decides). The server's challenge is the new authenticator's ``otpauth://`` URI (XEP-0400: "a challenge
containing a TOTP URI"); the client shows it to the user (as a QR code) and answers with a current
code (docs/protocol/totp-task.md §7):

    C: <next xmlns='urn:xmpp:sasl:2' task='TOTP-INIT'/>
    S: <task-data xmlns='urn:xmpp:sasl:2'><setup xmlns='urn:xmpp:mfa:0'>otpauth://totp/…</setup></task-data>
    C: <task-data xmlns='urn:xmpp:sasl:2'><totp xmlns='urn:xmpp:mfa:0'>492039</totp></task-data>

A right code confirms the authenticator, which from then on is the account's second factor (the
``TOTP`` task); a wrong one fails the authentication and leaves it unconfirmed (the next attempt gets
a new URI). The URI is the secret: it is never logged.
"""

from __future__ import annotations

import logging

from lxml import etree

from sessions_acl.login import Authorization
from xmppauth import sasl2_tasks, services
from xmppauth.proto import events as ev
from xmppauth.proto import ns
from xmppauth.proto.errors import SaslCondition
from xmppauth.proto.xml import escape_text

log = logging.getLogger("xmppauth.mfa")

TOTP_INIT = "TOTP-INIT"
_Q_TOTP = ns.qname(ns.MFA, "totp")
_MAX_CODE = 16


async def offer(
    context: sasl2_tasks.TaskContext, event: ev.Authenticated, result: Authorization
) -> list[list[str]]:
    return [[TOTP_INIT]] if "totp-init" in result.second_factors else []


async def start(context: sasl2_tasks.TaskContext, name: str, payload: etree._Element | None) -> None:
    uri = await services.start_totp_setup(context.user_id)
    if uri is None:
        context.failed(
            SaslCondition.TEMPORARY_AUTH_FAILURE,
            "an authenticator cannot be set up on this server right now: the operator has been told",
        )
        return
    context.challenge(f"<setup xmlns='{ns.MFA}'>{escape_text(uri)}</setup>")


async def data(context: sasl2_tasks.TaskContext, name: str, payload: etree._Element | None) -> None:
    if payload is None or payload.tag != _Q_TOTP or len(payload):
        context.failed(SaslCondition.MALFORMED_REQUEST, f"expected <totp xmlns='{ns.MFA}'>CODE</totp>")
        return
    code = (payload.text or "").strip()[:_MAX_CODE]
    actor = f"{context.localpart} (XEP-0400 TOTP-INIT)"
    check = await services.confirm_totp_setup(context.user_id, code, actor)
    if not check.ok:
        context.failed(SaslCondition.NOT_AUTHORIZED, check.text)
        return
    log.info("%s: %s set up an authenticator app while logging in", context.peer, context.localpart)
    await context.succeeded(TOTP_INIT)


sasl2_tasks.register(
    names=frozenset({TOTP_INIT}), offer=offer, start=start, data=data, order=10, group="second-factor"
)
