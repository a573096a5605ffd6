"""The Channels consumer that runs one XMPP client stream, over TCP or WebSocket.

The transport is either the raw TCP server (scope type ``xmpp``, see transport/tcp.py) or a
WebSocket on ``/xmpp-websocket`` (RFC 7395, subprotocol ``xmpp``). Both feed the same sans-IO
:class:`~xmppauth.proto.stream.C2SStream`; this class only moves bytes, answers the machine's
requests (credentials, bind, TLS) and hands stanzas to the router.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from autobahn.exception import Disconnected
from channels.consumer import AsyncConsumer, get_handler_name
from channels.exceptions import StopConsumer
from django.conf import settings
from lxml import etree

from sessions_acl.access import ADMIN, PRESENCE, ROSTER_READ, SessionAccess, session_scopes
from sessions_acl.cam import NS as CAM
from sessions_acl.services import Authorization, Refusal
from xmppauth import adhoc, register, roster, services, tasks
from xmppauth.control import CONTROL
from xmppauth.proto import events as ev
from xmppauth.proto import ns
from xmppauth.proto import xep0480_upgrade as upgrade
from xmppauth.proto import replies as stanzas
from xmppauth.proto.access import Admission
from xmppauth.proto.errors import SaslCondition, StanzaErrorCondition, StreamError, StreamErrorCondition
from xmppauth.proto.jid import JID, InvalidJID, prep_localpart
from xmppauth.proto.xep0198_sm import MAX_UNACKED
from xmppauth.proto.stream import C2SStream, StreamConfig
from xmppauth.proto.xml import serialize
from xmppauth.router import ROUTER

log = logging.getLogger("xmppauth.c2s")

WEBSOCKET_SUBPROTOCOL = "xmpp"
MAX_HELD = 256  # XEP-0352: held stanzas beyond this go out anyway
ACTIVITY_GRANULARITY = 60.0  # seconds: how often a busy session's record is told it is still active


@functools.cache
def stream_config() -> StreamConfig:
    return StreamConfig(
        domains=frozenset({settings.XMPP_DOMAIN}),
        max_stanza_bytes=settings.XMPP_MAX_STANZA_BYTES,
        max_preauth_stanza_bytes=settings.XMPP_MAX_PREAUTH_STANZA_BYTES,
        max_depth=settings.XMPP_MAX_DEPTH,
        allow_plain=settings.XMPP_SASL_PLAIN,
        sm_resume_seconds=settings.XMPP_SM_RESUME_SECONDS,
        fast=True,
        driver_iq_namespaces=frozenset({CAM, roster.NS, adhoc.NS, register.NS}),
        driver_disco_nodes=frozenset({adhoc.NS}),
        extra_server_features=(adhoc.NS,),
        extra_account_features=(CAM,),
    )


@functools.cache
def _tls_terminating_networks() -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(net, strict=False) for net in settings.XMPP_WS_TLS_TERMINATED_BY)


def websocket_is_encrypted(scope: dict[str, Any]) -> bool:
    """A WebSocket counts as encrypted over wss, or from a proxy trusted to have terminated TLS."""
    if scope.get("scheme") == "wss":
        return True
    client = scope.get("client") or ("", 0)
    try:
        address = ipaddress.ip_address(str(client[0]))
    except (TypeError, ValueError):
        return False
    return any(address in net for net in _tls_terminating_networks())


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
        self._websocket = False
        self._closed = False
        self._timer: asyncio.TimerHandle | None = None
        self._peer = "?"
        self._held: list[bytes] = []  # XEP-0352: what waits while the client is inactive
        self._hibernating = False  # XEP-0198: transport gone, session kept for a resume
        self._taken_over = False  # resumed on another stream: this object no longer owns the session
        self._expiry: asyncio.TimerHandle | None = None
        self._upgrade_salt = b""
        self._ack_timer: asyncio.TimerHandle | None = None
        self.auth: Authorization | None = None  # the grant this stream holds, once authenticated
        self.access: SessionAccess | None = None
        self.session_id: int | None = None  # its sessions_acl.Session row, once bound
        self._end_reason = ""
        self._touched = 0.0
        self._authorized_at = 0.0
        self._grant_timer: asyncio.TimerHandle | None = None
        self._transport = "websocket"
        self.roster_requested = False  # RFC 6121 §2.1.6: an "interested resource" gets roster pushes
        self._address = ""
        self._tasks: set[asyncio.Task[Any]] = set()  # this session's background work (tasks.start)
        self._resuming: StreamConsumer | None = None  # the hibernated session being taken over
        self._transport_closed = False  # we closed it, or the client went away

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
        try:
            while True:
                message = await receive()
                await self.dispatch(message)
        except StopConsumer:
            pass
        except Exception as exc:
            await self._crash(exc, f"handling {message.get('type', 'the connection')}")

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels hops to a thread on every message to close stale DB connections; all our
        # database work goes through database_sync_to_async, which does that itself.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']}")
        await handler(message)

    # ------------------------------------------------------------------ TCP transport (scope "xmpp")
    async def xmpp_connect(self, message: dict[str, Any]) -> None:
        tls = message.get("tls")
        self._transport = "tcp-starttls" if self.scope.get("transport") == "starttls" else "tcp-tls"
        self._start(
            C2SStream(
                stream_config(),
                framed=False,
                secure=tls is not None,
                starttls=self.scope.get("transport") == "starttls",
                channel_bindings=(tls or {}).get("channel_bindings"),
            )
        )

    async def xmpp_receive(self, message: dict[str, Any]) -> None:
        if self.stream is not None:
            self.stream.receive_data(message["bytes"])
            await self._pump()

    async def xmpp_tls_established(self, message: dict[str, Any]) -> None:
        if self.stream is not None and not self._closed:
            self.stream.tls_established(message["tls"].get("channel_bindings") or {})
            await self._pump()

    async def xmpp_disconnect(self, message: dict[str, Any]) -> None:
        await self._gone(message.get("reason", "disconnected"))

    # ------------------------------------------------------------------ WebSocket transport (RFC 7395)
    async def websocket_connect(self, message: dict[str, Any]) -> None:
        if WEBSOCKET_SUBPROTOCOL not in self.scope.get("subprotocols", ()):
            # RFC 7395 §3.3: the client MUST offer 'xmpp'; refusing before accept answers HTTP 403.
            await self.send({"type": "websocket.close"})
            return
        await self.send({"type": "websocket.accept", "subprotocol": WEBSOCKET_SUBPROTOCOL})
        self._websocket = True
        self._start(
            C2SStream(stream_config(), framed=True, secure=websocket_is_encrypted(self.scope), starttls=False)
        )

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        if self.stream is None:
            return
        text = message.get("text")
        if text is None:
            # RFC 7395 §3.2: "Data frame messages in the XMPP subprotocol MUST be of the text type
            # and contain UTF-8 encoded data." RFC 7395 names no condition; a binary frame is the
            # stream "improperly encoded", RFC 6120 §4.9.3.22, which §4.9.3.1 prefers to bad-format.
            # The error, then <close/>, then the WebSocket closes (RFC 7395 §3.5, §3.6).
            why = "XMPP over WebSocket uses text frames (RFC 7395 §3.2)"
            await self._close(StreamErrorCondition.UNSUPPORTED_ENCODING, why)
            return
        self.stream.receive_frame(text.encode())
        await self._pump()

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        await self._gone(f"websocket closed ({message.get('code')})")

    # ------------------------------------------------------------------ the pump
    def _start(self, stream: C2SStream) -> None:
        self.stream = stream
        client = self.scope.get("client") or ("?", 0)
        self._peer = f"{client[0]}:{client[1]}"
        self._address = str(client[0])
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(settings.XMPP_PREAUTH_TIMEOUT, self._preauth_timeout)

    def _preauth_timeout(self) -> None:
        self._timer = None
        if self.stream is not None and self.jid is None and not self._closed:
            self._background(
                self._close(StreamErrorCondition.CONNECTION_TIMEOUT, "too slow to log in"),
                "closing a stream too slow to log in",
            )

    async def _pump(self) -> None:
        stream = self.stream
        assert stream is not None
        while not self._closed:
            event = stream.next_event()
            if event is None:
                break
            await self._on_event(event)
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
        elif isinstance(event, ev.CredentialsNeeded):
            creds, alternatives = await services.scram_credentials(
                event.localpart, event.username, event.hash_name
            )
            if not self._closed:
                stream.provide_credentials(creds, alternatives)
        elif isinstance(event, ev.PasswordCheckNeeded):
            credential = await services.check_password(event.localpart, event.username, event.password)
            if not self._closed:
                stream.password_checked(credential is not None, credential or "")
        elif isinstance(event, ev.TokenCheckNeeded):
            candidates = await services.fast_candidates(event.localpart, event.user_agent_id)
            if not self._closed:
                stream.provide_tokens(candidates)
        elif isinstance(event, ev.IqRequest):
            await self._iq_request(event)
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
        elif isinstance(event, (ev.TaskStarted, ev.TaskData)):
            await self._task(event)
        elif isinstance(event, ev.Authenticated):
            await self._authorize(event)
        elif isinstance(event, ev.AuthFailed):
            log.info(
                "%s failed to authenticate as %r with %s: %s",
                self._peer,
                event.username,
                event.mechanism,
                event.condition.value,
            )
            if event.condition is not SaslCondition.ABORTED:
                localpart = stream.stream_from.local if stream.stream_from is not None else None
                await services.login_failed(
                    _localpart(event.username) or localpart,
                    event.mechanism,
                    event.condition.value,
                    self._address,
                )
        elif isinstance(event, ev.StreamClosed):
            if event.condition is not None:
                log.info("%s stream error %s: %s", self._peer, event.condition.value, event.text)
                self._end_reason = self._end_reason or f"{event.condition.value}: {event.text}"
            elif event.by_peer:
                self._end_reason = self._end_reason or "closed by the client"
            await self._finish(by_peer=event.by_peer)

    async def _authorize(self, event: ev.Authenticated) -> None:
        """The mechanism succeeded: find the grant this login gets (or refuse it), then tasks."""
        stream = self.stream
        assert stream is not None
        agent = event.user_agent
        authorizing = time.monotonic()  # a revocation applied from now on may have been missed by the read
        result = await services.authorize(
            event.localpart,
            credential_id=event.credential_id,
            mechanism=event.mechanism,
            user_agent_id=agent.id if agent is not None else None,
            software=agent.software if agent is not None else None,
            device=agent.device if agent is not None else None,
            fast_request=event.fast_request,
            fast_invalidate=event.fast_invalidate,
            fast_count=event.fast_count,
            address=self._address,
        )
        if self._closed:
            return
        if isinstance(result, Refusal):
            log.info("%s: login of %s refused: %s", self._peer, event.localpart, result.text)
            if not self._closed:  # the AuthFailed that follows goes to the security log
                stream.refuse(SaslCondition(result.condition), result.text)
            return
        self.auth = result
        self._authorized_at = authorizing
        self.access = SessionAccess(
            result.scopes, limit=settings.XMPP_PENDING_REQUESTS, seconds=settings.XMPP_PENDING_REQUEST_SECONDS
        )
        stream.access = self.access
        if result.token is not None:
            stream.issue_token(result.token.token, result.token.expiry)
        steps: list[list[str]] = []
        if event.upgrades and result.credential == "password":
            # XEP-0480 upgrades derive the account's keys from the password: never from an app
            # password or a token.
            missing = await services.missing_hashes(event.localpart)
            steps = [[task] for task in event.upgrades if upgrade.hash_of(task) in missing]
        if not self._closed:
            stream.continue_with(steps)
        log.info(
            "%s authenticated as %s with %s (%s, %s%s)",
            self._peer,
            event.localpart,
            event.mechanism,
            "SASL2" if event.profile == "sasl2" else "RFC 6120 SASL",
            result.credential if result.credential != "app-password" else f"app password {result.label!r}",
            f", {agent.software or '?'} on {agent.device or '?'}" if agent is not None else "",
        )

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
            mechanism=stream.mechanism_name or "",
            node=settings.XMPP_NODE,
        )
        self.session_id = session_id
        self._touched = asyncio.get_running_loop().time()  # the record says it started just now
        if self._closed:
            await services.close_session(session_id, "connection lost while binding")
            return
        revoked = CONTROL.revoked_since(self._authorized_at, localpart, self.auth.grant_id)
        if revoked is not None:  # while it was logging in: no router entry yet to find it by
            self._end_reason = revoked
            await self._close(StreamErrorCondition.POLICY_VIOLATION, revoked)
            return
        self.jid = stream.bind_resource(resource)
        await ROUTER.claim(self)  # anyone who took the JID meanwhile goes
        self._arm_grant_expiry()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        log.info("%s bound %s", self._peer, self.jid)

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
            self._held = [data for data in self._held if self._receivable(data)]
        log.info(
            "%s: %s now has %s", self._peer, self.jid, ", ".join(sorted(self.access.scopes)) or "no scopes"
        )

    def may_receive(self, kind: str, stanza_type: str) -> bool:
        access = self.access
        return access is None or access.may_receive(kind, stanza_type)

    def _receivable(self, data: bytes) -> bool:
        """may_receive() for a stanza already serialised for this session (held or unacknowledged)."""
        stanza = etree.fromstring(data)
        kind = etree.QName(stanza).localname
        default = "available" if kind == "presence" else "normal"
        return self.may_receive(kind, stanza.get("type") or default)

    def admit(self, kind: str, stanza_type: str, sender: JID | None, stanza_id: str | None) -> Admission:
        access = self.access
        return Admission.WHOLE if access is None else access.admit(kind, stanza_type, sender, stanza_id)

    @property
    def grant_id(self) -> int | None:
        return self.auth.grant_id if self.auth is not None else None

    async def _iq_request(self, event: ev.IqRequest) -> None:
        """Requests the core hands over: roster, XEP-0494 client management, XEP-0077 password
        change, XEP-0133 commands."""
        stream = self.stream
        assert stream is not None
        assert self.auth is not None
        assert self.jid is not None
        stanza, payload = event.stanza, event.payload
        namespace = etree.QName(payload).namespace
        if namespace == roster.NS:
            outcome = await roster.handle(self.auth.user_id, self.jid, stanza, payload)
            if stanza.get("type") == "get" and outcome.reply.get("type") == "result":
                self.roster_requested = True
            await self._answer(outcome.reply)
            if outcome.push is not None:
                await self._roster_push(outcome.push)
            return
        if payload.get("node") == adhoc.NS and namespace in (ns.DISCO_ITEMS, ns.DISCO_INFO):
            await self._answer(self._command_discovery(stanza, payload, namespace))
            return
        if namespace == register.NS:
            await self._answer(
                await register.handle(self.auth.user_id, self.session_id, self.jid, stanza, payload)
            )
            return
        if namespace == adhoc.NS:
            reply = await adhoc.handle(
                stanza, payload, actor=f"{self.jid} (XEP-0133)", online=ROUTER.online_counts
            )
            await self._answer(reply)
            return
        await self._client_management(stanza, payload)

    def _command_discovery(
        self, stanza: etree._Element, payload: etree._Element, namespace: str
    ) -> etree._Element:
        """XEP-0050 §2: the command list (the XEP-0133 commands, to sessions that may run them)."""
        reply = stanzas.iq_reply(stanza, "result")
        query = etree.SubElement(reply, ns.qname(namespace, "query"), nsmap=ns.default(namespace))
        query.set("node", adhoc.NS)
        if namespace == ns.DISCO_INFO:
            etree.SubElement(
                query, ns.qname(namespace, "identity"), category="automation", type="command-list"
            )
            return reply
        if self.access is not None and self.access.allows(ADMIN):
            for node, name in adhoc.command_items():
                etree.SubElement(
                    query, ns.qname(namespace, "item"), jid=settings.XMPP_DOMAIN, node=node, name=name
                )
        return reply

    async def _answer(self, reply: etree._Element) -> None:
        if self.stream is not None and not self._closed:
            self.stream.send_stanza(reply)
            await self._flush()

    async def _roster_push(self, push: etree._Element) -> None:
        """RFC 6121 §2.1.6: every interested resource of the account hears of the change."""
        assert self.jid is not None
        for session in list(ROUTER.resources(self.jid.bare).values()):
            if (
                isinstance(session, StreamConsumer)
                and session.roster_requested
                and session.access is not None
                and session.access.allows(ROSTER_READ)
                and session.jid is not None
            ):
                iq = roster.push_iq(push, session.jid, f"push-{secrets.token_hex(6)}")
                await session.deliver(serialize(iq))

    async def _client_management(self, stanza: etree._Element, payload: etree._Element) -> None:
        """XEP-0494: list the account's clients, or revoke one."""
        assert self.auth is not None
        local = etree.QName(payload).localname
        reply = stanzas.iq_reply(stanza, "result")
        if local == "list" and stanza.get("type") == "get":
            reply.append(await services.cam_list(self.auth.user_id))
        elif local == "revoke" and payload.get("id"):
            # XEP-0494 says set; slixmpp 1.17 sends its revoke as a get, so both are accepted.
            outcome = await services.cam_revoke(
                self.auth.user_id, payload.get("id", ""), f"{self.jid} (XEP-0494)"
            )
            if not outcome.found:
                reply = stanzas.iq_error(
                    stanza, stanzas.Refusal(StanzaErrorCondition.ITEM_NOT_FOUND, "no client with that id")
                )
            elif outcome.password_reset_required:
                text = (
                    "the client's sessions, tokens and grant were revoked, but it has used the "
                    "account password: change the password to keep it out"
                )
                refusal = stanzas.Refusal(
                    StanzaErrorCondition.SERVICE_UNAVAILABLE,
                    text,
                    application=(CAM, "password-reset-required"),
                )
                reply = stanzas.iq_error(stanza, refusal)
        else:
            expected = "expected <list/> (get) or <revoke id='…'/>"
            reply = stanzas.iq_error(stanza, stanzas.Refusal(StanzaErrorCondition.BAD_REQUEST, expected))
        await self._answer(reply)

    async def _task(self, event: ev.TaskStarted | ev.TaskData) -> None:
        """XEP-0388 tasks; today the XEP-0480 SCRAM upgrades (second factors plug in here)."""
        stream = self.stream
        assert stream is not None
        hash_name = upgrade.hash_of(event.task)
        if hash_name is None:
            stream.task_failed(SaslCondition.MALFORMED_REQUEST, f"no task {event.task}")
            return
        if isinstance(event, ev.TaskStarted):
            self._upgrade_salt = secrets.token_bytes(16)
            stream.task_challenge(upgrade.salt_challenge(self._upgrade_salt, settings.XMPP_SCRAM_ITERATIONS))
            return
        creds = upgrade.credentials_from_answer(
            event.payload, hash_name, salt=self._upgrade_salt, iterations=settings.XMPP_SCRAM_ITERATIONS
        )
        if creds is None:
            stream.task_failed(SaslCondition.MALFORMED_REQUEST, "expected <hash/> with the SaltedPassword")
            return
        assert stream.authenticated_localpart is not None
        await services.store_scram(stream.authenticated_localpart, hash_name, creds)
        log.info("%s: %s upgraded to SCRAM-%s", self._peer, stream.authenticated_localpart, hash_name)
        if not self._closed:
            stream.task_succeeded()

    async def _resume(self, event: ev.ResumeRequested) -> None:
        """XEP-0198 §5: continue a session of this account on this stream."""
        stream = self.stream
        assert stream is not None
        assert stream.authenticated_localpart is not None
        assert stream.domain is not None
        old = ROUTER.find_resumable(JID(stream.authenticated_localpart, stream.domain), event.previd)
        if (
            not isinstance(old, StreamConsumer)
            or old.stream is None
            or old.stream.sm is None
            or old.jid is None
        ):
            stream.resume_failed("no session to resume (unknown, ended or expired)")
            return
        if old.grant_id is None or old.grant_id != self.grant_id:
            # A session is resumed by the client (or app password) it belongs to: another login of
            # the account, with another grant, would take over what was routed under that grant.
            stream.resume_failed("that session belongs to another client or app password of this account")
            return
        if event.h is not None:
            try:
                old.stream.sm.check_acknowledgement(event.h)
            except StreamError as exc:  # XEP-0198 §4: this stream is at fault, the session is not
                await self._close(exc.condition, exc.text)
                return
        self._resuming = old  # until the router points here: see _crash
        await old._hand_over()
        if self._closed:  # our own stream went away meanwhile: the session hibernates on
            self._resuming = None
            old._taken_over = False
            if not old._hibernating:
                old._hibernate()
            return
        self.jid = old.jid
        self.session_id = old.session_id
        self.available, self.priority, self.last_presence = old.available, old.priority, old.last_presence
        self.directed_to, self._held = old.directed_to, old._held
        if self.access is not None and old.access is not None:
            self.access.adopt(old.access)  # answers to what it asked before the break still pass
        ROUTER.replace(old, self)
        self._resuming = None
        # Checked above; stanzas that its grant no longer lets it receive (narrowed while it was
        # away) are not retransmitted but stored or bounced.
        everything = self.access is None or self.access.may_receive_everything()
        keep = None if everything else self._receivable
        withheld = stream.resume_succeeded(old.jid, old.stream.sm, event.h, keep=keep)
        await self._store_or_bounce(withheld, "withheld")
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._arm_grant_expiry()
        if self.session_id is not None and self.auth is not None:
            await services.resume_session(
                self.session_id, self.auth, stream.mechanism_name or "", self._address
            )
        log.info("%s resumed %s", self._peer, self.jid)

    async def _hand_over(self) -> None:
        """Another stream resumes this session: stop owning it, close our transport if still open."""
        self._taken_over = True
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if self._grant_timer is not None:
            self._grant_timer.cancel()
            self._grant_timer = None
        tasks.cancel(self._tasks)
        if not self._closed:
            self._closed = True
            if self.stream is not None:
                self.stream.close(StreamErrorCondition.CONFLICT, "this session was resumed on another stream")
            await self._flush()
            await self._close_transport()

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
        if self._websocket:
            for frame in frames:
                if not await self._send_websocket({"type": "websocket.send", "text": frame.decode()}):
                    return
        else:
            await self.send({"type": "xmpp.send", "bytes": b"".join(frames)})

    async def _send_websocket(self, message: dict[str, Any]) -> bool:
        """Send to the WebSocket; False when the client has already gone (Daphne's protocol then
        raises autobahn's Disconnected, e.g. for our answer to a <close/> the client sent just
        before closing the socket). The disconnect message that follows ends the stream."""
        try:
            await self.send(message)
        except Disconnected:
            return False
        return True

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
        if self._websocket:
            await self._send_websocket({"type": "websocket.close", "code": 1000})
        else:
            await self.send({"type": "xmpp.close"})

    async def _leave(self) -> None:
        """The session ends for good (not on a transport loss with resumption enabled).

        Each step runs even if one before it failed (the failure is logged): a session must never
        outlive its stream in the router or as a live record.
        """
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        if self._grant_timer is not None:
            self._grant_timer.cancel()
            self._grant_timer = None
        if self._taken_over:
            return
        self._taken_over = True  # once
        tasks.cancel(self._tasks)
        if not await self._try("leaving the router", ROUTER.session_ended, self) and ROUTER.unbind(self):
            await self._try("withdrawing its presence", ROUTER.retract_presence, self)
        if self.session_id is not None:
            reason = self._end_reason or "ended"
            await self._try("closing its session record", services.close_session, self.session_id, reason)
        await self._try("storing what it had not acknowledged", self._dispose_unacked)

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
        """Messages of ``pending`` to the offline store, iq requests answered with an error."""
        if not pending or self.jid is None:
            return
        keep, bounces = unacked_disposition(pending, self.jid)
        if keep:
            stored = await services.store_offline(self.jid.local or "", keep)
            log.info("%s: %d %s message(s) kept offline for %s", self._peer, stored, what, self.jid.bare)
        for stanza in bounces:
            if self.access is not None:  # answered here: a late answer of its own would be a second
                with contextlib.suppress(InvalidJID):  # the sender's core stamped it
                    self.access.answered_for_it(JID.parse(stanza.get("from", "")), stanza.get("id"))
            await ROUTER.return_error(
                stanza, StanzaErrorCondition.SERVICE_UNAVAILABLE, "the recipient went away"
            )

    def _hibernate(self) -> None:
        stream = self.stream
        assert stream is not None
        assert stream.sm is not None
        self._hibernating = True
        loop = asyncio.get_running_loop()
        self._expiry = loop.call_later(stream.sm.max_seconds, self._expired)
        log.info("%s: %s hibernates for up to %d s", self._peer, self.jid, stream.sm.max_seconds)

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
            old._taken_over = False
            old._end_reason = old._end_reason or reason
            await old._leave()
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
        jid = self.jid
        if jid is None or jid.local is None or not self.may_receive("message", "chat"):
            return
        stored: list[tuple[bytes, str]] = []
        done = 0
        try:
            stored = await services.take_offline(jid.local)
            for data, stamp in stored:
                if self._taken_over:
                    break
                await self.deliver(with_delay(data, jid, stamp))
                done += 1
        except Exception as exc:
            self._held.extend(data for data, _ in stored[done:])  # back to the store with _leave
            await self._crash(exc, "delivering stored messages")
            return
        if done < len(stored):  # the session ended meanwhile: the rest waits for the next one
            rest = [data for data, _ in stored[done:]]
            await self._try("storing messages again", services.store_offline, jid.local, rest)

    async def bounce(self, stanza: etree._Element, condition: object, text: str) -> None:
        if self.stream is not None and not self._closed and isinstance(condition, StanzaErrorCondition):
            try:
                self.stream.bounce(stanza, condition, text)
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


def _localpart(username: str | None) -> str | None:
    try:
        return prep_localpart(username) if username else None
    except InvalidJID:
        return None


def unacked_disposition(pending: list[bytes], jid: JID) -> tuple[list[bytes], list[etree._Element]]:
    """Split unacknowledged stanzas: messages to keep offline (readdressed to the bare JID),
    iq requests to answer with an error; presence and errors are dropped, as RFC 6121 allows."""
    keep: list[bytes] = []
    bounces: list[etree._Element] = []
    for data in pending:
        try:
            stanza = etree.fromstring(data)
        except etree.XMLSyntaxError:  # pragma: no cover - we serialised it ourselves
            continue
        kind = etree.QName(stanza).localname
        stanza_type = stanza.get("type", "normal")
        if kind == "message" and stanza_type not in ("error", "groupchat"):
            if stanza.find(ns.qname(ns.CLIENT, "body")) is None:
                continue  # chat states and receipts without a body are not worth keeping
            stanza.set("to", str(jid.bare))
            keep.append(serialize(stanza))
        elif kind == "iq" and stanza_type in ("get", "set"):
            bounces.append(stanza)
    return keep, bounces


def with_delay(data: bytes, jid: JID, stamp: str) -> bytes:
    """XEP-0203: mark a stored message with when the server received it."""
    stanza = etree.fromstring(data)
    delay = etree.SubElement(stanza, ns.qname(ns.DELAY, "delay"), nsmap=ns.default(ns.DELAY))
    delay.set("from", jid.domain)
    delay.set("stamp", stamp)
    return serialize(stanza)
