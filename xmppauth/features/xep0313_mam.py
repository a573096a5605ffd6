"""Message Archive Management, XEP-0313 (with XEP-0059 paging and XEP-0441 preferences): the iq side.

Registered for ``urn:xmpp:mam:2`` on the account's bare JID (its disco#info lists ``urn:xmpp:mam:2`` and
``urn:xmpp:mam:2#extended``). A ``<query/>`` get answers the form's fields; a set answers a page of the
account's archive, each message in a ``<result/>`` to the session that asked, then the iq result with
``<fin/>`` (§4); ``<prefs/>`` reads and changes what is archived (XEP-0441); ``<metadata/>`` gives the
archive's first and last message (§5). The archive itself, and what goes in, is
``xmppauth/archive.py``. Every request needs ``messages.receive`` (decided before the handler runs):
the archive holds the account's messages, so it is read only by a session that may receive them.
"""

from __future__ import annotations

from lxml import etree

from xmppauth import archive, features
from xmppauth.cluster import CLUSTER
from xmppauth.proto import xep0059_rsm as rsm
from xmppauth.proto import xep0313_mam as mam
from xmppauth.proto.errors import StanzaErrorCondition
from xmppauth.proto.replies import Refusal, iq_error, iq_reply

DEFAULT_MAX = 50  # messages in a page when the client asks for no number
MAX_MAX = 250  # at most, whatever it asks


async def _on_iq(context: features.IqContext, stanza: etree._Element, payload: etree._Element) -> None:
    try:
        reply = await _answer(context, stanza, payload)
    except Refusal as refusal:
        reply = iq_error(stanza, refusal)
    await context.answer(reply)


async def _answer(
    context: features.IqContext, stanza: etree._Element, payload: etree._Element
) -> etree._Element:
    tag, iq_type = etree.QName(payload).localname, stanza.get("type")
    reply = iq_reply(stanza, "result")
    account = context.jid.bare
    if tag == "query" and iq_type == "get":
        reply.append(mam.form_fields())
    elif tag == "query" and iq_type == "set":
        reply.append(await _page(context, stanza, payload))
    elif tag == "prefs" and iq_type == "get":
        reply.append(mam.prefs_element(archive.prefs_of(account)))
    elif tag == "prefs" and iq_type == "set":
        prefs = mam.parse_prefs(payload)
        await archive.set_prefs(context.user_id, account, prefs)
        CLUSTER.archive_prefs_changed(account)
        reply.append(mam.prefs_element(prefs))
    elif tag == "metadata" and iq_type == "get":
        await archive.settled()
        first, last = await archive.bounds(context.user_id)
        reply.append(mam.metadata(first, last))
    else:
        raise Refusal(StanzaErrorCondition.BAD_REQUEST, f"no <{tag}/> {iq_type} in urn:xmpp:mam:2")
    return reply


async def _page(
    context: features.IqContext, stanza: etree._Element, payload: etree._Element
) -> etree._Element:
    request = mam.parse_query(stanza, payload, default_max=DEFAULT_MAX, max_max=MAX_MAX)
    await archive.settled()  # what was routed before the query is in the archive
    page = await archive.query(context.user_id, context.jid.bare, request)
    me = next((s for s in context.account_sessions() if s.jid == context.jid), None)
    shown = list(reversed(page.messages)) if request.flip else page.messages
    if me is not None:  # else it ended meanwhile
        for archive_id, stamp, data in shown:
            result = mam.result_message(
                context.jid, context.jid.bare, request.queryid, archive_id, stamp, data
            )
            await me.deliver(result)
    if page.messages:
        answer = rsm.result_set(page.messages[0][0], None, page.messages[-1][0], None)
    else:
        answer = rsm.result_set(None, None, None, None)
    return mam.fin(page.complete, answer)


features.register(mam.MAM, _on_iq, account_feature=True)
features.advertise(mam.MAM_EXTENDED, account_feature=True)
features.advertise(mam.SID, account_feature=True)  # XEP-0359 §8: the account's bare JID stamps <stanza-id/>
