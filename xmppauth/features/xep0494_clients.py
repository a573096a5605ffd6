"""XEP-0494 Client Access Management over XMPP: list the account's clients, or revoke one.

Registered (:mod:`xmppauth.features`) for ``urn:xmpp:cam:0``, listed among the account's features.
Only sessions holding ``clients.manage`` get here (checked before the handler runs). What a list
holds and what a revocation ends is :mod:`sessions_acl.xep0494`'s business, reached through
:mod:`xmppauth.services` (off the event loop); this module turns the request into a call and the
outcome into a reply.
"""

from __future__ import annotations

from lxml import etree

from xmppauth import features, services
from xmppauth.proto import ns
from xmppauth.proto.errors import StanzaErrorCondition
from xmppauth.proto.replies import Refusal, iq_error, iq_reply

NS = ns.CAM

_STILL_ADMITTED = (
    "the client's sessions, tokens and grant were revoked, but it has used the "
    "account password: change the password to keep it out"
)


async def _on_iq(context: features.IqContext, stanza: etree._Element, payload: etree._Element) -> None:
    local = etree.QName(payload).localname
    reply = iq_reply(stanza, "result")
    if local == "list" and stanza.get("type") == "get":
        reply.append(await services.cam_list(context.user_id))
    elif local == "revoke" and payload.get("id"):
        # XEP-0494 says set; slixmpp 1.17 sends its revoke as a get, so both are accepted.
        outcome = await services.cam_revoke(
            context.user_id, payload.get("id", ""), f"{context.jid} (XEP-0494)"
        )
        if not outcome.found:
            reply = iq_error(stanza, Refusal(StanzaErrorCondition.ITEM_NOT_FOUND, "no client with that id"))
        elif outcome.password_reset_required:
            # XEP-0494 §3.2: the revocation happened, but the password still lets the client in.
            refusal = Refusal(
                StanzaErrorCondition.SERVICE_UNAVAILABLE,
                _STILL_ADMITTED,
                application=(NS, "password-reset-required"),
            )
            reply = iq_error(stanza, refusal)
    else:
        expected = "expected <list/> (get) or <revoke id='…'/>"
        reply = iq_error(stanza, Refusal(StanzaErrorCondition.BAD_REQUEST, expected))
    await context.answer(reply)


features.register(NS, _on_iq, account_feature=True)
