"""Fuzzing the SASL mechanisms' message parsing (xmppauth/proto/sasl/): SCRAM, HT-*, PLAIN, SASLprep.

Properties:

- SCRAM: any client-first-message (built from the RFC 5802 grammar, then mutated, or plain bytes)
  gives NeedCredentials or a Failure, never an exception; a NeedCredentials names the unescaped
  (``=2C``/``=3D``), SASLprep-ed username; the server-first-message extends the client's nonce; any
  client-final-message after it gives a Failure (or, for the right proof only, Success);
- SCRAM round trip: our client and our server agree for any username, password (SASLprep edge
  cases included), authzid, salt, hash and channel binding; a wrong password or a tampered
  client-final-message fails;
- HT-*: any message gives NeedToken or a Failure; the right token succeeds with the responder HMAC,
  any other fails with credentials-expired;
- PLAIN: any message gives NeedPasswordCheck, an empty challenge or a Failure; a well-formed one
  hands out exactly the SASLprep-ed authcid and password;
- SASLprep raises nothing but ValueError, and what it returns passes it again unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import assume, event, example, given
from hypothesis import strategies as st

from tests.fuzz.common import fuzz, mutated, rarely
from xmppauth.proto.errors import SaslCondition
from xmppauth.proto.sasl import (
    HT_MECHANISMS,
    Challenge,
    ChannelBindingContext,
    Failure,
    HtServer,
    NeedCredentials,
    NeedPasswordCheck,
    NeedToken,
    PlainServer,
    ScramClient,
    ScramServer,
    Success,
    TokenCandidate,
    derive_credentials,
    fake_credentials,
    saslprep,
)
from xmppauth.proto.sasl.scram import _escape_saslname, _unescape_saslname

BINDINGS = {"tls-exporter": b"X" * 32, "tls-server-end-point": b"E" * 32}
HASH_NAMES = ["SHA-1", "SHA-256", "SHA-512"]

# Strings where SASLprep has something to do: spaces to map, soft hyphens to drop, compatibility
# forms, right-to-left text, controls and private use to refuse, "," and "=" to escape.
sasl_chars = st.one_of(
    st.sampled_from(
        list(",=\x00 \u00a0\u00ad\u200b\u2028\ufb01\u2163\u05d0\u0627\u0041\u0301\ue000\U000e0001")
    ),
    st.characters(exclude_categories=("Cs",)),
)
sasl_text = st.text(sasl_chars, max_size=12)
# Mostly what SASLprep accepts, for the round trips (right-to-left text whole or not at all).
login_text = st.one_of(
    st.text(
        st.one_of(
            st.sampled_from(list(",= \u00a0\u00ad\u200b\u2028\ufb01\u2163\u00e9A\u0301\u3000")),
            st.characters(categories=("Lu", "Ll", "Lo", "Nd", "Po", "Sm", "Sc", "Mn")),
        ),
        max_size=12,
    ),
    st.text(st.sampled_from("\u05d0\u05d1\u0627\u0661 "), min_size=1, max_size=6),
)


def _prepared(value: str, *, stored: bool) -> str | None:
    try:
        return saslprep(value, allow_unassigned=not stored)
    except ValueError:
        return None


# ------------------------------------------------------------------------------ SCRAM messages


@st.composite
def attribute_lists(draw: st.DrawFn, first: list[str]) -> str:
    """``k=v,k=v,...`` in the RFC 5802 shape, starting with the keys in ``first``, values anything."""
    keys = first + draw(st.lists(st.sampled_from("abcmnprsvxz"), max_size=2))
    parts = []
    for k in keys:
        value = draw(
            st.one_of(
                st.sampled_from(
                    ["=2C", "=3D", "=", "=2", "=3d", "a=2Cb=3D", "user", "fyko+d2lbbFgONRv9qkxdawL"]
                ),
                sasl_text,
                st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=10),
            )
        )
        parts.append(f"{k}={value}")
    if draw(rarely(6)):
        parts.insert(draw(st.integers(0, len(parts))), draw(sasl_text))  # not an attribute at all
    return ",".join(parts)


@st.composite
def client_first_messages(draw: st.DrawFn) -> bytes:
    """Mostly a well-formed GS2 header, so that the bare message gets parsed too."""
    bad_flag, bad_authz = draw(rarely(4)), draw(rarely(4))
    flag = draw(st.sampled_from(["p=bad!", "p=", "x", ""] if bad_flag else ["n", "y", "p=tls-exporter"]))
    authz = draw(st.sampled_from(["a=", "b=x", "a=bad=x"] if bad_authz else ["", "a=alice", "a=a=2Cb"]))
    message = f"{flag},{authz},{draw(attribute_lists(['n', 'r']))}".encode()
    if draw(rarely(4)):
        return draw(mutated(message) | st.binary(max_size=60))
    return message


def scram_server(hash_name: str, plus: bool, cb: ChannelBindingContext) -> ScramServer:
    return ScramServer(hash_name, plus=plus, cb=cb, nonce_factory=lambda: "SERVERNONCE")


contexts = st.builds(
    ChannelBindingContext,
    bindings=st.sampled_from([{}, BINDINGS, {"tls-exporter": b"X" * 32}]),
    plus_advertised=st.booleans(),
)


@fuzz(3)
@given(
    hash_name=st.sampled_from(HASH_NAMES),
    plus=st.booleans(),
    cb=contexts,
    first=client_first_messages(),
    final=st.data(),
)
def test_any_scram_exchange_fails_or_asks_for_credentials(
    hash_name: str, plus: bool, cb: ChannelBindingContext, first: bytes, final: st.DataObject
) -> None:
    server = scram_server(hash_name, plus, cb)
    result = server.start(first)
    assert isinstance(result, (NeedCredentials, Failure, Challenge)), result
    if isinstance(result, Challenge):
        assert not first
        assert result.data == b""
        return
    if isinstance(result, Failure):
        event(f"client-first refused: {result.text}")
        assert result.condition in (SaslCondition.MALFORMED_REQUEST, SaslCondition.NOT_AUTHORIZED)
        return
    event("client-first accepted")
    # the username is the n= attribute, unescaped and SASLprep-ed
    text = first.decode()
    username_attr = text.split(",")[2]
    assert username_attr.startswith("n=")
    assert result.username == saslprep(_unescape_saslname(username_attr[2:]), allow_unassigned=True)
    assert result.username
    client_nonce = text.split(",")[3].removeprefix("r=")
    challenge = server.provide_credentials(
        fake_credentials(b"k", result.username, hash_name, iterations=4096)
    )
    assert isinstance(challenge, Challenge)
    server_first = challenge.data.decode()
    assert server_first.startswith(f"r={client_nonce}SERVERNONCE,s=")
    nonce = final.draw(st.sampled_from([client_nonce + "SERVERNONCE", client_nonce, "x"]))
    c = final.draw(st.sampled_from(["biws", "eSws", "cD10bHMtZXhwb3J0ZXIsLA==", "bi", "b!ws", ""]))
    proof = final.draw(
        st.binary(max_size=70).map(lambda b: base64.b64encode(b).decode()) | st.text(max_size=8)
    )
    message = f"c={c},r={nonce},p={proof}".encode()
    message = final.draw(st.one_of(st.just(message), mutated(message)))
    outcome = server.step(message)
    assert isinstance(outcome, Failure), outcome  # fake credentials: nothing can match
    assert outcome.condition in (
        SaslCondition.MALFORMED_REQUEST,
        SaslCondition.NOT_AUTHORIZED,
        SaslCondition.INCORRECT_ENCODING,
    )


def test_the_username_is_unescaped_and_prepared() -> None:
    server = scram_server("SHA-1", False, ChannelBindingContext())
    assert server.start("n,,n=a=2Cb=3D\u2163,r=xyz".encode()) == NeedCredentials(username="a,b=IV")


@fuzz(1)
@given(value=st.text(st.sampled_from("ab,=23CD\u00e9"), max_size=12))
def test_saslname_escaping_round_trips(value: str) -> None:
    escaped = _escape_saslname(value)
    assert "," not in escaped
    if value:
        assert _unescape_saslname(escaped) == value
    else:
        with pytest.raises(ValueError):
            _unescape_saslname(escaped)


@st.composite
def scram_logins(draw: st.DrawFn) -> dict[str, object]:
    username = draw(login_text)
    password = draw(login_text)
    prepared_user = _prepared(username, stored=False)
    assume(prepared_user)  # the client refuses what it cannot prepare; the server is tested above
    assume(_prepared(password, stored=True) is not None)
    cb = draw(st.sampled_from([None, "tls-exporter", "tls-server-end-point"]))
    return {
        "hash_name": draw(st.sampled_from(HASH_NAMES)),
        "username": username,
        "password": password,
        "authzid": draw(
            st.none() | st.text(st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=8)
        ),
        "salt": draw(st.binary(min_size=1, max_size=24)),
        "cb": cb,
    }


def _scram_exchange(login: dict[str, object], password: str) -> tuple[ScramClient, ScramServer, bytes]:
    """Client and server up to the client-final-message (not yet given to the server)."""
    hash_name, cb_type = str(login["hash_name"]), login["cb"]
    assert cb_type is None or isinstance(cb_type, str)
    authzid = login["authzid"]
    assert authzid is None or isinstance(authzid, str)
    salt = login["salt"]
    assert isinstance(salt, bytes)
    client = ScramClient(
        hash_name,
        str(login["username"]),
        password,
        cb_type=cb_type,
        cb_data=BINDINGS[cb_type] if cb_type else b"",
        authzid=authzid,
    )
    cb = ChannelBindingContext(bindings=BINDINGS, plus_advertised=True)
    server = ScramServer(hash_name, plus=cb_type is not None, cb=cb)
    need = server.start(client.first())
    assert isinstance(need, NeedCredentials), need
    assert need.username == client.username
    creds = derive_credentials(str(login["password"]), hash_name, salt=salt, iterations=4096)
    challenge = server.provide_credentials(creds)
    assert isinstance(challenge, Challenge)
    return client, server, client.final(challenge.data)


@fuzz(1)
@given(login=scram_logins())
@example(
    login={
        "hash_name": "SHA-256",
        "username": "a,b=c",
        "password": "pass\u00adword\u00a0",  # soft hyphen dropped, no-break space mapped to a space
        "authzid": "x,=y",
        "salt": b"\x00",
        "cb": "tls-exporter",
    }
)
def test_scram_client_and_server_agree(login: dict[str, object]) -> None:
    client, server, final = _scram_exchange(login, str(login["password"]))
    result = server.step(final)
    assert isinstance(result, Success), result
    assert result.username == client.username
    assert result.authzid == (login["authzid"] or None)
    assert result.additional_data is not None
    assert client.verify_server_final(result.additional_data)


@fuzz(1)
@given(login=scram_logins(), data=st.data())
def test_a_wrong_password_or_a_tampered_final_message_fails(
    login: dict[str, object], data: st.DataObject
) -> None:
    password = str(login["password"])
    wrong = data.draw(st.sampled_from(["x" + password, password + "\u05d0", "wrong"]))
    assume(_prepared(wrong, stored=False) not in (None, _prepared(password, stored=True)))
    _, server, final = _scram_exchange(login, wrong)
    result = server.step(final)
    assert isinstance(result, Failure)
    assert result.condition is SaslCondition.NOT_AUTHORIZED

    _, server, final = _scram_exchange(login, str(login["password"]))
    tampered = data.draw(mutated(final))
    assume(tampered != final)
    result = server.step(tampered)
    if isinstance(result, Success):
        # only the proof's unused base64 bits can change without changing what was signed
        head, _, proof = final.rpartition(b",p=")
        t_head, _, t_proof = tampered.rpartition(b",p=")
        assert t_head == head
        assert base64.b64decode(t_proof) == base64.b64decode(proof)
    else:
        assert isinstance(result, Failure)


# ------------------------------------------------------------------------------ HT-* (XEP-0484)


@st.composite
def ht_messages(draw: st.DrawFn) -> bytes:
    user = draw(sasl_text).encode()
    mac = draw(st.binary(min_size=32, max_size=32))  # the right length: mutations change it
    message = user + b"\0" + mac
    return draw(st.one_of(st.just(message), mutated(message), st.binary(max_size=1200)))


@fuzz(2)
@given(
    name=st.sampled_from(list(HT_MECHANISMS)),
    cb=contexts,
    message=st.none() | ht_messages(),
    keys=st.lists(st.binary(max_size=40), max_size=3),
)
def test_any_ht_message_fails_or_asks_for_tokens(
    name: str, cb: ChannelBindingContext, message: bytes | None, keys: list[bytes]
) -> None:
    server = HtServer(name, cb=cb)
    result = server.start(message)
    assert isinstance(result, (NeedToken, Failure)), result
    if isinstance(result, Failure):
        assert result.condition is SaslCondition.MALFORMED_REQUEST
        return
    assert message is not None
    assert result.username == saslprep(message.split(b"\0", 1)[0].decode(), allow_unassigned=True)
    candidates = [TokenCandidate(credential_id=str(i), key=k, mechanism=name) for i, k in enumerate(keys)]
    outcome = server.provide_tokens(candidates)
    cb_type = HT_MECHANISMS[name]
    cb_data = cb.bindings[cb_type] if cb_type else b""
    mac = message.split(b"\0", 1)[1]
    matching = [
        c
        for c in candidates
        if hmac.compare_digest(hmac.new(c.key, b"Initiator" + cb_data, hashlib.sha256).digest(), mac)
    ]
    if matching:
        assert isinstance(outcome, Success)
    else:
        assert isinstance(outcome, Failure)
        assert outcome.condition is SaslCondition.CREDENTIALS_EXPIRED


@fuzz(1)
@given(
    name=st.sampled_from(list(HT_MECHANISMS)),
    user=login_text,
    token=st.binary(min_size=1, max_size=40),
    others=st.lists(st.binary(min_size=1, max_size=40), max_size=2),
)
def test_the_right_token_logs_in_and_proves_the_server_knows_it(
    name: str, user: str, token: bytes, others: list[bytes]
) -> None:
    prepared = _prepared(user, stored=False)
    assume(prepared)
    assume(token not in others)
    cb = ChannelBindingContext(bindings=BINDINGS)
    cb_type = HT_MECHANISMS[name]
    cb_data = BINDINGS[cb_type] if cb_type else b""
    mac = hmac.new(token, b"Initiator" + cb_data, hashlib.sha256).digest()
    server = HtServer(name, cb=cb)
    assert server.start(user.encode() + b"\0" + mac) == NeedToken(username=prepared)
    candidates = [TokenCandidate(credential_id="other", key=k, mechanism=name) for k in others]
    candidates.append(TokenCandidate(credential_id="it", key=token, mechanism=name))
    result = server.provide_tokens(candidates)
    assert isinstance(result, Success)
    assert result.credential_id == "it"
    assert result.additional_data == hmac.new(token, b"Responder" + cb_data, hashlib.sha256).digest()


# ------------------------------------------------------------------------------ PLAIN and SASLprep


@st.composite
def plain_messages(draw: st.DrawFn) -> bytes:
    parts = [draw(sasl_text).encode() for _ in range(draw(st.integers(1, 4)))]
    message = b"\0".join(parts)
    return draw(st.one_of(st.just(message), mutated(message), st.binary(max_size=1100)))


@fuzz(2)
@given(message=st.none() | plain_messages())
def test_any_plain_message_fails_or_asks_for_a_password_check(message: bytes | None) -> None:
    result = PlainServer().start(message)
    if not message:
        assert result == Challenge(data=b"")
        return
    assert isinstance(result, (NeedPasswordCheck, Failure)), result
    if isinstance(result, Failure):
        assert result.condition is SaslCondition.MALFORMED_REQUEST
        return
    _authzid, authcid, passwd = message.decode().split("\0")
    assert result.username == saslprep(authcid, allow_unassigned=True)
    assert result.password == saslprep(passwd, allow_unassigned=True)
    assert result.username
    assert result.password


@fuzz(2)
@given(value=sasl_text | st.text())
def test_saslprep_refuses_only_with_value_error_and_is_stable(value: str) -> None:
    for stored in (True, False):
        prepared = _prepared(value, stored=stored)
        if prepared is not None:
            assert saslprep(prepared, allow_unassigned=not stored) == prepared
