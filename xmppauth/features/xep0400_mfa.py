"""XEP-0400 Multi-Factor Authentication with TOTP: voluntary enrolment of an authenticator app over XMPP.

Implements §2 (the server's disco feature ``urn:xmpp:mfa:0``) and §4 (enrolment: ``<iq type='set'><setup
xmlns='urn:xmpp:mfa:0'/></iq>`` answers with the ``otpauth://`` URI of a new, unconfirmed authenticator;
``<setup>CODE</setup>`` with a current code from it confirms it, and from then on every password login
of the account must pass the ``TOTP`` task, :mod:`xmppauth.sasl2_tasks.xep0400_totp`). The URI is the
secret: it goes to this session only, once, and is never logged.

Changing how the account logs in needs a fresh password login: a session that logged in with an app
password or a FAST token, or with the password more than :data:`REAUTH_SECONDS` ago, is refused with
``not-authorized`` and a text that says so. The scopes (``clients.manage``) are checked before the
request gets here (``sessions_acl/access.py``).
"""

from __future__ import annotations

from lxml import etree

from xmppauth import features, services
from xmppauth.proto import ns
from xmppauth.proto.errors import StanzaErrorCondition
from xmppauth.proto.replies import Refusal, iq_error, iq_reply

_Q_SETUP = ns.qname(ns.MFA, "setup")
_MAX_CODE = 16


async def _on_setup(context: features.IqContext, stanza: etree._Element, payload: etree._Element) -> None:
    try:
        reply = await _setup(context, stanza, payload)
    except Refusal as refusal:
        reply = iq_error(stanza, refusal)
    await context.answer(reply)


async def _setup(
    context: features.IqContext, stanza: etree._Element, payload: etree._Element
) -> etree._Element:
    if payload.tag != _Q_SETUP or stanza.get("type") != "set" or len(payload):
        raise Refusal(
            StanzaErrorCondition.BAD_REQUEST, f"expected <iq type='set'><setup xmlns='{ns.MFA}'/></iq>"
        )
    context.require_fresh_password("enrolling a second factor")
    code = (payload.text or "").strip()[:_MAX_CODE]
    reply = iq_reply(stanza, "result")
    if not code:
        uri = await services.start_totp_setup(context.user_id)
        if uri is None:
            raise Refusal(
                StanzaErrorCondition.INTERNAL_SERVER_ERROR,
                "second factors cannot be enrolled on this server right now: the operator has been told",
            )
        etree.SubElement(reply, _Q_SETUP, nsmap=ns.default(ns.MFA)).text = uri
        return reply
    check = await services.confirm_totp_setup(context.user_id, code, f"{context.jid} (XEP-0400)")
    if not check.ok:
        raise Refusal(StanzaErrorCondition.NOT_ACCEPTABLE, check.text)
    return reply


features.register(ns.MFA, _on_setup, server_feature=True)
