"""RFC 6120 client-to-server stream machine (sans-IO), for TCP and RFC 7395 WebSocket framing.

Theory of operation
-------------------
The driver (a Channels consumer) feeds bytes or WebSocket frames in with
:meth:`C2SStream.receive_data` / :meth:`C2SStream.receive_frame`, then calls
:meth:`C2SStream.next_event` until it returns None, writing :meth:`C2SStream.data_to_send` after
each event. Parsed top-level elements wait in an inbox and are handled one at a time, so that a
request event (credentials, password check, bind, TLS) pauses the machine until the driver answers
it (:class:`~.states.Waiting`); elements that arrived meanwhile are handled afterwards, in order.

This module is the stream itself: the header (RFC 6120 §4.7), the features, STARTTLS (§5), the
restarts (§4.3.3), stream errors (§4.9) and the dispatch of each element to the negotiator of the
state it arrives in. The states, what each accepts and the moves between them are in
:mod:`.states`; each protocol is a module of its own that the stream holds:

======================  ==========================================================
:mod:`.rfc6120_sasl`    RFC 6120 §6 SASL, and the mechanism exchange SASL2 shares
:mod:`.xep0388_sasl2`   XEP-0388 SASL2 and its tasks
:mod:`.xep0484_fast`    XEP-0484 FAST tokens
:mod:`.xep0474_ssdp`    XEP-0474 SCRAM downgrade protection
:mod:`.xep0440_channel_binding` XEP-0440 channel-binding types
:mod:`.xep0480_upgrade` XEP-0480 SCRAM upgrade tasks
:mod:`.rfc6120_bind`    RFC 6120 §7 resource binding (and the legacy session iq)
:mod:`.xep0386_bind2`   XEP-0386 Bind2
:mod:`.xep0198_sm`      XEP-0198 stream management
:mod:`.rfc6120_stanzas` RFC 6120 §8 stanza checks, and the iqs the core answers
                        (XEP-0030 disco, XEP-0199 ping, XEP-0280 carbons)
:mod:`.xep0352_csi`     XEP-0352 client state indication
======================  ==========================================================

Every error from the peer ends in :meth:`C2SStream._fail`, which queues a stream error (preceded
by our header when none was sent yet), closes the stream and moves to CLOSED; a stream error is
final. Once bound, every stanza the client sends is put to :attr:`C2SStream.access` (see
:mod:`.access`) before the core handles or routes it.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from lxml import etree

from . import ns, rfc6121_roster, xep0198_sm, xep0352_csi, xep0440_channel_binding, xep0478_limits
from .access import AccessPolicy
from .errors import (
    LocalProtocolError,
    SaslCondition,
    StanzaErrorCondition,
    StreamError,
    StreamErrorCondition,
)
from .events import Event, StartTlsRequested, StreamClosed
from .jid import JID, InvalidJID, parse_jid
from .replies import error_element
from .rfc6120_bind import Binding
from .rfc6120_sasl import SaslExchange, is_auth_element
from .rfc6120_stanzas import StanzaHandler
from .sasl import ScramCredentials, TokenCandidate
from .states import State, Waiting, check_move
from .xep0198_sm import StreamManagement, request_element
from .xep0388_sasl2 import Sasl2
from .xep0484_fast import Fast
from .xml import ParseEvent, StreamEnded, StreamOpened, StreamParser, escape_attr, escape_text, serialize

__all__ = ["C2SStream", "State", "StreamConfig", "Waiting", "parse_jid"]

_Q_IQ = ns.qname(ns.CLIENT, "iq")
_Q_STARTTLS = ns.qname(ns.TLS, "starttls")
_Q_STREAM = ns.qname(ns.STREAMS, "stream")


@dataclass(frozen=True, kw_only=True, slots=True)
class StreamConfig:
    """What the machine needs to know about the server; no Django settings inside the core."""

    domains: frozenset[str]
    max_stanza_bytes: int = 256 * 1024
    max_preauth_stanza_bytes: int = 10_000
    max_depth: int = 48
    allow_plain: bool = True
    lang: str = "en"
    server_name: str = "xmppauth"
    sm_resume_seconds: int = 300
    # XEP-0484 FAST: advertise and accept the HT-* token mechanisms inside SASL2
    fast: bool = False
    # iq get/set to the server or the account's bare JID in these namespaces become IqRequest
    # events for the driver, where the core would otherwise answer service-unavailable (the
    # namespaces the core answers itself, ping, disco, carbons and session, stay with the core)
    driver_iq_namespaces: frozenset[str] = frozenset()
    # and iq get/set to another account of ours (its bare JID) in these, with target "contact": the
    # server answers on the account's behalf (RFC 6121 §8.5.2.1.3 "implements nothing" otherwise)
    driver_contact_namespaces: frozenset[str] = frozenset()
    # XEP-0030 features added to the disco#info of the server and of the account
    extra_server_features: tuple[str, ...] = ()
    extra_account_features: tuple[str, ...] = ()
    # and identities (category, type) besides account/registered, e.g. XEP-0163's pubsub/pep
    extra_account_identities: tuple[tuple[str, str], ...] = ()
    # XEP-0030 disco#info / disco#items of these nodes of the server become IqRequest events too
    # (e.g. XEP-0050's command list, whose answer depends on the session's grant)
    driver_disco_nodes: frozenset[str] = frozenset()
    # XEP-0478: announce the stanza size limit of the stream (<limits/>) in every <stream:features/>
    advertise_limits: bool = False


class C2SStream:
    """One client-to-server stream.

    ``framed`` selects RFC 7395 WebSocket framing. ``secure`` says the stream is already
    encrypted (direct TLS, or a WebSocket behind TLS); ``starttls`` says the transport can
    upgrade to TLS in place (the TCP STARTTLS listener). A stream that is neither is refused,
    since mechanisms are only ever offered on encrypted streams.

    The attributes the negotiators share (``state``, ``waiting``, ``domain``, ``jid``, ``sm`` …)
    and the methods under "for the negotiators" are the stream's internal interface; the driver
    uses the methods under "driver API" and reads the attributes.
    """

    def __init__(
        self,
        config: StreamConfig,
        *,
        framed: bool,
        secure: bool,
        starttls: bool,
        channel_bindings: Mapping[str, bytes] | None = None,
        nonce_factory: Callable[[], str] | None = None,
    ) -> None:
        self.config = config
        self.framed = framed
        self.secure = secure
        self.starttls_available = starttls and not secure
        self.channel_bindings: Mapping[str, bytes] = dict(channel_bindings or {})
        self.nonce_factory = nonce_factory
        self.state = State.EXPECT_HEADER
        self.waiting: Waiting | None = None
        self.domain: str | None = None
        self.stream_id: str = ""
        self.stream_from: JID | None = None
        self.authenticated_localpart: str | None = None
        self.jid: JID | None = None
        self.mechanism_name: str | None = None
        self.close_condition: StreamErrorCondition | None = None
        #: The driver's per-session permission check for the client's stanzas (None: allow all).
        self.access: AccessPolicy | None = None
        # XEP-0198 / XEP-0280 / XEP-0352 session features
        self.sm: StreamManagement | None = None
        self.carbons = False
        self.csi_active = True
        # the negotiators
        self.sasl = SaslExchange(self)
        self.sasl2 = Sasl2(self)
        self.fast = Fast(config.fast)
        self.binding = Binding(self)
        self.stanzas = StanzaHandler(self)
        self._parser: StreamParser | None = self._new_parser()
        self._inbox: deque[ParseEvent | StreamError] = deque()
        self._pending: deque[Event] = deque()  # events produced while answering a request
        self._out: list[bytes] = []
        self._header_sent = False

    # ------------------------------------------------------------------ driver API: input
    def receive_data(self, data: bytes) -> None:
        """Bytes from a TCP stream (after TLS decryption)."""
        if self.framed:
            raise LocalProtocolError("receive_data() is for unframed (TCP) streams")
        self._feed(data)

    def receive_frame(self, data: bytes) -> None:
        """One RFC 7395 WebSocket text message."""
        if not self.framed:
            raise LocalProtocolError("receive_frame() is for framed (WebSocket) streams")
        self._feed(data)

    def receive_eof(self) -> None:
        """The transport is gone: the stream ends without anything more to send."""
        if self.state is not State.CLOSED:
            self.state = State.CLOSED
            self._inbox.clear()
            self._inbox.append(StreamError(StreamErrorCondition.RESET, "connection lost"))

    def _feed(self, data: bytes) -> None:
        if self.state in (State.CLOSED, State.TLS_HANDSHAKE) or self._parser is None:
            return  # RFC 6120 §5.4.3.3: nothing read before the TLS handshake is processed
        parser = self._parser
        try:
            events = parser.feed_frame(data) if self.framed else parser.feed(data)
        except StreamError as exc:
            self._inbox.append(exc)
            self._parser = None
        else:
            self._inbox.extend(events)

    # ------------------------------------------------------------------ driver API: output
    def data_to_send(self) -> list[bytes]:
        """Everything queued for the peer, one item per WebSocket message (join them for TCP)."""
        out, self._out = self._out, []
        return out

    def next_event(self) -> Event | None:
        """Handle queued input until something needs the driver; None when idle or paused."""
        if self._pending:
            return self._pending.popleft()
        while self.waiting is None and self._inbox:
            item = self._inbox.popleft()
            if self.state is State.CLOSED:
                if isinstance(item, StreamError) and item.condition is StreamErrorCondition.RESET:
                    self._inbox.clear()
                    return StreamClosed(condition=None, text=item.text, by_peer=True)
                continue
            try:
                event = self._handle(item)
            except StreamError as exc:
                return self._fail(exc.condition, exc.text)
            if event is not None:
                return event
        return None

    # ------------------------------------------------------------------ driver API: answers
    def tls_established(self, channel_bindings: Mapping[str, bytes]) -> None:
        self._expect_waiting(Waiting.TLS)
        self.secure = True
        self.starttls_available = False
        self.channel_bindings = dict(channel_bindings)
        self.restart()

    def provide_credentials(
        self,
        creds: ScramCredentials,
        alternatives: Sequence[ScramCredentials] = (),
        limited: tuple[SaslCondition, str] | None = None,
    ) -> None:
        """Answer :class:`CredentialsNeeded`.

        ``creds`` are the account's (or fake ones); ``alternatives`` are further credentials of
        the account, e.g. app passwords, stored with the same salt and iteration count. Those
        with another salt or count are ignored. :attr:`Authenticated.credential_id` says which
        one matched. ``limited``: when nothing matches, fail with this condition and text instead
        of ``not-authorized`` (the driver's guessing limit holds the account and checks only what
        cannot be guessed, and the client should learn why it failed).
        """
        self._expect_waiting(Waiting.CREDENTIALS)
        self.sasl.provide_credentials(creds, alternatives, limited)

    def password_checked(
        self, ok: bool, credential_id: str = "", limited: tuple[SaslCondition, str] | None = None
    ) -> None:
        """Answer :class:`PasswordCheckNeeded`; ``credential_id`` names what matched ("" = the password);
        ``limited`` as in :meth:`provide_credentials`."""
        self._expect_waiting(Waiting.PASSWORD)
        self.sasl.password_checked(ok, credential_id, limited)

    def provide_tokens(self, candidates: Sequence[TokenCandidate]) -> None:
        """Answer :class:`TokenCheckNeeded` with the tokens the client may have used (XEP-0484).

        Every candidate is checked in constant time; one issued for another HT-* mechanism
        never matches. No match fails with ``credentials-expired``.
        """
        self._expect_waiting(Waiting.TOKEN)
        self.sasl.provide_tokens(candidates)

    def issue_token(self, token: str, expiry: str) -> None:
        """XEP-0484: put ``<token token=… expiry=…/>`` into the coming SASL2 ``<success/>``.

        Allowed from a SASL2 :class:`Authenticated` until ``<success/>`` is sent, i.e. before
        the answer that sends it (``continue_with()`` without tasks, the last
        ``task_succeeded()``, ``bind_resource()``/``bind_failed()``, ``resume_succeeded()``/
        ``resume_failed()``). ``expiry`` is an XEP-0082 DateTime. A second call replaces the
        token. Refused when FAST is off, when the client sent no ``<user-agent id=…/>`` (a token
        belongs to one installation), and after ``<fast invalidate='true'/>`` without
        ``<request-token/>`` (XEP-0484: then no new token).
        """
        if not self.sasl2.success_pending:
            raise LocalProtocolError(
                "issue_token() is allowed only after SASL2 authentication, before <success/>"
            )
        self.fast.issue(token, expiry, self.sasl2.user_agent)

    def continue_with(self, steps: Sequence[Sequence[str]], texts: Sequence[str] = ()) -> None:
        """Answer :class:`Authenticated`: the tasks still to do, in order (or :meth:`refuse`).

        Each step lists alternatives (the client picks one with ``<next/>``); an upgrade task
        (XEP-0480) is a step with exactly one. ``texts`` (one per step, optional) go into each
        step's ``<continue/>`` as its ``<text/>``, for a person. No steps: authentication is
        complete. An RFC 6120 SASL login has no tasks: ``continue_with([])`` sends its ``<success/>``.
        """
        if self.waiting is Waiting.AUTHORIZE:
            if any(steps):
                raise LocalProtocolError("RFC 6120 SASL has no tasks")
            self._expect_waiting(Waiting.AUTHORIZE)
            self.sasl.accept()
            return
        self._expect_waiting(Waiting.TASKS)
        self.sasl2.continue_with(steps, texts)

    def refuse(self, condition: SaslCondition, text: str) -> None:
        """Answer :class:`Authenticated` with a failure after all: the mechanism succeeded, but
        the driver does not admit this login (account policy, a revoked grant, a replayed FAST
        count). Or answer :class:`CredentialsNeeded`, :class:`PasswordCheckNeeded` or
        :class:`TokenCheckNeeded` with a failure before anything is checked (a guessing limit).
        The client gets ``<failure/>`` with ``condition`` and ``text``; no ``<success/>``
        has been sent, and it may try again."""
        self.sasl.refuse(condition, text)

    def task_challenge(self, payload: str) -> None:
        """Send ``<task-data/>`` with ``payload`` (XML text) and wait for the client's answer."""
        self._expect_waiting(Waiting.TASK)
        self.sasl2.task_challenge(payload)

    def task_succeeded(self) -> None:
        self._expect_waiting(Waiting.TASK)
        self.push_event(self.sasl2.next_step())

    def task_failed(self, condition: SaslCondition, text: str) -> None:
        self._expect_waiting(Waiting.TASK)
        self.push_event(self.sasl.fail(condition, text))

    def bind_resource(self, resource: str, bound_extra: str = "") -> JID:
        """Bind ``resource`` (chosen by the driver under its conflict policy); returns the full JID.
        ``bound_extra``: serialised elements of the driver's for a XEP-0386 ``<bound/>`` (e.g. the
        archive's XEP-0313 ``<metadata/>``), ignored for RFC 6120 binding."""
        self._expect_waiting(Waiting.BIND)
        return self.binding.bound(resource, bound_extra)

    def bind_failed(self, condition: StanzaErrorCondition, text: str = "") -> None:
        self._expect_waiting(Waiting.BIND)
        self.binding.failed(condition, text)

    def resume_succeeded(
        self,
        jid: JID,
        sm: StreamManagement,
        h: str | None,
        keep: Callable[[bytes], bool] | None = None,
    ) -> list[bytes]:
        """XEP-0198 §5: adopt the hibernated session's JID and counters, answer, retransmit.

        ``keep`` (the driver's): whether an unacknowledged stanza may still go to this session;
        what it refuses is not retransmitted but returned, for the driver to store or bounce."""
        self._expect_waiting(Waiting.RESUME)
        return xep0198_sm.resumed(self, jid, sm, h, keep)

    def resume_failed(self, text: str = "") -> None:
        self._expect_waiting(Waiting.RESUME)
        xep0198_sm.resume_failed(self, text)

    def request_ack(self) -> bool:
        """XEP-0198 §4: ask for an acknowledgement if stanzas went out since we last asked.

        Returns whether unacknowledged stanzas remain (the driver keeps its timer running then).
        """
        sm = self.sm
        if self.state is not State.BOUND or sm is None:
            return False
        if sm.request_due():
            self._out.append(request_element().encode())
        return bool(sm.unacked)

    def queue_detached(self, data: bytes) -> None:
        """A stanza for a hibernating session (no transport): keep it for the resume."""
        if self.sm is not None:
            self.sm.stanza_sent(data)

    def close(self, condition: StreamErrorCondition | None = None, text: str = "") -> StreamClosed:
        """End the stream from our side, with a stream error when ``condition`` is given."""
        if self.state is State.CLOSED:
            return StreamClosed(condition=self.close_condition, text=text)
        if condition is not None:
            return self._fail(condition, text)
        self._ensure_header()
        self._out.append(self._stream_footer())
        self.state = State.CLOSED
        self._inbox.clear()
        return StreamClosed(condition=None, text=text)

    def send_stanza(self, stanza: etree._Element) -> None:
        """Queue a stanza routed to this session (already addressed and stamped)."""
        if self.state is State.BOUND:
            self._queue_stanza(serialize(stanza))

    def send_raw(self, data: bytes) -> None:
        """Queue an already serialised stanza (the router serialises once for many recipients)."""
        if self.state is State.BOUND:
            self._queue_stanza(data)

    def bounce(
        self,
        stanza: etree._Element,
        condition: StanzaErrorCondition,
        text: str = "",
        *,
        error_type: str | None = None,
        application: tuple[str, str] | None = None,
    ) -> None:
        """Return ``stanza`` to this session's client as an error (RFC 6120 §8.3), of ``error_type``
        (else the condition's usual one) and with an application-specific condition if given.

        Error and result stanzas are never answered with an error (RFC 6120 §8.3.1, §8.2.3).
        """
        if stanza.get("type") in ("error", "result") or self.state is not State.BOUND:
            return
        self.emit_stanza(self._error_reply(stanza, condition, text, error_type, application))

    # ------------------------------------------------------------------ for the negotiators
    def emit(self, data: bytes) -> None:
        """Queue bytes for the peer (a nonza, a SASL element, features)."""
        self._out.append(data)

    def emit_stanza(self, el: etree._Element) -> None:
        """Queue a stanza for the peer (counted by stream management)."""
        self._queue_stanza(serialize(el))

    def move(self, state: State) -> None:
        """Go to ``state``; :data:`~.states.MOVES` says where each state may go."""
        check_move(self.state, state)
        self.state = state

    def wait(self, what: Waiting) -> None:
        """Pause for the driver's answer ``what`` (the request event goes out now)."""
        self.waiting = what

    def push_event(self, event: Event | None) -> None:
        """An event produced while answering a request, for the driver before anything else."""
        if event is not None:
            self._pending.appendleft(event)

    def fail_next(self, condition: StreamErrorCondition, text: str) -> None:
        """End the stream with this error once the event in hand has been handled."""
        self._inbox.clear()
        self._inbox.append(StreamError(condition, text))

    def restart(self) -> None:
        """A stream restart: fresh parser, nothing parsed before it survives (RFC 6120 §4.3.3)."""
        self._inbox.clear()
        self._parser = self._new_parser()
        self._header_sent = False
        self.move(State.EXPECT_HEADER)

    def bound(self) -> None:
        """A resource is bound (or a session resumed): stanzas from now on, at their full size."""
        self.move(State.BOUND)
        if self._parser is not None:
            self._parser.max_stanza_bytes = self.config.max_stanza_bytes

    def features(self, inner: str) -> bytes:
        if self.config.advertise_limits:
            authenticated = self.authenticated_localpart is not None
            inner += xep0478_limits.advertisement(
                self.config.max_stanza_bytes if authenticated else self.config.max_preauth_stanza_bytes
            )
        if self.framed:
            return f"<stream:features xmlns:stream='{ns.STREAMS}'>{inner}</stream:features>".encode()
        return f"<stream:features>{inner}</stream:features>".encode()

    def bound_features(self) -> str:
        """The features after a Bind2 bind: CSI, and SM unless it is on (never twice: fluux #380)."""
        if self.sm is None:
            return xep0352_csi.FEATURE + rfc6121_roster.FEATURE + xep0198_sm.FEATURE
        return xep0352_csi.FEATURE + rfc6121_roster.FEATURE

    def reply_error(self, el: etree._Element, condition: StanzaErrorCondition, text: str = "") -> None:
        """Answer the client's ``el`` with a stanza error (never an error or a result)."""
        if el.get("type") not in ("error", "result"):
            self.emit_stanza(self._error_reply(el, condition, text))

    def iq_result(self, iq_id: str, *, to: str | None, sender: str | None = None) -> etree._Element:
        reply = etree.Element(_Q_IQ, nsmap=ns.default(ns.CLIENT), type="result", id=iq_id)
        if sender:
            reply.set("from", sender)
        if to:
            reply.set("to", to)
        return reply

    def iq_error(self, iq_id: str, condition: StanzaErrorCondition, text: str = "") -> etree._Element:
        reply = etree.Element(_Q_IQ, nsmap=ns.default(ns.CLIENT), type="error", id=iq_id)
        reply.append(error_element(condition, text, lang=self.config.lang))
        return reply

    # ------------------------------------------------------------------ dispatch
    def _expect_waiting(self, what: Waiting) -> None:
        if self.waiting is not what:
            waiting = self.waiting.value if self.waiting is not None else None
            raise LocalProtocolError(f"the stream is not waiting for {what.value} (waiting: {waiting})")
        self.waiting = None

    def _handle(self, item: ParseEvent | StreamError) -> Event | None:
        if isinstance(item, StreamError):
            raise item
        if isinstance(item, StreamOpened):
            return self._on_header(item)
        if isinstance(item, StreamEnded):
            return self._on_peer_close()
        if self.state is State.EXPECT_HEADER:
            raise StreamError(StreamErrorCondition.NOT_WELL_FORMED, "expected a stream header")
        return self._on_element(item.element)

    def _on_element(self, el: etree._Element) -> Event | None:
        state = self.state
        if state is State.BOUND:  # the hot path: one check, then the stanza
            return self.stanzas.on_stanza(el)
        if state is State.TASKS or state is State.TASK:
            return self.sasl2.on_task_element(el)
        if self.authenticated_localpart is not None and is_auth_element(el):
            # XEP-0388 §2.6.2: a new <authenticate/> after success is a stream error.
            raise StreamError(StreamErrorCondition.POLICY_VIOLATION, "already authenticated")
        if state is State.EXPECT_STARTTLS:
            return self._on_starttls(el)
        if state is State.EXPECT_AUTH or state is State.SASL:
            return self.sasl.on_element(el)
        if state is State.EXPECT_BIND:
            return self.binding.on_element(el)
        raise LocalProtocolError(f"no element expected in {state}")  # pragma: no cover

    # ------------------------------------------------------------------ stream header (§4.7)
    def _on_header(self, opened: StreamOpened) -> Event | None:
        if self.state is not State.EXPECT_HEADER:
            raise StreamError(StreamErrorCondition.NOT_WELL_FORMED, "unexpected stream header")
        if not self.framed:
            if opened.tag != _Q_STREAM:
                raise StreamError(StreamErrorCondition.INVALID_NAMESPACE, "the root must be stream:stream")
            if opened.default_ns != ns.CLIENT:
                raise StreamError(
                    StreamErrorCondition.INVALID_NAMESPACE, "the default namespace must be jabber:client"
                )
        version = opened.attrs.get("version", "")
        major, _, _minor = version.partition(".")
        if major != "1":
            # §4.7.5: no version means 0.9, which we do not speak.
            raise StreamError(StreamErrorCondition.UNSUPPORTED_VERSION, "version='1.0' is required")
        to = opened.attrs.get("to")
        if not to:
            raise StreamError(StreamErrorCondition.HOST_UNKNOWN, "the stream header needs a 'to' attribute")
        try:
            domain = parse_jid(to)
        except InvalidJID:
            raise StreamError(StreamErrorCondition.HOST_UNKNOWN, "'to' is not a domain") from None
        if (
            domain.local is not None
            or domain.resource is not None
            or domain.domain not in self.config.domains
        ):
            raise StreamError(StreamErrorCondition.HOST_UNKNOWN, f"this server does not serve {to}")
        if self.domain is not None and domain.domain != self.domain:
            raise StreamError(StreamErrorCondition.HOST_UNKNOWN, "the domain changed at a stream restart")
        self.domain = domain.domain
        self._send_header(opened.attrs.get("from"))
        from_attr = opened.attrs.get("from")
        if from_attr:
            try:
                stream_from = parse_jid(from_attr)
            except InvalidJID:
                raise StreamError(StreamErrorCondition.INVALID_FROM, "'from' is not a valid JID") from None
            if stream_from.domain != self.domain:
                # XEP-0388 §2.1 / §4.7.1: a from in another domain cannot be served here.
                raise StreamError(StreamErrorCondition.INVALID_FROM, "'from' is in another domain")
            self.stream_from = stream_from
        self._send_features()
        return None

    def _send_features(self) -> None:
        if self.authenticated_localpart is not None:
            self.binding.offer()
            return
        if not self.secure:
            if not self.starttls_available:
                raise StreamError(
                    StreamErrorCondition.POLICY_VIOLATION,
                    "this connection is not encrypted: use TLS (wss://), or a TLS-terminating proxy "
                    "that the server trusts",
                )
            self.move(State.EXPECT_STARTTLS)
            self._out.append(self.features(f"<starttls xmlns='{ns.TLS}'><required/></starttls>"))
            return
        self.move(State.EXPECT_AUTH)
        # RFC 6120 SASL, XEP-0388 SASL2 beside it, XEP-0440's channel-binding types beside both
        parts = (
            self.sasl.advertisement(),
            self.sasl2.advertisement(),
            xep0440_channel_binding.advertisement(self.channel_bindings),
        )
        self._out.append(self.features("".join(parts)))

    def _on_peer_close(self) -> Event:
        self._ensure_header()
        self._out.append(self._stream_footer())
        self.state = State.CLOSED
        self._inbox.clear()
        return StreamClosed(condition=None, by_peer=True)

    # ------------------------------------------------------------------ STARTTLS (§5)
    def _on_starttls(self, el: etree._Element) -> Event:
        if el.tag != _Q_STARTTLS:
            raise StreamError(
                StreamErrorCondition.POLICY_VIOLATION, "STARTTLS is required before anything else"
            )
        self._out.append(f"<proceed xmlns='{ns.TLS}'/>".encode())
        self.move(State.TLS_HANDSHAKE)
        self.wait(Waiting.TLS)
        self._inbox.clear()  # §5.4.3.3: nothing pipelined in plaintext may survive
        self._parser = None
        return StartTlsRequested()

    # ------------------------------------------------------------------ output
    def _queue_stanza(self, data: bytes) -> None:
        self._out.append(data)
        if self.sm is not None and self.sm.stanza_sent(data):
            self._out.append(request_element().encode())

    def _error_reply(
        self,
        el: etree._Element,
        condition: StanzaErrorCondition,
        text: str,
        error_type: str | None = None,
        application: tuple[str, str] | None = None,
    ) -> etree._Element:
        reply = etree.Element(el.tag, nsmap=ns.default(ns.CLIENT))
        reply.set("type", "error")
        if el.get("id") is not None:
            reply.set("id", el.get("id", ""))
        sender = el.get("to")
        if sender:
            reply.set("from", sender)
        elif self.domain:
            reply.set("from", self.domain)
        if self.jid is not None:
            reply.set("to", str(self.jid))
        reply.append(
            error_element(
                condition, text, error_type=error_type, application=application, lang=self.config.lang
            )
        )
        return reply

    def _send_header(self, peer: str | None) -> None:
        self.stream_id = secrets.token_urlsafe(12)
        domain = escape_attr(self.domain or next(iter(sorted(self.config.domains))))
        to = f" to='{escape_attr(peer)}'" if peer else ""
        lang = escape_attr(self.config.lang)
        if self.framed:
            header = (
                f"<open xmlns='{ns.FRAMING}' id='{self.stream_id}' from='{domain}'{to}"
                f" version='1.0' xml:lang='{lang}'/>"
            )
        else:
            header = (
                f"<?xml version='1.0'?><stream:stream xmlns='{ns.CLIENT}' xmlns:stream='{ns.STREAMS}'"
                f" id='{self.stream_id}' from='{domain}'{to} version='1.0' xml:lang='{lang}'>"
            )
        self._out.append(header.encode())
        self._header_sent = True

    def _ensure_header(self) -> None:
        if not self._header_sent:
            self._send_header(None)

    def _stream_footer(self) -> bytes:
        return f"<close xmlns='{ns.FRAMING}'/>".encode() if self.framed else b"</stream:stream>"

    def _fail(self, condition: StreamErrorCondition, text: str) -> StreamClosed:
        """Queue a stream error and close (§4.9.1.1: header first if none was sent)."""
        self._ensure_header()
        body = f"<{condition.value} xmlns='{ns.STREAM_ERRORS}'/>"
        if text:
            body += f"<text xmlns='{ns.STREAM_ERRORS}' xml:lang='en'>{escape_text(text)}</text>"
        prefix_decl = f" xmlns:stream='{ns.STREAMS}'" if self.framed else ""
        self._out.append(f"<stream:error{prefix_decl}>{body}</stream:error>".encode())
        self._out.append(self._stream_footer())
        self.state = State.CLOSED
        self.close_condition = condition
        self._inbox.clear()
        self.waiting = None
        self._parser = None
        self.sasl2.success_pending = False
        self.fast.issued = None
        return StreamClosed(condition=condition, text=text)

    def _new_parser(self) -> StreamParser:
        limit = self.config.max_preauth_stanza_bytes
        if self.authenticated_localpart is not None:
            limit = self.config.max_stanza_bytes
        return StreamParser(max_stanza_bytes=limit, max_depth=self.config.max_depth, framed=self.framed)


def refusal(config: StreamConfig, condition: StreamErrorCondition, text: str) -> bytes:
    """The whole of what a TCP connection refused before its stream began is told (RFC 6120
    §4.9.1.1): our stream header, the stream error, the end of the stream. Written by the transport
    without a stream of its own for the connection, so that refusing a flood costs little."""
    stream = C2SStream(config, framed=False, secure=False, starttls=False)
    stream.close(condition, text)
    return b"".join(stream.data_to_send())
