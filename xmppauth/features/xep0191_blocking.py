"""Blocking Command, XEP-0191: the account's blocklist, read and changed over iq.

Registered for ``urn:xmpp:blocking`` (advertised in the server's disco#info, §2). ``<blocklist/>`` get
answers every item and makes the session one that hears of changes (§3.2); ``<block/>`` and
``<unblock/>`` sets change the list (``xmppauth/blocking.py``, the one door), are answered with an
empty result and pushed to every session of the account that asked for the list (§3.3-§3.5), on any
process. A block also tells the newly blocked contacts the account went away, an unblock shows them
its presence again (§3.3, §3.4: for contacts subscribed to it). Reading the list needs
``roster.read``, changing it ``roster.write`` (decided before the handler runs).
"""

from __future__ import annotations

from lxml import etree

from xmppauth import blocking, features, subscriptions
from xmppauth.cluster import CLUSTER
from xmppauth.proto import ns
from xmppauth.proto import xep0191_blocking as rules
from xmppauth.proto.jid import JID
from xmppauth.proto.replies import Refusal, iq_error, iq_reply

#: ``IqContext.state`` key: the session asked for the blocklist, so it hears of every change (§3.2).
INTERESTED = "xep0191_blocking.interested"
_Q_IQ = ns.qname(ns.CLIENT, "iq")


async def _on_iq(context: features.IqContext, stanza: etree._Element, payload: etree._Element) -> None:
    try:
        request = rules.parse(stanza.get("type", ""), payload)
        account = context.jid.bare
        if isinstance(request, rules.GetList):
            reply = iq_reply(stanza, "result")
            reply.append(rules.blocklist_result(sorted(blocking.items(account) or await _stored(account))))
            context.state[INTERESTED] = True
            await context.answer(reply)
            return
        changed = await blocking.change(account, request)
    except Refusal as refusal:
        await context.answer(iq_error(stanza, refusal))
        return
    await context.answer(iq_reply(stanza, "result"))
    if not changed:
        return  # nothing new: nothing to push (§3.3-§3.5 push what changed)
    CLUSTER.blocklist_changed(account)
    block = isinstance(request, rules.Block)
    everything = isinstance(request, rules.Unblock) and request.everything
    push = rules.push(block, () if everything else changed)
    await subscriptions.push_roster(
        context.account_sessions(), push, INTERESTED
    )  # the same push, its own key
    await subscriptions.blocklist_changed(account, changed, blocked=block)


async def _stored(account: JID) -> frozenset[str]:
    await blocking.load(account)  # only a session bound here asks, so the list is kept from now on
    return blocking.items(account)


features.register(rules.NS, _on_iq, server_feature=True)
