"""A driver for fuzzing the sans-IO stream machine (xmppauth/proto/stream.py) with random clients.

:class:`FuzzDriver` plays the consumer's part as ``tests/proto/transcript.py`` does, but lets the test's
Hypothesis data choose each answer (refuse a login, ask for tasks, fail a bind, resume or not), so
that random client input meets the machine in every state. After every call it checks what the
client would see: the output is well-formed XML, a stream error closes the stream with our header
first and the footer last, and nothing comes out of a closed stream.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
from collections.abc import Callable
from typing import Any

from hypothesis import event
from hypothesis import strategies as st
from lxml import etree

from tests.fuzz.common import elements, rarely
from xmppauth.proto import events as ev
from xmppauth.proto import xep0480_upgrade as upgrade
from xmppauth.proto.errors import SaslCondition, StanzaErrorCondition, StreamError, StreamErrorCondition
from xmppauth.proto.jid import JID
from xmppauth.proto.sasl import (
    ScramClient,
    ScramCredentials,
    TokenCandidate,
    derive_credentials,
    fake_credentials,
)
from xmppauth.proto.states import State
from xmppauth.proto.stream import C2SStream, StreamConfig
from xmppauth.proto.xep0198_sm import StreamManagement
from xmppauth.proto.xml import escape_attr, escape_text, serialize

ACCOUNTS = {"alice": "wonderland", "bob": "builder"}
APP_PASSWORD = "app-password-1"
TOKEN = "secret-token:fuzz"
SALT = b"fuzz-salt"
BINDINGS = {"tls-exporter": b"X" * 32, "tls-server-end-point": b"E" * 32}

_CHALLENGE = re.compile(rb"<challenge xmlns='[^']*'>([^<]*)</challenge>")


@functools.lru_cache(maxsize=64)
def _credentials(password: str, hash_name: str) -> ScramCredentials:
    return derive_credentials(password, hash_name, salt=SALT, iterations=4096)


class FuzzDriver:
    """One stream and its driver; ``choose(options)`` picks among the driver's possible answers."""

    def __init__(
        self,
        *,
        framed: bool,
        secure: bool,
        fast: bool,
        choose: Callable[[list[Any]], Any],
        bindings: dict[str, bytes] | None = None,
    ) -> None:
        config = StreamConfig(domains=frozenset({"localhost"}), fast=fast, max_depth=16)
        self.stream = C2SStream(
            config,
            framed=framed,
            secure=secure,
            starttls=not secure and not framed,
            channel_bindings=bindings if secure else None,
            nonce_factory=lambda: "SNONCE",
        )
        self.choose = choose
        self.events: list[ev.Event] = []
        self.output: list[bytes] = []
        self.closed_with: ev.StreamClosed | None = None
        self.scram: ScramClient | None = None
        self._seen_at_close = 0

    # ------------------------------------------------------------------ the client's side
    def send(self, data: bytes) -> None:
        """What the client sends (a TCP chunk, or one WebSocket message)."""
        before = self.stream.state
        if self.stream.framed:
            self.stream.receive_frame(data)
        else:
            self.stream.receive_data(data)
        self.pump()
        if before is State.CLOSED:
            assert not self.output[self._seen_at_close :], "output after the stream was closed"

    def step(self, step: str | tuple[str, ...]) -> None:
        """Send one client step: XML text, or a SCRAM message computed now (see :func:`logins`)."""
        if isinstance(step, str):
            self.send(step.encode())
            return
        kind, profile, *rest = step
        ns = SASL2 if profile == "sasl2" else SASL
        if kind == "scram-start":
            hash_name, user, password, plus, extra = rest
            cb_type = "tls-exporter" if plus == "plus" else None
            self.scram = ScramClient(
                hash_name,
                user,
                password,
                cb_type=cb_type,
                cb_data=BINDINGS["tls-exporter"] if cb_type else b"",
            )
            mechanism = f"SCRAM-{hash_name}" + ("-PLUS" if cb_type else "")
            first = b64(self.scram.first())
            if profile == "sasl2":
                xml = (
                    f"<authenticate xmlns='{ns}' mechanism='{mechanism}'>"
                    f"<initial-response>{first}</initial-response>{extra}</authenticate>"
                )
            else:
                xml = f"<auth xmlns='{ns}' mechanism='{mechanism}'>{first}</auth>"
            self.send(xml.encode())
        else:  # "scram-final": the answer to the last challenge, if there is one to answer
            challenge = self.last_challenge()
            answer = "="
            if self.scram is not None and challenge is not None:
                try:
                    answer = b64(self.scram.final(challenge))
                except Exception:  # the client refuses the challenge (or was used up): send junk
                    answer = "AAAA"
            self.send(f"<response xmlns='{ns}'>{answer}</response>".encode())

    def deliver(self) -> None:
        """The driver's own moves between two client steps: a routed stanza, an ack request, a bounce."""
        stream = self.stream
        what = self.choose(["nothing", "stanza", "stanzas", "ack", "bounce"])
        try:
            if what == "stanza":
                stream.send_raw(
                    b"<message xmlns='jabber:client' from='bob@localhost/x' type='chat'><body>hi</body></message>"
                )
            elif what == "stanzas":
                for _ in range(7):
                    stream.send_stanza(
                        etree.fromstring(b"<presence xmlns='jabber:client' from='bob@localhost/x'/>")
                    )
            elif what == "ack":
                stream.request_ack()
            elif what == "bounce":
                received = [e for e in self.events if isinstance(e, ev.StanzaReceived)]
                if received:
                    stream.bounce(
                        received[-1].stanza, StanzaErrorCondition.SERVICE_UNAVAILABLE, "<gone> & away"
                    )
        except StreamError as exc:  # the consumer closes the stream with the core's condition
            closed = stream.close(exc.condition, exc.text)
            self.events.append(closed)
            self.output.extend(stream.data_to_send())
            self.closed(closed)
        self.output.extend(stream.data_to_send())

    def eof(self) -> None:
        self.stream.receive_eof()
        self.pump()
        assert self.stream.state is State.CLOSED

    def last_challenge(self) -> bytes | None:
        for data in reversed(self.output):
            found = _CHALLENGE.findall(data)
            if found:
                text = found[-1].decode()
                return b"" if text == "=" else base64.b64decode(text)
        return None

    # ------------------------------------------------------------------ the driver's side
    def pump(self) -> None:
        while (event := self.stream.next_event()) is not None:
            self.events.append(event)
            self.output.extend(self.stream.data_to_send())
            self.answer(event)
            self.output.extend(self.stream.data_to_send())
        self.output.extend(self.stream.data_to_send())

    def answer(self, event: ev.Event) -> None:
        stream = self.stream
        if isinstance(event, ev.StreamClosed):
            self.closed(event)
        elif isinstance(event, ev.StartTlsRequested):
            stream.tls_established(self.choose([{}, BINDINGS]))
        elif isinstance(event, ev.CredentialsNeeded):
            password = ACCOUNTS.get(event.localpart or "")
            if password is None:
                creds = fake_credentials(b"fuzz", event.username, event.hash_name, iterations=4096)
                stream.provide_credentials(creds)
            else:
                app = _credentials(APP_PASSWORD, event.hash_name)
                stream.provide_credentials(_credentials(password, event.hash_name), [app])
        elif isinstance(event, ev.PasswordCheckNeeded):
            ok = ACCOUNTS.get(event.localpart or "") == event.password
            stream.password_checked(ok or event.password == APP_PASSWORD, "" if ok else "app")
        elif isinstance(event, ev.TokenCheckNeeded):
            mechanism = self.choose([event.mechanism, "HT-SHA-256-NONE"])
            stream.provide_tokens(
                [TokenCandidate(credential_id="t", key=TOKEN.encode(), mechanism=mechanism)]
            )
        elif isinstance(event, ev.Authenticated):
            self.authenticated(event)
        elif isinstance(event, (ev.TaskStarted, ev.TaskData)):
            self.task(event)
        elif isinstance(event, ev.BindRequested):
            if self.choose([True, True, False]):
                jid = stream.bind_resource(event.resource or "generated")
                assert jid.resource is not None
            else:
                stream.bind_failed(StanzaErrorCondition.CONFLICT, "taken")
        elif isinstance(event, ev.ResumeRequested):
            self.resume(event)

    def closed(self, event: ev.StreamClosed) -> None:
        assert self.stream.state is State.CLOSED
        assert self.closed_with is None, "closed twice"
        self.closed_with = event
        self._seen_at_close = len(self.output)

    def authenticated(self, event: ev.Authenticated) -> None:
        stream = self.stream
        if self.choose([False, False, True]):
            stream.refuse(SaslCondition.NOT_AUTHORIZED, "refused by the driver")
            return
        if event.profile == "sasl":
            stream.continue_with([])
            return
        if event.fast_request is not None and self.choose([True, False]):
            stream.issue_token(TOKEN, "2099-01-01T00:00:00Z")
        steps = self.choose(
            [[], [["TOTP", "X-RECOVERY"]], [[u] for u in event.upgrades], [["TOTP"], ["X-TWO"]]]
        )
        stream.continue_with(steps, self.choose([(), ("a <text> & more",)]))

    def task(self, event: ev.TaskStarted | ev.TaskData) -> None:
        stream = self.stream
        hash_name = upgrade.hash_of(event.task)
        if hash_name and isinstance(event, ev.TaskData):
            creds = upgrade.credentials_from_answer(event.payload, hash_name, salt=SALT, iterations=4096)
            if creds is None:
                stream.task_failed(SaslCondition.MALFORMED_REQUEST, "bad hash")
            else:
                stream.task_succeeded()
            return
        if hash_name:
            stream.task_challenge(upgrade.salt_challenge(SALT, 4096))
            return
        what = self.choose(["challenge", "succeed", "fail"])
        if what == "challenge":
            stream.task_challenge("<code xmlns='urn:x'/>")
        elif what == "succeed":
            stream.task_succeeded()
        else:
            stream.task_failed(SaslCondition.NOT_AUTHORIZED, "wrong code")

    def resume(self, event: ev.ResumeRequested) -> None:
        stream = self.stream
        if self.choose([False, True]):
            stream.resume_failed("no session to resume")
            return
        sm = StreamManagement.enable(resume=True, max_seconds=60)
        for i in range(self.choose([0, 3])):
            sm.stanza_sent(f"<message xmlns='jabber:client' id='{i}'/>".encode())
        if event.h is not None:
            try:
                sm.check_acknowledgement(event.h)
            except StreamError as exc:  # what the consumer does: this stream is at fault
                closed = stream.close(exc.condition, exc.text)
                self.events.append(closed)
                self.output.extend(stream.data_to_send())
                self.closed(closed)
                return
        assert stream.authenticated_localpart is not None
        jid = JID(stream.authenticated_localpart, "localhost", "resumed")
        stream.resume_succeeded(jid, sm, event.h)

    # ------------------------------------------------------------------ what the client saw
    def check(self) -> None:
        """The output is well-formed and a stream error ends the stream properly."""
        if self.stream.framed:
            elements = [etree.fromstring(frame) for frame in self.output]  # RFC 7395: one element each
        else:
            elements = _tcp_elements(b"".join(self.output))
        for element in elements:
            _check_error(element)
        closed = [e for e in self.events if isinstance(e, ev.StreamClosed)]
        assert len(closed) <= 1, closed
        if closed and closed[0].condition is not None:
            tail = b"".join(self.output[-2:])
            assert (
                f"<{closed[0].condition.value} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>".encode() in tail
            )
            footer = (
                b"<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"
                if self.stream.framed
                else b"</stream:stream>"
            )
            assert self.output[-1] == footer
        if closed:
            assert self.stream.state is State.CLOSED


def ht_payload(user: str = "alice", token: str = TOKEN, cb_data: bytes = b"") -> str:
    """An HT-* initial response, as a client computes it."""
    mac = hmac.new(token.encode(), b"Initiator" + cb_data, hashlib.sha256).digest()
    return b64(user.encode() + b"\0" + mac)


def _tcp_elements(data: bytes) -> list[etree._Element]:
    """The top-level elements of every stream the server opened (one per restart); each stream must
    be well-formed XML as far as it goes."""
    elements: list[etree._Element] = []
    for segment in data.split(b"<?xml version='1.0'?>"):
        if not segment:
            continue
        parser = etree.XMLPullParser(events=("start", "end"))
        parser.feed(segment)  # raises on anything not well-formed
        depth = 0
        for action, element in parser.read_events():
            depth += 1 if action == "start" else -1
            if action == "end" and depth == 1:
                elements.append(element)
    return elements


_STANZA_ERRORS = "{urn:ietf:params:xml:ns:xmpp-stanzas}"
_STREAM_ERRORS = "{urn:ietf:params:xml:ns:xmpp-streams}"


def _check_error(element: etree._Element) -> None:
    """A stanza error (RFC 6120 §8.3.2) or stream error (§4.9.2) names exactly one defined condition."""
    if element.tag == "{http://etherx.jabber.org/streams}error":
        conditions = [
            c for c in element if c.tag.startswith(_STREAM_ERRORS) and c.tag != _STREAM_ERRORS + "text"
        ]
        assert len(conditions) == 1, etree.tostring(element)
        assert conditions[0].tag[len(_STREAM_ERRORS) :] in {c.value for c in StreamErrorCondition}
    elif element.get("type") == "error" and element.tag.startswith("{jabber:client}"):
        (error,) = element.findall("{jabber:client}error")
        conditions = [
            c for c in error if c.tag.startswith(_STANZA_ERRORS) and c.tag != _STANZA_ERRORS + "text"
        ]
        assert len(conditions) == 1, etree.tostring(element)
        assert conditions[0].tag[len(_STANZA_ERRORS) :] in {c.value for c in StanzaErrorCondition}
        assert error.get("type") in ("auth", "cancel", "continue", "modify", "wait"), etree.tostring(element)
        event(f"stanza error {conditions[0].tag[len(_STANZA_ERRORS) :]}")


# ------------------------------------------------------------------------------ client input

SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
SASL2 = "urn:xmpp:sasl:2"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode() if data else "="


def header(to: str = "localhost", version: str = "1.0", extra: str = "") -> str:
    return (
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
        f"xmlns:stream='http://etherx.jabber.org/streams' to='{to}' version='{version}'{extra}>"
    )


def open_frame(to: str = "localhost", version: str = "1.0") -> str:
    return f"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='{to}' version='{version}'/>"


attr_values = st.one_of(
    st.sampled_from(
        [
            "",
            "localhost",
            "alice@localhost",
            "alice@localhost/r",
            "bob@localhost",
            "x@y",
            "a@localhost..",
            "1",
        ]
    ),
    st.text(st.characters(codec="utf-8", exclude_characters="<&'\x00", min_codepoint=0x20), max_size=8),
)
mechanisms = st.one_of(
    st.sampled_from(
        ["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512-PLUS", "SCRAM-SHA-256-PLUS", "HT-SHA-256-NONE",
         "HT-SHA-256-EXPR", "HT-SHA-256-ENDP", "X-BOGUS", "", "<b>&amp;'\"", "PLAIN "]
    ),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=70),
)  # fmt: skip
payloads = st.one_of(
    st.sampled_from(["=", "", "!!", "AA", "AAA=", b64(b"\0alice\0wonderland"), b64(b"\0bob\0wrong"),
                     b64(b"alice@localhost\0alice\0wonderland"), b64(b"\0alice\0" + APP_PASSWORD.encode())]),
    st.binary(max_size=40).map(b64),
)  # fmt: skip
numbers = st.sampled_from(
    ["0", "1", "3", "-1", "01", "4294967296", "99999999999999999999999", "\u0663", "1_0", ""]
)
texts = st.one_of(
    st.sampled_from(
        ["ExampleChat", "a\u0301", "\u200d", "l\u00b7l", "x" * 70, "\u05d0" * 3, "~", " ", "\ufb01"]
    ),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=10),
    st.text(max_size=300).map(lambda t: t * 8),
)
# Bind2 tags: mostly what a resourcepart takes, often longer than the 64 characters that are kept
tags = st.one_of(
    texts,
    st.text(st.characters(categories=("L", "N", "P", "S", "Zs", "Mn")), min_size=1, max_size=100),
)


def _text(value: str) -> str:
    return escape_text(value)


def _attr(name: str, value: str | None) -> str:
    return "" if value is None else f" {name}='{escape_attr(value)}'"


@st.composite
def authenticate_children(draw: st.DrawFn) -> str:
    """Children of a SASL2 ``<authenticate/>``: each one XEP-0388/0386/0484/0198/0480 defines, at random."""
    kinds = [
        kind
        for kind in ["ir", "ua", "bind", "fast", "request-token", "resume", "upgrade", "junk"]
        if not draw(rarely(2))
    ]
    kinds = draw(st.permutations(kinds)) + draw(st.lists(st.sampled_from(kinds or ["junk"]), max_size=1))
    out = []
    for kind in kinds:
        if kind == "ir":
            out.append(f"<initial-response>{draw(payloads)}</initial-response>")
        elif kind == "ua":
            inner = "".join(
                f"<{name}>{_text(draw(texts))}</{name}>"
                for name in draw(st.lists(st.sampled_from(["software", "device"]), max_size=2))
            )
            out.append(f"<user-agent{_attr('id', draw(st.none() | texts))}>{inner}</user-agent>")
        elif kind == "bind":
            options = [
                f"<tag>{_text(draw(tags))}</tag>",
                "<tag/>",
                "<enable xmlns='urn:xmpp:sm:3'/>",
                "<enable xmlns='urn:xmpp:carbons:2'/>",
                "<active xmlns='urn:xmpp:csi:0'/>",
                "<inactive xmlns='urn:xmpp:csi:0'/>",
            ]
            parts = [part for part in options if draw(st.booleans())]
            parts = draw(st.permutations(parts))
            if parts and draw(rarely(2)):
                parts.append(draw(st.sampled_from(options)))  # a child twice
            ns = draw(st.sampled_from(["urn:xmpp:bind:0", "urn:xmpp:bind2:1"]))
            out.append(f"<bind xmlns='{ns}'>{''.join(parts)}</bind>")
        elif kind == "fast":
            count = _attr("count", draw(st.none() | numbers))
            invalidate = _attr("invalidate", draw(st.none() | st.sampled_from(["true", "1", "false", "yes"])))
            out.append(f"<fast xmlns='urn:xmpp:fast:0'{count}{invalidate}/>")
        elif kind == "request-token":
            out.append(
                f"<request-token xmlns='urn:xmpp:fast:0'{_attr('mechanism', draw(st.none() | mechanisms))}/>"
            )
        elif kind == "resume":
            previd = _attr("previd", draw(st.none() | st.sampled_from(["", "abc"]) | texts))
            out.append(f"<resume xmlns='urn:xmpp:sm:3'{previd}{_attr('h', draw(st.none() | numbers))}/>")
        elif kind == "upgrade":
            name = draw(
                st.sampled_from(["UPGR-SCRAM-SHA-256", "UPGR-SCRAM-SHA-512", "UPGR-SCRAM-SHA-1", "x"])
            )
            out.append(f"<upgrade xmlns='urn:xmpp:sasl:upgrade:0'>{name}</upgrade>")
        else:
            out.append(serialize(draw(elements(depth=1))).decode())
    return "".join(out)


@st.composite
def authenticate_elements(draw: st.DrawFn, mechanism: str | None = None) -> str:
    name = mechanism if mechanism is not None else draw(mechanisms)
    mech = "" if draw(rarely(10)) else f" mechanism='{escape_attr(name)}'"
    return f"<authenticate xmlns='{SASL2}'{mech}>{draw(authenticate_children())}</authenticate>"


UA = "<user-agent id='f1e2d3c4'><software>Fuzz</software></user-agent>"


@st.composite
def logins(draw: st.DrawFn, profile: str = "sasl2") -> list[str | tuple[str, ...]]:
    """The steps of a login likely to succeed (alice's password, an app password, a FAST token or
    SCRAM), with random extra children in SASL2, so that the states after it are fuzzed too."""
    extra = draw(authenticate_children()) if profile == "sasl2" and draw(st.booleans()) else ""
    kind = draw(
        st.sampled_from(
            ["plain", "app", "scram", "scram", "ht"] if profile == "sasl2" else ["plain", "scram"]
        )
    )
    if kind == "scram":
        hash_name = draw(st.sampled_from(["SHA-1", "SHA-256", "SHA-512"]))
        user, password = draw(
            st.sampled_from([("alice", "wonderland"), ("alice", APP_PASSWORD), ("bob", "x")])
        )
        plus = draw(st.sampled_from(["", "plus"]))
        return [("scram-start", profile, hash_name, user, password, plus, extra), ("scram-final", profile)]
    if kind == "ht":
        return [
            f"<authenticate xmlns='{SASL2}' mechanism='HT-SHA-256-NONE'>"
            f"<initial-response>{ht_payload()}</initial-response>{UA}{extra}</authenticate>"
        ]
    secret = "wonderland" if kind == "plain" else APP_PASSWORD
    payload = b64(f"\0alice\0{secret}".encode())
    if profile == "sasl":
        return [f"<auth xmlns='{SASL}' mechanism='PLAIN'>{payload}</auth>"]
    return [
        f"<authenticate xmlns='{SASL2}' mechanism='PLAIN'><initial-response>{payload}</initial-response>"
        f"{draw(st.sampled_from([UA, '']))}{extra}</authenticate>"
    ]
