"""XEP-0115 entity capabilities: what a client's ``<c/>`` says it wants, asked once per software version.

A client's available presence carries ``<c hash node ver/>``; ``ver`` is a hash of its disco#info
(its features, among them the "NODE+notify" filters of XEP-0163 §4.2). :func:`notify_nodes` answers
from a cache of *verified* answers (§5.4: the hash of the answer matched ``ver``, so every client
advertising that ``ver`` has those features); an unknown ``ver`` is asked of that client with a
disco#info query from its own bare JID (as its PEP service), and the answer counts for that client
only unless it verifies. A client that does not answer within :data:`ANSWER_SECONDS` wants nothing.

The query goes straight to the session (it is the server's own question, not a routed stanza); the
answer comes back to the account's bare JID, where the stream core ends it and hands it over as an
:class:`~xmppauth.proto.events.IqAnswered`, which the consumer passes to :func:`answered`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from lxml import etree

from xmppauth.proto import ns
from xmppauth.proto import xep0163_pep as rules
from xmppauth.proto.jid import JID
from xmppauth.proto.xml import escape_attr

log = logging.getLogger("xmppauth.pep")

ANSWER_SECONDS = 10.0
KEPT = 10_000  # verified (hash, ver) pairs remembered; a software version is a handful of them
_Q_QUERY = ns.qname(ns.DISCO_INFO, "query")

_verified: OrderedDict[tuple[str, str], frozenset[str]] = OrderedDict()
_waiting: dict[tuple[str, str], asyncio.Future[etree._Element]] = {}


def known(caps: rules.Caps) -> frozenset[str] | None:
    """The nodes a verified ``caps`` wants notifications of, or None when not known yet."""
    key = (caps.hash, caps.ver)
    nodes = _verified.get(key)
    if nodes is not None:
        _verified.move_to_end(key)
    return nodes


async def notify_nodes(
    jid: JID, caps: rules.Caps, deliver: Callable[[bytes], Awaitable[None]]
) -> frozenset[str]:
    """The nodes the client at ``jid`` wants notifications of (XEP-0060 §9.2), asking it with
    ``deliver`` (its session's) when ``caps`` is not known."""
    nodes = known(caps)
    if nodes is not None:
        return nodes
    query_id = f"caps-{secrets.token_hex(8)}"
    key = (str(jid), query_id)
    waiting: asyncio.Future[etree._Element] = asyncio.get_running_loop().create_future()
    _waiting[key] = waiting
    try:
        await deliver(
            (
                f"<iq xmlns='{ns.CLIENT}' type='get' id='{query_id}' from='{escape_attr(str(jid.bare))}' "
                f"to='{escape_attr(str(jid))}'><query xmlns='{ns.DISCO_INFO}' "
                f"node='{escape_attr(caps.node)}#{escape_attr(caps.ver)}'/></iq>"
            ).encode()
        )
        answer = await asyncio.wait_for(waiting, ANSWER_SECONDS)
    except TimeoutError:
        log.info("%s did not answer its capabilities query (%s): no PEP notifications", jid, caps.ver)
        return frozenset()
    finally:
        _waiting.pop(key, None)
    query = answer.find(_Q_QUERY)
    if answer.get("type") != "result" or query is None:
        return frozenset()
    features = [f.get("var", "") for f in query.iterchildren(ns.qname(ns.DISCO_INFO, "feature"))]
    nodes = rules.notify_nodes(features)
    if rules.verify_caps(caps.ver, caps.hash, query):
        _verified[caps.hash, caps.ver] = nodes
        if len(_verified) > KEPT:
            _verified.popitem(last=False)
    else:  # XEP-0115 §5.4 step 3.8: good for this client, never for another advertising the same ver
        log.info("%s: its disco#info does not hash to its caps ver %s; not cached", jid, caps.ver)
    return nodes


def answered(jid: JID, stanza: etree._Element) -> None:
    """An iq result or error the client at ``jid`` sent to its bare JID: the answer to a query here?"""
    waiting = _waiting.pop((str(jid), stanza.get("id", "")), None)
    if waiting is not None and not waiting.done():
        waiting.set_result(stanza)
