"""The Channels consumer that runs one XMPP client stream, whatever transport carries it.

The application of the ``xmpp`` ASGI scope: the TCP and WebSocket transports both speak its
message set (xmppauth/transport/__init__.py); the scope says only how the stream is framed. It
feeds the sans-IO :class:`~xmppauth.proto.stream.C2SStream`, answers the machine's
requests (credentials, grants, bind, resumption) and hands stanzas to the router. The requests
that protocols beyond the core bring go to their modules: iq namespaces to
:mod:`xmppauth.features`, SASL2 tasks to :mod:`xmppauth.sasl2_tasks`. The account's stored
messages (XEP-0160) are sent, a piece at a time, by :mod:`xmppauth.stored_delivery`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from channels.consumer import AsyncConsumer, get_handler_name
from channels.exceptions import StopConsumer
from django.conf import settings
from lxml import etree

from sessions_acl.access import PRESENCE, SessionAccess, session_scopes
from sessions_acl.login import Authorization
from xmppauth import (
    archive,
    blocking,
    caps,
    features,
    login_answers,
    offline,
    pep,
    services,
    stored_delivery,
    subscriptions,
    tasks,
)
from xmppauth.cluster import CLUSTER, StandIn
from xmppauth.control import CONTROL
from xmppauth.proto import events as ev
from xmppauth.proto import ns
from xmppauth.proto import xep0163_pep as pep_rules
from xmppauth.proto.access import Admission
from xmppauth.proto.errors import StanzaErrorCondition, StreamError, StreamErrorCondition
from xmppauth.proto.jid import JID
from xmppauth.proto.replies import Refusal
from xmppauth.proto.stream import C2SStream, StreamConfig, refusal
from xmppauth.proto.xep0198_sm import MAX_UNACKED, StreamManagement
from xmppauth.proto.xml_names import parse_element
from xmppauth.router import ROUTER, deliver_by_admission

log = logging.getLogger("xmppauth.c2s")

# Messages for an account with no available resource wait in its offline store (XEP-0160); presence
# goes to the account's subscribers, and subscriptions change the rosters of both sides (RFC 6121 §3-4).
ROUTER.keeper = offline.Keeper()
ROUTER.presences = subscriptions.Presences()
ROUTER.blocking = blocking.Blocking()  # XEP-0191: what an account blocks is neither sent nor received
ROUTER.archive = archive.Archive()  # XEP-0313: chat messages go to both accounts' archives
ROUTER.eventing = pep.Eventing()  # XEP-0163: presence with caps asks for PEP notifications

MAX_HELD = 256  # XEP-0352: held stanzas beyond this go out anyway
ACTIVITY_GRANULARITY = 60.0  # seconds: how often a busy session's record is told it is still active


# Events a stream handles before it lets the event loop run the others: 16 made a flooder's turns, with the
# archive's work per message, hold the other streams ~10 ms at the 99th percentile; 4, ~5-7 ms
# (docs/performance.md, seventh session). A client sending one stanza at a time never reaches it.
EVENTS_PER_TURN = 4

#: Every stream whose transport is there, bound or not (a normal stop tells each: xmppauth/shutdown.py).
STREAMS: set[StreamConsumer] = set()

_Q_PEP_EVENT = ns.qname(pep_rules.PUBSUB_EVENT, "event")
# The transport's name in the session record (sessions_acl.Session.transport), by scope "transport".
_RECORDED_TRANSPORT = {"starttls": "tcp-starttls", "directtls": "tcp-tls", "websocket": "websocket"}


@functools.cache
def stream_config() -> StreamConfig:
    served = features.advertised()
    return StreamConfig(
        domains=frozenset({settings.XMPP_DOMAIN}),
        max_stanza_bytes=settings.XMPP_MAX_STANZA_BYTES,
        max_preauth_stanza_bytes=settings.XMPP_MAX_PREAUTH_STANZA_BYTES,
        max_depth=settings.XMPP_MAX_DEPTH,
        allow_plain=settings.XMPP_SASL_PLAIN,
        sm_resume_seconds=settings.XMPP_SM_RESUME_SECONDS,
        fast=True,
        advertise_limits=True,
        driver_iq_namespaces=served.iq_namespaces,
        driver_contact_namespaces=served.contact_namespaces,
        driver_disco_nodes=served.disco_nodes,
        extra_server_features=served.server_features,
        extra_account_features=served.account_features,
        extra_account_identities=served.account_identities,
    )


def refusal_document(condition: str, text: str) -> bytes:
    """What the TCP transport tells a connection its limits refuse (xmppauth/transport/tcp.py)."""
    return refusal(stream_config(), StreamErrorCondition(condition), text)


@dataclass(frozen=True, kw_only=True, slots=True)
class ResumeState:
    """What a hibernated session hands to the stream that resumes it (XEP-0198 §5)."""

    jid: JID
    session_id: int | None
    available: bool
    priority: int
    last_presence: bytes | None
    directed_to: set[JID]
    held: list[bytes]  # XEP-0352: what waits while the client is inactive
    access: SessionAccess | None
    sm: StreamManagement
    feature_state: dict[str, object]  # the server features' state of the session (roster interest)
    stored: stored_delivery.HandOver  # its stored messages: taken and not acknowledged, and more to follow


class StreamConsumer(AsyncConsumer):  # type: ignore[misc]
    """One XMPP stream; a session in the router once a resource is bound."""

    # No channel-layer channel per connection: a process-wide listener (xmppauth/control.py)
    # hears control messages such as revocations and finds the sessions in the router.
    channel_layer = None

    stream: C2SStream | None = None
    jid: JID | None = None
    available = False
    priority = 0
    last_presence: bytes | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.directed_to: set[JID] = set()
        self._feed: Callable[[bytes], None] | None = None  # the stream's receive_data or receive_frame
        self._closed = False
        self._pumping = False  # _pump() is running (it is not entered twice: see there)
        self._turn = 0  # events handled since this stream last gave the others a turn
        self._timer: asyncio.TimerHandle | None = None
        self._told_bound = False  # the transport knows this stream is past authentication (xmpp.bound)
        self._peer = "?"
        self._held: list[bytes] = []  # XEP-0352: what waits while the client is inactive
        self._hibernating = False  # XEP-0198: transport gone, session kept for a resume
        self._taken_over = False  # resumed on another stream: this object no longer owns the session
        self._expiry: asyncio.TimerHandle | None = None
        self._login: login_answers.Login | None = None  # the answers to the core's login requests
        self._ack_timer: asyncio.TimerHandle | None = None
        self.auth: Authorization | None = None  # the grant this stream holds, once authenticated
        self.access: SessionAccess | None = None
        self.session_id: int | None = None  # its sessions_acl.Session row, once bound
        self._end_reason = ""
        self._touched = 0.0
        self._authorized_at = 0.0
        self.login_began = 0.0  # time.time() when the login read its credential (control.py)
        self._grant_timer: asyncio.TimerHandle | None = None
        self._transport = ""
        self.feature_state: dict[str, object] = {}  # xmppauth.features' per-session state
        self._address = ""
        self._tasks: set[asyncio.Task[Any]] = set()  # this session's background work (tasks.start)
        self._resuming: StreamConsumer | None = None  # the hibernated session being taken over
        self._transport_closed = False  # we closed it, or the client went away
        self._carbons_told = False  # the stream's carbons flag as the router was last told of it
        self._stored = stored_delivery.StoredDelivery(  # XEP-0160: the account's stored messages
            self,
            is_open=self._is_open,
            taken_over=lambda: self._taken_over,
            crash=self._crash,
            attempt=self._try,
            tell_transport=self._tell_transport,
            hold=lambda stanzas: self._held.extend(stanzas),
        )

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The ASGI application: one message from the transport at a time, straight to its handler.

        Channels' loop would also listen on a channel-layer channel, wrapping every receive in a
        task to wait on both; a stream listens to its transport only, so a plain loop does.

        Whatever a handler raises ends this stream, never the process's other streams: see
        :meth:`_crash`. Afterwards the application returns (the transport then closes too).
        """
        self.scope = scope
        self.base_send = send
        message: dict[str, Any] = {}
        STREAMS.add(self)
        try:
            while True:
                message = await receive()
                await self.dispatch(message)
        except StopConsumer:
            pass
        except Exception as exc:
            await self._crash(exc, f"handling {message.get('type', 'the connection')}")
        finally:
            STREAMS.discard(self)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels hops to a thread on every message to close stale DB connections; all our
        # database work goes through database_sync_to_async, which does that itself.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']}")
        await handler(message)

    # ------------------------------------------------------------------ the transport (scope "xmpp")
    async def xmpp_connect(self, message: dict[str, Any]) -> None:
        tls = message.get("tls")
        transport = str(self.scope.get("transport"))
        self._transport = _RECORDED_TRANSPORT.get(transport, transport)
        stream = C2SStream(
            stream_config(),
            framed=self.scope.get("xmpp_framing") == "websocket",
            secure=bool(message.get("encrypted", tls is not None)),
            starttls=transport == "starttls",
            channel_bindings=(tls or {}).get("channel_bindings"),
        )
        self._feed = stream.receive_frame if stream.framed else stream.receive_data
        self._start(stream)

    async def xmpp_receive(self, message: dict[str, Any]) -> None:
        if self._feed is not None:
            self._feed(message["bytes"])
            await self._pump()
            if self._stored.taken.mark is not None:
                await self._stored.acknowledged()
            if self.stream is not None and self.stream.carbons != self._carbons_told:
                self._carbons_told = self.stream.carbons  # XEP-0280 switched: other processes route by it
                ROUTER.changed(self)

    async def xmpp_tls_established(self, message: dict[str, Any]) -> None:
        if self.stream is not None and not self._closed:
            self.stream.tls_established(message["tls"].get("channel_bindings") or {})
            await self._pump()

    async def xmpp_disconnect(self, message: dict[str, Any]) -> None:
        await self._gone(message.get("reason", "disconnected"))

    async def xmpp_stream_error(self, message: dict[str, Any]) -> None:
        await self._close(StreamErrorCondition(message["condition"]), message["text"])

    # ------------------------------------------------------------------ the pump
    def _start(self, stream: C2SStream) -> None:
        self.stream = stream
        client = self.scope.get("client") or ("?", 0)
        self._peer = f"{client[0]}:{client[1]}"
        self._address = str(client[0])
        self._login = login_answers.Login(
            stream,
            address=self._address,
            peer=self._peer,
            is_open=self._is_open,
            admitted=self._admitted,
            past_first_step=self._past_authentication,
            failed=self._not_authenticated,
        )
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(settings.XMPP_PREAUTH_TIMEOUT, self._preauth_timeout)

    def _is_open(self) -> bool:
        return not self._closed

    async def _tell_transport(self, message_type: str, **fields: object) -> bool:
        """Send the transport one of the messages it may take (``xmpp_optional`` in its scope:
        transport/tcp.py); whether it takes it."""
        if message_type not in self.scope.get("xmpp_optional", ()):
            return False
        await self.send({"type": message_type, **fields})
        return True

    async def _past_authentication(self) -> None:
        """Tell the transport, once, that this stream is a user's: its credential was right (a second factor
        may follow) or it resumed a session. The connection limits no longer give it up to make room."""
        if not self._told_bound:
            self._told_bound = True
            await self._tell_transport("xmpp.bound")

    async def _not_authenticated(self) -> None:
        """A login attempt failed after its credential was right (a wrong second factor): the stream is
        nobody's again, one the limits may give up to make room (``xmpp.waiting``)."""
        if self._told_bound and self.jid is None:
            self._told_bound = False
            await self._tell_transport("xmpp.waiting")

    def _preauth_timeout(self) -> None:
        self._timer = None
        if self.stream is not None and self.jid is None and not self._closed:
            log.info("%s: not logged in after %d s: closed", self._peer, settings.XMPP_PREAUTH_TIMEOUT)
            self._background(
                self._close(StreamErrorCondition.CONNECTION_TIMEOUT, "too slow to log in"),
                "closing a stream too slow to log in",
            )

    async def _pump(self) -> None:
        stream = self.stream
        assert stream is not None
        if self._pumping:
            # A stanza delivered to this session while its own pump runs (a message to itself, or one
            # that arrives while the pump awaits the database): the running pump takes the events in
            # order; only the output goes now. Pumping again here would take the next inbound stanza
            # before the one being handled is done, and nest a level deeper for every stanza queued
            # (a flood of messages to one's own JID ended in RecursionError: found by bench/hardening.py).
            await self._flush()
            return
        self._pumping = True
        try:
            while not self._closed:
                event = stream.next_event()
                if event is None:
                    break
                await self._on_event(event)
                self._turn += 1
                if self._turn >= EVENTS_PER_TURN:
                    # A client that sent many stanzas at once does not hold the event loop until all are
                    # handled: the other streams get their turn (docs/performance.md, issue 12)
                    self._turn = 0
                    await asyncio.sleep(0)
        finally:
            self._pumping = False
        await self._flush()

    async def _on_event(self, event: ev.Event) -> None:
        stream = self.stream
        assert stream is not None
        if isinstance(event, ev.StanzaReceived):
            now = asyncio.get_running_loop().time()
            if now - self._touched >= ACTIVITY_GRANULARITY and self.session_id is not None:
                self._touched = now  # the session record's last activity, to the minute
                self._background(services.touch_session(self.session_id), "recording its activity")
            await ROUTER.route(self, event)
        elif isinstance(event, login_answers.EVENTS):
            assert self._login is not None
            await self._login.answer(event)
        elif isinstance(event, ev.IqRequest):
            await self._iq_request(event)
        elif isinstance(event, ev.IqAnswered):
            if self.jid is not None:
                caps.answered(self.jid, event.stanza)  # XEP-0115: the answer to our disco#info query
        elif isinstance(event, ev.StartTlsRequested):
            await self._flush()
            await self.send({"type": "xmpp.starttls"})
        elif isinstance(event, ev.BindRequested):
            await self._bind(event)
        elif isinstance(event, ev.ResumeRequested):
            await self._resume(event)
        elif isinstance(event, ev.ClientStateChanged):
            if event.active:
                self._release_held()
        elif isinstance(event, ev.StreamClosed):
            if event.condition is not None:
                log.info("%s stream error %s: %s", self._peer, event.condition.value, event.text)
                self._end_reason = self._end_reason or f"{event.condition.value}: {event.text}"
            elif event.by_peer:
                self._end_reason = self._end_reason or "closed by the client"
            await self._finish(by_peer=event.by_peer)

    def _admitted(
        self, auth: Authorization, access: SessionAccess, authorized_at: float, began: float
    ) -> None:
        """The login got the grant ``auth`` (read at ``authorized_at``; its credential read began at
        ``began``, wall clock), limited to ``access``."""
        self.auth, self.access, self._authorized_at, self.login_began = auth, access, authorized_at, began

    async def _bind(self, event: ev.BindRequested) -> None:
        stream = self.stream
        assert stream is not None
        assert stream.authenticated_localpart is not None
        assert stream.domain is not None
        assert self.auth is not None
        localpart, domain = stream.authenticated_localpart, stream.domain
        resource = await ROUTER.bind(self, localpart, domain, event.resource)
        if self._closed:
            return
        session_id = await services.open_session(
            self.auth,
            jid=str(JID(localpart, domain).with_resource(resource)),
            transport=self._transport,
            address=self._address,
            mechanism=self._how_authenticated(),
            node=settings.XMPP_NODE,
        )
        self.session_id = session_id
        self._touched = asyncio.get_running_loop().time()  # the record says it started just now
        if self._closed:
            await services.close_session(session_id, "connection lost while binding")
            return
        revoked = CONTROL.revoked_since(self._authorized_at, self.login_began, localpart, self.auth.grant_id)
        if revoked is not None:  # while it was logging in: no router entry yet to find it by
            self._end_reason = revoked
            await self._close(StreamErrorCondition.POLICY_VIOLATION, revoked)
            return
        if not blocking.fresh(JID(localpart, domain)):
            await blocking.load(JID(localpart, domain))  # routing checks it from memory from now on
        extra = ""
        if event.inline and ROUTER.archive is not None and self.may_receive("message", "chat"):
            # XEP-0386 §2.4: where the account's archive stands, so the client knows what to fetch;
            # and what waits stored and is archived is the client's to fetch, not to be sent (§2.3)
            extra = await archive.bound_metadata(self.auth.user_id)
            self._stored.fetches_archive = settings.XMPP_BIND2_OFFLINE_FROM_ARCHIVE
        self.jid = stream.bind_resource(resource, extra)
        await ROUTER.claim(self)  # anyone who took the JID meanwhile goes
        if not blocking.fresh(self.jid.bare):  # forgotten meanwhile (the process kept too many lists)
            await blocking.load(self.jid.bare)
        self._arm_grant_expiry()
        self._timer = _cancelled(self._timer)
        await self._past_authentication()
        log.info("%s bound %s", self._peer, self.jid)

    def _how_authenticated(self) -> str:
        """The mechanism, and the second factors passed after it, for the session record: "PLAIN+TOTP"."""
        mechanism = self.stream.mechanism_name if self.stream is not None else None
        factors = self._login.factors if self._login is not None else ()
        return "+".join((mechanism or "", *factors))

    def _arm_grant_expiry(self) -> None:
        expires = self.auth.grant_expires if self.auth is not None else None
        if expires is None:
            return
        from django.utils import timezone

        delay = max(0.0, (expires - timezone.now()).total_seconds())
        loop = asyncio.get_running_loop()
        self._grant_timer = loop.call_later(delay, self._grant_expired)

    def _grant_expired(self) -> None:
        self._grant_timer = None
        self._background(self.revoke("this session's grant expired"), "ending it when its grant expired")

    async def revoke(self, text: str) -> None:
        """A revocation names this session: close the stream (or end the hibernation) with ``text``.
        (A failure in doing so ends the session all the same: see :meth:`kick`.)"""
        self._end_reason = text
        log.info("%s: %s revoked: %s", self._peer, self.jid, text)
        await self.kick(StreamErrorCondition.POLICY_VIOLATION, text)

    def regrant(self, scopes: frozenset[str]) -> None:
        """Its grant was changed: from the next stanza on, these scopes (as limited for this login)."""
        auth = self.auth
        if auth is None or self.access is None:
            return
        self.access.scopes = session_scopes(
            scopes, app_password=auth.credential == "app-password", staff=auth.staff
        )
        if PRESENCE not in self.access.scopes and self.available:
            self._background(ROUTER.retract_presence(self), "withdrawing its presence")  # no longer shared
        # XEP-0352: presence and chat states held for an inactive client were routed under the old
        # scopes; what the new ones refuse is not written (none of it is kept offline anyway).
        if not self.access.may_receive_everything():
            self._held = [data for data in self._held if self.receivable(data)]
        ROUTER.changed(self)  # other processes check its scopes before they route to it
        log.info(
            "%s: %s now has %s", self._peer, self.jid, ", ".join(sorted(self.access.scopes)) or "no scopes"
        )

    def may_receive(self, kind: str, stanza_type: str) -> bool:
        access = self.access
        return access is None or access.may_receive(kind, stanza_type)

    def receivable(self, data: bytes) -> bool:
        """may_receive() for a stanza already serialised for this session (held or unacknowledged)."""
        stanza = parse_element(data)  # names in a dictionary of its own (proto/xml_names.py)
        kind = etree.QName(stanza).localname
        default = "available" if kind == "presence" else "normal"
        if kind == "message" and stanza.find(_Q_PEP_EVENT) is not None:
            kind = "pep"  # a XEP-0163 notification: the presence scope, as xmppauth/pep.py sent it
        return self.may_receive(kind, stanza.get("type") or default)

    async def deliver_paired(
        self, kind: str, stanza_type: str, sender: JID | None, stanza_id: str | None, data: bytes
    ) -> None:
        access = self.access
        admission = Admission.WHOLE if access is None else access.admit(kind, stanza_type, sender, stanza_id)
        await deliver_by_admission(self, admission, data)

    @property
    def grant_id(self) -> int | None:
        return self.auth.grant_id if self.auth is not None else None

    async def _iq_request(self, event: ev.IqRequest) -> None:
        """A request in a namespace (or disco node) of xmppauth.features: its handler answers."""
        assert self.auth is not None
        assert self.access is not None
        assert self.jid is not None
        handler = features.handler_for(event.payload)
        assert handler is not None  # the core hands over only what the features registered
        context = features.IqContext(
            user_id=self.auth.user_id,
            jid=self.jid,
            session_id=self.session_id,
            access=self.access,
            state=self.feature_state,
            answer=self._answer,
            account_sessions=self._account_sessions,
            credential=self.auth.credential,
            authenticated_ago=lambda: time.monotonic() - self._authorized_at,
        )
        before = dict(self.feature_state) if ROUTER.watcher is not None else None
        await handler(context, event.stanza, event.payload)
        if before is not None and before != self.feature_state:
            ROUTER.changed(self)  # other processes push to it by these flags (xmppauth/cluster.py)

    async def _answer(self, reply: etree._Element) -> None:
        if self.stream is not None and not self._closed:
            self.stream.send_stanza(reply)
            await self._flush()

    def _account_sessions(self) -> list[features.AccountSession]:
        """The account's bound sessions, this one included, in this process and the others."""
        assert self.jid is not None
        return [
            s
            for s in list(ROUTER.resources(self.jid.bare).values())
            if isinstance(s, (StreamConsumer, StandIn))
        ]

    async def _resume(self, event: ev.ResumeRequested) -> None:
        """XEP-0198 §5: continue a session of this account on this stream."""
        stream = self.stream
        assert stream is not None
        assert stream.authenticated_localpart is not None
        assert stream.domain is not None
        bare = JID(stream.authenticated_localpart, stream.domain)
        old = ROUTER.find_resumable(bare, event.previd)
        sm = old.stream.sm if isinstance(old, StreamConsumer) and old.stream is not None else None
        if not isinstance(old, StreamConsumer) or sm is None or old.jid is None:
            if old is None and await CLUSTER.end_elsewhere(bare, event.previd, self.grant_id):
                stream.resume_failed(
                    "that session was on another server process: it has ended, and what it had not "
                    "acknowledged is kept for you; bind a new session"
                )
                return
            stream.resume_failed("no session to resume (unknown, ended or expired)")
            return
        if old.grant_id is None or old.grant_id != self.grant_id:
            # A session is resumed by the client (or app password) it belongs to: another login of
            # the account, with another grant, would take over what was routed under that grant.
            stream.resume_failed("that session belongs to another client or app password of this account")
            return
        if event.h is not None:
            try:
                sm.check_acknowledgement(event.h)
            except StreamError as exc:  # XEP-0198 §4: this stream is at fault, the session is not
                await self._close(exc.condition, exc.text)
                return
        self._resuming = old  # until the router points here: see _crash
        taken = await old.take_over()
        if self._closed:  # our own stream went away meanwhile: the session hibernates on
            self._resuming = None
            old.release()
            return
        self.jid, self.session_id, self._held = taken.jid, taken.session_id, taken.held
        self.available, self.priority = taken.available, taken.priority
        self.last_presence, self.directed_to = taken.last_presence, taken.directed_to
        self.feature_state = taken.feature_state  # still an interested resource (RFC 6121 §2.1.6)
        self._stored.adopt(taken.stored)
        if self.access is not None and taken.access is not None:
            self.access.adopt(taken.access)  # answers to what it asked before the break still pass
        ROUTER.replace(old, self)
        self._resuming = None
        # Checked above; stanzas that its grant no longer lets it receive (narrowed while it was
        # away) are not retransmitted but stored or bounced.
        everything = self.access is None or self.access.may_receive_everything()
        keep = None if everything else self.receivable
        withheld = stream.resume_succeeded(taken.jid, taken.sm, event.h, keep=keep)
        # what it resends is owed to the client, megabytes at times: not a client that does not read
        await self._tell_transport("xmpp.owed", bytes=sum(map(len, taken.sm.unacked)))
        await self._stored.acknowledged()  # the resume's h may acknowledge what was stored as taken
        await self._store_or_bounce(withheld, "withheld")
        self._timer = _cancelled(self._timer)
        await self._past_authentication()
        self._arm_grant_expiry()
        if self.session_id is not None and self.auth is not None:
            await services.resume_session(
                self.session_id, self.auth, self._how_authenticated(), self._address
            )
        log.info("%s resumed %s", self._peer, self.jid)
        if taken.stored.to_follow:  # stored as they came; or the rest of a delivery in pieces
            await self._stored.deliver()

    # ------------------------------------------------------------------ being taken over (XEP-0198 §5)
    async def take_over(self) -> ResumeState:
        """Another stream resumes this hibernated session: this object stops owning it, closes its
        transport if still open, and hands over what the session is. The taker then either takes
        its place in the router, or gives it back with :meth:`release` or :meth:`fail_take_over`."""
        self._taken_over = True
        self._expiry = self._grant_timer = _cancelled(self._expiry, self._grant_timer)
        tasks.cancel(self._tasks)
        if not self._closed:
            self._closed = True
            if self.stream is not None:
                self.stream.close(StreamErrorCondition.CONFLICT, "this session was resumed on another stream")
            await self._flush()
            await self._close_transport()
        stream = self.stream
        assert stream is not None
        assert stream.sm is not None
        assert self.jid is not None
        return ResumeState(
            jid=self.jid,
            session_id=self.session_id,
            available=self.available,
            priority=self.priority,
            last_presence=self.last_presence,
            directed_to=self.directed_to,
            held=self._held,
            access=self.access,
            sm=stream.sm,
            feature_state=self.feature_state,
            stored=self._stored.hand_over(),
        )

    def release(self) -> None:
        """The stream that was taking this session over went away first: it hibernates on."""
        self._taken_over = False
        if not self._hibernating:
            self._hibernate()

    async def fail_take_over(self, reason: str) -> None:
        """The stream taking this session over failed half-way: the session ends, like any other."""
        self._taken_over = False
        self._end_reason = self._end_reason or reason
        await self._leave()

    def _ack_due(self) -> None:
        """XEP-0198: stanzas have waited a while unacknowledged; ask (again) for an <a/>."""
        self._ack_timer = None
        stream = self.stream
        if stream is None or self._closed or self._taken_over:
            return
        try:
            if stream.request_ack():
                loop = asyncio.get_running_loop()
                self._ack_timer = loop.call_later(settings.XMPP_SM_ACK_REQUEST_SECONDS, self._ack_due)
        except Exception as exc:
            self._background_failed("asking for an acknowledgement", exc)
            return
        self._background(self._flush(), "asking for an acknowledgement")

    def _release_held(self) -> None:
        if self._held and self.stream is not None:
            held, self._held = self._held, []
            for index, data in enumerate(held):
                try:
                    self.stream.send_raw(data)
                except Exception:
                    self._held = held[index:] + self._held  # what was not sent is kept for _leave
                    raise

    async def _flush(self) -> None:
        stream = self.stream
        if stream is None:
            return
        frames = stream.data_to_send()
        if not frames:
            return
        if self._ack_timer is None and stream.sm is not None and stream.sm.unacked:
            loop = asyncio.get_running_loop()
            self._ack_timer = loop.call_later(settings.XMPP_SM_ACK_REQUEST_SECONDS, self._ack_due)
        await self.send({"type": "xmpp.send", "frames": frames})

    async def _finish(self, *, by_peer: bool) -> None:
        """The stream is over: write what is left, close the transport, leave the router."""
        if self._closed:
            return
        self._closed = True
        await self._flush()
        await self._close_transport()
        await self._leave()

    async def _close_transport(self) -> None:
        self._transport_closed = True
        await self.send({"type": "xmpp.close"})

    async def _leave(self) -> None:
        """The session ends for good (not on a transport loss with resumption enabled).

        Each step runs even if one before it failed (the failure is logged): a session must never
        outlive its stream in the router or as a live record.
        """
        timers = (self._timer, self._expiry, self._ack_timer, self._grant_timer)
        self._timer = self._expiry = self._ack_timer = self._grant_timer = _cancelled(*timers)
        if self._taken_over:
            return
        self._taken_over = True  # once
        tasks.cancel(self._tasks)
        if self._login is not None:
            await self._try("logging a login left unfinished", self._login.abandoned)
        if not await self._try("leaving the router", ROUTER.session_ended, self) and ROUTER.unbind(self):
            await self._try("withdrawing its presence", ROUTER.retract_presence, self)
        if self.session_id is not None:
            reason = self._end_reason or "ended"
            await self._try("closing its session record", services.close_session, self.session_id, reason)
        stored = await self._try("storing what it had not acknowledged", self._dispose_unacked)
        if stored:  # the stored messages it was sent and had not acknowledged are stored again
            await self._try("forgetting stored messages it was sent", self._stored.taken.forget_all)

    async def _dispose_unacked(self) -> None:
        """XEP-0198 §6: what the client never acknowledged is stored or bounced, never dropped."""
        stream = self.stream
        sm = stream.sm if stream is not None else None
        held, self._held = self._held, []
        pending = list(sm.unacked) if sm is not None else []
        if sm is not None:
            sm.unacked.clear()
        pending.extend(held)
        await self._store_or_bounce(pending, "unacknowledged")

    async def _store_or_bounce(self, pending: list[bytes], what: str) -> None:
        if self.jid is not None:
            await offline.store_or_bounce(
                pending, self.jid, self.access, what=what, peer=self._peer, besides=self.session_id
            )

    def _hibernate(self) -> None:
        stream = self.stream
        assert stream is not None
        assert stream.sm is not None
        self._hibernating = True
        loop = asyncio.get_running_loop()
        self._expiry = loop.call_later(stream.sm.max_seconds, self._expired)
        log.info("%s: %s hibernates for up to %d s", self._peer, self.jid, stream.sm.max_seconds)
        self._stored.hibernating(stream.sm, self._peer)

    def _expired(self) -> None:
        self._expiry = None
        self._end_reason = self._end_reason or "not resumed in time"
        self._background(self._leave(), "ending a session not resumed in time")

    async def _close(self, condition: StreamErrorCondition, text: str) -> None:
        if self.stream is None or self._closed:
            return
        self._end_reason = self._end_reason or f"{condition.value}: {text}"
        self.stream.close(condition, text)
        await self._finish(by_peer=False)

    async def _gone(self, reason: str) -> None:
        self._end_reason = self._end_reason or f"connection lost ({reason})"
        self._transport_closed = True
        if not self._closed:
            self._closed = True
            stream = self.stream
            if stream is not None:
                stream.receive_eof()
            if self.resume_id is not None and self.jid is not None and not self._taken_over:
                self._hibernate()
            else:
                await self._leave()
        raise StopConsumer

    # ------------------------------------------------------------------ failures
    async def _crash(self, exc: BaseException, where: str) -> None:
        """Handling this stream raised ``exc`` (while ``where``): the stream ends, with the same
        clean-up as any other end. Called from every way into a session: the transport loop, the
        router's and the control listener's calls, timers and background tasks. Never raises.

        RFC 6120 §4.9.3.8: "The server has experienced a misconfiguration or other internal error
        that prevents it from servicing the stream." A StreamError from the core (say, too many
        unacknowledged stanzas) keeps its own condition.
        """
        if isinstance(exc, StreamError):
            condition, text = exc.condition, exc.text
            log.info("%s: stream error %s while %s: %s", self._peer, condition.value, where, text)
            reason = f"{condition.value}: {text}"
        else:
            condition, text = StreamErrorCondition.INTERNAL_SERVER_ERROR, "internal server error"
            log.error("%s: %s failed while %s", self._peer, self.jid or "a stream", where, exc_info=exc)
            reason = f"internal error while {where}"
        self._end_reason = self._end_reason or reason
        old, self._resuming = self._resuming, None
        if old is not None:
            # It failed half-way through taking over a hibernated session, which is still the old
            # object's (in the router, in the record): that one ends, and nothing of it stays here.
            self.jid, self.session_id, self._held = None, None, []
            await old.fail_take_over(reason)
        stream = self.stream
        if not self._closed:
            self._closed = True
            try:
                if stream is not None:
                    stream.close(condition, text)
            except Exception:
                log.exception("%s: the stream error could not be queued", self._peer)
        if not self._transport_closed:
            await self._try("sending the stream error", self._flush)
            await self._try("closing the connection", self._close_transport)
        await self._leave()

    async def _try(self, what: str, step: Callable[..., Awaitable[object]], *args: Any) -> bool:
        """One step of ending a stream; a failure is logged, and the steps after it still run."""
        try:
            await step(*args)
        except Exception:
            log.exception("%s: %s failed while ending %s", self._peer, what, self.jid or "a stream")
            return False
        return True

    def _background(self, work: Coroutine[Any, Any, object], what: str) -> None:
        """Run ``work`` for this session without waiting for it; if it fails, the session ends."""
        tasks.start(
            work,
            name=f"{self._peer}: {what}",
            group=self._tasks,
            on_error=functools.partial(self._background_failed, what),
        )

    def _background_failed(self, what: str, exc: BaseException) -> None:
        tasks.start(self._crash(exc, what), name=f"{self._peer}: ending the stream after {what} failed")

    # ------------------------------------------------------------------ the router's side of a session
    @property
    def carbons(self) -> bool:
        return self.stream is not None and self.stream.carbons

    @property
    def resume_id(self) -> str | None:
        sm = self.stream.sm if self.stream is not None else None
        return sm.resume_id if sm is not None else None

    # The router and the control listener call these from another stream's task (or their own): if
    # this session fails while handling the call, this session ends, not the caller's.

    async def deliver(self, data: bytes, urgent: bool = True) -> None:
        stream = self.stream
        if stream is None or self._taken_over:
            return
        try:
            if self._hibernating:
                if await self._stored.store_while_away(data, self._peer):
                    return
                if stream.sm is None or len(stream.sm.unacked) >= MAX_UNACKED:
                    self._held.append(data)  # kept offline with the rest
                    await self._leave()  # nobody is coming back for this much
                    return
                stream.queue_detached(data)
                return
            if self._closed:
                self._held.append(data)  # the session is ending: kept offline or bounced by _leave
                return
            if not stream.csi_active and not urgent and len(self._held) < MAX_HELD:
                self._held.append(data)
                return
            self._release_held()
            stream.send_raw(data)
        except Exception as exc:
            self._held.append(data)  # not queued: kept offline or bounced by _leave
            await self._crash(exc, "delivering a stanza")
            return
        try:
            await self._pump()
        except Exception as exc:
            await self._crash(exc, "delivering a stanza")

    async def deliver_offline(self) -> None:
        """Send the account's stored messages (XEP-0160): xmppauth/stored_delivery.py."""
        await self._stored.deliver()

    async def xmpp_drained(self, message: dict[str, Any]) -> None:
        """The transport says the client has read what it was sent: the next piece of stored messages."""
        await self._stored.drained()

    async def bounce(self, stanza: etree._Element, condition: object, text: str) -> None:
        """Return ``stanza`` to the client as an error: ``condition`` a StanzaErrorCondition (with
        ``text``), or a whole Refusal (its type and application condition too)."""
        if self.stream is None or self._closed:
            return
        if isinstance(condition, Refusal):
            refusal = condition
        elif isinstance(condition, StanzaErrorCondition):
            refusal = Refusal(condition, text)
        else:
            return
        try:
            self.stream.bounce(
                stanza,
                refusal.condition,
                refusal.text,
                error_type=refusal.error_type,
                application=refusal.application,
            )
            await self._flush()
        except Exception as exc:
            await self._crash(exc, "returning an error")

    async def kick(self, condition: StreamErrorCondition, text: str) -> None:
        try:
            if self._hibernating:
                self._end_reason = self._end_reason or f"{condition.value}: {text}"
                await self._leave()  # nothing to close: the session just ends
                return
            await self._close(condition, text)
        except Exception as exc:
            await self._crash(exc, f"closing the stream ({condition.value})")


def _cancelled(*timers: asyncio.TimerHandle | None) -> asyncio.TimerHandle | None:
    """Cancel the timers that are set; returns None, to forget them by."""
    for timer in timers:
        if timer is not None:
            timer.cancel()
    return None
