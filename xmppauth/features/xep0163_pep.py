"""Personal Eventing Protocol, XEP-0163: the account's own PEP service and its contacts', over iq.

Registered for ``http://jabber.org/protocol/pubsub`` and its ``#owner`` namespace, on the account's
bare JID and on other accounts' (``contacts``): the request is parsed by the pure core
(``xmppauth/proto/xep0163_pep.py``) and run by ``xmppauth/pep.py`` (the one door to PEP state and its
notifications). The account's disco#info lists the ``pubsub``/``pep`` identity and the XEP-0060
features the service offers (XEP-0163 §6.1). Every request needs the ``presence`` scope (decided
before the handler runs).
"""

from __future__ import annotations

from lxml import etree

from xmppauth import features
from xmppauth.pep import SERVICE
from xmppauth.proto import ns
from xmppauth.proto import xep0163_pep as rules
from xmppauth.proto.jid import JID, InvalidJID
from xmppauth.proto.replies import Refusal, iq_reply


async def _on_iq(context: features.IqContext, stanza: etree._Element, payload: etree._Element) -> None:
    try:
        owner = JID.parse(stanza.get("to") or str(context.jid.bare)).bare
    except InvalidJID:  # the core checked it already
        owner = context.jid.bare
    try:
        request = rules.parse_pubsub(stanza.get("type", ""), payload)
        answer = await SERVICE.run(owner, context.jid, request)
    except Refusal as refusal:
        await context.answer(rules.error_reply(stanza, refusal))
        return
    reply = iq_reply(stanza, "result")
    if answer is not None:
        reply.append(answer)
    await context.answer(reply)
    await SERVICE.then(context.jid)


features.register(ns.PUBSUB, _on_iq, account_feature=True, contacts=True)
features.register(ns.PUBSUB_OWNER, _on_iq, contacts=True)
features.advertise_identity(*rules.IDENTITY)
for _feature in rules.FEATURES:
    features.advertise(_feature, account_feature=True)
