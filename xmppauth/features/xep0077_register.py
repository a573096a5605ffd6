"""XEP-0077 in-band registration, the part a logged-in account uses: changing its password (§3.3).

Allowed to sessions holding ``clients.manage`` (checked before this runs) that logged in with the account
password within ``XMPP_REAUTH_SECONDS`` (not with a FAST token or an app password, which a thief may
hold: ``IqContext.require_fresh_password``). A new password ends every
other session of the account and every FAST token (``User.set_password``, the one password door); the
session that changed it goes on. Registering new accounts and cancelling one in band are not offered.

Registered for ``jabber:iq:register`` (:mod:`xmppauth.features`).
"""

from __future__ import annotations

from lxml import etree

from accounts.models import User
from xmppauth import features
from xmppauth.offloop import off_loop
from xmppauth.proto import ns
from xmppauth.proto.errors import StanzaErrorCondition
from xmppauth.proto.replies import Refusal, iq_error, iq_reply
from xmppauth.proto.sasl import saslprep

NS = ns.REGISTER
_Q_QUERY = f"{{{NS}}}query"


def _child_text(payload: etree._Element, local: str) -> str | None:
    el = payload.find(f"{{{NS}}}{local}")
    return None if el is None else (el.text or "")


@off_loop
def _change(user_id: int, password: str, actor: str, session_id: int | None) -> None:
    user = User.objects.get(pk=user_id)
    user.set_password(password, actor=actor, except_session=session_id)
    user.save()


async def handle(
    context: features.IqContext, stanza: etree._Element, payload: etree._Element
) -> etree._Element:
    """Answer a jabber:iq:register get or set from the account's own session."""
    account, user_id, session_id = context.jid, context.user_id, context.session_id
    try:
        if payload.tag != _Q_QUERY:
            raise Refusal(StanzaErrorCondition.SERVICE_UNAVAILABLE, "not a jabber:iq:register query")
        if stanza.get("type") == "get":
            # XEP-0077 §3.2: already registered; the fields that can be changed.
            reply = iq_reply(stanza, "result")
            query = etree.SubElement(reply, _Q_QUERY, nsmap=ns.default(NS))
            etree.SubElement(query, f"{{{NS}}}registered")
            etree.SubElement(query, f"{{{NS}}}username").text = account.local
            etree.SubElement(query, f"{{{NS}}}password")
            return reply
        if payload.find(f"{{{NS}}}remove") is not None:
            raise Refusal(
                StanzaErrorCondition.NOT_ALLOWED, "accounts are not cancelled in band; ask the operator"
            )
        username, password = _child_text(payload, "username"), _child_text(payload, "password")
        if username is None or password is None:
            raise Refusal(
                StanzaErrorCondition.BAD_REQUEST, "a password change needs <username/> and <password/>"
            )
        if username.strip().lower() != (account.local or ""):
            raise Refusal(StanzaErrorCondition.BAD_REQUEST, "<username/> is not this account")
        # A stolen FAST token or app password must not lock the owner out of their own password.
        context.require_fresh_password("changing the password")
        if not password:
            raise Refusal(StanzaErrorCondition.NOT_ACCEPTABLE, "the new password is empty")
        try:
            saslprep(password)
        except ValueError as exc:
            raise Refusal(
                StanzaErrorCondition.NOT_ACCEPTABLE, f"the new password cannot be used: {exc}"
            ) from None
        await _change(user_id, password, f"{stanza.get('from')} (XEP-0077)", session_id)
        return iq_reply(stanza, "result")
    except Refusal as refusal:
        return iq_error(stanza, refusal)


async def _on_iq(context: features.IqContext, stanza: etree._Element, payload: etree._Element) -> None:
    await context.answer(await handle(context, stanza, payload))


features.register(NS, _on_iq)
