"""Transcripts of XEP-0484 FAST: advertising, HT-* logins, <request-token/> and <token/> in <success/>."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from lxml import etree

from tests.proto.transcript import Transcript, header, server_header
from xmppauth.proto import events as ev
from xmppauth.proto.errors import LocalProtocolError, SaslCondition
from xmppauth.proto.jid import JID
from xmppauth.proto.sasl import ScramClient, TokenCandidate
from xmppauth.proto.stream import State

SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
SASL2 = "urn:xmpp:sasl:2"
FAST = "urn:xmpp:fast:0"
SM = "urn:xmpp:sm:3"
UA = "8f0c7b3e-3d8a-4c2e-9d3b-5f1e2a7c9b10"
USER_AGENT = f"<user-agent id='{UA}'><software>ExampleChat</software></user-agent>"
BIND2 = "<bind xmlns='urn:xmpp:bind:0'><tag>ExampleChat</tag></bind>"
ENDP = b"E" * 32
EXPR = b"X" * 32
BINDINGS = {"tls-server-end-point": ENDP, "tls-exporter": EXPR}
CB_DATA = {"HT-SHA-256-NONE": b"", "HT-SHA-256-ENDP": ENDP, "HT-SHA-256-EXPR": EXPR}
TOKEN = "secret-token:2MlZGx1c2l2ZWx5IGZvciB0ZXN0cw"
EXPIRED = "this token is not valid (expired, replaced or revoked); authenticate with your password"
POST_AUTH_FEATURES = (
    "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
    "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session>"
    "<sm xmlns='urn:xmpp:sm:3'/><csi xmlns='urn:xmpp:csi:0'/><ver xmlns='urn:xmpp:features:rosterver'/></stream:features>"
)
INLINE_SM_BIND2 = (
    "<sm xmlns='urn:xmpp:sm:3'/><bind xmlns='urn:xmpp:bind:0'><inline>"
    "<feature var='urn:xmpp:sm:3'/><feature var='urn:xmpp:carbons:2'/><feature var='urn:xmpp:csi:0'/>"
    "</inline></bind>"
)
UPGRADES = (
    "<upgrade xmlns='urn:xmpp:sasl:upgrade:0'>UPGR-SCRAM-SHA-256</upgrade>"
    "<upgrade xmlns='urn:xmpp:sasl:upgrade:0'>UPGR-SCRAM-SHA-512</upgrade>"
)


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def ht_response(mechanism: str, token: str = TOKEN, user: str = "alice") -> str:
    """The client's initial response, computed as @xmpp/client does (independently of the server)."""
    mac = hmac.new(token.encode(), b"Initiator" + CB_DATA[mechanism], hashlib.sha256).digest()
    return b64(user.encode() + b"\0" + mac)


def ht_additional_data(mechanism: str, token: str = TOKEN) -> str:
    return b64(hmac.new(token.encode(), b"Responder" + CB_DATA[mechanism], hashlib.sha256).digest())


def authenticate(mechanism: str, initial: str | None, extra: str = "") -> str:
    ir = f"<initial-response>{initial}</initial-response>" if initial is not None else ""
    return f"<authenticate xmlns='{SASL2}' mechanism='{mechanism}'>{ir}{extra}</authenticate>"


def fast_login(mechanism: str, extra: str = f"{USER_AGENT}<fast xmlns='{FAST}'/>", **kw: str) -> str:
    return authenticate(mechanism, ht_response(mechanism, **kw), extra)


def stream(
    *, bindings: dict[str, bytes] | None = None, fast: bool = True, issued_for: str = ""
) -> Transcript:
    """An encrypted stream past its features, alice holding one token (issued for ``issued_for``)."""
    t = Transcript.tcp(secure=True, bindings=BINDINGS if bindings is None else bindings, fast=fast)
    if issued_for:
        t.tokens = {
            "alice": [TokenCandidate(credential_id="tok-1", key=TOKEN.encode(), mechanism=issued_for)]
        }
    t.open_secure()
    return t


def failure(condition: str, text: str = "*") -> str:
    return (
        f"<failure xmlns='{SASL2}'><{condition} xmlns='{SASL}'/><text xml:lang='en'>{text}</text></failure>"
    )


def features(t: Transcript) -> etree._Element:
    """The <stream:features/> just sent, parsed (as <features/>: the prefix is declared in the header)."""
    out = t.output().decode()
    body = out[out.index("<stream:features>") :]
    return etree.fromstring(body.replace("stream:features", "features"))


# ------------------------------------------------------------------------------------ advertising
def test_fast_is_not_advertised_by_default() -> None:
    t = Transcript.tcp(secure=True, bindings=BINDINGS)
    t.client(header())
    out = t.output()
    assert f"<authentication xmlns='{SASL2}'>".encode() in out, out  # SASL2 is offered ...
    assert FAST.encode() not in out  # ... without FAST inline


def test_fast_is_advertised_inline_strongest_binding_first() -> None:
    t = Transcript.tcp(secure=True, bindings=BINDINGS, fast=True)
    t.client(header())
    scram = "".join(
        f"<mechanism>{m}</mechanism>"
        for m in (
            "SCRAM-SHA-512-PLUS",
            "SCRAM-SHA-256-PLUS",
            "SCRAM-SHA-1-PLUS",
            "SCRAM-SHA-512",
            "SCRAM-SHA-256",
            "SCRAM-SHA-1",
            "PLAIN",
        )
    )
    t.server(
        server_header() + f"<stream:features><mechanisms xmlns='{SASL}'>{scram}</mechanisms>"
        f"<authentication xmlns='{SASL2}'>{scram}<inline>{INLINE_SM_BIND2}"
        f"<fast xmlns='{FAST}'><mechanism>HT-SHA-256-EXPR</mechanism><mechanism>HT-SHA-256-ENDP</mechanism>"
        f"<mechanism>HT-SHA-256-NONE</mechanism></fast></inline>{UPGRADES}</authentication>"
        "<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'><channel-binding type='tls-exporter'/>"
        "<channel-binding type='tls-server-end-point'/></sasl-channel-binding></stream:features>"
    )


@pytest.mark.parametrize(
    ("bindings", "advertised"),
    [
        ({"tls-server-end-point": ENDP}, ["HT-SHA-256-ENDP", "HT-SHA-256-NONE"]),
        ({"tls-exporter": EXPR}, ["HT-SHA-256-EXPR", "HT-SHA-256-NONE"]),
        ({}, ["HT-SHA-256-NONE"]),
    ],
)
def test_only_the_mechanisms_whose_binding_exists_are_advertised(
    bindings: dict[str, bytes], advertised: list[str]
) -> None:
    t = Transcript.tcp(secure=True, bindings=bindings, fast=True)
    t.client(header())
    root = features(t)
    fast = root.find(f"{{{SASL2}}}authentication/{{{SASL2}}}inline/{{{FAST}}}fast")
    assert fast is not None
    assert [m.text for m in fast] == advertised


def test_ht_mechanisms_are_in_no_mechanism_list() -> None:
    t = Transcript.tcp(secure=True, bindings=BINDINGS, fast=True)
    t.client(header())
    root = features(t)
    sasl1 = [m.text for m in root.findall(f"{{{SASL}}}mechanisms/{{{SASL}}}mechanism")]
    sasl2 = [m.text for m in root.findall(f"{{{SASL2}}}authentication/{{{SASL2}}}mechanism")]
    assert sasl1 == sasl2
    assert len(sasl1) == 7
    assert not [m for m in sasl1 + sasl2 if m and m.startswith("HT-")]


@pytest.mark.parametrize("profile", ["sasl", "sasl2"])
def test_the_ssdp_hash_is_the_same_with_and_without_fast(profile: str) -> None:
    """XEP-0474: FAST mechanisms are not part of the hashed list (ejabberd #4331)."""

    def h_attribute(fast: bool) -> str:
        t = Transcript.tcp(secure=True, bindings=BINDINGS, fast=fast)
        t.open_secure()
        client = ScramClient("SHA-256", "alice", "wonderland", nonce="CNONCE")
        first = b64(client.first())
        if profile == "sasl":
            t.client(f"<auth xmlns='{SASL}' mechanism='SCRAM-SHA-256'>{first}</auth>")
        else:
            t.client(authenticate("SCRAM-SHA-256", first))
        challenge = t.output().decode()
        client.final(base64.b64decode(challenge.split(">", 1)[1].split("<", 1)[0]))
        return client.server_first_attributes["h"]

    without = h_attribute(False)
    # what a client computes from the <mechanism/> children of the profile's list and the CB types
    mechanisms = [
        "SCRAM-SHA-1",
        "SCRAM-SHA-1-PLUS",
        "SCRAM-SHA-256",
        "SCRAM-SHA-256-PLUS",
        "SCRAM-SHA-512",
        "SCRAM-SHA-512-PLUS",
        "PLAIN",
    ]
    text = "\x1e".join(sorted(mechanisms)) + "\x1f" + "tls-exporter\x1etls-server-end-point"
    assert without == b64(hashlib.sha256(text.encode()).digest())
    assert h_attribute(True) == without


# ------------------------------------------------------------------------------------ HT-* logins
@pytest.mark.parametrize("mechanism", ["HT-SHA-256-NONE", "HT-SHA-256-ENDP", "HT-SHA-256-EXPR"])
def test_each_ht_mechanism_logs_in_with_the_responder_hmac(mechanism: str) -> None:
    t = stream(issued_for=mechanism)
    events = t.client(fast_login(mechanism))
    assert events[0] == ev.TokenCheckNeeded(
        username="alice",
        localpart="alice",
        mechanism=mechanism,
        user_agent_id=UA,
        count=None,
        invalidate=False,
    )
    assert events[1] == ev.Authenticated(
        localpart="alice",
        mechanism=mechanism,
        profile="sasl2",
        user_agent=ev.UserAgent(id=UA, software="ExampleChat"),
        credential_id="tok-1",
    )
    t.server(
        f"<success xmlns='{SASL2}'><additional-data>{ht_additional_data(mechanism)}</additional-data>"
        "<authorization-identifier>alice@localhost</authorization-identifier></success>" + POST_AUTH_FEATURES
    )
    assert t.stream.authenticated_localpart == "alice"


def test_ht_with_bind2_gets_a_full_jid() -> None:
    t = stream(issued_for="HT-SHA-256-EXPR")
    t.client(fast_login("HT-SHA-256-EXPR", extra=f"{USER_AGENT}{BIND2}<fast xmlns='{FAST}'/>"))
    t.server(
        f"<success xmlns='{SASL2}'><additional-data>{ht_additional_data('HT-SHA-256-EXPR')}</additional-data>"
        "<authorization-identifier>*</authorization-identifier><bound xmlns='urn:xmpp:bind:0'/></success>"
        "<stream:features><csi xmlns='urn:xmpp:csi:0'/><ver xmlns='urn:xmpp:features:rosterver'/><sm xmlns='urn:xmpp:sm:3'/></stream:features>"
    )
    assert t.stream.state is State.BOUND
    assert t.stream.jid is not None
    assert t.stream.jid.resource is not None
    assert t.stream.jid.resource.startswith("ExampleChat~")


def test_a_wrong_token_is_credentials_expired() -> None:
    t = stream(issued_for="HT-SHA-256-NONE")
    t.client(fast_login("HT-SHA-256-NONE", token="secret-token:stale"))
    t.server(failure("credentials-expired", EXPIRED))
    assert t.last(ev.AuthFailed) == ev.AuthFailed(
        username="alice",
        mechanism="HT-SHA-256-NONE",
        condition=SaslCondition.CREDENTIALS_EXPIRED,
        text=EXPIRED,
    )
    assert t.stream.state is State.EXPECT_AUTH
    # the client falls back to its password on the same stream
    t.client(authenticate("PLAIN", b64("\0alice\0wonderland")))
    assert t.output().startswith(f"<success xmlns='{SASL2}'>".encode())


def test_an_unknown_account_gets_the_same_answer() -> None:
    t = stream(issued_for="HT-SHA-256-NONE")
    t.client(fast_login("HT-SHA-256-NONE", user="mallory"))
    t.server(failure("credentials-expired", EXPIRED))


@pytest.mark.parametrize(
    ("used", "issued_for"),
    [("HT-SHA-256-NONE", "HT-SHA-256-EXPR"), ("HT-SHA-256-EXPR", "HT-SHA-256-ENDP")],
)
def test_a_token_bound_to_another_mechanism_is_credentials_expired(used: str, issued_for: str) -> None:
    t = stream(issued_for=issued_for)
    t.client(fast_login(used))  # the right key, the wrong mechanism
    t.server(failure("credentials-expired", EXPIRED))
    assert not any(isinstance(e, ev.Authenticated) for e in t.events)


@pytest.mark.parametrize(
    ("mechanism", "bindings", "missing"),
    [
        ("HT-SHA-256-ENDP", {}, "tls-server-end-point"),
        ("HT-SHA-256-EXPR", {"tls-server-end-point": ENDP}, "tls-exporter"),
    ],
)
def test_a_binding_mechanism_without_its_binding_is_malformed(
    mechanism: str, bindings: dict[str, bytes], missing: str
) -> None:
    t = Transcript.tcp(secure=True, bindings=bindings, fast=True)
    t.client(header())
    out = t.output()
    assert b"<mechanism>HT-SHA-256-NONE</mechanism>" in out, out  # FAST is advertised ...
    assert mechanism.encode() not in out  # ... but not this mechanism ...
    t.client(fast_login(mechanism))  # ... and refused with a reason
    t.server(
        failure(
            "malformed-request",
            f"{mechanism} needs {missing} channel binding, which this connection does not offer",
        )
    )
    assert not any(isinstance(e, ev.TokenCheckNeeded) for e in t.events)


def test_ht_over_rfc6120_sasl_is_an_invalid_mechanism() -> None:
    t = stream(issued_for="HT-SHA-256-NONE")
    t.client(f"<auth xmlns='{SASL}' mechanism='HT-SHA-256-NONE'>{ht_response('HT-SHA-256-NONE')}</auth>")
    t.server(
        f"<failure xmlns='{SASL}'><invalid-mechanism/><text xml:lang='en'>HT-SHA-256-NONE is not offered</text></failure>"
    )


def test_ht_is_an_invalid_mechanism_when_fast_is_off() -> None:
    t = stream(fast=False, issued_for="HT-SHA-256-NONE")
    t.client(fast_login("HT-SHA-256-NONE"))
    t.server(failure("invalid-mechanism", "HT-SHA-256-NONE is not offered"))


def test_an_unimplemented_ht_mechanism_is_invalid() -> None:
    t = stream()
    t.client(authenticate("HT-SHA-256-UNIQ", ht_response("HT-SHA-256-NONE"), USER_AGENT))
    t.server(failure("invalid-mechanism", "HT-SHA-256-UNIQ is not offered"))


@pytest.mark.parametrize(
    "agent", ["", "<user-agent><software>NoId</software></user-agent>", "<user-agent id=''/>"]
)
def test_ht_without_a_user_agent_id_is_malformed(agent: str) -> None:
    t = stream(issued_for="HT-SHA-256-NONE")
    t.client(fast_login("HT-SHA-256-NONE", extra=f"{agent}<fast xmlns='{FAST}'/>"))
    t.server(
        failure(
            "malformed-request",
            "HT-SHA-256-NONE (a FAST token) needs &lt;user-agent id='…'/&gt;: tokens belong to one client",
        )
    )
    assert not any(isinstance(e, ev.TokenCheckNeeded) for e in t.events)
    assert isinstance(t.events[-1], ev.AuthFailed)


@pytest.mark.parametrize("initial", [None, "=", b64("alice"), b64(b"alice\0short")])
def test_a_garbled_ht_message_is_malformed(initial: str | None) -> None:
    t = stream(issued_for="HT-SHA-256-NONE")
    t.client(authenticate("HT-SHA-256-NONE", initial, USER_AGENT))
    assert t.output().startswith(f"<failure xmlns='{SASL2}'><malformed-request xmlns='{SASL}'/>".encode())


def test_count_and_invalidate_are_passed_on() -> None:
    t = stream(issued_for="HT-SHA-256-NONE")
    events = t.client(
        fast_login("HT-SHA-256-NONE", extra=f"{USER_AGENT}<fast xmlns='{FAST}' count='3' invalidate='true'/>")
    )
    check, authenticated = events[0], events[1]
    assert check.count == 3
    assert check.invalidate is True
    assert authenticated.fast_count == 3
    assert authenticated.fast_invalidate is True
    assert authenticated.fast_request is None


def test_invalidate_may_also_be_spelled_1() -> None:
    t = stream(issued_for="HT-SHA-256-NONE")
    (check, *_) = t.client(
        fast_login("HT-SHA-256-NONE", extra=f"{USER_AGENT}<fast xmlns='{FAST}' invalidate='1'/>")
    )
    assert check.invalidate is True
    assert check.count is None


@pytest.mark.parametrize("count", ["0", "-1", "abc", "", " 3", "1.5", "1" * 19, "9" * 5000])
def test_a_bad_count_is_malformed_and_counts_as_a_failure(count: str) -> None:
    t = stream(issued_for="HT-SHA-256-NONE")
    t.client(fast_login("HT-SHA-256-NONE", extra=f"{USER_AGENT}<fast xmlns='{FAST}' count='{count}'/>"))
    t.server(failure("malformed-request", "&lt;fast count='…'/&gt; must be a positive integer"))
    assert isinstance(t.events[-1], ev.AuthFailed)
    assert not any(isinstance(e, ev.TokenCheckNeeded) for e in t.events)


def test_early_fast_failures_count_towards_the_limit() -> None:
    t = stream(issued_for="HT-SHA-256-NONE")
    for _ in range(2):
        t.client(fast_login("HT-SHA-256-NONE", extra=f"{USER_AGENT}<fast xmlns='{FAST}' count='0'/>"))
        t.output()
    t.client(fast_login("HT-SHA-256-NONE", extra="<fast xmlns='urn:xmpp:fast:0'/>"))  # no user-agent
    t.stream_error("policy-violation")


# ------------------------------------------------------------------------------------ request-token
def request_token(mechanism: str = "HT-SHA-256-NONE") -> str:
    return f"<request-token xmlns='{FAST}' mechanism='{mechanism}'/>"


def test_request_token_with_a_password_login_puts_the_token_into_success() -> None:
    t = stream()
    t.issue = ("secret-token:new'<&\"", "2026-12-16T10:00:00Z")
    events = t.client(authenticate("PLAIN", b64("\0alice\0wonderland"), USER_AGENT + request_token()))
    authenticated = events[-1]
    assert authenticated.fast_request == "HT-SHA-256-NONE"
    assert authenticated.credential_id == ""
    t.server(
        f"<success xmlns='{SASL2}'><authorization-identifier>alice@localhost</authorization-identifier>"
        f"<token xmlns='{FAST}' token='secret-token:new&apos;&lt;&amp;&quot;' expiry='2026-12-16T10:00:00Z'/>"
        "</success>" + POST_AUTH_FEATURES
    )


def test_request_token_with_scram_and_bind2() -> None:
    t = stream()
    t.issue = ("secret-token:bound", "2026-12-16T10:00:00Z")
    client = ScramClient("SHA-256", "alice", "wonderland", nonce="CNONCE")
    t.client(
        authenticate(
            "SCRAM-SHA-256",
            b64(client.first()),
            USER_AGENT + BIND2 + request_token("HT-SHA-256-EXPR"),
        )
    )
    server_first = base64.b64decode(t.output().decode().split(">", 1)[1].split("<", 1)[0])
    events = t.client(f"<response xmlns='{SASL2}'>{b64(client.final(server_first))}</response>")
    assert events[0].fast_request == "HT-SHA-256-EXPR"
    t.server(
        f"<success xmlns='{SASL2}'><additional-data>*</additional-data>"
        "<authorization-identifier>*</authorization-identifier><bound xmlns='urn:xmpp:bind:0'/>"
        f"<token xmlns='{FAST}' token='secret-token:bound' expiry='2026-12-16T10:00:00Z'/></success>"
        "<stream:features><csi xmlns='urn:xmpp:csi:0'/><ver xmlns='urn:xmpp:features:rosterver'/><sm xmlns='urn:xmpp:sm:3'/></stream:features>"
    )
    assert t.stream.state is State.BOUND


def test_request_token_with_an_inline_resume() -> None:
    old = Transcript.tcp(secure=True)
    old.session()
    old.client(f"<enable xmlns='{SM}' resume='true'/>")
    sm = old.stream.sm
    assert sm is not None
    t = stream(issued_for="HT-SHA-256-NONE")
    t.auto_tasks = False
    t.client(
        fast_login(
            "HT-SHA-256-NONE",
            extra=f"{USER_AGENT}<fast xmlns='{FAST}'/>{request_token()}"
            f"<resume xmlns='{SM}' previd='{sm.resume_id}' h='0'/>{BIND2}",
        )
    )
    authenticated = t.last(ev.Authenticated)
    assert authenticated.fast_request == "HT-SHA-256-NONE"
    assert authenticated.credential_id == "tok-1"
    t.stream.issue_token("secret-token:rotated", "2026-12-17T10:00:00Z")
    t.stream.continue_with([])
    assert t.stream.next_event() == ev.ResumeRequested(previd=sm.resume_id or "", h="0", inline=True)
    t.stream.resume_succeeded(JID("alice", "localhost", "res"), sm, "0")
    t.server(
        f"<success xmlns='{SASL2}'><additional-data>{ht_additional_data('HT-SHA-256-NONE')}</additional-data>"
        "<authorization-identifier>alice@localhost/res</authorization-identifier>"
        f"<resumed xmlns='{SM}' h='0' previd='{sm.resume_id}'/>"
        f"<token xmlns='{FAST}' token='secret-token:rotated' expiry='2026-12-17T10:00:00Z'/></success>"
    )


def test_no_token_unless_the_driver_issues_one() -> None:
    t = stream()
    t.client(authenticate("PLAIN", b64("\0alice\0wonderland"), USER_AGENT + request_token()))
    out = t.output()
    assert out.startswith(f"<success xmlns='{SASL2}'>".encode()), out  # logged in ...
    assert b"<token" not in out  # ... without a token


@pytest.mark.parametrize("wanted", ["HT-SHA-256-EXPR", "HT-SHA-256-UNIQ", "SCRAM-SHA-256", ""])
def test_request_token_must_name_an_advertised_fast_mechanism(wanted: str) -> None:
    t = stream(bindings={"tls-server-end-point": ENDP})  # EXPR not offered here
    t.client(authenticate("PLAIN", b64("\0alice\0wonderland"), USER_AGENT + request_token(wanted)))
    t.server(
        failure(
            "malformed-request",
            f"&lt;request-token/&gt; names {wanted or 'no mechanism'}, "
            "which is not a FAST mechanism offered on this stream",
        )
    )
    assert not any(isinstance(e, ev.PasswordCheckNeeded) for e in t.events)  # refused before the mechanism


def test_request_token_needs_a_user_agent_id() -> None:
    t = stream()
    t.client(authenticate("PLAIN", b64("\0alice\0wonderland"), request_token()))
    t.server(failure("malformed-request", "a FAST token needs &lt;user-agent id='…'/&gt;"))


def test_fast_elements_are_ignored_when_fast_is_off() -> None:
    t = stream(fast=False)
    events = t.client(authenticate("PLAIN", b64("\0alice\0wonderland"), request_token("HT-SHA-256-EXPR")))
    assert events[-1].fast_request is None
    assert t.output().startswith(f"<success xmlns='{SASL2}'>".encode())


# ------------------------------------------------------------------------------------ issue_token()
def test_issue_token_outside_its_window_is_refused() -> None:
    t = stream()
    with pytest.raises(LocalProtocolError):
        t.stream.issue_token("secret-token:early", "2026-12-16T10:00:00Z")
    t.client(authenticate("PLAIN", b64("\0alice\0wonderland"), USER_AGENT + request_token()))
    with pytest.raises(LocalProtocolError):  # <success/> is already out
        t.stream.issue_token("secret-token:late", "2026-12-16T10:00:00Z")


def test_issue_token_is_refused_after_rfc6120_sasl() -> None:
    t = stream()
    t.login_plain()
    with pytest.raises(LocalProtocolError):
        t.stream.issue_token("secret-token:x", "2026-12-16T10:00:00Z")


def test_issue_token_needs_fast_and_a_user_agent_id() -> None:
    off = stream(fast=False)
    off.auto_tasks = False
    off.client(authenticate("PLAIN", b64("\0alice\0wonderland"), USER_AGENT))
    with pytest.raises(LocalProtocolError):
        off.stream.issue_token("secret-token:x", "2026-12-16T10:00:00Z")
    anonymous = stream()
    anonymous.auto_tasks = False
    anonymous.client(authenticate("PLAIN", b64("\0alice\0wonderland")))
    with pytest.raises(LocalProtocolError):
        anonymous.stream.issue_token("secret-token:x", "2026-12-16T10:00:00Z")


def test_invalidate_without_request_token_gets_no_new_token() -> None:
    t = stream(issued_for="HT-SHA-256-NONE")
    t.auto_tasks = False
    t.client(fast_login("HT-SHA-256-NONE", extra=f"{USER_AGENT}<fast xmlns='{FAST}' invalidate='true'/>"))
    with pytest.raises(LocalProtocolError):
        t.stream.issue_token("secret-token:x", "2026-12-16T10:00:00Z")
    again = stream(issued_for="HT-SHA-256-NONE")
    again.auto_tasks = False
    again.client(
        fast_login(
            "HT-SHA-256-NONE",
            extra=f"{USER_AGENT}<fast xmlns='{FAST}' invalidate='true'/>{request_token()}",
        )
    )
    again.stream.issue_token("secret-token:fresh", "2026-12-16T10:00:00Z")  # asked for: allowed
    again.stream.continue_with([])
    assert b"token='secret-token:fresh'" in again.output()


def test_a_failed_task_discards_the_token() -> None:
    t = stream()
    t.auto_tasks = False
    t.client(authenticate("PLAIN", b64("\0alice\0wonderland"), USER_AGENT + request_token()))
    t.stream.issue_token("secret-token:never", "2026-12-16T10:00:00Z")
    t.stream.continue_with([["TOTP"]])
    t.client(f"<next xmlns='{SASL2}' task='TOTP'/>")
    t.stream.task_failed(SaslCondition.NOT_AUTHORIZED, "wrong code")
    t.pump()
    failed = t.output()
    assert failed.endswith(b"<text xml:lang='en'>wrong code</text></failure>"), failed  # the task ran
    assert b"secret-token:never" not in failed
    t.client(authenticate("PLAIN", b64("\0alice\0wonderland"), USER_AGENT))
    t.stream.continue_with([])
    out = t.output()
    assert out.startswith(f"<success xmlns='{SASL2}'>".encode())
    assert b"<token" not in out


def test_the_token_stays_out_of_reprs_and_events() -> None:
    t = stream()
    t.auto_tasks = False
    t.client(authenticate("PLAIN", b64("\0alice\0wonderland"), USER_AGENT + request_token()))
    t.stream.issue_token("secret-token:hidden", "2026-12-16T10:00:00Z")
    assert "hidden" not in repr(vars(t.stream))
    assert "hidden" not in repr(t.stream.fast.issued)
    assert "2026-12-16T10:00:00Z" in repr(t.stream.fast.issued)  # the token is there, its expiry shown
    t.stream.continue_with([])
    assert "hidden" not in repr(t.events)
    assert b"secret-token:hidden" in t.output()
    candidate = TokenCandidate(credential_id="x", key=TOKEN.encode(), mechanism="HT-SHA-256-NONE")
    assert TOKEN not in repr(candidate)
    assert "HT-SHA-256-NONE" in repr(candidate)
