"""Several processes, one service: each process's sessions known to the others, stanzas carried between them.

With ``CHANNEL_LAYER_URL`` (Redis, channels_redis) every serving process joins the channel-layer group
``xmppauth.cluster`` with a channel of its own. Nothing here runs on the in-memory layer: one process
has no one to tell.

* **Stand-ins.** Each process tells the group when one of its sessions is bound, changes what routing
  looks at (availability, priority, last presence, carbons, scopes) or ends (the router's watcher
  calls, :meth:`Cluster.changed` and :meth:`Cluster.gone`). The others keep a :class:`StandIn` for it in
  their router, so that :meth:`Router.resources` gives an account's sessions wherever they are and the
  RFC 6121 decisions (full or bare JID, priorities, carbons, presence broadcast) are the same as in one
  process.
* **Delivery.** A stand-in's ``deliver`` sends the serialised stanza to its process's channel; that
  process checks it against the session's grant again (the grant is the owner's to enforce) and
  delivers it, pairs an iq with its request as for a local sender, and stores or bounces what finds
  the session gone (xmppauth/offline.py), as for a session that ends.
* **Liveness.** Every process says it is there each ``HEARTBEAT`` seconds, with how many sessions it
  holds; a process that hears a count other than the stand-ins it keeps for that process (or a
  process it does not know) asks for the whole list and replaces its stand-ins with it. A process not
  heard for ``NODE_TIMEOUT`` seconds is gone: its stand-ins go (their accounts' other resources hear
  them leave) and its session records are ended.

What goes out is sent in order by one kept task (a session's news never overtakes an earlier one);
a failure to reach the channel layer is logged (once, then every minute while it lasts) and the news
is dropped: the next heartbeat's count brings the others back in line.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import uuid
from typing import Any

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings
from lxml import etree

from sessions_acl.access import SessionAccess
from xmppauth import archive, blocking, offline, tasks
from xmppauth.control import CHANNEL_PREFIX, Outage, listen
from xmppauth.offloop import off_loop
from xmppauth.proto import xep0191_blocking
from xmppauth.proto.errors import StanzaErrorCondition, StreamErrorCondition
from xmppauth.proto.jid import JID, InvalidJID
from xmppauth.proto.xml_names import parse_element
from xmppauth.router import ROUTER, Router, Session

log = logging.getLogger("xmppauth.cluster")
_CONFLICT_REPLACED = "replaced by a new session with the same resource (on another server process)"
_CONFLICT_HELD = "that resource is held by another client or app password of this account"

GROUP = "xmppauth.cluster"
HEARTBEAT = 1.0  # seconds between a process's "here, with so many sessions"
NODE_TIMEOUT = 5.0  # seconds without a word after which a process counts as gone
BATCH = 200  # messages for one destination sent as one channel-layer message, at most
UNCONFIRMED_MAX = 100_000  # stanzas kept for one process until its heartbeat confirms them, at most
RESUME_WAIT = 1.0  # seconds a resume waits for the process holding the session to end it
OUTBOX_HIGH = 10_000  # messages queued for the channel layer at which stanzas for other processes wait


class StandIn:
    """Another process's session as this process's router sees it (router.Session)."""

    resume_id = None  # resumed only on the process that holds it

    def __init__(self, cluster: Cluster, channel: str, state: dict[str, Any]) -> None:
        self._cluster = cluster
        self.channel = channel
        self.jid: JID | None = JID.parse(state["jid"])
        self.directed_to: set[JID] = set()  # its directed presence is its own process's to track
        self.update(state)

    def update(self, state: dict[str, Any]) -> None:
        self.grant_id: int | None = state["grant"]
        # asked only what it may receive (its own process pairs answers and checks again)
        self.access: SessionAccess | None = SessionAccess(frozenset(state["scopes"]))
        self.feature_state: dict[str, object] = dict(state["features"])
        self.available = bool(state["available"])
        self.priority = int(state["priority"])
        self.last_presence: bytes | None = state["presence"]
        self.carbons = bool(state["carbons"])

    def __repr__(self) -> str:
        return f"<StandIn {self.jid} on {self.channel}>"

    def may_receive(self, kind: str, stanza_type: str) -> bool:
        return self.access is not None and self.access.may_receive(kind, stanza_type)

    async def deliver(self, data: bytes, urgent: bool = True) -> None:
        await self._cluster.send(
            self.channel, {"type": "cluster.deliver", "to": str(self.jid), "data": data, "urgent": urgent}
        )

    async def deliver_paired(
        self, kind: str, stanza_type: str, sender: JID | None, stanza_id: str | None, data: bytes
    ) -> None:
        pairing = [kind, stanza_type, str(sender) if sender is not None else "", stanza_id]
        await self._cluster.send(
            self.channel, {"type": "cluster.deliver", "to": str(self.jid), "data": data, "paired": pairing}
        )

    async def kick(self, condition: StreamErrorCondition, text: str) -> None:
        await self._cluster.send(
            self.channel,
            {"type": "cluster.kick", "to": str(self.jid), "condition": condition.value, "text": text},
        )

    # What only the session's own process does: it stores its own messages, answers its own client,
    # and applies revocations itself (xmppauth/control.py reaches every process).
    async def deliver_offline(self) -> None:
        return None

    async def bounce(self, stanza: etree._Element, condition: object, text: str) -> None:
        return None

    async def revoke(self, text: str) -> None:
        return None

    def regrant(self, scopes: frozenset[str]) -> None:
        return None


def session_state(session: Session) -> dict[str, Any]:
    """What another process needs of a local session to route to it."""
    access = getattr(session, "access", None)
    features = getattr(session, "feature_state", {})
    return {
        "jid": str(session.jid),
        "grant": session.grant_id,
        "scopes": sorted(access.scopes) if access is not None else [],
        # the features' per-session flags (an interested resource hears roster pushes, RFC 6121 §2.1.6)
        "features": {key: value for key, value in features.items() if isinstance(value, (bool, int, str))},
        "available": session.available,
        "priority": session.priority,
        "presence": session.last_presence,
        "carbons": session.carbons,
    }


@off_loop
def _end_records(node: str) -> int:
    from sessions_acl.records import close_node_sessions

    return close_node_sessions(node, "its server process stopped answering")


class Cluster:
    def __init__(self, router: Router = ROUTER) -> None:
        self.router = router
        self.node = ""
        self.channel: str | None = None
        self._layer: Any = None
        self._outbox: asyncio.Queue[tuple[str | None, dict[str, Any]]] = asyncio.Queue()
        self._heard: dict[str, tuple[float, str]] = {}  # channel -> (monotonic time, node name)
        self._tasks: list[asyncio.Task[None]] = []
        self._room = asyncio.Event()  # set while the outbox has room for stanzas
        self._asked: dict[str, asyncio.Future[bool]] = {}  # questions to the others, by their id
        self._heard_itself = 0.0  # when its own heartbeat last came back through the channel layer
        # stanzas sent to each process and not yet confirmed by its heartbeat (send), by channel
        self._unconfirmed: dict[str, collections.deque[tuple[int, dict[str, Any]]]] = {}
        self._numbered: dict[str, int] = {}  # the last number given to a stanza for each process
        self._handled: dict[str, int] = {}  # the last number handled of each process's stanzas to us
        self._bound: dict[JID, float] = {}  # when each local session's full JID was taken (wall clock)

    @property
    def active(self) -> bool:
        return self.channel is not None

    async def start(self) -> None:
        """Join the group (once per process) when the channel layer reaches other processes."""
        layer = get_channel_layer()
        if self._tasks or layer is None or isinstance(layer, InMemoryChannelLayer):
            return
        self._layer = layer
        self.node = settings.XMPP_NODE
        self.channel = await layer.new_channel(CHANNEL_PREFIX)
        self._outbox = asyncio.Queue()
        self.router.watcher = self
        self._tasks = [
            tasks.start(self._listen(), name="cluster: listener"),
            tasks.start(self._send_out(), name="cluster: sender"),
            tasks.start(self._beat(), name="cluster: heartbeat"),
        ]
        log.info("cluster: node %s on channel %s", self.node, self.channel)

    async def stop(self, seconds: float) -> None:
        """A normal stop: say goodbye (the others drop this process's stand-ins at once) and send
        what is still queued, for at most ``seconds``."""
        if not self.active:
            return
        self._queue(None, {"type": "cluster.bye", "handled": dict(self._handled)})
        try:
            await asyncio.wait_for(self._outbox.join(), seconds)
        except TimeoutError:
            log.warning("cluster: %d message(s) not sent before the stop", self._outbox.qsize())
        tasks.cancel(set(self._tasks))

    async def end_elsewhere(self, bare: JID, resume_id: str, grant_id: int | None) -> bool:
        """A client resumes (XEP-0198) a session this process does not hold: the process that holds it
        ends it, so that what its client had not acknowledged goes to the offline store now, not when
        its resumption window closes (a session is resumed only where its socket was: the client then
        binds anew, here). True when a process said it ended it, within RESUME_WAIT seconds."""
        if not self.active:
            return False
        question = uuid.uuid4().hex
        answer = asyncio.get_running_loop().create_future()
        self._asked[question] = answer
        message = {"type": "cluster.end_resumable", "jid": str(bare), "previd": resume_id, "grant": grant_id}
        self._queue(None, {**message, "question": question})
        try:
            return await asyncio.wait_for(answer, RESUME_WAIT)
        except TimeoutError:
            return False
        finally:
            self._asked.pop(question, None)

    async def _end_resumable(self, asker: str, message: dict[str, Any]) -> None:
        session = self.router.find_resumable(JID.parse(message["jid"]), str(message["previd"]))
        if session is None or session.grant_id is None or session.grant_id != message["grant"]:
            return  # not ours (or another client's: only its own client may end it by resuming)
        await session.kick(StreamErrorCondition.CONFLICT, "resumed on another server process")
        self._queue(asker, {"type": "cluster.ended", "question": message["question"]})

    def hears_itself(self) -> bool:
        """Its own heartbeat came back through the channel layer within the last NODE_TIMEOUT seconds."""
        return time.monotonic() - self._heard_itself < NODE_TIMEOUT

    # ------------------------------------------------------------------ the router's watcher
    def changed(self, session: Session) -> None:
        self._queue(None, {"type": "cluster.session", "state": self._state(session)})

    def blocklist_changed(self, account: JID) -> None:
        """The blocklist of ``account`` (bare) changed here: the others read it again (XEP-0191)."""
        self._queue(None, {"type": "cluster.blocklist", "jid": str(account)})

    def contacts_changed(self, account: JID) -> None:
        """The presence subscriptions of ``account`` (bare) changed here: the others read them again."""
        self._queue(None, {"type": "cluster.contacts", "jid": str(account)})

    def archive_prefs_changed(self, account: JID) -> None:
        """The archiving preferences of ``account`` (bare) changed here: the others read them again."""
        self._queue(None, {"type": "cluster.archive_prefs", "jid": str(account)})

    def gone(self, session: Session) -> None:
        if session.jid is not None:
            self._bound.pop(session.jid, None)
        self._queue(None, {"type": "cluster.gone", "jid": str(session.jid)})

    def _state(self, session: Session) -> dict[str, Any]:
        """:func:`session_state`, with when the session took its full JID here (a resumed stream
        continues its session: the JID stays taken since the first)."""
        state = session_state(session)
        assert session.jid is not None
        state["bound"] = self._bound.setdefault(session.jid, time.time())
        return state

    # ------------------------------------------------------------------ out
    def _queue(self, channel: str | None, message: dict[str, Any]) -> None:
        """Send ``message`` to ``channel`` (None: the group) after what is queued already."""
        if self.channel is not None:
            message["channel"] = self.channel
            self._outbox.put_nowait((channel, message))

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """A stanza for another process: in order with the news about this process's sessions; the
        sender waits while OUTBOX_HIGH messages wait for the channel layer (never buffered without end).

        A stanza is kept, numbered, until that process's heartbeat says it handled it: if the process
        dies first, what it had not handled is stored or bounced here (:meth:`_forget`), not lost with
        it. One it handled just before it died may then come twice; none is lost."""
        while self._outbox.qsize() >= OUTBOX_HIGH:
            self._room.clear()
            await self._room.wait()
        if message.get("type") == "cluster.deliver":
            kept = self._unconfirmed.setdefault(channel, collections.deque())
            number = self._numbered[channel] = self._numbered.get(channel, 0) + 1
            message["n"] = number
            if len(kept) >= UNCONFIRMED_MAX:
                kept.popleft()  # a process alive but not confirming: the oldest are its to deliver
            kept.append((number, message))
        self._queue(channel, message)

    def _confirmed(self, channel: str, handled: int) -> None:
        """The process on ``channel`` handled our stanzas up to number ``handled``."""
        kept = self._unconfirmed.get(channel)
        while kept and kept[0][0] <= handled:
            kept.popleft()

    def _send_list(self, channel: str) -> None:
        """Every session of this process, to the process listening on ``channel``."""
        states = [self._state(session) for session in self.router.sessions()]
        self._queue(channel, {"type": "cluster.list", "states": states})

    async def _send_out(self) -> None:
        """Send what is queued, in order. What waits for one destination is sent together, as one
        channel-layer message (``cluster.batch``, up to BATCH): one Redis round trip for many
        stanzas, so that traffic between two processes is not held to one stanza per round trip."""
        outage = Outage("cluster: sending to the channel layer")
        carry: tuple[str | None, dict[str, Any]] | None = None
        while True:
            head = carry if carry is not None else await self._outbox.get()
            carry = None
            run = [head[1]]
            while len(run) < BATCH and not self._outbox.empty():
                item = self._outbox.get_nowait()
                if item[0] != head[0]:
                    carry = item  # the next run starts with it
                    break
                run.append(item[1])
            try:
                await self._send_run(head[0], run, outage)
            finally:
                for _ in run:
                    self._outbox.task_done()
                if self._outbox.qsize() < OUTBOX_HIGH // 2:
                    self._room.set()

    async def _send_run(self, channel: str | None, run: list[dict[str, Any]], outage: Outage) -> None:
        message = (
            run[0] if len(run) == 1 else {"type": "cluster.batch", "channel": self.channel, "messages": run}
        )
        try:
            if channel is None:
                await self._layer.group_send(GROUP, message)
            else:
                await self._layer.send(channel, message)
            outage.over()
        except asyncio.CancelledError:
            raise
        except Exception:
            outage.failed("news dropped (the next heartbeats repair the others' view), stanzas stored")
            for one in run:
                if one.get("type") == "cluster.deliver":
                    await self._undeliverable(one)

    async def _undeliverable(self, message: dict[str, Any]) -> None:
        """A stanza the channel layer would not take for another process: a message goes to the
        offline store, an iq request is answered with an error (as for a session that ended)."""
        jid = JID.parse(message["to"])
        try:
            await offline.store_or_bounce([message["data"]], jid, None, what="unsendable", peer="cluster")
        except Exception:
            log.exception("cluster: a stanza for %s could be neither sent nor stored", jid)

    async def _beat(self) -> None:
        while True:
            count = len(self.router.sessions())
            self._queue(
                None, {"type": "cluster.beat", "node": self.node, "count": count, "handled": self._handled}
            )
            await self._forget_silent()
            await asyncio.sleep(HEARTBEAT)

    # ------------------------------------------------------------------ in
    async def _listen(self) -> None:
        assert self.channel is not None
        await listen(
            self._layer,
            self.channel,
            GROUP,
            self.handle,
            "cluster channel",
            "stanzas for other processes wait",
        )

    async def handle(self, message: dict[str, Any]) -> None:
        sender = str(message.get("channel", ""))
        if sender == self.channel:  # our own news, through the group: the channel layer works
            if message.get("type") == "cluster.beat":
                self._heard_itself = time.monotonic()
            return
        kind = message.get("type")
        if kind == "cluster.batch":
            for one in message["messages"]:
                await self.handle(one)
        elif kind == "cluster.deliver":
            await self._deliver(message)
        elif kind == "cluster.session":
            self._stand_in(sender, message["state"])
        elif kind == "cluster.gone":
            stand_in = self.router.stand_in_for(JID.parse(message["jid"]))
            if isinstance(stand_in, StandIn) and stand_in.channel == sender:
                self.router.drop_stand_in(stand_in)
        elif kind == "cluster.beat":
            self._beat_heard(sender, str(message.get("node", "")), int(message.get("count", 0)))
            assert self.channel is not None
            self._confirmed(sender, int(message.get("handled", {}).get(self.channel, 0)))
        elif kind == "cluster.list_please":
            self._send_list(sender)
        elif kind == "cluster.list":
            self._replace_stand_ins(sender, message["states"])
        elif kind == "cluster.kick":
            session = self.router.local(JID.parse(message["to"]))
            if session is not None:
                await session.kick(StreamErrorCondition(message["condition"]), str(message["text"]))
        elif kind == "cluster.end_resumable":
            await self._end_resumable(sender, message)
        elif kind == "cluster.ended":
            answer = self._asked.get(str(message.get("question")))
            if answer is not None and not answer.done():
                answer.set_result(True)
        elif kind == "cluster.archive_prefs":
            await archive.reload_prefs(JID.parse(message["jid"]))
        elif kind == "cluster.blocklist":
            await blocking.reload(JID.parse(message["jid"]))
        elif kind == "cluster.contacts":
            from xmppauth import subscriptions  # it routes through this module's router: imported late

            subscriptions.forget_contacts(JID.parse(message["jid"]))
        elif kind == "cluster.bye":
            assert self.channel is not None
            self._confirmed(sender, int(message.get("handled", {}).get(self.channel, 0)))
            await self._forget(sender, "it stopped")

    async def _deliver(self, message: dict[str, Any]) -> None:
        number = message.get("n")
        if number is not None:  # told back in our heartbeat, so that the sender may forget it
            self._handled[str(message["channel"])] = int(number)
        jid = JID.parse(message["to"])
        data: bytes = message["data"]
        session = self.router.local(jid)
        if session is None:  # it ended on the way: as for a session that ends with it queued
            await offline.store_or_bounce(
                [data], jid, None, what="arriving after its session", peer="cluster"
            )
            return
        if blocking.items(jid.bare) and await self._refused(jid, data):
            return
        pairing = message.get("paired")
        if pairing is not None:
            kind, stanza_type, sender, stanza_id = pairing
            await session.deliver_paired(
                kind, stanza_type, JID.parse(sender) if sender else None, stanza_id, data
            )
            return
        receivable = getattr(session, "receivable", None)
        if receivable is not None and not receivable(data):
            log.info("cluster: a stanza for %s that its grant no longer lets it receive: dropped", jid)
            return
        await session.deliver(data, bool(message.get("urgent", True)))

    async def _refused(self, to: JID, data: bytes) -> bool:
        """XEP-0191 §3.3 for a stanza from another process: the account ``to`` (bound here) blocks
        its sender, so it is dropped or, a message or a request, answered as if nobody were there."""
        try:
            stanza = parse_element(data)
            sender = JID.parse(stanza.get("from", ""))
        except (etree.XMLSyntaxError, InvalidJID):
            return False
        if sender.bare == to.bare or not blocking.Blocking().refuses(to.bare, sender):
            return False
        kind = etree.QName(stanza).localname
        if xep0191_blocking.inbound_decision(kind, stanza.get("type", "")) == "error":
            await self.router.return_error(stanza, StanzaErrorCondition.SERVICE_UNAVAILABLE, "")
        return True

    def _stand_in(self, channel: str, state: dict[str, Any]) -> None:
        jid = JID.parse(state["jid"])
        local = self.router.local(jid)
        if local is not None and not self._yields(local, channel, state):
            return  # the local session keeps the JID; the other process ends its own (same rule there)
        current = self.router.stand_in_for(jid)
        if isinstance(current, StandIn) and current.channel == channel:
            current.update(state)
        else:
            self.router.stand_in(StandIn(self, channel, state))

    def _yields(self, local: Session, channel: str, state: dict[str, Any]) -> bool:
        """Two processes bound one full JID at once (each before hearing of the other's): the rule of
        ``Router.bind`` decides, the same way on both sides. Within one grant the later binding keeps
        it; of two grants the earlier one does (a narrower credential never ends a wider session).
        Bindings are ordered by the time each process took the JID, then by channel name. Whether the
        local session lost: then it is ended with ``conflict`` here, and the stand-in takes its place."""
        assert local.jid is not None
        assert self.channel is not None
        mine = (self._bound.get(local.jid, 0.0), self.channel)
        theirs = (float(state.get("bound", 0.0)), channel)
        later_wins = local.grant_id == state["grant"]
        if (theirs > mine) != later_wins:
            return False
        log.info("resource conflict on %s with a session of %s: the session here ends", local.jid, channel)
        text = _CONFLICT_REPLACED if later_wins else _CONFLICT_HELD
        tasks.start(local.kick(StreamErrorCondition.CONFLICT, text), name=f"cluster: ending {local.jid}")
        self.router.unbind(local)
        return True

    def _replace_stand_ins(self, channel: str, states: list[dict[str, Any]]) -> None:
        listed = {state["jid"] for state in states}
        for stand_in in self._stand_ins_of(channel):
            if str(stand_in.jid) not in listed:
                self.router.drop_stand_in(stand_in)
        for state in states:
            self._stand_in(channel, state)

    def _stand_ins_of(self, channel: str) -> list[StandIn]:
        return [s for s in self.router.stand_ins() if isinstance(s, StandIn) and s.channel == channel]

    def _beat_heard(self, channel: str, node: str, count: int) -> None:
        known = channel in self._heard
        self._heard[channel] = (time.monotonic(), node)
        if not known:
            log.info("cluster: node %s (channel %s) is here", node, channel)
            if node == self.node:
                log.error(
                    "cluster: another process calls itself %s too: give each its own XMPP_NODE (session "
                    "records of one are ended when the other starts)",
                    node,
                )
            self._send_list(channel)  # a newcomer knows none of ours
        if not known or count != len(self._stand_ins_of(channel)):
            self._queue(channel, {"type": "cluster.list_please"})

    async def _forget_silent(self) -> None:
        horizon = time.monotonic() - NODE_TIMEOUT
        for channel, (heard, _node) in list(self._heard.items()):
            if heard < horizon:
                await self._forget(channel, f"not heard for {NODE_TIMEOUT:.0f} s", end_records=True)

    async def _forget(self, channel: str, why: str, end_records: bool = False) -> None:
        """A process is gone: its sessions are no longer here, and their accounts' other resources hear so."""
        _heard, node = self._heard.pop(channel, (0.0, ""))
        gone = self._stand_ins_of(channel)
        for stand_in in gone:
            if self.router.drop_stand_in(stand_in):
                await self.router.retract_presence(stand_in, only_here=True)
        log.warning(
            "cluster: node %s (channel %s) is gone (%s): %d session(s) with it", node, channel, why, len(gone)
        )
        self._numbered.pop(channel, None)
        self._handled.pop(channel, None)
        unconfirmed = self._unconfirmed.pop(channel, None) or ()
        if unconfirmed:
            log.warning(
                "cluster: %d stanza(s) not handled by node %s: stored or answered here",
                len(unconfirmed),
                node,
            )
        for _number, message in unconfirmed:
            await self._undeliverable(message)
        if end_records and node and node != self.node:
            ended = await _end_records(node)
            log.info("cluster: %d session record(s) of node %s ended", ended, node)


CLUSTER = Cluster()
