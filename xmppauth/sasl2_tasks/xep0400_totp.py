"""XEP-0400 Multi-Factor Authentication with TOTP: the ``TOTP`` task, a second factor inside SASL2.

Offered after a password login of an account with a confirmed authenticator app (XEP-0400 §3: never
to an account that has not enrolled; never after a FAST token or an app password, which
``sessions_acl.login.authorize`` decides). It is one of the second-factor alternatives of a login
(``group="second-factor"``). The exchange, in ``urn:xmpp:mfa:0`` (the encoding is ours: XEP-0400
predates ``<task-data/>``; docs/protocol.md):

- the client picks the task; ``<next task='TOTP'><totp xmlns='urn:xmpp:mfa:0'>123456</totp></next>``
  carries the code at once (XEP-0400: "the response (or initial-response) SHALL be a TOTP code");
- otherwise the server sends an empty ``<totp xmlns='urn:xmpp:mfa:0'/>`` and the client answers
  ``<task-data><totp xmlns='urn:xmpp:mfa:0'>123456</totp></task-data>``.

A code is six digits (SHA-1, 30 s, one step of drift either side) and is accepted once per time step
on any process; wrong codes are throttled per account (``accounts.totp``). A wrong code fails the
task, and with it the authentication (XEP-0388 §2.7), with ``not-authorized`` and a text that says why.
"""

from __future__ import annotations

import logging

from lxml import etree

from sessions_acl.login import Authorization
from xmppauth import sasl2_tasks, services
from xmppauth.proto import events as ev
from xmppauth.proto import ns
from xmppauth.proto.errors import SaslCondition

log = logging.getLogger("xmppauth.c2s")

TOTP = "TOTP"
_Q_TOTP = ns.qname(ns.MFA, "totp")
_MAX_CODE = 16  # longer text is no code (and is not passed on)


async def offer(
    context: sasl2_tasks.TaskContext, event: ev.Authenticated, result: Authorization
) -> list[list[str]]:
    return [[TOTP]] if "totp" in result.second_factors else []


async def start(context: sasl2_tasks.TaskContext, name: str, payload: etree._Element | None) -> None:
    if payload is not None:
        await _check(context, payload)
        return
    context.challenge(f"<totp xmlns='{ns.MFA}'/>")


async def data(context: sasl2_tasks.TaskContext, name: str, payload: etree._Element | None) -> None:
    await _check(context, payload)


async def _check(context: sasl2_tasks.TaskContext, payload: etree._Element | None) -> None:
    if payload is None or payload.tag != _Q_TOTP or len(payload):
        context.failed(SaslCondition.MALFORMED_REQUEST, f"expected <totp xmlns='{ns.MFA}'>CODE</totp>")
        return
    code = (payload.text or "").strip()[:_MAX_CODE]
    check = await services.verify_totp(context.user_id, code)
    if not check.ok:
        log.info("%s: %s gave a wrong second factor (TOTP): %s", context.peer, context.localpart, check.text)
        context.failed(SaslCondition.NOT_AUTHORIZED, check.text)
        return
    await context.succeeded(TOTP)


sasl2_tasks.register(
    names=frozenset({TOTP}), offer=offer, start=start, data=data, order=10, group="second-factor"
)
