"""Literal-transcript driver for the sans-IO stream machine.

A transcript test writes what the client sends and what the server must answer as XML text::

    t = Transcript.tcp()
    t.client(STREAM_HEADER)
    t.server("<stream:stream xmlns='jabber:client' from='localhost' id='*' version='1.0' xml:lang='en'>"
             "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"
             "</stream:features>")

Server output is compared structurally: both sides become a list of start/text/end tokens with
Clark-notation names and sorted attributes, so attribute order, quoting and where a namespace is
declared do not matter. An expected attribute value or text of ``*`` matches anything.

The driver answers the machine's requests like the real consumer would, from an in-memory
account table: SCRAM credentials are derived from the passwords given (fake ones for unknown
names), PLAIN compares passwords, bind takes the wish or ``generated-1``.

Optional tables (empty by default, so older transcripts behave as before): ``app_passwords``
(per account, credential id → password; offered to SCRAM as alternatives with the account's salt
unless ``app_salts`` names another, and accepted by PLAIN), ``tokens`` (per account, the FAST
tokens handed to ``provide_tokens``) and ``issue`` (a token and expiry handed to ``issue_token``
whenever the client sent ``<request-token/>``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from xmppauth.proto import events as ev
from xmppauth.proto import xep0480_upgrade as upgrade
from xmppauth.proto.sasl import ScramCredentials, TokenCandidate, derive_credentials, fake_credentials
from xmppauth.proto.stream import C2SStream, StreamConfig

STREAMS = "http://etherx.jabber.org/streams"
SALT = b"transcript-salt!"
SECRET = b"transcript-secret"

Token = tuple[str, ...]


def header(to: str = "localhost", extra: str = "", version: str = "1.0") -> str:
    """A client stream header (TCP)."""
    version_attr = f" version='{version}'" if version else ""
    to_attr = f" to='{to}'" if to else ""
    return (
        f"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
        f"xmlns:stream='{STREAMS}'{to_attr}{version_attr}{extra}>"
    )


def server_header() -> str:
    return (
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
        "from='localhost' id='*' version='1.0' xml:lang='en'>"
    )


class Tokenizer:
    """Turns a stream of XML fragments into comparable tokens, across many feeds."""

    def __init__(self) -> None:
        self._parser = etree.XMLPullParser(events=("start", "end"), resolve_entities=False)
        self._parser.feed(f"<transcript xmlns:stream='{STREAMS}'>".encode())
        self._pending_text: dict[int, str] = {}
        list(self._parser.read_events())

    def feed(self, data: bytes | str) -> list[Token]:
        if isinstance(data, str):
            data = data.encode()
        data = re.sub(rb"<\?xml[^>]*\?>", b"", data)
        # the footer closes a header this tokenizer may have seen in an earlier feed, or twice
        data = data.replace(b"</stream:stream>", b"<stream:footer/>")
        self._parser.feed(data)
        tokens: list[Token] = []
        for action, el in self._parser.read_events():
            if action == "start":
                attrs = tuple(f"{k}={v}" for k, v in sorted(el.attrib.items()))
                tokens.append(("start", el.tag, *attrs))
            else:
                text = (el.text or "").strip()
                if text:
                    # text comes before the end token of the element that holds it
                    tokens.append(("text", text))
                tokens.append(("end", el.tag))
        return tokens


def _match(expected: list[Token], actual: list[Token]) -> bool:
    if len(expected) != len(actual):
        return False
    for exp, act in zip(expected, actual, strict=True):
        if len(exp) != len(act) or exp[0] != act[0] or (exp[1] != act[1] and exp[1] != "*"):
            return False
        for e, a in zip(exp[2:], act[2:], strict=True):
            ek, _, ev_ = e.partition("=")
            ak, _, av = a.partition("=")
            if ek != ak or (ev_ != av and ev_ != "*"):
                return False
    return True


@dataclass
class Transcript:
    stream: C2SStream
    accounts: dict[str, str] = field(default_factory=lambda: {"alice": "wonderland", "bob": "builder"})
    events: list[ev.Event] = field(default_factory=list)
    auto_tls: dict[str, bytes] | None = None
    bind_to: str = "generated-1"
    auto_tasks: bool = True  # answer SASL2 Authenticated with the XEP-0480 upgrades the account needs
    hashes: dict[str, set[str]] = field(default_factory=dict)
    upgraded: dict[str, Any] = field(default_factory=dict)
    app_passwords: dict[str, dict[str, str]] = field(default_factory=dict)
    app_salts: dict[str, bytes] = field(default_factory=dict)  # credential id → its own salt
    tokens: dict[str, list[TokenCandidate]] = field(default_factory=dict)
    issue: tuple[str, str] | None = None  # (token, expiry) for a <request-token/>
    refusal: tuple[Any, str] | None = None  # (SaslCondition, text): answer Authenticated with refuse()
    # (SaslCondition, text): answer every request for credentials with refuse(), checking nothing
    refuse_checks: tuple[Any, str] | None = None
    # (SaslCondition, text): a guessing limit holds the accounts: only app passwords may match
    limited: tuple[Any, str] | None = None

    def __post_init__(self) -> None:
        self._server_tokens = Tokenizer()
        self._expected_tokens = Tokenizer()
        self._frames: list[bytes] = []
        self._creds: dict[tuple[str, str], ScramCredentials] = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def tcp(
        cls, *, secure: bool = False, bindings: dict[str, bytes] | None = None, **config: Any
    ) -> Transcript:
        cfg = StreamConfig(domains=frozenset({"localhost"}), **config)
        stream = C2SStream(
            cfg,
            framed=False,
            secure=secure,
            starttls=not secure,
            channel_bindings=bindings,
            nonce_factory=lambda: "SNONCE",
        )
        return cls(stream)

    @classmethod
    def websocket(cls, *, secure: bool = True, **config: Any) -> Transcript:
        cfg = StreamConfig(domains=frozenset({"localhost"}), **config)
        return cls(C2SStream(cfg, framed=True, secure=secure, starttls=False, nonce_factory=lambda: "SNONCE"))

    # ------------------------------------------------------------------ driving
    def client(self, data: str | bytes) -> list[ev.Event]:
        raw = data.encode() if isinstance(data, str) else data
        if self.stream.framed:
            self.stream.receive_frame(raw)
        else:
            self.stream.receive_data(raw)
        return self.pump()

    def pump(self) -> list[ev.Event]:
        new: list[ev.Event] = []
        while (event := self.stream.next_event()) is not None:
            new.append(event)
            self._answer(event)
        self.events.extend(new)
        self._frames.extend(self.stream.data_to_send())
        return new

    def _answer(self, event: ev.Event) -> None:
        checks = (ev.CredentialsNeeded, ev.PasswordCheckNeeded, ev.TokenCheckNeeded)
        if isinstance(event, checks) and self.refuse_checks is not None:
            self.stream.refuse(*self.refuse_checks)
        elif isinstance(event, ev.CredentialsNeeded):
            password = self.accounts.get(event.localpart or "")
            key = (event.username, event.hash_name)
            if key not in self._creds:
                self._creds[key] = (
                    derive_credentials(password, event.hash_name, salt=SALT, iterations=4096)
                    if password is not None
                    else fake_credentials(SECRET, event.username, event.hash_name, iterations=4096)
                )
            alternatives = [
                dataclasses.replace(
                    derive_credentials(
                        pw, event.hash_name, salt=self.app_salts.get(cid, SALT), iterations=4096
                    ),
                    credential_id=cid,
                )
                for cid, pw in self.app_passwords.get(event.localpart or "", {}).items()
            ]
            stored = self._creds[key]
            if self.limited is not None:  # the account password can no longer match
                stored = dataclasses.replace(stored, stored_key=bytes(len(stored.stored_key)))
            self.stream.provide_credentials(stored, alternatives, self.limited)
        elif isinstance(event, ev.PasswordCheckNeeded):
            localpart = event.localpart or ""
            if self.accounts.get(localpart) == event.password and self.limited is None:
                self.stream.password_checked(True)
            else:
                matching = [
                    cid for cid, pw in self.app_passwords.get(localpart, {}).items() if pw == event.password
                ]
                self.stream.password_checked(bool(matching), matching[0] if matching else "", self.limited)
        elif isinstance(event, ev.TokenCheckNeeded):
            self.stream.provide_tokens(self.tokens.get(event.localpart or "", []))
        elif isinstance(event, ev.Authenticated) and self.refusal is not None:
            self.stream.refuse(*self.refusal)
        elif isinstance(event, ev.Authenticated) and event.profile == "sasl":
            self.stream.continue_with([])  # RFC 6120: nothing to ask, <success/> goes out
        elif isinstance(event, ev.Authenticated) and event.profile == "sasl2" and self.auto_tasks:
            if self.issue is not None and event.fast_request is not None:
                self.stream.issue_token(*self.issue)
            have = self.hashes.get(event.localpart, {"SHA-1", "SHA-256", "SHA-512"})
            self.stream.continue_with([[u] for u in event.upgrades if upgrade.hash_of(u) not in have])
        elif isinstance(event, ev.TaskStarted) and upgrade.hash_of(event.task):
            self.stream.task_challenge(upgrade.salt_challenge(SALT, 4096))
        elif isinstance(event, ev.TaskData) and upgrade.hash_of(event.task):
            hash_name = upgrade.hash_of(event.task) or ""
            creds = upgrade.credentials_from_answer(event.payload, hash_name, salt=SALT, iterations=4096)
            if creds is None:
                from xmppauth.proto.errors import SaslCondition

                self.stream.task_failed(SaslCondition.MALFORMED_REQUEST, "bad hash")
            else:
                self.upgraded[hash_name] = creds
                self.stream.task_succeeded()
        elif isinstance(event, ev.BindRequested):
            self.stream.bind_resource(event.resource or self.bind_to)
        elif isinstance(event, ev.StartTlsRequested) and self.auto_tls is not None:
            self._frames.extend(self.stream.data_to_send())
            self.stream.tls_established(self.auto_tls)

    # ------------------------------------------------------------------ checking
    def frames(self) -> list[bytes]:
        """Server output since the last check, one item per WebSocket message (consumed)."""
        self._frames.extend(self.stream.data_to_send())
        frames, self._frames = self._frames, []
        self._server_tokens.feed(b"".join(frames))
        return frames

    def output(self) -> bytes:
        """Server output since the last check, raw (and consumed)."""
        return b"".join(self.frames())

    def server(self, expected: str) -> None:
        self._frames.extend(self.stream.data_to_send())
        frames, self._frames = self._frames, []
        out = b"".join(frames)
        actual = self._server_tokens.feed(out)
        wanted = self._expected_tokens.feed(expected)
        assert _match(wanted, actual), (
            f"server sent:\n  {out.decode(errors='replace')}\nexpected:\n  {expected}"
        )

    def silent(self) -> None:
        out = self.output()
        assert out == b"", f"server sent unexpectedly: {out!r}"

    def stream_error(self, condition: str) -> None:
        """The last output ends with this stream error and the stream footer; the stream is closed."""
        out = self.output().decode()
        assert f"<{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in out, out
        assert out.endswith("</stream:stream>") or out.endswith(
            "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"
        ), out
        closed = [e for e in self.events if isinstance(e, ev.StreamClosed)]
        assert closed, "no StreamClosed event"
        assert closed[-1].condition is not None
        assert closed[-1].condition.value == condition

    def last(self, kind: type) -> Any:
        found = [e for e in self.events if isinstance(e, kind)]
        assert found, f"no {kind.__name__} event among {self.events}"
        return found[-1]

    # ------------------------------------------------------------------ canned steps
    def open_secure(self) -> None:
        """Header on an already encrypted stream; swallow the features."""
        self.client(header())
        self.output()

    def login_plain(self, user: str = "alice", password: str | None = None) -> None:
        import base64

        pw = self.accounts[user] if password is None else password
        token = base64.b64encode(f"\0{user}\0{pw}".encode()).decode()
        self.client(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
        self.output()

    def bind(self, resource: str | None = None) -> None:
        self.client(header())
        self.output()
        inner = f"<resource>{resource}</resource>" if resource else ""
        self.client(
            f"<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>{inner}</bind></iq>"
        )
        self.output()

    def session(self, user: str = "alice", resource: str | None = "res") -> None:
        """A bound session on an encrypted TCP stream, all output consumed."""
        self.open_secure()
        self.login_plain(user)
        self.bind(resource)


def tokens_of(fragments: Iterable[str]) -> list[Token]:
    t = Tokenizer()
    out: list[Token] = []
    for fragment in fragments:
        out.extend(t.feed(fragment))
    return out
