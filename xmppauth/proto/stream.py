"""RFC 6120 client-to-server stream machine (sans-IO), for TCP and RFC 7395 WebSocket framing.

Theory of operation
-------------------
All stream-state logic lives in this module. The driver (a Channels consumer) feeds bytes or
WebSocket frames in with :meth:`C2SStream.receive_data` / :meth:`C2SStream.receive_frame`, then
calls :meth:`C2SStream.next_event` until it returns None, writing :meth:`C2SStream.data_to_send`
after each event. Parsed top-level elements wait in an inbox and are handled one at a time, so
that a request event (credentials, password check, bind, TLS) pauses the machine until the driver
answers it; elements that arrived meanwhile are handled afterwards, in order.

States (:class:`State`) and what each accepts:

====================  ==============================================================
EXPECT_HEADER         a stream header (``<stream:stream>`` or ``<open/>``)
EXPECT_STARTTLS       ``<starttls/>`` only (RFC 6120 §5.3.1: TLS is mandatory on TCP)
TLS_HANDSHAKE         nothing: bytes read before TLS is up are discarded (RFC 6120 §5.4.3.3)
EXPECT_AUTH           ``<auth/>`` (RFC 6120 §6.4.2), ``<authenticate/>`` (XEP-0388 §2.6)
SASL                  ``<response/>``, ``<abort/>`` (RFC 6120 §6.4.3-6.4.6)
TASKS                 ``<next task=…/>``, ``<abort/>`` (XEP-0388 §2.7, after ``<continue/>``)
TASK                  ``<task-data/>``, ``<abort/>`` (a task in progress)
EXPECT_BIND           the bind iq (and the legacy session iq)
BOUND                 stanzas, routed by the driver after ``from`` is stamped
CLOSED                nothing; the stream is over
====================  ==============================================================

Stream restarts (after ``<proceed/>`` and ``<success/>``) make a fresh parser and drop whatever
was parsed after the element that caused the restart: RFC 6120 forbids the client to send
anything there before it has seen our answer. Every error from the peer ends in :meth:`_fail`,
which queues a stream error (preceded by our header when none was sent yet), closes the stream
and moves to CLOSED; a stream error is final.

XEP-0484 FAST (``StreamConfig.fast``): the HT-* mechanisms are offered inside SASL2's
``<inline/>`` only and usable only with ``<authenticate/>``; a token check is a request
(:class:`~xmppauth.proto.events.TokenCheckNeeded` → :meth:`C2SStream.provide_tokens`), and the
driver hands out a token with :meth:`C2SStream.issue_token` before ``<success/>``.

Once bound, every stanza the client sends is put to :attr:`C2SStream.access` (see
:mod:`xmppauth.proto.access`) before the core handles or routes it.
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import hashlib
import secrets
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from lxml import etree

from . import ns
from .access import AccessPolicy
from .errors import (
    LocalProtocolError,
    SaslCondition,
    StanzaErrorCondition,
    StreamError,
    StreamErrorCondition,
)
from .events import (
    Authenticated,
    AuthFailed,
    BindRequested,
    ClientStateChanged,
    CredentialsNeeded,
    Event,
    IqRequest,
    PasswordCheckNeeded,
    ResumeRequested,
    StanzaReceived,
    StartTlsRequested,
    StreamClosed,
    TaskData,
    TaskStarted,
    TokenCheckNeeded,
    UserAgent,
)
from .jid import JID, InvalidJID, prep_localpart, prep_resource
from .numbers import parse_uint
from .replies import error_element
from .sasl import (
    HT_MECHANISMS,
    ChannelBindingContext,
    Mechanism,
    ScramCredentials,
    TokenCandidate,
    fast_mechanism_names,
    make_mechanism,
)
from .sasl import Challenge as SaslChallenge
from .sasl import Failure as SaslFailure
from .sasl import NeedCredentials as SaslNeedCredentials
from .sasl import NeedPasswordCheck as SaslNeedPasswordCheck
from .sasl import NeedToken as SaslNeedToken
from .sasl import Success as SaslSuccess
from .sm import NS as SM
from .sm import StreamManagement, failed_element, request_element
from .xml import (
    ParseEvent,
    StreamEnded,
    StreamOpened,
    StreamParser,
    escape_attr,
    escape_text,
    serialize,
)

__all__ = ["C2SStream", "State", "StreamConfig", "parse_jid"]

SCRAM_HASHES = ("SHA-512", "SHA-256", "SHA-1")
# RFC 6120 §6.4.5: allow a reasonable number of retries (at least 2), then close the stream.
MAX_AUTH_FAILURES = 3

_STANZA_KINDS = frozenset({"message", "presence", "iq"})
_IQ_TYPES = frozenset({"get", "set", "result", "error"})
_PRESENCE_TYPES = frozenset(
    {"available", "unavailable", "probe", "subscribe", "subscribed", "unsubscribe", "unsubscribed", "error"}
)
_SUBSCRIPTION_TYPES = frozenset({"subscribe", "subscribed", "unsubscribe", "unsubscribed", "probe"})

_Q_IQ = ns.qname(ns.CLIENT, "iq")
_Q_ERROR = ns.qname(ns.CLIENT, "error")
_Q_TEXT_STANZA = ns.qname(ns.STANZA_ERRORS, "text")
_Q_BIND = ns.qname(ns.BIND, "bind")
_Q_BIND_RESOURCE = ns.qname(ns.BIND, "resource")
_Q_SESSION = ns.qname(ns.SESSION, "session")
_Q_PING = ns.qname(ns.PING, "ping")
_Q_DISCO_INFO = ns.qname(ns.DISCO_INFO, "query")
_Q_DISCO_ITEMS = ns.qname(ns.DISCO_ITEMS, "query")

_Q_SM_R = ns.qname("urn:xmpp:sm:3", "r")
_Q_SM_A = ns.qname("urn:xmpp:sm:3", "a")
_Q_SM_ENABLE = ns.qname("urn:xmpp:sm:3", "enable")
_Q_SM_RESUME = ns.qname("urn:xmpp:sm:3", "resume")
_Q_CSI_ACTIVE = ns.qname(ns.CSI, "active")
_Q_CSI_INACTIVE = ns.qname(ns.CSI, "inactive")
_Q_CARBONS_ENABLE = ns.qname(ns.CARBONS, "enable")
_Q_CARBONS_DISABLE = ns.qname(ns.CARBONS, "disable")

_Q_SASL2_NEXT = ns.qname(ns.SASL2, "next")
_Q_SASL2_TASK_DATA = ns.qname(ns.SASL2, "task-data")
_Q_SASL2_ABORT = ns.qname(ns.SASL2, "abort")
NS_UPGRADE = "urn:xmpp:sasl:upgrade:0"  # XEP-0480
_Q_UPGRADE = ns.qname(NS_UPGRADE, "upgrade")
UPGRADE_TASKS = ("UPGR-SCRAM-SHA-256", "UPGR-SCRAM-SHA-512")
_Q_FAST = ns.qname(ns.FAST, "fast")
_Q_FAST_REQUEST_TOKEN = ns.qname(ns.FAST, "request-token")
# XEP-0484 <fast count=…/>: a positive integer; at most 18 digits, so it fits a signed 64-bit column

_NONZAS = frozenset({_Q_SM_R, _Q_SM_A, _Q_SM_ENABLE, _Q_SM_RESUME, _Q_CSI_ACTIVE, _Q_CSI_INACTIVE})

SERVER_FEATURES = (ns.CARBONS, ns.DISCO_INFO, ns.DISCO_ITEMS, ns.PING)
ACCOUNT_FEATURES = (ns.DISCO_INFO, ns.PING)


@functools.lru_cache(maxsize=8192)
def parse_jid(value: str) -> JID:
    """:meth:`JID.parse`, memoised: the same few addresses recur on every stanza."""
    return JID.parse(value)


class State(enum.Enum):
    """Stream states (RFC 6120 §4-§7); see the module docstring for what each accepts."""

    EXPECT_HEADER = enum.auto()
    EXPECT_STARTTLS = enum.auto()
    TLS_HANDSHAKE = enum.auto()
    EXPECT_AUTH = enum.auto()
    SASL = enum.auto()
    TASKS = enum.auto()
    TASK = enum.auto()
    EXPECT_BIND = enum.auto()
    BOUND = enum.auto()
    CLOSED = enum.auto()


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
    # XEP-0030 features added to the disco#info of the server and of the account
    extra_server_features: tuple[str, ...] = ()
    extra_account_features: tuple[str, ...] = ()
    # XEP-0030 disco#info / disco#items of these nodes of the server become IqRequest events too
    # (e.g. XEP-0050's command list, whose answer depends on the session's grant)
    driver_disco_nodes: frozenset[str] = frozenset()


class C2SStream:
    """One client-to-server stream.

    ``framed`` selects RFC 7395 WebSocket framing. ``secure`` says the stream is already
    encrypted (direct TLS, or a WebSocket behind TLS); ``starttls`` says the transport can
    upgrade to TLS in place (the TCP STARTTLS listener). A stream that is neither is refused,
    since mechanisms are only ever offered on encrypted streams.
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
        self.state = State.EXPECT_HEADER
        self.domain: str | None = None
        self.stream_id: str = ""
        self.stream_from: JID | None = None
        self.authenticated_localpart: str | None = None
        self.jid: JID | None = None
        self.mechanism_name: str | None = None
        self.close_condition: StreamErrorCondition | None = None
        self._nonce_factory = nonce_factory
        self._parser: StreamParser | None = self._new_parser()
        self._inbox: deque[ParseEvent | StreamError] = deque()
        self._pending: deque[Event] = deque()  # events produced while answering a request
        self._out: list[bytes] = []
        self._header_sent = False
        self._waiting: str | None = None
        self._mechanism: Mechanism | None = None
        self._offered_mechanisms: tuple[str, ...] = ()
        self._auth_failures = 0
        self._sasl_username: str | None = None
        # XEP-0388: which profile the exchange in progress uses, and what <authenticate/> carried
        self._profile = "sasl"
        self._user_agent: UserAgent | None = None
        self._bind2: _Bind2Request | None = None
        self._sasl2_resume: tuple[str, str | None] | None = None
        self._upgrades: tuple[str, ...] = ()
        self._task_steps: list[tuple[str, ...]] = []
        self._task_alternatives: tuple[str, ...] = ()
        self._task = ""
        self._bind_inline = False
        self._additional_data: bytes | None = None
        # XEP-0484 FAST: what was offered, what <authenticate/> asked, what goes into <success/>
        self._offered_fast: tuple[str, ...] = ()
        self._fast_request: str | None = None
        self._fast_count: int | None = None
        self._fast_invalidate = False
        self._success_pending = False
        self._issued_token: _IssuedToken | None = None
        #: The driver's per-session permission check for the client's stanzas (None: allow all).
        self.access: AccessPolicy | None = None
        # XEP-0198 / XEP-0280 / XEP-0352 session features
        self.sm: StreamManagement | None = None
        self.carbons = False
        self.csi_active = True
        self._resume_inline = False
        self._sm_failed_inline = ""
        self._bind_iq_id = ""

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
        while self._waiting is None and self._inbox:
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
        self._expect_waiting("tls")
        self.secure = True
        self.starttls_available = False
        self.channel_bindings = dict(channel_bindings)
        self._restart()

    def provide_credentials(
        self, creds: ScramCredentials, alternatives: Sequence[ScramCredentials] = ()
    ) -> None:
        """Answer :class:`CredentialsNeeded`.

        ``creds`` are the account's (or fake ones); ``alternatives`` are further credentials of
        the account, e.g. app passwords, stored with the same salt and iteration count. Those
        with another salt or count are ignored. :attr:`Authenticated.credential_id` says which
        one matched.
        """
        self._expect_waiting("credentials")
        assert self._mechanism is not None
        self._answered(self._after_sasl(self._mechanism.provide_credentials(creds, alternatives)))

    def password_checked(self, ok: bool, credential_id: str = "") -> None:
        """Answer :class:`PasswordCheckNeeded`; ``credential_id`` names what matched ("" = the password)."""
        self._expect_waiting("password")
        assert self._mechanism is not None
        self._answered(self._after_sasl(self._mechanism.password_checked(ok, credential_id)))

    def provide_tokens(self, candidates: Sequence[TokenCandidate]) -> None:
        """Answer :class:`TokenCheckNeeded` with the tokens the client may have used (XEP-0484).

        Every candidate is checked in constant time; one issued for another HT-* mechanism
        never matches. No match fails with ``credentials-expired``.
        """
        self._expect_waiting("token")
        assert self._mechanism is not None
        self._answered(self._after_sasl(self._mechanism.provide_tokens(candidates)))

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
        if not self._success_pending:
            raise LocalProtocolError(
                "issue_token() is allowed only after SASL2 authentication, before <success/>"
            )
        if not self.config.fast:
            raise LocalProtocolError("FAST is not enabled on this stream")
        if self._user_agent is None or not self._user_agent.id:
            raise LocalProtocolError("a FAST token needs the client's <user-agent id=…/>")
        if self._fast_invalidate and self._fast_request is None:
            raise LocalProtocolError("the client invalidated its token and requested no new one")
        if not token or not expiry:
            raise LocalProtocolError("a FAST token needs a value and an expiry")
        self._issued_token = _IssuedToken(token=token, expiry=expiry)

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
        self._expect_waiting("resume")
        if h is not None:
            sm.acknowledge(h)
        withheld = sm.withhold(keep) if keep is not None else []
        self.jid = jid
        self.sm = sm
        if self._resume_inline:
            # XEP-0198 §9 / XEP-0388: <resumed/> inside <success/>, Bind2 skipped, no features.
            self._resume_inline = False
            self._bind_inline = False
            self._sasl2_success(str(jid), sm.resumed_element())
        else:
            self._out.append(sm.resumed_element().encode())
        self.state = State.BOUND
        if self._parser is not None:
            self._parser.max_stanza_bytes = self.config.max_stanza_bytes
        self._out.extend(sm.unacked)
        return withheld

    def resume_failed(self, text: str = "") -> None:
        self._expect_waiting("resume")
        failed = failed_element("item-not-found", text=escape_text(text))
        if not self._resume_inline:
            self._out.append(failed.encode())
            return
        self._resume_inline = False
        self._sm_failed_inline = failed
        if self._bind2 is not None:
            self._bind_inline = True
            self._waiting = "bind"
            self._pending.appendleft(
                BindRequested(
                    resource=_bind2_resource(
                        self._bind2, self._user_agent, self.authenticated_localpart or ""
                    ),
                    inline=True,
                )
            )
            return
        assert self.authenticated_localpart is not None
        self._sasl2_success(f"{self.authenticated_localpart}@{self.domain}", "")
        self._send_post_auth_features()

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

    def _bind2_inline_features(self) -> str:
        request = self._bind2
        assert request is not None
        answers = []
        if request.sm_enable:
            self.sm = StreamManagement.enable(resume=True, max_seconds=self.config.sm_resume_seconds)
            answers.append(self.sm.enabled_element())
        if request.carbons:
            self.carbons = True  # XEP-0386 §2.4: carbons enable succeeds, no answer needed
        if request.csi_active is not None:
            self.csi_active = request.csi_active
        return "".join(answers)

    def _bound_features(self) -> str:
        features = f"<csi xmlns='{ns.CSI}'/>"
        if self.sm is None:
            features += f"<sm xmlns='{SM}'/>"  # never again after an enable (fluux #380)
        return features

    def _answered(self, event: Event | None) -> None:
        # before anything the answer queued itself (an inline BindRequested follows Authenticated)
        if event is not None:
            self._pending.appendleft(event)

    def bind_resource(self, resource: str) -> JID:
        """Bind ``resource`` (chosen by the driver under its conflict policy); returns the full JID."""
        self._expect_waiting("bind")
        assert self.authenticated_localpart is not None
        assert self.domain is not None
        self.jid = JID(self.authenticated_localpart, self.domain).with_resource(resource)
        if self._bind_inline:
            # XEP-0386 §2.4: <success/> names the full JID and carries <bound/> with the answers
            # of the inline features; no restart, and no resource binding offered afterwards.
            self._bind_inline = False
            bound = self._bind2_inline_features()
            bound_el = (
                f"<bound xmlns='{ns.BIND2}'>{bound}</bound>" if bound else f"<bound xmlns='{ns.BIND2}'/>"
            )
            self._sasl2_success(str(self.jid), bound_el)
            self._out.append(self._features(self._bound_features()))
        else:
            reply = self._iq_result(self._bind_iq_id, to=None)
            bind = etree.SubElement(reply, _Q_BIND, nsmap=ns.default(ns.BIND))
            etree.SubElement(bind, ns.qname(ns.BIND, "jid")).text = str(self.jid)
            self._send_element(reply)
        self.state = State.BOUND
        if self._parser is not None:
            self._parser.max_stanza_bytes = self.config.max_stanza_bytes
        return self.jid

    def bind_failed(self, condition: StanzaErrorCondition, text: str = "") -> None:
        self._expect_waiting("bind")
        if self._bind_inline:
            # Authenticated all the same; Bind2's failure travels inside <success/> and the
            # client can still bind the RFC 6120 way.
            self._bind_inline = False
            assert self.authenticated_localpart is not None
            self._sasl2_success(
                f"{self.authenticated_localpart}@{self.domain}", f"<failed xmlns='{ns.BIND2}'/>"
            )
            self._send_post_auth_features()
            return
        self._send_element(self._iq_error(self._bind_iq_id, None, condition, text))

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

    def _queue_stanza(self, data: bytes) -> None:
        self._out.append(data)
        if self.sm is not None and self.sm.stanza_sent(data):
            self._out.append(request_element().encode())

    def bounce(self, stanza: etree._Element, condition: StanzaErrorCondition, text: str = "") -> None:
        """Return ``stanza`` to this session's client as an error (RFC 6120 §8.3).

        Error and result stanzas are never answered with an error (RFC 6120 §8.3.1, §8.2.3).
        """
        if stanza.get("type") in ("error", "result") or self.state is not State.BOUND:
            return
        self._send_element(self._error_reply(stanza, condition, text))

    # ------------------------------------------------------------------ dispatch
    def _expect_waiting(self, what: str) -> None:
        if self._waiting != what:
            raise LocalProtocolError(f"the stream is not waiting for {what} (waiting: {self._waiting})")
        self._waiting = None

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
            return self._on_stanza(el)
        if state is State.TASKS or state is State.TASK:
            return self._on_task_element(el)
        if self.authenticated_localpart is not None and _is_auth_element(el):
            # XEP-0388 §2.6.2: a new <authenticate/> after success is a stream error.
            raise StreamError(StreamErrorCondition.POLICY_VIOLATION, "already authenticated")
        if state is State.EXPECT_STARTTLS:
            return self._on_starttls(el)
        if state is State.EXPECT_AUTH or state is State.SASL:
            return self._on_sasl(el)
        if state is State.EXPECT_BIND:
            return self._on_bind(el)
        raise LocalProtocolError(f"no element expected in {state}")  # pragma: no cover

    # ------------------------------------------------------------------ stream header
    def _on_header(self, opened: StreamOpened) -> Event | None:
        if self.state is not State.EXPECT_HEADER:
            raise StreamError(StreamErrorCondition.NOT_WELL_FORMED, "unexpected stream header")
        if not self.framed:
            if opened.tag != ns.qname(ns.STREAMS, "stream"):
                raise StreamError(StreamErrorCondition.INVALID_NAMESPACE, "the root must be stream:stream")
            if opened.default_ns != ns.CLIENT:
                raise StreamError(
                    StreamErrorCondition.INVALID_NAMESPACE, "the default namespace must be jabber:client"
                )
        version = opened.attrs.get("version", "")
        major, _, _minor = version.partition(".")
        if major != "1":
            # RFC 6120 §4.7.5: no version means 0.9, which we do not speak.
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
                # XEP-0388 §2.1 / RFC 6120 §4.7.1: a from in another domain cannot be served here.
                raise StreamError(StreamErrorCondition.INVALID_FROM, "'from' is in another domain")
            self.stream_from = stream_from
        return self._send_features()

    def _send_features(self) -> Event | None:
        if self.authenticated_localpart is not None:
            self._send_post_auth_features()
            return None
        if not self.secure:
            if not self.starttls_available:
                raise StreamError(
                    StreamErrorCondition.POLICY_VIOLATION,
                    "this connection is not encrypted: use TLS (wss://), or a TLS-terminating proxy "
                    "that the server trusts",
                )
            self.state = State.EXPECT_STARTTLS
            self._out.append(self._features(f"<starttls xmlns='{ns.TLS}'><required/></starttls>"))
            return None
        self.state = State.EXPECT_AUTH
        self._offered_mechanisms = self._mechanisms()
        parts = [f"<mechanisms xmlns='{ns.SASL}'>"]
        parts.extend(f"<mechanism>{name}</mechanism>" for name in self._offered_mechanisms)
        parts.append("</mechanisms>")
        # XEP-0388 §2.1: SASL2 beside RFC 6120 SASL, with Bind2 (XEP-0386) as an inline feature.
        parts.append(f"<authentication xmlns='{ns.SASL2}'>")
        parts.extend(f"<mechanism>{name}</mechanism>" for name in self._offered_mechanisms)
        parts.append(
            f"<inline><sm xmlns='{SM}'/><bind xmlns='{ns.BIND2}'><inline>"
            f"<feature var='{SM}'/><feature var='{ns.CARBONS}'/><feature var='{ns.CSI}'/>"
            "</inline></bind>"
        )
        # XEP-0484: the FAST mechanisms are an inline feature, never in the mechanism lists
        # (and so never in the XEP-0474 hash either; ejabberd #4331).
        self._offered_fast = fast_mechanism_names(self.channel_bindings) if self.config.fast else ()
        if self._offered_fast:
            parts.append(f"<fast xmlns='{ns.FAST}'>")
            parts.extend(f"<mechanism>{name}</mechanism>" for name in self._offered_fast)
            parts.append("</fast>")
        parts.append("</inline>")
        # XEP-0480 §2.1: upgrade tasks are direct children of <authentication/>
        parts.extend(f"<upgrade xmlns='{NS_UPGRADE}'>{name}</upgrade>" for name in UPGRADE_TASKS)
        parts.append("</authentication>")
        if self.channel_bindings:
            # XEP-0440: a sibling feature listing the channel-binding types usable on this stream.
            parts.append(f"<sasl-channel-binding xmlns='{ns.SASL_CB}'>")
            parts.extend(
                f"<channel-binding type='{escape_attr(cb)}'/>" for cb in sorted(self.channel_bindings)
            )
            parts.append("</sasl-channel-binding>")
        self._out.append(self._features("".join(parts)))
        return None

    def _send_post_auth_features(self) -> None:
        self.state = State.EXPECT_BIND
        self._out.append(
            self._features(
                f"<bind xmlns='{ns.BIND}'/><session xmlns='{ns.SESSION}'><optional/></session>"
                f"<sm xmlns='{SM}'/><csi xmlns='{ns.CSI}'/>"
            )
        )

    def _mechanisms(self) -> tuple[str, ...]:
        names: list[str] = []
        if self.channel_bindings:
            names.extend(f"SCRAM-{h}-PLUS" for h in SCRAM_HASHES)
        names.extend(f"SCRAM-{h}" for h in SCRAM_HASHES)
        if self.config.allow_plain and self.secure:
            names.append("PLAIN")  # RFC 6120 §6.3.3 / XEP-0388: only ever under TLS
        return tuple(names)

    def _on_peer_close(self) -> Event:
        self._ensure_header()
        self._out.append(self._stream_footer())
        self.state = State.CLOSED
        self._inbox.clear()
        return StreamClosed(condition=None, by_peer=True)

    # ------------------------------------------------------------------ STARTTLS (RFC 6120 §5)
    def _on_starttls(self, el: etree._Element) -> Event:
        if el.tag != ns.qname(ns.TLS, "starttls"):
            raise StreamError(
                StreamErrorCondition.POLICY_VIOLATION, "STARTTLS is required before anything else"
            )
        self._out.append(f"<proceed xmlns='{ns.TLS}'/>".encode())
        self.state = State.TLS_HANDSHAKE
        self._waiting = "tls"
        self._inbox.clear()  # RFC 6120 §5.4.3.3: nothing pipelined in plaintext may survive
        self._parser = None
        return StartTlsRequested()

    # ------------------------------------------------------------------ SASL (RFC 6120 §6)
    def _on_sasl(self, el: etree._Element) -> Event | None:
        tag = el.tag
        if isinstance(tag, str) and tag.startswith("{" + ns.SASL2 + "}"):
            return self._on_sasl2(el, tag[len(ns.SASL2) + 2 :])
        if not isinstance(tag, str) or not tag.startswith("{" + ns.SASL + "}"):
            if self.state is State.SASL and self._profile == "sasl2":
                # XEP-0388 §2.6: nothing but the exchange may be sent while it is in progress.
                raise StreamError(StreamErrorCondition.POLICY_VIOLATION, "authentication is in progress")
            raise StreamError(StreamErrorCondition.NOT_AUTHORIZED, "authenticate first")
        if self.state is State.SASL and self._profile == "sasl2":
            raise StreamError(StreamErrorCondition.POLICY_VIOLATION, "a SASL2 exchange is in progress")
        local = tag[len(ns.SASL) + 2 :]
        if local == "auth":
            if self.state is State.SASL:
                return self._sasl_fail(SaslCondition.MALFORMED_REQUEST, "an exchange is already in progress")
            return self._on_auth(el)
        if local == "response" and self.state is State.SASL:
            return self._on_response(el)
        if local == "abort" and self.state is State.SASL:
            return self._sasl_fail(SaslCondition.ABORTED, "aborted by the client")
        return self._sasl_fail(SaslCondition.MALFORMED_REQUEST, f"unexpected <{local}/>")

    def _on_sasl2(self, el: etree._Element, local: str) -> Event | None:
        """XEP-0388: <authenticate/>, <response/>, <abort/> in urn:xmpp:sasl:2."""
        if self.state is State.SASL and self._profile != "sasl2":
            raise StreamError(
                StreamErrorCondition.POLICY_VIOLATION, "an RFC 6120 SASL exchange is in progress"
            )
        if local == "authenticate" and self.state is State.EXPECT_AUTH:
            self._profile = "sasl2"
            self._user_agent, self._bind2, self._sasl2_resume = _parse_authenticate(el)
            self._upgrades = tuple(
                name for up in el.iterfind(_Q_UPGRADE) if (name := (up.text or "").strip()) in UPGRADE_TASKS
            )
            name = el.get("mechanism", "")
            self.mechanism_name = name
            if name not in self._usable_mechanisms():
                return self._sasl_fail(
                    SaslCondition.INVALID_MECHANISM, f"{name or 'no mechanism'} is not offered"
                )
            problem = self._parse_fast(el, name)
            if problem:
                return self._sasl_fail(SaslCondition.MALFORMED_REQUEST, problem)
            if self._bind2 is not None and self._bind2.tag_problem:
                # XEP-0386 defines no bind error; XEP-0388 fails with an RFC 6120 §6.5 condition
                return self._sasl_fail(SaslCondition.MALFORMED_REQUEST, self._bind2.tag_problem)
            initial_el = el.find(ns.qname(ns.SASL2, "initial-response"))
            if initial_el is None:
                return self._start_mechanism(name, None)
            text = (initial_el.text or "").strip()
            return self._start_mechanism(name, "=" if text in ("", "=") else text)
        if local == "response" and self.state is State.SASL:
            return self._on_response(el)
        if local == "abort" and self.state is State.SASL:
            return self._sasl_fail(SaslCondition.ABORTED, "aborted by the client")
        raise StreamError(StreamErrorCondition.POLICY_VIOLATION, f"unexpected <{local}/> in SASL2")

    def _on_response(self, el: etree._Element) -> Event | None:
        assert self._mechanism is not None
        data = self._decode_b64(el.text)
        if data is None:
            return self._sasl_fail(SaslCondition.INCORRECT_ENCODING, "the response is not valid base64")
        return self._after_sasl(self._mechanism.step(data))

    def _on_auth(self, el: etree._Element) -> Event | None:
        self._profile = "sasl"
        self._user_agent = None
        self._bind2 = None
        self._sasl2_resume = None
        self._upgrades = ()
        self._fast_request = None
        self._fast_count = None
        self._fast_invalidate = False
        text = (el.text or "").strip()
        return self._start_mechanism(el.get("mechanism", ""), text or None)

    def _usable_mechanisms(self) -> tuple[str, ...]:
        """What the client may ask for: the advertised list, plus FAST's HT-* under SASL2.

        An HT-* mechanism that is not advertised because its channel binding is missing still
        gets as far as the mechanism, which fails it with malformed-request and says why.
        """
        if self._profile == "sasl2" and self.config.fast:
            return self._offered_mechanisms + tuple(HT_MECHANISMS)
        return self._offered_mechanisms

    def _parse_fast(self, el: etree._Element, mechanism: str) -> str | None:
        """XEP-0484 children of <authenticate/>; the text of a malformed-request, or None."""
        self._fast_request = None
        self._fast_count = None
        self._fast_invalidate = False
        if not self.config.fast:
            return None  # FAST is not offered: its elements mean nothing here
        ua_id = self._user_agent.id if self._user_agent is not None else None
        count: int | None = None
        invalidate = False
        fast = el.find(_Q_FAST)
        if fast is not None:
            raw_count = fast.get("count")
            if raw_count is not None:
                count = parse_uint(raw_count, maximum=10**18 - 1, positive=True)  # 18 digits at most
                if count is None:
                    return "<fast count='…'/> must be a positive integer"
            invalidate = fast.get("invalidate") in ("true", "1")
        using_token = mechanism in HT_MECHANISMS
        if using_token and not ua_id:
            return f"{mechanism} (a FAST token) needs <user-agent id='…'/>: tokens belong to one client"
        request = el.find(_Q_FAST_REQUEST_TOKEN)
        if request is not None:
            wanted = request.get("mechanism", "")
            if wanted not in self._offered_fast:
                return (
                    f"<request-token/> names {wanted[:64] or 'no mechanism'}, "
                    "which is not a FAST mechanism offered on this stream"
                )
            if not ua_id:
                return "a FAST token needs <user-agent id='…'/>"
            self._fast_request = wanted
        if using_token:  # count and invalidate are about the token in use
            self._fast_count = count
            self._fast_invalidate = invalidate
        return None

    def _start_mechanism(self, name: str, text: str | None) -> Event | None:
        """``text`` is the initial response as sent: None for none, '=' for an empty one."""
        self.mechanism_name = name
        if name not in self._usable_mechanisms():
            return self._sasl_fail(
                SaslCondition.INVALID_MECHANISM, f"{name or 'no mechanism'} is not offered"
            )
        initial: bytes | None
        if text is None:
            initial = None  # RFC 6120 §6.4.2: no initial response
        elif text == "=":
            initial = b""  # ... and '=' is an empty one
        else:
            initial = self._decode_b64(text)
            if initial is None:
                return self._sasl_fail(
                    SaslCondition.INCORRECT_ENCODING, "the initial response is not valid base64"
                )
        cb = ChannelBindingContext(
            bindings=self.channel_bindings,
            plus_advertised=any(m.endswith("-PLUS") for m in self._offered_mechanisms),
        )
        extensions = (
            ssdp_attribute(name, self._offered_mechanisms, self.channel_bindings)
            if name.startswith("SCRAM-")
            else ""
        )
        self._mechanism = make_mechanism(
            name, cb=cb, nonce_factory=self._nonce_factory, server_first_extensions=extensions
        )
        self.state = State.SASL
        return self._after_sasl(self._mechanism.start(initial))

    def _after_sasl(self, result: object) -> Event | None:
        if isinstance(result, SaslChallenge):
            namespace = ns.SASL2 if self._profile == "sasl2" else ns.SASL
            self._out.append(f"<challenge xmlns='{namespace}'>{_b64(result.data)}</challenge>".encode())
            return None
        if isinstance(result, SaslNeedCredentials):
            self._waiting = "credentials"
            self._sasl_username = result.username
            assert self._mechanism is not None
            hash_name = self._mechanism.name.removeprefix("SCRAM-").removesuffix("-PLUS")
            return CredentialsNeeded(
                username=result.username, localpart=_localpart_or_none(result.username), hash_name=hash_name
            )
        if isinstance(result, SaslNeedPasswordCheck):
            self._waiting = "password"
            self._sasl_username = result.username
            return PasswordCheckNeeded(
                username=result.username,
                localpart=_localpart_or_none(result.username),
                password=result.password,
            )
        if isinstance(result, SaslNeedToken):
            ua_id = self._user_agent.id if self._user_agent is not None else None
            assert ua_id  # _parse_fast lets no HT-* through without a user-agent id
            assert self.mechanism_name is not None
            self._waiting = "token"
            self._sasl_username = result.username
            return TokenCheckNeeded(
                username=result.username,
                localpart=_localpart_or_none(result.username),
                mechanism=self.mechanism_name,
                user_agent_id=ua_id,
                count=self._fast_count,
                invalidate=self._fast_invalidate,
            )
        if isinstance(result, SaslFailure):
            return self._sasl_fail(result.condition, result.text)
        if isinstance(result, SaslSuccess):
            return self._sasl_success(result)
        raise LocalProtocolError(f"unknown SASL result {result!r}")  # pragma: no cover

    def _sasl_success(self, result: SaslSuccess) -> Event | None:
        localpart = _localpart_or_none(result.username)
        if localpart is None:  # pragma: no cover - the driver never vouches for an invalid localpart
            return self._sasl_fail(SaslCondition.NOT_AUTHORIZED, "invalid credentials")
        if result.authzid:
            # RFC 6120 §6.3.8: we only let an account act as itself.
            try:
                authz = parse_jid(result.authzid)
            except InvalidJID:
                authz = None
            if authz is None or authz != JID(localpart, self.domain or ""):
                return self._sasl_fail(
                    SaslCondition.INVALID_AUTHZID, "the authorization identity is not yours"
                )
        if (
            self.stream_from is not None
            and self.stream_from.local is not None
            and self.stream_from.local != localpart
        ):
            return self._sasl_fail(SaslCondition.INVALID_AUTHZID, "the stream 'from' names another account")
        extra = result.additional_data
        self.authenticated_localpart = localpart
        self._mechanism = None
        assert self.mechanism_name is not None
        if self._profile == "sasl2":
            return self._sasl2_authenticated(localpart, extra, result.credential_id)
        # RFC 6120: the driver still decides (account policy, grants) before <success/> goes out.
        self._additional_data = extra
        self._waiting = "authorize"
        return Authenticated(
            localpart=localpart, mechanism=self.mechanism_name, credential_id=result.credential_id
        )

    def _sasl1_success(self) -> None:
        extra, self._additional_data = self._additional_data, None
        if extra:
            self._out.append(f"<success xmlns='{ns.SASL}'>{_b64(extra)}</success>".encode())
        else:
            self._out.append(f"<success xmlns='{ns.SASL}'/>".encode())
        self._restart()

    def _sasl2_authenticated(
        self, localpart: str, additional_data: bytes | None, credential_id: str
    ) -> Event:
        """XEP-0388 §2.6.4: the mechanism succeeded; the driver now says which tasks follow."""
        self._additional_data = additional_data
        assert self.mechanism_name is not None
        self.state = State.TASKS
        self._waiting = "tasks"
        self._success_pending = True  # issue_token() may be called until <success/>
        return Authenticated(
            localpart=localpart,
            mechanism=self.mechanism_name,
            profile="sasl2",
            user_agent=self._user_agent,
            upgrades=self._upgrades,
            credential_id=credential_id,
            fast_request=self._fast_request,
            fast_invalidate=self._fast_invalidate,
            fast_count=self._fast_count,
        )

    # ------------------------------------------------------------------ SASL2 tasks (XEP-0388 §2.7)
    def continue_with(self, steps: Sequence[Sequence[str]]) -> None:
        """Answer :class:`Authenticated`: the tasks still to do, in order (or :meth:`refuse`).

        Each step lists alternatives (the client picks one with ``<next/>``); an upgrade task
        (XEP-0480) is a step with exactly one. No steps: authentication is complete. An RFC 6120
        SASL login has no tasks: ``continue_with([])`` sends its ``<success/>``.
        """
        if self._waiting == "authorize":
            # RFC 6120 SASL has no tasks: the login is accepted, <success/> and a restart follow.
            if any(steps):
                raise LocalProtocolError("RFC 6120 SASL has no tasks")
            self._expect_waiting("authorize")
            self._sasl1_success()
            return
        self._expect_waiting("tasks")
        self._task_steps = [tuple(step) for step in steps if step]
        self._answered(self._next_step())

    def refuse(self, condition: SaslCondition, text: str) -> None:
        """Answer :class:`Authenticated` with a failure after all: the mechanism succeeded, but
        the driver does not admit this login (account policy, a revoked grant, a replayed FAST
        count). The client gets ``<failure/>`` with ``condition`` and ``text``; no ``<success/>``
        has been sent, and it may try again."""
        if self._waiting not in ("authorize", "tasks"):
            raise LocalProtocolError(f"nothing to refuse (waiting: {self._waiting})")
        self._waiting = None
        self._additional_data = None
        self._answered(self._sasl_fail(condition, text))

    def task_challenge(self, payload: str) -> None:
        """Send ``<task-data/>`` with ``payload`` (XML text) and wait for the client's answer."""
        self._expect_waiting("task")
        self._out.append(f"<task-data xmlns='{ns.SASL2}'>{payload}</task-data>".encode())

    def task_succeeded(self) -> None:
        self._expect_waiting("task")
        self._answered(self._next_step())

    def task_failed(self, condition: SaslCondition, text: str) -> None:
        self._expect_waiting("task")
        self._answered(self._sasl_fail(condition, text))

    def _next_step(self) -> Event | None:
        if not self._task_steps:
            return self._finish_sasl2()
        alternatives = self._task_steps.pop(0)
        self._task_alternatives = alternatives
        extra, self._additional_data = self._additional_data, None
        data = f"<additional-data>{_b64(extra)}</additional-data>" if extra else ""
        tasks = "".join(f"<task>{escape_text(name)}</task>" for name in alternatives)
        self._out.append(f"<continue xmlns='{ns.SASL2}'>{data}<tasks>{tasks}</tasks></continue>".encode())
        self.state = State.TASKS
        return None

    def _on_task_element(self, el: etree._Element) -> Event | None:
        tag = el.tag
        if tag == _Q_SASL2_ABORT:
            return self._sasl_fail(SaslCondition.ABORTED, "aborted by the client")
        payload = next((child for child in el if isinstance(child.tag, str)), None)
        if self.state is State.TASKS and tag == _Q_SASL2_NEXT:
            name = el.get("task", "")
            if name not in self._task_alternatives:
                return self._sasl_fail(
                    SaslCondition.MALFORMED_REQUEST, f"{name or 'no task'} was not offered"
                )
            self._task = name
            self.state = State.TASK
            self._waiting = "task"
            return TaskStarted(task=name, payload=payload)
        if self.state is State.TASK and tag == _Q_SASL2_TASK_DATA:
            self._waiting = "task"
            return TaskData(task=self._task, payload=payload)
        # XEP-0388 §2.6: nothing else may be sent while authentication is in progress
        raise StreamError(StreamErrorCondition.POLICY_VIOLATION, f"unexpected {tag} during SASL2 tasks")

    def _finish_sasl2(self) -> Event | None:
        """All tasks done: inline resume first, then Bind2, then <success/> (XEP-0198 §9, XEP-0386)."""
        localpart = self.authenticated_localpart
        assert localpart is not None
        if self._sasl2_resume is not None:
            previd, h = self._sasl2_resume
            self._resume_inline = True
            self._waiting = "resume"
            return ResumeRequested(previd=previd, h=h, inline=True)
        if self._bind2 is not None:
            self._bind_inline = True
            self._waiting = "bind"
            return BindRequested(
                resource=_bind2_resource(self._bind2, self._user_agent, self.authenticated_localpart or ""),
                inline=True,
            )
        self._sasl2_success(f"{localpart}@{self.domain}", "")
        self._send_post_auth_features()
        return None

    def _sasl2_success(self, authorization_identifier: str, inline_results: str) -> None:
        inline_results = self._sm_failed_inline + inline_results
        self._sm_failed_inline = ""
        self._success_pending = False
        token, self._issued_token = self._issued_token, None
        if token is not None:
            # XEP-0484: the token travels inside <success/>, after the other inline results
            inline_results += (
                f"<token xmlns='{ns.FAST}' token='{escape_attr(token.token)}'"
                f" expiry='{escape_attr(token.expiry)}'/>"
            )
        extra = self._additional_data
        self._additional_data = None
        data = f"<additional-data>{_b64(extra)}</additional-data>" if extra else ""
        self._out.append(
            f"<success xmlns='{ns.SASL2}'>{data}<authorization-identifier>"
            f"{escape_text(authorization_identifier)}</authorization-identifier>{inline_results}</success>".encode()
        )

    def _sasl_fail(self, condition: SaslCondition, text: str) -> Event:
        username, self._sasl_username = self._sasl_username, None
        self._mechanism = None
        self.authenticated_localpart = None  # a failed task fails the whole authentication
        self._task_steps = []
        self._success_pending = False
        self._issued_token = None
        self._auth_failures += 1
        text_el = f"<text xml:lang='en'>{escape_text(text)}</text>"
        if self._profile == "sasl2":
            # XEP-0388 §2.6.5: the RFC 6120 condition, qualified by the SASL namespace
            condition_el = f"<{condition.value} xmlns='{ns.SASL}'/>"
            self._out.append(f"<failure xmlns='{ns.SASL2}'>{condition_el}{text_el}</failure>".encode())
        else:
            self._out.append(f"<failure xmlns='{ns.SASL}'><{condition.value}/>{text_el}</failure>".encode())
        self.state = State.EXPECT_AUTH
        failed = AuthFailed(
            username=username,
            mechanism=self.mechanism_name or "",
            condition=condition,
            text=text,
        )
        if self._auth_failures >= MAX_AUTH_FAILURES:
            self._inbox.clear()
            self._inbox.append(
                StreamError(StreamErrorCondition.POLICY_VIOLATION, "too many failed authentication attempts")
            )
        return failed

    @staticmethod
    def _decode_b64(text: str | None) -> bytes | None:
        value = (text or "").strip()
        if value == "=":
            return b""
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return None

    # ------------------------------------------------------------------ binding (RFC 6120 §7)
    def _on_bind(self, el: etree._Element) -> Event | None:
        if el.tag == _Q_SM_RESUME:
            # XEP-0198 §5: resume instead of binding
            previd = el.get("previd")
            if not previd:
                self._out.append(failed_element("bad-request", text="previd is missing").encode())
                return None
            self._waiting = "resume"
            self._resume_inline = False
            return ResumeRequested(previd=previd, h=el.get("h"), inline=False)
        if el.tag == _Q_SM_ENABLE:
            self._out.append(failed_element("unexpected-request", text="bind a resource first").encode())
            return None
        if el.tag != _Q_IQ:
            raise StreamError(StreamErrorCondition.NOT_AUTHORIZED, "bind a resource first")
        iq_id = el.get("id")
        if not iq_id or el.get("type") not in _IQ_TYPES:
            self._send_element(
                self._iq_error(iq_id or "", None, StanzaErrorCondition.BAD_REQUEST, "malformed iq")
            )
            return None
        payload = _only_child(el)
        if el.get("type") == "set" and payload is not None and payload.tag == _Q_BIND:
            resource_el = payload.find(_Q_BIND_RESOURCE)
            wish = (resource_el.text or "").strip() if resource_el is not None else ""
            resource: str | None = None
            if wish:
                try:
                    resource = prep_resource(wish)
                except InvalidJID as exc:
                    self._send_element(
                        self._iq_error(iq_id, None, StanzaErrorCondition.BAD_REQUEST, str(exc))
                    )
                    return None
            self._bind_iq_id = iq_id
            self._waiting = "bind"
            return BindRequested(resource=resource)
        if el.get("type") == "set" and payload is not None and payload.tag == _Q_SESSION:
            self._send_element(self._iq_result(iq_id, to=None))
            return None
        self._send_element(
            self._iq_error(iq_id, None, StanzaErrorCondition.NOT_AUTHORIZED, "bind a resource first")
        )
        return None

    # ------------------------------------------------------------------ stanzas (RFC 6120 §8)
    def _on_stanza(self, el: etree._Element) -> Event | None:
        tag = el.tag
        if tag in _NONZAS:
            assert isinstance(tag, str)
            return self._on_nonza(el, tag)
        if self.sm is not None:
            self.sm.stanza_received()
        if not isinstance(tag, str) or not tag.startswith("{jabber:client}"):
            if _is_auth_element(el):
                raise StreamError(StreamErrorCondition.POLICY_VIOLATION, "already authenticated")
            raise StreamError(StreamErrorCondition.UNSUPPORTED_STANZA_TYPE, f"unexpected element {tag}")
        kind = tag[15:]
        if kind not in _STANZA_KINDS:
            raise StreamError(StreamErrorCondition.UNSUPPORTED_STANZA_TYPE, f"<{kind}/> is not a stanza")
        jid = self.jid
        assert jid is not None
        claimed = el.get("from")
        if claimed is not None:
            # RFC 6120 §8.1.2.1: the server stamps the full JID, or refuses a from that is not ours.
            try:
                claimed_jid = parse_jid(claimed)
            except InvalidJID:
                claimed_jid = None
            if claimed_jid != jid and claimed_jid != jid.bare:
                raise StreamError(StreamErrorCondition.INVALID_FROM, "'from' does not match this session")
        el.set("from", str(jid))
        stanza_type = el.get("type") or ("available" if kind == "presence" else "normal")
        raw_to = el.get("to")
        to: JID | None = None
        if raw_to is not None:
            try:
                to = parse_jid(raw_to)
            except InvalidJID as exc:
                self._reply_error(el, StanzaErrorCondition.JID_MALFORMED, str(exc))
                return None
        if kind == "iq":
            return self._on_iq(el, stanza_type, to)
        if kind == "presence":
            if stanza_type not in _PRESENCE_TYPES:
                self._reply_error(
                    el, StanzaErrorCondition.BAD_REQUEST, f"unknown presence type {stanza_type}"
                )
                return None
            if self.access is not None and self._denied(el, kind, stanza_type, to, None):
                return None
            if stanza_type in _SUBSCRIPTION_TYPES and to is not None:
                self._reply_error(
                    el,
                    StanzaErrorCondition.FEATURE_NOT_IMPLEMENTED,
                    "presence subscriptions are not supported yet",
                )
                return None
            if to is not None and not self._is_local(to):
                self._reply_error(el, StanzaErrorCondition.REMOTE_SERVER_NOT_FOUND, "no federation")
                return None
            return StanzaReceived(kind=kind, type=stanza_type, to=to, stanza=el)
        if self.access is not None and self._denied(el, kind, stanza_type, to, None):
            return None
        # message; RFC 6121 §8.1.1.1: no 'to' means the sender's own bare JID
        if to is None:
            to = jid.bare
            el.set("to", str(to))
        if not self._is_local(to):
            self._reply_error(el, StanzaErrorCondition.REMOTE_SERVER_NOT_FOUND, "no federation")
            return None
        if to.local is None:
            self._reply_error(el, StanzaErrorCondition.SERVICE_UNAVAILABLE, "the server takes no messages")
            return None
        return StanzaReceived(kind=kind, type=stanza_type, to=to, stanza=el)

    def _on_nonza(self, el: etree._Element, tag: str) -> Event | None:
        """XEP-0198 and XEP-0352 elements between stanzas (``tag`` is one of ``_NONZAS``)."""
        sm = self.sm
        if tag == _Q_SM_R:
            if sm is None:
                raise StreamError(
                    StreamErrorCondition.UNSUPPORTED_STANZA_TYPE, "stream management is not enabled"
                )
            self._out.append(sm.ack_element().encode())
            return None
        if tag == _Q_SM_A:
            if sm is None:
                raise StreamError(
                    StreamErrorCondition.UNSUPPORTED_STANZA_TYPE, "stream management is not enabled"
                )
            sm.acknowledge(el.get("h"))
            return None
        if tag == _Q_SM_ENABLE:
            if sm is not None:
                self._out.append(failed_element("unexpected-request", text="already enabled").encode())
                return None
            resume = el.get("resume") in ("true", "1")
            self.sm = StreamManagement.enable(resume=resume, max_seconds=self.config.sm_resume_seconds)
            self._out.append(self.sm.enabled_element().encode())
            return None
        if tag == _Q_SM_RESUME:
            self._out.append(failed_element("unexpected-request", text="this stream is bound").encode())
            return None
        if tag in (_Q_CSI_ACTIVE, _Q_CSI_INACTIVE):
            active = tag == _Q_CSI_ACTIVE
            changed = active != self.csi_active
            self.csi_active = active
            return ClientStateChanged(active=active) if changed else None
        raise LocalProtocolError(f"not a nonza: {tag}")  # pragma: no cover

    def _on_iq(self, el: etree._Element, iq_type: str, to: JID | None) -> Event | None:
        iq_id = el.get("id")
        if not iq_id or iq_type not in _IQ_TYPES:
            self._reply_error(el, StanzaErrorCondition.BAD_REQUEST, "an iq needs an id and a valid type")
            return None
        payload = _only_child(el)
        if iq_type in ("get", "set") and payload is None:
            self._reply_error(el, StanzaErrorCondition.BAD_REQUEST, "get and set need exactly one child")
            return None
        if self.access is not None and self._denied(
            el, "iq", iq_type, to, payload.tag if payload is not None else None
        ):
            return None
        if to is not None and not self._is_local(to):
            self._reply_error(el, StanzaErrorCondition.REMOTE_SERVER_NOT_FOUND, "no federation")
            return None
        if to is not None and to.resource is not None:
            return StanzaReceived(kind="iq", type=iq_type, to=to, stanza=el)
        if iq_type in ("result", "error"):
            return None  # answers to the server or a bare JID end here (RFC 6120 §8.2.3)
        assert payload is not None
        assert self.jid is not None
        if to is None or to.local is None:
            return self._server_iq(el, iq_type, payload)
        if to == self.jid.bare:
            return self._account_iq(el, iq_type, payload)
        # RFC 6121 §8.5.2.1.3: the server answers on behalf of the account and implements
        # nothing on behalf of other accounts; the same answer whether or not the account exists.
        self._reply_error(el, StanzaErrorCondition.SERVICE_UNAVAILABLE)
        return None

    def _denied(
        self, el: etree._Element, kind: str, stanza_type: str, to: JID | None, payload: str | None
    ) -> bool:
        """Put the stanza to :attr:`access`; on a denial answer with its error and say True."""
        assert self.access is not None
        denial = self.access.check_inbound(kind, stanza_type, self._target(to), payload, to, el.get("id"))
        if denial is None:
            return False
        self._reply_error(el, denial.condition, denial.text)  # never for error (or result) stanzas
        return True

    def _target(self, to: JID | None) -> str:
        """``"server"``, ``"account"`` or ``"peer"``: see :mod:`xmppauth.proto.access`."""
        if to is None:
            return "server"
        if to.local is None:
            return "server" if to.resource is None and self._is_local(to) else "peer"
        return "account" if self.jid is not None and to == self.jid.bare else "peer"

    def _driver_iq(self, el: etree._Element, payload: etree._Element, target: str) -> Event | None:
        """An iq nobody in the core answers: the driver's if it claimed the namespace."""
        tag = payload.tag
        assert isinstance(tag, str)  # _only_child returns elements only
        namespace = tag[1 : tag.find("}")] if tag.startswith("{") else ""
        if namespace in self.config.driver_iq_namespaces:
            return IqRequest(stanza=el, payload=payload, target=target)
        self._reply_error(el, StanzaErrorCondition.SERVICE_UNAVAILABLE)
        return None

    def _server_iq(self, el: etree._Element, iq_type: str, payload: etree._Element) -> Event | None:
        tag = payload.tag
        if tag in (_Q_DISCO_INFO, _Q_DISCO_ITEMS) and payload.get("node") in self.config.driver_disco_nodes:
            return IqRequest(stanza=el, payload=payload, target="server")
        if tag == _Q_PING:
            self._answer_get(el, iq_type, None)
        elif tag == _Q_DISCO_INFO:
            self._answer_get(
                el,
                iq_type,
                self._disco_info(
                    payload,
                    "server",
                    "im",
                    self.config.server_name,
                    SERVER_FEATURES + self.config.extra_server_features,
                ),
            )
        elif tag == _Q_DISCO_ITEMS:
            self._answer_get(el, iq_type, self._disco_items(payload))
        elif tag == _Q_SESSION and iq_type == "set":
            self._send_element(self._iq_result(el.get("id", ""), to=el.get("from")))
        elif tag in (_Q_CARBONS_ENABLE, _Q_CARBONS_DISABLE) and iq_type == "set":
            # XEP-0280 §4: per session, answered with an empty result
            self.carbons = tag == _Q_CARBONS_ENABLE
            self._send_element(self._iq_result(el.get("id", ""), to=el.get("from")))
        else:
            return self._driver_iq(el, payload, "server")
        return None

    def _account_iq(self, el: etree._Element, iq_type: str, payload: etree._Element) -> Event | None:
        tag = payload.tag
        if tag == _Q_PING:
            self._answer_get(el, iq_type, None)
        elif tag == _Q_DISCO_INFO:
            self._answer_get(
                el,
                iq_type,
                self._disco_info(
                    payload,
                    "account",
                    "registered",
                    None,
                    ACCOUNT_FEATURES + self.config.extra_account_features,
                ),
            )
        elif tag == _Q_DISCO_ITEMS:
            self._answer_get(el, iq_type, self._disco_items(payload))
        else:
            return self._driver_iq(el, payload, "account")
        return None

    def _answer_get(
        self, el: etree._Element, iq_type: str, payload: etree._Element | StanzaErrorCondition | None
    ) -> None:
        """Answer a get with ``payload``; a set on a get-only namespace is not implemented."""
        if iq_type != "get":
            self._reply_error(
                el, StanzaErrorCondition.FEATURE_NOT_IMPLEMENTED, "only 'get' is supported here"
            )
            return
        if isinstance(payload, StanzaErrorCondition):
            self._reply_error(el, payload)
            return
        reply = self._iq_result(el.get("id", ""), to=el.get("from"), sender=el.get("to"))
        if payload is not None:
            reply.append(payload)
        self._send_element(reply)

    @staticmethod
    def _disco_info(
        query: etree._Element, category: str, kind: str, name: str | None, features: tuple[str, ...]
    ) -> etree._Element | StanzaErrorCondition:
        if query.get("node"):
            return StanzaErrorCondition.ITEM_NOT_FOUND
        result = etree.Element(_Q_DISCO_INFO, nsmap=ns.default(ns.DISCO_INFO))
        identity = etree.SubElement(result, ns.qname(ns.DISCO_INFO, "identity"), category=category, type=kind)
        if name:
            identity.set("name", name)
        for var in features:
            etree.SubElement(result, ns.qname(ns.DISCO_INFO, "feature"), var=var)
        return result

    @staticmethod
    def _disco_items(query: etree._Element) -> etree._Element | StanzaErrorCondition:
        if query.get("node"):
            return StanzaErrorCondition.ITEM_NOT_FOUND
        return etree.Element(_Q_DISCO_ITEMS, nsmap=ns.default(ns.DISCO_ITEMS))

    def _is_local(self, jid: JID) -> bool:
        return jid.domain in self.config.domains

    def _reply_error(self, el: etree._Element, condition: StanzaErrorCondition, text: str = "") -> None:
        if el.get("type") not in ("error", "result"):
            self._send_element(self._error_reply(el, condition, text))

    # ------------------------------------------------------------------ builders
    def _error_reply(self, el: etree._Element, condition: StanzaErrorCondition, text: str) -> etree._Element:
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
        reply.append(error_element(condition, text, lang=self.config.lang))
        return reply

    def _iq_result(self, iq_id: str, *, to: str | None, sender: str | None = None) -> etree._Element:
        reply = etree.Element(_Q_IQ, nsmap=ns.default(ns.CLIENT), type="result", id=iq_id)
        if sender:
            reply.set("from", sender)
        if to:
            reply.set("to", to)
        return reply

    def _iq_error(
        self, iq_id: str, to: str | None, condition: StanzaErrorCondition, text: str = ""
    ) -> etree._Element:
        reply = etree.Element(_Q_IQ, nsmap=ns.default(ns.CLIENT), type="error", id=iq_id)
        if to:
            reply.set("to", to)
        reply.append(error_element(condition, text, lang=self.config.lang))
        return reply

    def _send_element(self, el: etree._Element) -> None:
        self._queue_stanza(serialize(el))

    def _features(self, inner: str) -> bytes:
        if self.framed:
            return f"<stream:features xmlns:stream='{ns.STREAMS}'>{inner}</stream:features>".encode()
        return f"<stream:features>{inner}</stream:features>".encode()

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
        """Queue a stream error and close (RFC 6120 §4.9.1.1: header first if none was sent)."""
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
        self._waiting = None
        self._parser = None
        self._success_pending = False
        self._issued_token = None
        return StreamClosed(condition=condition, text=text)

    def _restart(self) -> None:
        """A stream restart: fresh parser, nothing parsed before it survives (RFC 6120 §4.3.3)."""
        self._inbox.clear()
        self._parser = self._new_parser()
        self._header_sent = False
        self.state = State.EXPECT_HEADER

    def _new_parser(self) -> StreamParser:
        limit = self.config.max_preauth_stanza_bytes
        if getattr(self, "authenticated_localpart", None) is not None:
            limit = self.config.max_stanza_bytes
        return StreamParser(max_stanza_bytes=limit, max_depth=self.config.max_depth, framed=self.framed)


@dataclass(frozen=True, kw_only=True, slots=True)
class _IssuedToken:
    """A FAST token waiting for ``<success/>``; kept out of every repr."""

    token: str = field(repr=False)
    expiry: str


@dataclass(frozen=True, kw_only=True, slots=True)
class _Bind2Request:
    tag: str | None  # prepared (RFC 7622 §3.4) and cut to _MAX_BIND2_TAG characters
    tag_problem: str = ""  # why the <tag> cannot go into a resource: the <authenticate/> is refused
    sm_enable: bool = False
    carbons: bool = False
    csi_active: bool | None = None


_MAX_USER_AGENT_TEXT = 256


def _child_text(el: etree._Element, namespace: str, local: str) -> str | None:
    child = el.find(ns.qname(namespace, local))
    if child is None or not child.text:
        return None
    return child.text.strip()[:_MAX_USER_AGENT_TEXT] or None


def _parse_authenticate(
    el: etree._Element,
) -> tuple[UserAgent | None, _Bind2Request | None, tuple[str, str | None] | None]:
    """The <user-agent/>, Bind2 <bind/> and SM <resume/> children of <authenticate/> (all optional)."""
    user_agent = None
    ua = el.find(ns.qname(ns.SASL2, "user-agent"))
    if ua is not None:
        ua_id = (ua.get("id") or "").strip()[:_MAX_USER_AGENT_TEXT] or None
        user_agent = UserAgent(
            id=ua_id,
            software=_child_text(ua, ns.SASL2, "software"),
            device=_child_text(ua, ns.SASL2, "device"),
        )
    bind2 = None
    bind = el.find(ns.qname(ns.BIND2, "bind"))
    if bind is not None:
        csi: bool | None = None
        if bind.find(_Q_CSI_ACTIVE) is not None:
            csi = True
        elif bind.find(_Q_CSI_INACTIVE) is not None:
            csi = False
        tag, tag_problem = _bind2_tag(bind)
        bind2 = _Bind2Request(
            tag=tag,
            tag_problem=tag_problem,
            sm_enable=bind.find(_Q_SM_ENABLE) is not None,
            carbons=bind.find(_Q_CARBONS_ENABLE) is not None,
            csi_active=csi,
        )
    resume = None
    resume_el = el.find(_Q_SM_RESUME)
    if resume_el is not None and resume_el.get("previd"):
        resume = (resume_el.get("previd", ""), resume_el.get("h"))
    return user_agent, bind2, resume


def _bind2_resource(request: _Bind2Request, user_agent: UserAgent | None, localpart: str) -> str:
    """XEP-0386 §2.4: the client's tag, then a suffix stable per account and user-agent id, or
    random without an id. The suffix is a hash: the id itself must never be revealed, and with
    the account hashed in, one installation cannot be linked across the accounts it uses."""
    if user_agent is not None and user_agent.id:
        material = f"xmppauth-bind2\0{localpart}\0{user_agent.id}".encode()
        digest = hashlib.sha256(material).digest()[:9]
        suffix = base64.urlsafe_b64encode(digest).decode()
    else:
        suffix = secrets.token_urlsafe(9)
    tag = request.tag
    return f"{tag}~{suffix}" if tag else suffix


_MAX_BIND2_TAG = 64


def _bind2_tag(bind: etree._Element) -> tuple[str | None, str]:
    """The Bind2 <tag>, prepared as a resourcepart, or why it cannot be one.

    XEP-0386 §2.2.1: the tag "SHOULD be included as-is in the final resource identifier, subject
    to the necessary validation for resource identifiers" (RFC 7622 §3.4, OpaqueString). A tag that
    fails refuses the <authenticate/> with the reason, rather than binding a resource without it.
    The whole tag is checked (so at most 1023 bytes); at most 64 characters of it go into the resource.
    """
    child = bind.find(ns.qname(ns.BIND2, "tag"))
    text = (child.text or "").strip() if child is not None else ""
    if not text:
        return None, ""
    try:
        tag = prep_resource(text)
        if len(tag) > _MAX_BIND2_TAG:
            tag = prep_resource(tag[:_MAX_BIND2_TAG])  # a cut can strand a context-bound code point
    except InvalidJID as exc:
        return None, f"the Bind2 <tag> cannot be part of a resource: {exc}"
    return tag, ""


def _is_auth_element(el: etree._Element) -> bool:
    tag = el.tag
    return isinstance(tag, str) and (
        tag.startswith("{" + ns.SASL + "}") or tag.startswith("{" + ns.SASL2 + "}")
    )


def ssdp_attribute(mechanism: str, offered: tuple[str, ...], channel_bindings: Mapping[str, bytes]) -> str:
    """XEP-0474 (0.4+) ``h=`` for the SCRAM server-first-message.

    S is the advertised mechanisms of the profile in use, sorted by octet and joined with 0x1E,
    followed, when XEP-0440 channel-binding types were advertised, by 0x1F and the sorted types
    joined with 0x1E; ``h`` is base64(H(S)) with the hash of the SCRAM mechanism in use. Both our
    profiles advertise the same list, and FAST (HT-*) mechanisms are never part of it.
    """
    text = "\x1e".join(sorted(offered))
    if channel_bindings:
        text += "\x1f" + "\x1e".join(sorted(channel_bindings))
    hash_name = mechanism.removeprefix("SCRAM-").removesuffix("-PLUS").replace("-", "").lower()
    digest = hashlib.new(hash_name, text.encode()).digest()
    return "h=" + base64.b64encode(digest).decode()


def _only_child(el: etree._Element) -> etree._Element | None:
    """The single element child of an iq, or None when there are none or several."""
    children = [child for child in el if isinstance(child.tag, str)]
    return children[0] if len(children) == 1 else None


def _localpart_or_none(username: str) -> str | None:
    try:
        return prep_localpart(username)
    except InvalidJID:
        return None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii") if data else "="
