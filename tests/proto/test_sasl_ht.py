"""The XEP-0484 HT-* token mechanisms on their own (draft-schmaus-kitten-sasl-ht, Prosody's form)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

import pytest

from xmppauth.proto.errors import LocalProtocolError, SaslCondition
from xmppauth.proto.sasl import (
    HT_MECHANISMS,
    MECHANISMS,
    ChannelBindingContext,
    Failure,
    HtServer,
    NeedToken,
    ScramCredentials,
    Success,
    TokenCandidate,
    fast_mechanism_names,
    make_mechanism,
)

ENDP = b"E" * 32
EXPR = b"X" * 32
CB = ChannelBindingContext(
    bindings={"tls-server-end-point": ENDP, "tls-exporter": EXPR}, plus_advertised=True
)
KEY = b"secret-token:2MlZGx1c2l2ZWx5IGZvciB0ZXN0cw"
CB_DATA = {"HT-SHA-256-NONE": b"", "HT-SHA-256-ENDP": ENDP, "HT-SHA-256-EXPR": EXPR}
EXPIRED = "this token is not valid (expired, replaced or revoked); authenticate with your password"


def initiator(key: bytes, cb_data: bytes, user: bytes = b"alice") -> bytes:
    """What @xmpp/client 0.14 sends: authcid NUL HMAC-SHA-256(token, "Initiator" || cb-data)."""
    return user + b"\0" + hmac.new(key, b"Initiator" + cb_data, hashlib.sha256).digest()


def responder(key: bytes, cb_data: bytes) -> bytes:
    return hmac.new(key, b"Responder" + cb_data, hashlib.sha256).digest()


def candidate(mechanism: str, key: bytes = KEY, credential_id: str = "tok-1") -> TokenCandidate:
    return TokenCandidate(credential_id=credential_id, key=key, mechanism=mechanism)


@pytest.mark.parametrize("name", list(HT_MECHANISMS))
def test_the_right_token_succeeds_with_the_responder_hmac(name: str) -> None:
    mech = HtServer(name, cb=CB)
    assert mech.start(initiator(KEY, CB_DATA[name])) == NeedToken(username="alice")
    result = mech.provide_tokens([candidate(name)])
    assert result == Success(
        username="alice",
        additional_data=responder(KEY, CB_DATA[name]),
        authzid=None,
        credential_id="tok-1",
    )


def test_a_pinned_vector_for_none() -> None:
    # token "token": HMAC-SHA-256 of "Initiator" and "Responder", as `openssl dgst -sha256 -hmac token` says
    mech = HtServer("HT-SHA-256-NONE", cb=CB)
    message = base64.b64decode("YWxpY2UA0k2VSC8NbgNcVueH2sTtgyvdhO4+okKqrdmCJwwzAAY=")
    assert message == b"alice\0" + bytes.fromhex(
        "d24d95482f0d6e035c56e787dac4ed832bdd84ee3ea242aaadd982270c330006"
    )
    assert mech.start(message) == NeedToken(username="alice")
    result = mech.provide_tokens([candidate("HT-SHA-256-NONE", key=b"token")])
    assert isinstance(result, Success)
    assert result.additional_data == bytes.fromhex(
        "3f7cfbe081b3e9ea2aaa3561180a60932290ae9a2b155327d03ba819fffe0ab6"
    )


@pytest.mark.parametrize("name", list(HT_MECHANISMS))
def test_each_mechanism_binds_its_own_channel_data(name: str) -> None:
    # an HMAC over another binding's data (or none) is the wrong one
    for other, data in CB_DATA.items():
        if data == CB_DATA[name]:
            continue
        mech = HtServer(name, cb=CB)
        mech.start(initiator(KEY, data))
        assert mech.provide_tokens([candidate(name)]) == Failure(
            condition=SaslCondition.CREDENTIALS_EXPIRED, text=EXPIRED
        ), other


def test_a_wrong_token_is_credentials_expired() -> None:
    mech = HtServer("HT-SHA-256-NONE", cb=CB)
    mech.start(initiator(b"some other token", b""))
    assert mech.provide_tokens([candidate("HT-SHA-256-NONE")]) == Failure(
        condition=SaslCondition.CREDENTIALS_EXPIRED, text=EXPIRED
    )


def test_no_candidates_is_credentials_expired() -> None:
    mech = HtServer("HT-SHA-256-NONE", cb=CB)
    mech.start(initiator(KEY, b""))
    result = mech.provide_tokens([])
    assert isinstance(result, Failure)
    assert result.condition is SaslCondition.CREDENTIALS_EXPIRED


@pytest.mark.parametrize(
    ("used", "issued_for"),
    [
        ("HT-SHA-256-NONE", "HT-SHA-256-EXPR"),
        ("HT-SHA-256-NONE", "HT-SHA-256-ENDP"),
        ("HT-SHA-256-ENDP", "HT-SHA-256-EXPR"),
        ("HT-SHA-256-EXPR", "HT-SHA-256-NONE"),
    ],
)
def test_a_token_is_bound_to_its_mechanism(used: str, issued_for: str) -> None:
    # the HMAC is right for the mechanism in use, but the token was issued for another one
    mech = HtServer(used, cb=CB)
    mech.start(initiator(KEY, CB_DATA[used]))
    assert mech.provide_tokens([candidate(issued_for)]) == Failure(
        condition=SaslCondition.CREDENTIALS_EXPIRED, text=EXPIRED
    )


def test_the_matching_candidate_among_several_is_reported() -> None:
    mech = HtServer("HT-SHA-256-NONE", cb=CB)
    mech.start(initiator(b"new-token", b""))
    result = mech.provide_tokens(
        [
            candidate("HT-SHA-256-NONE", key=KEY, credential_id="current"),
            candidate("HT-SHA-256-EXPR", key=b"new-token", credential_id="wrong-mechanism"),
            candidate("HT-SHA-256-NONE", key=b"new-token", credential_id="new"),
        ]
    )
    assert isinstance(result, Success)
    assert result.credential_id == "new"
    assert result.additional_data == responder(b"new-token", b"")


@dataclass
class SpyCandidate:
    """A candidate that counts how often its key is read."""

    credential_id: str
    mechanism: str
    _key: bytes
    reads: int = 0

    @property
    def key(self) -> bytes:
        self.reads += 1
        return self._key


def test_every_candidate_is_computed_even_after_a_match() -> None:
    mech = HtServer("HT-SHA-256-NONE", cb=CB)
    mech.start(initiator(KEY, b""))
    spies = [SpyCandidate("a", "HT-SHA-256-NONE", KEY), SpyCandidate("b", "HT-SHA-256-NONE", b"other")]
    result = mech.provide_tokens(spies)
    assert isinstance(result, Success)
    assert result.credential_id == "a"
    assert spies[1].reads >= 1  # no early exit


@pytest.mark.parametrize(
    ("name", "binding"), [("HT-SHA-256-ENDP", "tls-server-end-point"), ("HT-SHA-256-EXPR", "tls-exporter")]
)
def test_a_missing_channel_binding_is_malformed_and_says_so(name: str, binding: str) -> None:
    only_other = {k: v for k, v in CB.bindings.items() if k != binding}
    mech = HtServer(name, cb=ChannelBindingContext(bindings=only_other))
    result = mech.start(initiator(KEY, b"anything"))
    assert isinstance(result, Failure)
    assert result.condition is SaslCondition.MALFORMED_REQUEST
    assert binding in result.text
    assert "not offer" in result.text
    with pytest.raises(LocalProtocolError):
        mech.provide_tokens([candidate(name)])


def test_none_needs_no_channel_binding() -> None:
    mech = HtServer("HT-SHA-256-NONE", cb=ChannelBindingContext())
    assert mech.start(initiator(KEY, b"")) == NeedToken(username="alice")


@pytest.mark.parametrize(
    "message",
    [
        None,
        b"",
        b"alice",  # no NUL
        b"alice\0",  # no HMAC
        b"alice\0" + b"m" * 31,  # HMAC too short
        b"alice\0" + b"m" * 33,  # too long
        b"\0" + b"m" * 32,  # empty username
        b"\xff\xfe\0" + b"m" * 32,  # not UTF-8
        b"a" * 2000 + b"\0" + b"m" * 32,  # far too long
    ],
)
def test_a_garbled_message_is_malformed(message: bytes | None) -> None:
    mech = HtServer("HT-SHA-256-NONE", cb=CB)
    result = mech.start(message)
    assert isinstance(result, Failure)
    assert result.condition is SaslCondition.MALFORMED_REQUEST


def test_an_hmac_containing_nul_bytes_is_parsed_at_the_first_nul() -> None:
    key = next(
        k
        for k in (f"token-{i}".encode() for i in range(10_000))
        if b"\0" in hmac.new(k, b"Initiator", hashlib.sha256).digest()
    )
    mech = HtServer("HT-SHA-256-NONE", cb=CB)
    assert mech.start(initiator(key, b"")) == NeedToken(username="alice")
    assert isinstance(mech.provide_tokens([candidate("HT-SHA-256-NONE", key=key)]), Success)


def test_the_username_is_saslprepped() -> None:
    mech = HtServer("HT-SHA-256-NONE", cb=CB)
    # U+00A0 NO-BREAK SPACE maps to a plain space (RFC 4013 §2.1)
    assert mech.start(initiator(KEY, b"", user="al\u00a0ice".encode())) == NeedToken(username="al ice")


def test_call_order_and_wrong_calls() -> None:
    mech = HtServer("HT-SHA-256-NONE", cb=CB)
    with pytest.raises(LocalProtocolError):
        mech.provide_tokens([candidate("HT-SHA-256-NONE")])
    creds = ScramCredentials(salt=b"s" * 16, iterations=4096, stored_key=b"k" * 32, server_key=b"k" * 32)
    with pytest.raises(LocalProtocolError):
        mech.provide_credentials(creds)
    with pytest.raises(LocalProtocolError):
        mech.password_checked(True)
    with pytest.raises(LocalProtocolError):
        mech.step(b"anything")
    mech.start(initiator(KEY, b""))
    with pytest.raises(LocalProtocolError):
        mech.start(initiator(KEY, b""))
    mech.provide_tokens([candidate("HT-SHA-256-NONE")])
    with pytest.raises(LocalProtocolError):
        mech.provide_tokens([candidate("HT-SHA-256-NONE")])


def test_other_mechanisms_refuse_tokens() -> None:
    for name in ("PLAIN", "SCRAM-SHA-256"):
        mech = make_mechanism(name, cb=CB)
        with pytest.raises(LocalProtocolError):
            mech.provide_tokens([candidate("HT-SHA-256-NONE")])


def test_secrets_stay_out_of_reprs() -> None:
    token = candidate("HT-SHA-256-NONE")
    assert KEY.decode() not in repr(token)
    assert "tok-1" in repr(token)
    mech = HtServer("HT-SHA-256-NONE", cb=CB)
    mech.start(initiator(KEY, b""))
    assert repr(mech) == "<HtServer HT-SHA-256-NONE AWAIT_TOKENS>"


@pytest.mark.parametrize("name", list(HT_MECHANISMS))
def test_make_mechanism_knows_the_ht_mechanisms(name: str) -> None:
    assert name in MECHANISMS
    mech = make_mechanism(name, cb=CB)
    assert isinstance(mech, HtServer)
    assert mech.name == name


def test_unknown_ht_names() -> None:
    with pytest.raises(KeyError):
        make_mechanism("HT-SHA-256-UNIQ", cb=CB)
    with pytest.raises(ValueError):
        HtServer("HT-SHA-512-NONE", cb=CB)


def test_fast_mechanism_names_follow_the_bindings() -> None:
    assert fast_mechanism_names(CB.bindings) == ("HT-SHA-256-EXPR", "HT-SHA-256-ENDP", "HT-SHA-256-NONE")
    assert fast_mechanism_names({"tls-server-end-point": ENDP}) == ("HT-SHA-256-ENDP", "HT-SHA-256-NONE")
    assert fast_mechanism_names({"tls-exporter": EXPR}) == ("HT-SHA-256-EXPR", "HT-SHA-256-NONE")
    assert fast_mechanism_names({}) == ("HT-SHA-256-NONE",)
