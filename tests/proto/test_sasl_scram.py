"""RFC 5802 / RFC 7677 SCRAM: published vectors, a cross-check against scramp, and the failure paths."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

import pytest
import scramp

from xmppauth.proto.errors import LocalProtocolError, SaslCondition
from xmppauth.proto.sasl import (
    HASHES,
    Challenge,
    ChannelBindingContext,
    Failure,
    NeedCredentials,
    PlainServer,
    Result,
    ScramClient,
    ScramCredentials,
    ScramServer,
    Success,
    credentials_from_salted_password,
    derive_credentials,
    fake_credentials,
    make_mechanism,
    mechanism_names,
)

NO_TLS = ChannelBindingContext(bindings={}, plus_advertised=False)
TLS_NO_PLUS = ChannelBindingContext(bindings={"tls-server-end-point": b"\x11" * 32}, plus_advertised=False)
ENDPOINT_DATA = hashlib.sha256(b"pretend this is the server certificate").digest()
EXPORTER_DATA = bytes(range(32))
TLS = ChannelBindingContext(
    bindings={"tls-server-end-point": ENDPOINT_DATA, "tls-exporter": EXPORTER_DATA},
    plus_advertised=True,
)
SALT = b"0123456789abcdef"
SECRET = b"server-side secret for fake credentials"
INVALID = Failure(condition=SaslCondition.NOT_AUTHORIZED, text="invalid credentials")


# --------------------------------------------------------------------------------------------
# Published and independently generated vectors


@dataclass(frozen=True)
class Vector:
    hash_name: str
    client_nonce: str
    server_nonce: str
    salt_b64: str
    proof_b64: str
    server_signature_b64: str

    @property
    def client_first(self) -> bytes:
        return f"n,,n=user,r={self.client_nonce}".encode()

    @property
    def server_first(self) -> bytes:
        return f"r={self.client_nonce}{self.server_nonce},s={self.salt_b64},i=4096".encode()

    @property
    def client_final(self) -> bytes:
        return f"c=biws,r={self.client_nonce}{self.server_nonce},p={self.proof_b64}".encode()

    @property
    def server_final(self) -> bytes:
        return f"v={self.server_signature_b64}".encode()


VECTORS = [
    # RFC 5802 §5
    Vector(
        "SHA-1",
        "fyko+d2lbbFgONRv9qkxdawL",
        "3rfcNHYJY1ZVvWVs7j",
        "QSXCR+Q6sek8bf92",
        "v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
        "rmF9pqV8S7suAoZWja4dJRkFsKQ=",
    ),
    # RFC 7677 §3
    Vector(
        "SHA-256",
        "rOprNGfwEbeRWgbNEkqO",
        "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        "W22ZaJ0SNY7soEsUEjb6gQ==",
        "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
    ),
    # No RFC has a SCRAM-SHA-512 example. Generated once with scramp 1.5.0 (an independent
    # implementation), reusing the RFC 7677 user, password, nonces and salt:
    #   m = scramp.ScramMechanism("SCRAM-SHA-512")
    #   auth = m.make_auth_info("pencil", iteration_count=4096,
    #                           salt=base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="))
    #   srv = m.make_server(lambda u: auth, s_nonce="%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
    #   c = scramp.ScramClient(["SCRAM-SHA-512"], "user", "pencil", c_nonce="rOprNGfwEbeRWgbNEkqO")
    #   then c.get_client_first() -> srv.set_client_first / get_server_first -> c.set_server_first
    #   -> c.get_client_final() (p=) -> srv.set_client_final / get_server_final() (v=).
    Vector(
        "SHA-512",
        "rOprNGfwEbeRWgbNEkqO",
        "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        "W22ZaJ0SNY7soEsUEjb6gQ==",
        "gMGXRcevScNtxZ6/8lQYpGtnsNAc3mGcmNomv+xnoOMw+3R2xNJdMNnzMlTN8PPC6wdp6dybEmDYXYTxwnYPJQ==",
        "ZQnYEgWQMFmmsM8aQMF0nDDCy/AgCzkwk8CmMZYcMg0vSVlKDanekLtifDSeVGT4+5ZxXnJq199RVG2rR7N7Zw==",
    ),
]
VECTOR_IDS = [v.hash_name for v in VECTORS]


def vector_credentials(v: Vector) -> ScramCredentials:
    return derive_credentials("pencil", v.hash_name, salt=base64.b64decode(v.salt_b64), iterations=4096)


@pytest.mark.parametrize("v", VECTORS, ids=VECTOR_IDS)
def test_server_against_vector(v: Vector) -> None:
    server = ScramServer(v.hash_name, plus=False, cb=NO_TLS, nonce_factory=lambda: v.server_nonce)
    assert server.name == f"SCRAM-{v.hash_name}"
    assert server.start(v.client_first) == NeedCredentials(username="user")
    assert server.provide_credentials(vector_credentials(v)) == Challenge(data=v.server_first)
    assert server.step(v.client_final) == Success(
        username="user", additional_data=v.server_final, authzid=None
    )


@pytest.mark.parametrize("v", VECTORS, ids=VECTOR_IDS)
def test_server_against_vector_without_initial_response(v: Vector) -> None:
    server = ScramServer(v.hash_name, plus=False, cb=NO_TLS, nonce_factory=lambda: v.server_nonce)
    assert server.start(None) == Challenge(data=b"")
    assert server.step(v.client_first) == NeedCredentials(username="user")
    assert server.provide_credentials(vector_credentials(v)) == Challenge(data=v.server_first)
    result = server.step(v.client_final)
    assert isinstance(result, Success)
    assert result.additional_data == v.server_final


@pytest.mark.parametrize("v", VECTORS, ids=VECTOR_IDS)
def test_client_against_vector(v: Vector) -> None:
    client = ScramClient(v.hash_name, "user", "pencil", nonce=v.client_nonce)
    assert client.first() == v.client_first
    assert client.final(v.server_first) == v.client_final
    assert client.server_first_attributes == {
        "r": v.client_nonce + v.server_nonce,
        "s": v.salt_b64,
        "i": "4096",
    }
    assert client.verify_server_final(v.server_final) is True


@pytest.mark.parametrize("v", VECTORS, ids=VECTOR_IDS)
def test_client_rejects_wrong_server_signature(v: Vector) -> None:
    client = ScramClient(v.hash_name, "user", "pencil", nonce=v.client_nonce)
    client.first()
    client.final(v.server_first)
    forged = bytearray(base64.b64decode(v.server_signature_b64))
    forged[0] ^= 1
    assert client.verify_server_final(b"v=" + base64.b64encode(bytes(forged))) is False


@pytest.mark.parametrize(
    "server_final", [b"e=invalid-proof", b"v=not base64!", b"", b"\xff", b"x=1"], ids=repr
)
def test_client_rejects_errors_and_garbage_as_server_final(server_final: bytes) -> None:
    v = VECTORS[0]
    client = ScramClient(v.hash_name, "user", "pencil", nonce=v.client_nonce)
    client.first()
    client.final(v.server_first)
    assert client.verify_server_final(server_final) is False


@pytest.mark.parametrize("v", VECTORS, ids=VECTOR_IDS)
def test_salted_password_gives_the_same_credentials(v: Vector) -> None:
    client = ScramClient(v.hash_name, "user", "pencil", nonce=v.client_nonce)
    with pytest.raises(LocalProtocolError):
        _ = client.salted_password
    client.first()
    client.final(v.server_first)
    salt = base64.b64decode(v.salt_b64)
    assert credentials_from_salted_password(
        client.salted_password, v.hash_name, salt=salt, iterations=4096
    ) == vector_credentials(v)


# --------------------------------------------------------------------------------------------
# Live cross-check against scramp


def scramp_credentials(mech: str, password: str) -> ScramCredentials:
    salt, stored_key, server_key, iterations = scramp.ScramMechanism(mech).make_auth_info(
        password, iteration_count=4096, salt=SALT
    )
    return ScramCredentials(salt=salt, iterations=iterations, stored_key=stored_key, server_key=server_key)


@pytest.mark.parametrize("hash_name", list(HASHES))
def test_derive_credentials_matches_scramp(hash_name: str) -> None:
    ours = derive_credentials("p\u00e4ss w\u00f6rd", hash_name, salt=SALT, iterations=4096)
    assert ours == scramp_credentials(f"SCRAM-{hash_name}", "p\u00e4ss w\u00f6rd")


def run_scramp_client(client: scramp.ScramClient, server: ScramServer, creds: ScramCredentials) -> Result:
    result = server.start(client.get_client_first().encode())
    assert isinstance(result, NeedCredentials)
    challenge = server.provide_credentials(creds)
    assert isinstance(challenge, Challenge)
    client.set_server_first(challenge.data.decode())
    return server.step(client.get_client_final().encode())


@pytest.mark.parametrize("hash_name", list(HASHES))
@pytest.mark.parametrize("username", ["user", "u,s=er", "J\u00fcrgen"])
def test_scramp_client_against_our_server(hash_name: str, username: str) -> None:
    mech = f"SCRAM-{hash_name}"
    server = ScramServer(hash_name, plus=False, cb=NO_TLS)
    client = scramp.ScramClient([mech], username, "pencil")
    result = run_scramp_client(client, server, scramp_credentials(mech, "pencil"))
    assert isinstance(result, Success)
    assert result.username == username
    assert result.additional_data is not None
    client.set_server_final(result.additional_data.decode())  # raises if the signature is wrong


@pytest.mark.parametrize("hash_name", list(HASHES))
def test_scramp_client_plus_against_our_server(hash_name: str) -> None:
    mech = f"SCRAM-{hash_name}-PLUS"
    server = ScramServer(hash_name, plus=True, cb=TLS)
    client = scramp.ScramClient(
        [mech], "user", "pencil", channel_binding=("tls-server-end-point", ENDPOINT_DATA)
    )
    result = run_scramp_client(client, server, scramp_credentials(mech, "pencil"))
    assert isinstance(result, Success)
    assert result.additional_data is not None
    client.set_server_final(result.additional_data.decode())


@pytest.mark.parametrize("hash_name", list(HASHES))
def test_scramp_client_plus_with_other_channel_data_fails(hash_name: str) -> None:
    mech = f"SCRAM-{hash_name}-PLUS"
    server = ScramServer(hash_name, plus=True, cb=TLS)
    client = scramp.ScramClient(
        [mech], "user", "pencil", channel_binding=("tls-server-end-point", b"\x99" * 32)
    )
    result = run_scramp_client(client, server, scramp_credentials(mech, "pencil"))
    assert result == Failure(condition=SaslCondition.NOT_AUTHORIZED, text="channel binding mismatch")


def test_scramp_client_with_binding_but_no_plus_sends_y() -> None:
    # scramp with channel binding data but only a non-PLUS mechanism sends gs2 flag "y".
    client = scramp.ScramClient(
        ["SCRAM-SHA-256"], "user", "pencil", channel_binding=("tls-server-end-point", ENDPOINT_DATA)
    )
    accepting = ScramServer("SHA-256", plus=False, cb=TLS_NO_PLUS)
    result = run_scramp_client(client, accepting, scramp_credentials("SCRAM-SHA-256", "pencil"))
    assert isinstance(result, Success)

    client = scramp.ScramClient(
        ["SCRAM-SHA-256"], "user", "pencil", channel_binding=("tls-server-end-point", ENDPOINT_DATA)
    )
    refusing = ScramServer("SHA-256", plus=False, cb=TLS)
    result = refusing.start(client.get_client_first().encode())
    assert isinstance(result, Failure)
    assert result.condition is SaslCondition.NOT_AUTHORIZED


def run_our_client_against_scramp(client: ScramClient, server: scramp.core.ScramServer) -> bool:
    server.set_client_first(client.first().decode())
    final = client.final(server.get_server_first().encode())
    server.set_client_final(final.decode())
    return client.verify_server_final(server.get_server_final().encode())


@pytest.mark.parametrize("hash_name", list(HASHES))
def test_our_client_against_scramp_server(hash_name: str) -> None:
    mech = scramp.ScramMechanism(f"SCRAM-{hash_name}")
    auth = mech.make_auth_info("pencil", iteration_count=4096, salt=SALT)
    server = mech.make_server(lambda _username: auth)
    assert run_our_client_against_scramp(ScramClient(hash_name, "user", "pencil"), server) is True


@pytest.mark.parametrize("hash_name", list(HASHES))
def test_our_client_plus_against_scramp_server(hash_name: str) -> None:
    mech = scramp.ScramMechanism(f"SCRAM-{hash_name}-PLUS")
    auth = mech.make_auth_info("pencil", iteration_count=4096, salt=SALT)
    server = mech.make_server(lambda _username: auth, channel_binding=("tls-server-end-point", ENDPOINT_DATA))
    client = ScramClient(hash_name, "user", "pencil", cb_type="tls-server-end-point", cb_data=ENDPOINT_DATA)
    assert run_our_client_against_scramp(client, server) is True


def test_our_client_wrong_password_refused_by_scramp() -> None:
    mech = scramp.ScramMechanism("SCRAM-SHA-256")
    auth = mech.make_auth_info("pencil", iteration_count=4096, salt=SALT)
    server = mech.make_server(lambda _username: auth)
    with pytest.raises(scramp.ScramException):
        run_our_client_against_scramp(ScramClient("SHA-256", "user", "crayon"), server)


# --------------------------------------------------------------------------------------------
# Helpers for driving our own client against our own server


def drive(
    client: ScramClient,
    server: ScramServer,
    creds: ScramCredentials | None = None,
    *,
    tamper_final: bytes | None = None,
) -> Result:
    """Run a whole exchange; stop early (returning it) at the first non-expected result."""
    result = server.start(client.first())
    if not isinstance(result, NeedCredentials):
        return result
    if creds is None:
        creds = derive_credentials("pencil", client.hash_name, salt=SALT, iterations=4096)
    challenge = server.provide_credentials(creds)
    assert isinstance(challenge, Challenge)
    final = client.final(challenge.data)
    return server.step(final if tamper_final is None else tamper_final)


def to_server_first(server: ScramServer, client_first: bytes, hash_name: str = "SHA-256") -> bytes:
    assert isinstance(server.start(client_first), NeedCredentials)
    challenge = server.provide_credentials(
        derive_credentials("pencil", hash_name, salt=SALT, iterations=4096)
    )
    assert isinstance(challenge, Challenge)
    return challenge.data


def manual_proof(hash_name: str, password: str, auth_message: bytes, salt: bytes = SALT) -> bytes:
    """ClientProof computed directly from RFC 5802 §3, independent of ScramClient."""
    digest = HASHES[hash_name]
    salted = hashlib.pbkdf2_hmac(digest, password.encode(), salt, 4096)
    client_key = hmac.new(salted, b"Client Key", digest).digest()
    stored_key = hashlib.new(digest, client_key).digest()
    signature = hmac.new(stored_key, auth_message, digest).digest()
    return bytes(a ^ b for a, b in zip(client_key, signature, strict=True))


@pytest.mark.parametrize("hash_name", list(HASHES))
@pytest.mark.parametrize("plus", [False, True])
def test_own_client_and_server(hash_name: str, plus: bool) -> None:
    server = ScramServer(hash_name, plus=plus, cb=TLS)
    client = ScramClient(
        hash_name,
        "user",
        "pencil",
        cb_type="tls-exporter" if plus else None,
        cb_data=EXPORTER_DATA if plus else b"",
    )
    assert server.name == f"SCRAM-{hash_name}" + ("-PLUS" if plus else "")
    result = drive(client, server)
    assert isinstance(result, Success)
    assert result.additional_data is not None
    assert client.verify_server_final(result.additional_data) is True


def test_default_nonces_are_fresh_and_well_formed() -> None:
    first = b"n,,n=user,r=abc"
    suffixes = set()
    for _ in range(3):
        server_first = to_server_first(ScramServer("SHA-256", plus=False, cb=NO_TLS), first).decode()
        nonce = server_first.split(",")[0].removeprefix("r=")
        assert nonce.startswith("abc")
        suffix = nonce[3:]
        assert len(suffix) == 32
        assert "," not in suffix
        assert all(0x21 <= ord(c) <= 0x7E for c in suffix)
        suffixes.add(suffix)
    assert len(suffixes) == 3


def test_server_first_extensions_are_sent_and_authenticated() -> None:
    server = ScramServer("SHA-256", plus=False, cb=NO_TLS, server_first_extensions="h=abc")
    client = ScramClient("SHA-256", "user", "pencil")
    assert server.start(client.first()) == NeedCredentials(username="user")
    challenge = server.provide_credentials(
        derive_credentials("pencil", "SHA-256", salt=SALT, iterations=4096)
    )
    assert isinstance(challenge, Challenge)
    assert challenge.data.endswith(b",i=4096,h=abc")
    final = client.final(challenge.data)
    assert client.server_first_attributes["h"] == "abc"
    result = server.step(final)
    assert isinstance(result, Success)
    assert result.additional_data is not None
    assert client.verify_server_final(result.additional_data)


@pytest.mark.parametrize("extensions", ["h", "h=", "m=1", "r=x", "h=a,,b=c", "1=a"])
def test_invalid_server_first_extensions_rejected(extensions: str) -> None:
    with pytest.raises(ValueError):
        ScramServer("SHA-256", plus=False, cb=NO_TLS, server_first_extensions=extensions)


def test_client_final_extensions_are_part_of_auth_message() -> None:
    server = ScramServer("SHA-256", plus=False, cb=NO_TLS, nonce_factory=lambda: "SNONCE")
    client_first_bare = "n=user,r=CNONCE"
    server_first = to_server_first(server, f"n,,{client_first_bare}".encode()).decode()
    without_proof = "c=biws,r=CNONCESNONCE,x=unknown-extension"
    auth_message = f"{client_first_bare},{server_first},{without_proof}".encode()
    proof = base64.b64encode(manual_proof("SHA-256", "pencil", auth_message)).decode()
    assert isinstance(server.step(f"{without_proof},p={proof}".encode()), Success)


def test_client_final_extension_tampering_detected() -> None:
    server = ScramServer("SHA-256", plus=False, cb=NO_TLS, nonce_factory=lambda: "SNONCE")
    client_first_bare = "n=user,r=CNONCE"
    server_first = to_server_first(server, f"n,,{client_first_bare}".encode()).decode()
    signed = f"{client_first_bare},{server_first},c=biws,r=CNONCESNONCE,x=one".encode()
    proof = base64.b64encode(manual_proof("SHA-256", "pencil", signed)).decode()
    assert server.step(f"c=biws,r=CNONCESNONCE,x=two,p={proof}".encode()) == INVALID


# --------------------------------------------------------------------------------------------
# Nonces


def test_nonce_mismatch_in_client_final() -> None:
    client = ScramClient("SHA-256", "user", "pencil", nonce="CNONCE")
    server = ScramServer("SHA-256", plus=False, cb=NO_TLS, nonce_factory=lambda: "SNONCE")
    server_first = to_server_first(server, client.first())
    final = client.final(server_first).replace(b"r=CNONCESNONCE", b"r=CNONCESNONCX")
    assert server.step(final) == Failure(condition=SaslCondition.MALFORMED_REQUEST, text="nonce mismatch")


def test_client_nonce_alone_in_client_final() -> None:
    client = ScramClient("SHA-256", "user", "pencil", nonce="CNONCE")
    server = ScramServer("SHA-256", plus=False, cb=NO_TLS, nonce_factory=lambda: "SNONCE")
    final = client.final(to_server_first(server, client.first())).replace(b"r=CNONCESNONCE", b"r=CNONCE")
    assert server.step(final) == Failure(condition=SaslCondition.MALFORMED_REQUEST, text="nonce mismatch")


@pytest.mark.parametrize(
    "server_first",
    [
        pytest.param(b"r=OTHERNONCE,s=MDEyMzQ1Njc4OWFiY2RlZg==,i=4096", id="not-a-prefix"),
        pytest.param(b"r=CNONCE,s=MDEyMzQ1Njc4OWFiY2RlZg==,i=4096", id="no-server-part"),
        pytest.param(b"r=XCNONCE,s=MDEyMzQ1Njc4OWFiY2RlZg==,i=4096", id="prefix-shifted"),
    ],
)
def test_client_checks_nonce_prefix(server_first: bytes) -> None:
    client = ScramClient("SHA-256", "user", "pencil", nonce="CNONCE")
    client.first()
    with pytest.raises(ValueError, match="nonce"):
        client.final(server_first)


@pytest.mark.parametrize(
    "server_first",
    [
        pytest.param(b"r=CNONCES,s=MDEyMzQ1Njc4OWFiY2RlZg==,i=4095", id="4095"),
        pytest.param(b"r=CNONCES,s=MDEyMzQ1Njc4OWFiY2RlZg==,i=1", id="1"),
        pytest.param(b"r=CNONCES,s=MDEyMzQ1Njc4OWFiY2RlZg==,i=0", id="0"),
        pytest.param(b"r=CNONCES,s=MDEyMzQ1Njc4OWFiY2RlZg==,i=-4096", id="negative"),
        pytest.param(b"r=CNONCES,s=MDEyMzQ1Njc4OWFiY2RlZg==,i=04096", id="leading-zero"),
    ],
)
def test_client_rejects_low_or_malformed_iterations(server_first: bytes) -> None:
    client = ScramClient("SHA-256", "user", "pencil", nonce="CNONCE")
    client.first()
    with pytest.raises(ValueError, match="iteration"):
        client.final(server_first)


@pytest.mark.parametrize(
    "server_first",
    [
        pytest.param(b"m=x,r=CNONCES,s=MDEyMzQ1Njc4OWFiY2RlZg==,i=4096", id="reserved-m"),
        pytest.param(b"r=CNONCES,i=4096,s=MDEyMzQ1Njc4OWFiY2RlZg==", id="order"),
        pytest.param(b"r=CNONCES,s=MDEy!,i=4096", id="bad-salt-base64"),
        pytest.param(b"r=CNONCES,s=MDEyMzQ1Njc4OWFiY2RlZg==,i=4096,i=5000", id="duplicate"),
        pytest.param(b"e=other-error", id="server-error"),
    ],
)
def test_client_rejects_malformed_server_first(server_first: bytes) -> None:
    client = ScramClient("SHA-256", "user", "pencil", nonce="CNONCE")
    client.first()
    with pytest.raises(ValueError):
        client.final(server_first)


# --------------------------------------------------------------------------------------------
# Channel binding


def test_gs2_header_in_c_differs_from_client_first() -> None:
    # The client announces "y" (accepted: no -PLUS was advertised) but its c= says "n,,".
    liar = ScramClient("SHA-256", "user", "pencil", nonce="CNONCE", gs2_flag="y")
    honest = ScramClient("SHA-256", "user", "pencil", nonce="CNONCE", gs2_flag="n")
    server = ScramServer("SHA-256", plus=False, cb=TLS_NO_PLUS, nonce_factory=lambda: "SNONCE")
    server_first = to_server_first(server, liar.first())
    honest.first()
    final = honest.final(server_first)
    assert final.startswith(b"c=biws,")
    assert server.step(final) == Failure(
        condition=SaslCondition.NOT_AUTHORIZED, text="gs2-header in c= differs from client-first-message"
    )


def test_flag_y_refused_when_plus_advertised() -> None:
    client = ScramClient("SHA-256", "user", "pencil", gs2_flag="y")
    server = ScramServer("SHA-256", plus=False, cb=TLS)
    assert drive(client, server) == Failure(
        condition=SaslCondition.NOT_AUTHORIZED,
        text="client thinks the server lacks channel binding: possible downgrade",
    )


@pytest.mark.parametrize("cb", [NO_TLS, TLS_NO_PLUS], ids=["no-tls", "tls-without-plus"])
def test_flag_y_accepted_when_plus_not_advertised(cb: ChannelBindingContext) -> None:
    client = ScramClient("SHA-256", "user", "pencil", gs2_flag="y")
    server = ScramServer("SHA-256", plus=False, cb=cb)
    result = drive(client, server)
    assert isinstance(result, Success)


@pytest.mark.parametrize("cb", [NO_TLS, TLS], ids=["no-tls", "tls"])
def test_flag_p_on_non_plus_mechanism(cb: ChannelBindingContext) -> None:
    client = ScramClient("SHA-256", "user", "pencil", cb_type="tls-exporter", cb_data=EXPORTER_DATA)
    server = ScramServer("SHA-256", plus=False, cb=cb)
    assert drive(client, server) == Failure(
        condition=SaslCondition.MALFORMED_REQUEST, text="channel binding requires a -PLUS mechanism"
    )


@pytest.mark.parametrize("flag", ["n", "y"])
def test_plus_mechanism_requires_flag_p(flag: str) -> None:
    client = ScramClient("SHA-256", "user", "pencil", gs2_flag=flag)
    server = ScramServer("SHA-256", plus=True, cb=TLS)
    result = drive(client, server)
    assert isinstance(result, Failure)
    assert result.condition is SaslCondition.MALFORMED_REQUEST
    assert "channel binding" in result.text


@pytest.mark.parametrize("cb_type", ["tls-unique", "tls-exporter"])
def test_unsupported_channel_binding_type(cb_type: str) -> None:
    only_endpoint = ChannelBindingContext(
        bindings={"tls-server-end-point": ENDPOINT_DATA}, plus_advertised=True
    )
    client = ScramClient("SHA-256", "user", "pencil", cb_type=cb_type, cb_data=b"\x01" * 32)
    server = ScramServer("SHA-256", plus=True, cb=only_endpoint)
    assert drive(client, server) == Failure(
        condition=SaslCondition.MALFORMED_REQUEST, text="channel binding type not supported"
    )


def test_plus_without_any_binding_fails_cleanly() -> None:
    client = ScramClient("SHA-256", "user", "pencil", cb_type="tls-exporter", cb_data=EXPORTER_DATA)
    server = ScramServer("SHA-256", plus=True, cb=NO_TLS)
    assert drive(client, server) == Failure(
        condition=SaslCondition.MALFORMED_REQUEST, text="channel binding type not supported"
    )


@pytest.mark.parametrize(
    "cb_data",
    [EXPORTER_DATA[:-1] + b"\x00", ENDPOINT_DATA, b"", EXPORTER_DATA + b"\x00"],
    ids=["one-byte-off", "other-type-data", "empty", "extra-byte"],
)
def test_wrong_channel_binding_data(cb_data: bytes) -> None:
    client = ScramClient("SHA-256", "user", "pencil", cb_type="tls-exporter", cb_data=cb_data)
    server = ScramServer("SHA-256", plus=True, cb=TLS)
    assert drive(client, server) == Failure(
        condition=SaslCondition.NOT_AUTHORIZED, text="channel binding mismatch"
    )


def test_channel_binding_with_authzid() -> None:
    client = ScramClient(
        "SHA-512", "user", "pencil", cb_type="tls-server-end-point", cb_data=ENDPOINT_DATA, authzid="a@b"
    )
    server = ScramServer("SHA-512", plus=True, cb=TLS)
    result = drive(client, server)
    assert isinstance(result, Success)
    assert result.authzid == "a@b"


@pytest.mark.parametrize(
    "first",
    [
        b"p=,,n=user,r=abc",
        b"p=tls exporter,,n=user,r=abc",
        b"p=tls_exporter,,n=user,r=abc",
    ],
)
def test_malformed_cb_name(first: bytes) -> None:
    server = ScramServer("SHA-256", plus=True, cb=TLS)
    result = server.start(first)
    assert isinstance(result, Failure)
    assert result.condition is SaslCondition.MALFORMED_REQUEST


# --------------------------------------------------------------------------------------------
# Malformed client messages


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(b"n,,m=ext,n=user,r=abc", id="reserved-mext"),
        pytest.param(b"n,,n=user,r=abc,m=ext", id="m-as-extension"),
    ],
)
def test_reserved_m_extension_in_client_first(first: bytes) -> None:
    result = ScramServer("SHA-256", plus=False, cb=NO_TLS).start(first)
    assert isinstance(result, Failure)
    assert result.condition is SaslCondition.MALFORMED_REQUEST
    assert result.text.startswith("extensions-not-supported")


def test_reserved_m_extension_in_client_final() -> None:
    server = ScramServer("SHA-256", plus=False, cb=NO_TLS, nonce_factory=lambda: "S")
    to_server_first(server, b"n,,n=user,r=C")
    result = server.step(b"c=biws,r=CS,m=ext,p=AAAA")
    assert isinstance(result, Failure)
    assert result.condition is SaslCondition.MALFORMED_REQUEST
    assert result.text.startswith("extensions-not-supported")


def test_unknown_client_first_extension_is_ignored() -> None:
    server = ScramServer("SHA-256", plus=False, cb=NO_TLS)
    assert server.start(b"n,,n=user,r=abc,x=whatever") == NeedCredentials(username="user")


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(b"n,,", id="no-bare"),
        pytest.param(b"n=user,r=abc", id="no-gs2-header"),
        pytest.param(b"n,n=user,r=abc", id="one-comma"),
        pytest.param(b"x,,n=user,r=abc", id="bad-flag"),
        pytest.param(b"N,,n=user,r=abc", id="uppercase-flag"),
        pytest.param(b"n,z=admin,n=user,r=abc", id="bad-authzid-key"),
        pytest.param(b"n,a=,n=user,r=abc", id="empty-authzid"),
        pytest.param(b"n,a=x=2Dy,n=user,r=abc", id="bad-authzid-escape"),
        pytest.param(b"n,,r=abc,n=user", id="wrong-order"),
        pytest.param(b"n,,n=user", id="missing-r"),
        pytest.param(b"n,,r=abc", id="missing-n"),
        pytest.param(b"n,,n=,r=abc", id="empty-username"),
        pytest.param(b"n,,n=user,r=", id="empty-nonce"),
        pytest.param("n,,n=user,r=ab\u00e9".encode(), id="non-ascii-nonce"),
        pytest.param(b"n,,n=user,r=a b", id="space-in-nonce"),
        pytest.param(b"n,,n=us\xffer,r=abc", id="bad-utf8"),
        pytest.param(b"n,,n=us\x00er,r=abc", id="nul"),
        pytest.param(b"n,,n=user,r=abc,", id="trailing-comma"),
        pytest.param(b"n,,n=user,r=abc,xy", id="bad-extension"),
        pytest.param("n,,n=\u00ad,r=abc".encode(), id="username-empty-after-saslprep"),
        pytest.param(b"n,,n=us\x07er,r=abc", id="username-fails-saslprep"),
    ],
)
def test_malformed_client_first(first: bytes) -> None:
    server = ScramServer("SHA-256", plus=False, cb=NO_TLS)
    result = server.start(first)
    assert isinstance(result, Failure)
    assert result.condition is SaslCondition.MALFORMED_REQUEST
    with pytest.raises(LocalProtocolError):
        server.provide_credentials(derive_credentials("pencil", "SHA-256", salt=SALT, iterations=4096))


def test_empty_client_first_after_empty_challenge() -> None:
    server = ScramServer("SHA-256", plus=False, cb=NO_TLS)
    assert server.start(b"") == Challenge(data=b"")
    assert server.step(b"") == Failure(
        condition=SaslCondition.MALFORMED_REQUEST, text="client-first-message lacks a gs2-header"
    )


@pytest.mark.parametrize(
    ("final", "condition"),
    [
        pytest.param(b"c=biws!,r=CS,p=AAAA", SaslCondition.INCORRECT_ENCODING, id="c-bad-char"),
        pytest.param(b"c=biw,r=CS,p=AAAA", SaslCondition.INCORRECT_ENCODING, id="c-bad-length"),
        pytest.param(b"c=biws,r=CS,p=AAA", SaslCondition.INCORRECT_ENCODING, id="p-bad-padding"),
        pytest.param(b"c=biws,r=CS,p=AA==AA==", SaslCondition.INCORRECT_ENCODING, id="p-data-after-pad"),
        pytest.param(b"c=biws,r=CS,p==AAA", SaslCondition.INCORRECT_ENCODING, id="p-leading-pad"),
        pytest.param("c=biws,r=CS,p=AA\u00e9A".encode(), SaslCondition.INCORRECT_ENCODING, id="p-non-ascii"),
        pytest.param(b"c=biws,p=AAAA", SaslCondition.MALFORMED_REQUEST, id="missing-r"),
        pytest.param(b"c=biws,r=CS", SaslCondition.MALFORMED_REQUEST, id="missing-p"),
        pytest.param(b"c=biws,r=CS,x=1", SaslCondition.MALFORMED_REQUEST, id="p-replaced-by-extension"),
        pytest.param(b"c=biws,r=CS,p=AAAA,x=1", SaslCondition.MALFORMED_REQUEST, id="p-not-last"),
        pytest.param(b"r=CS,c=biws,p=AAAA", SaslCondition.MALFORMED_REQUEST, id="wrong-order"),
        pytest.param(b"r=CS,p=AAAA", SaslCondition.MALFORMED_REQUEST, id="missing-c"),
        pytest.param(b"c=biws,r=CS,r=CS,p=AAAA", SaslCondition.MALFORMED_REQUEST, id="duplicate-r"),
        pytest.param(b"c=biws,r=CS,p=", SaslCondition.MALFORMED_REQUEST, id="empty-p"),
        pytest.param(b"c=biws,r=C\xffS,p=AAAA", SaslCondition.MALFORMED_REQUEST, id="bad-utf8"),
        pytest.param(b"", SaslCondition.MALFORMED_REQUEST, id="empty"),
    ],
)
def test_malformed_client_final(final: bytes, condition: SaslCondition) -> None:
    server = ScramServer("SHA-256", plus=False, cb=NO_TLS, nonce_factory=lambda: "S")
    to_server_first(server, b"n,,n=user,r=C")
    result = server.step(final)
    assert isinstance(result, Failure)
    assert result.condition is condition
    with pytest.raises(LocalProtocolError):
        server.step(final)


@pytest.mark.parametrize("hash_name", list(HASHES))
@pytest.mark.parametrize("delta", [-1, 1, -4])
def test_proof_of_wrong_length(hash_name: str, delta: int) -> None:
    client = ScramClient(hash_name, "user", "pencil", nonce="C")
    server = ScramServer(hash_name, plus=False, cb=NO_TLS, nonce_factory=lambda: "S")
    final = client.final(to_server_first(server, client.first(), hash_name))
    without_proof, _, proof_b64 = final.rpartition(b",p=")
    proof = base64.b64decode(proof_b64)
    proof = proof[:delta] if delta < 0 else proof + b"\x00" * delta
    assert server.step(without_proof + b",p=" + base64.b64encode(proof)) == INVALID


# --------------------------------------------------------------------------------------------
# Credentials


@pytest.mark.parametrize("hash_name", list(HASHES))
def test_wrong_password(hash_name: str) -> None:
    client = ScramClient(hash_name, "user", "crayon")
    server = ScramServer(hash_name, plus=False, cb=NO_TLS)
    assert drive(client, server) == INVALID


@pytest.mark.parametrize("hash_name", list(HASHES))
def test_unknown_user_looks_like_wrong_password(hash_name: str) -> None:
    fake = fake_credentials(SECRET, "nobody", hash_name, iterations=4096)
    client = ScramClient(hash_name, "nobody", "pencil")
    server = ScramServer(hash_name, plus=False, cb=NO_TLS)
    unknown = drive(client, server, fake)
    wrong = drive(ScramClient(hash_name, "user", "crayon"), ScramServer(hash_name, plus=False, cb=NO_TLS))
    assert unknown == wrong == INVALID


def test_fake_server_first_has_the_shape_of_a_real_one() -> None:
    fake = fake_credentials(SECRET, "nobody", "SHA-256", iterations=4096)
    real = derive_credentials("pencil", "SHA-256", salt=SALT, iterations=4096)
    assert len(fake.salt) == len(real.salt) == 16
    assert len(fake.stored_key) == len(real.stored_key)
    assert len(fake.server_key) == len(real.server_key)


@pytest.mark.parametrize("hash_name", list(HASHES))
def test_fake_credentials_are_deterministic(hash_name: str) -> None:
    a = fake_credentials(SECRET, "nobody", hash_name, iterations=4096)
    b = fake_credentials(SECRET, "nobody", hash_name, iterations=4096)
    assert a == b
    assert a.iterations == 4096
    digest_size = hashlib.new(HASHES[hash_name]).digest_size
    assert len(a.stored_key) == len(a.server_key) == digest_size
    assert a.stored_key != a.server_key


def test_a_fake_salt_changes_with_the_iteration_count_as_an_accounts_does() -> None:
    """An account's salt changes when its keys are made again with another count; an unknown name whose
    count changed under the same salt was marked as unknown (found by a black-box attack)."""
    a = fake_credentials(SECRET, "nobody", "SHA-256", iterations=4096)
    b = fake_credentials(SECRET, "nobody", "SHA-256", iterations=8192)
    assert a.salt != b.salt
    assert (a.iterations, b.iterations) == (4096, 8192)


def test_fake_credentials_salt_derivation() -> None:
    label = "xmppauth-scram-salt\0SHA-256\0nob\u00f6dy\x004096"
    expected = hmac.new(SECRET, label.encode(), "sha256").digest()[:16]
    assert fake_credentials(SECRET, "nob\u00f6dy", "SHA-256", iterations=4096).salt == expected


@pytest.mark.parametrize(
    ("secret", "username", "hash_name"),
    [
        (SECRET, "somebody", "SHA-256"),
        (SECRET, "Nobody", "SHA-256"),
        (SECRET, "nobody", "SHA-512"),
        (b"another secret", "nobody", "SHA-256"),
    ],
)
def test_fake_credentials_differ(secret: bytes, username: str, hash_name: str) -> None:
    base = fake_credentials(SECRET, "nobody", "SHA-256", iterations=4096)
    other = fake_credentials(secret, username, hash_name, iterations=4096)
    assert other.salt != base.salt
    assert other.stored_key != base.stored_key
    assert other.server_key != base.server_key


def test_fake_credentials_need_a_secret() -> None:
    with pytest.raises(ValueError):
        fake_credentials(b"", "nobody", "SHA-256", iterations=4096)


def test_unknown_hash_rejected() -> None:
    with pytest.raises(ValueError):
        derive_credentials("pencil", "SHA-384", salt=SALT, iterations=4096)
    with pytest.raises(ValueError):
        ScramServer("MD5", plus=False, cb=NO_TLS)
    with pytest.raises(ValueError):
        ScramClient("SHA3-512", "user", "pencil")


def test_derive_credentials_validates() -> None:
    with pytest.raises(ValueError, match="iteration"):
        derive_credentials("pencil", "SHA-256", salt=SALT, iterations=4095)
    with pytest.raises(ValueError, match="salt"):
        derive_credentials("pencil", "SHA-256", salt=b"", iterations=4096)
    with pytest.raises(ValueError, match="SASLprep"):
        derive_credentials("pen\u0007cil", "SHA-256", salt=SALT, iterations=4096)
    with pytest.raises(ValueError, match="unassigned"):
        derive_credentials("\u0221", "SHA-256", salt=SALT, iterations=4096)


def test_derive_credentials_applies_saslprep() -> None:
    assert derive_credentials("I\u00adX", "SHA-256", salt=SALT, iterations=4096) == derive_credentials(
        "\u2168", "SHA-256", salt=SALT, iterations=4096
    )


def test_credentials_from_salted_password_checks_length() -> None:
    with pytest.raises(ValueError):
        credentials_from_salted_password(b"\x00" * 20, "SHA-256", salt=SALT, iterations=4096)


def test_server_refuses_weak_or_mismatched_stored_credentials() -> None:
    server = ScramServer("SHA-256", plus=False, cb=NO_TLS)
    assert isinstance(server.start(b"n,,n=user,r=abc"), NeedCredentials)
    good = derive_credentials("pencil", "SHA-256", salt=SALT, iterations=4096)
    with pytest.raises(LocalProtocolError):
        server.provide_credentials(None)
    with pytest.raises(LocalProtocolError):
        server.provide_credentials(
            ScramCredentials(
                salt=SALT, iterations=4095, stored_key=good.stored_key, server_key=good.server_key
            )
        )
    with pytest.raises(LocalProtocolError):
        server.provide_credentials(derive_credentials("pencil", "SHA-1", salt=SALT, iterations=4096))
    with pytest.raises(LocalProtocolError):
        server.provide_credentials(
            ScramCredentials(
                salt=b"", iterations=4096, stored_key=good.stored_key, server_key=good.server_key
            )
        )
    # Still waiting for usable credentials.
    assert isinstance(server.provide_credentials(good), Challenge)


@pytest.mark.parametrize("nonce", ["", "a,b", "caf\u00e9", "a b"])
def test_server_checks_nonce_factory_output(nonce: str) -> None:
    server = ScramServer("SHA-256", plus=False, cb=NO_TLS, nonce_factory=lambda: nonce)
    server.start(b"n,,n=user,r=abc")
    with pytest.raises(LocalProtocolError):
        server.provide_credentials(derive_credentials("pencil", "SHA-256", salt=SALT, iterations=4096))


# --------------------------------------------------------------------------------------------
# Usernames and authzid


@pytest.mark.parametrize(
    ("username", "escaped"),
    [
        ("a,b", "a=2Cb"),
        ("a=b", "a=3Db"),
        ("=2C", "=3D2C"),
        (",=,", "=2C=3D=2C"),
    ],
)
def test_username_escaping_round_trip(username: str, escaped: str) -> None:
    client = ScramClient("SHA-256", username, "pencil", nonce="C")
    first = client.first()
    assert first == f"n,,n={escaped},r=C".encode()
    server = ScramServer("SHA-256", plus=False, cb=NO_TLS)
    assert server.start(first) == NeedCredentials(username=username)
    challenge = server.provide_credentials(
        derive_credentials("pencil", "SHA-256", salt=SALT, iterations=4096)
    )
    assert isinstance(challenge, Challenge)
    result = server.step(client.final(challenge.data))
    assert isinstance(result, Success)
    assert result.username == username


@pytest.mark.parametrize("escaped", ["us=2Der", "us=er", "user=", "us=2cer", "us=3der", "=2"])
def test_invalid_username_escape(escaped: str) -> None:
    server = ScramServer("SHA-256", plus=False, cb=NO_TLS)
    assert server.start(f"n,,n={escaped},r=abc".encode()) == Failure(
        condition=SaslCondition.MALFORMED_REQUEST, text="malformed username encoding"
    )


def test_username_is_saslprepped_but_not_case_folded() -> None:
    server = ScramServer("SHA-256", plus=False, cb=NO_TLS)
    assert server.start("n,,n=I\u00adX,r=abc".encode()) == NeedCredentials(username="IX")
    server = ScramServer("SHA-256", plus=False, cb=NO_TLS)
    assert server.start(b"n,,n=User,r=abc") == NeedCredentials(username="User")


def test_username_with_unassigned_code_point_is_a_valid_query() -> None:
    server = ScramServer("SHA-256", plus=False, cb=NO_TLS)
    assert server.start("n,,n=\u0221,r=abc".encode()) == NeedCredentials(username="\u0221")


@pytest.mark.parametrize("authzid", ["admin@example.org", "we,ird=jid"])
def test_authzid_returned_in_success(authzid: str) -> None:
    escaped = authzid.replace("=", "=3D").replace(",", "=2C")
    assert ScramClient("SHA-256", "user", "pencil", authzid=authzid, nonce="C").first() == (
        f"n,a={escaped},n=user,r=C".encode()
    )
    client = ScramClient("SHA-256", "user", "pencil", authzid=authzid)
    result = drive(client, ScramServer("SHA-256", plus=False, cb=NO_TLS))
    assert isinstance(result, Success)
    assert result.authzid == authzid
    assert result.username == "user"


def test_no_authzid_is_none() -> None:
    result = drive(ScramClient("SHA-1", "user", "pencil"), ScramServer("SHA-1", plus=False, cb=NO_TLS))
    assert isinstance(result, Success)
    assert result.authzid is None


def test_authzid_tampering_in_c_detected() -> None:
    liar = ScramClient("SHA-256", "user", "pencil", nonce="C", authzid="admin@example.org")
    honest = ScramClient("SHA-256", "user", "pencil", nonce="C", authzid="user@example.org")
    server = ScramServer("SHA-256", plus=False, cb=NO_TLS, nonce_factory=lambda: "S")
    server_first = to_server_first(server, liar.first())
    honest.first()
    result = server.step(honest.final(server_first))
    assert isinstance(result, Failure)
    assert result.condition is SaslCondition.NOT_AUTHORIZED


# --------------------------------------------------------------------------------------------
# Call order


def test_step_after_success_raises() -> None:
    server = ScramServer("SHA-256", plus=False, cb=NO_TLS)
    client = ScramClient("SHA-256", "user", "pencil")
    assert isinstance(drive(client, server), Success)
    with pytest.raises(LocalProtocolError):
        server.step(b"c=biws,r=x,p=AAAA")
    with pytest.raises(LocalProtocolError):
        server.start(None)
    with pytest.raises(LocalProtocolError):
        server.provide_credentials(derive_credentials("pencil", "SHA-256", salt=SALT, iterations=4096))


def test_step_after_failure_raises() -> None:
    server = ScramServer("SHA-256", plus=False, cb=NO_TLS)
    assert isinstance(drive(ScramClient("SHA-256", "user", "crayon"), server), Failure)
    with pytest.raises(LocalProtocolError):
        server.step(b"c=biws,r=x,p=AAAA")


def test_server_call_order() -> None:
    server = ScramServer("SHA-256", plus=False, cb=NO_TLS)
    with pytest.raises(LocalProtocolError):
        server.step(b"n,,n=user,r=abc")
    with pytest.raises(LocalProtocolError):
        server.provide_credentials(derive_credentials("pencil", "SHA-256", salt=SALT, iterations=4096))
    with pytest.raises(LocalProtocolError):
        server.password_checked(True)
    assert isinstance(server.start(b"n,,n=user,r=abc"), NeedCredentials)
    with pytest.raises(LocalProtocolError):
        server.start(b"n,,n=user,r=abc")
    with pytest.raises(LocalProtocolError):
        server.step(b"c=biws,r=abc,p=AAAA")


def test_client_call_order() -> None:
    client = ScramClient("SHA-256", "user", "pencil", nonce="C")
    with pytest.raises(LocalProtocolError):
        client.final(b"r=CS,s=MDEy,i=4096")
    with pytest.raises(LocalProtocolError):
        client.verify_server_final(b"v=AAAA")
    client.first()
    with pytest.raises(LocalProtocolError):
        client.first()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"nonce": "a,b"},
        {"nonce": ""},
        {"gs2_flag": "x"},
        {"gs2_flag": "p="},
        {"cb_type": "bad name"},
    ],
)
def test_client_argument_validation(kwargs: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        ScramClient("SHA-256", "user", "pencil", **kwargs)  # type: ignore[arg-type]


def test_client_rejects_empty_username() -> None:
    with pytest.raises(ValueError):
        ScramClient("SHA-256", "\u00ad", "pencil")


# --------------------------------------------------------------------------------------------
# Mechanism names, factory, reprs


def test_mechanism_names() -> None:
    assert mechanism_names(plus=False) == ["SCRAM-SHA-512", "SCRAM-SHA-256", "SCRAM-SHA-1"]
    assert mechanism_names(plus=True) == [
        "SCRAM-SHA-512-PLUS",
        "SCRAM-SHA-256-PLUS",
        "SCRAM-SHA-1-PLUS",
        "SCRAM-SHA-512",
        "SCRAM-SHA-256",
        "SCRAM-SHA-1",
    ]


@pytest.mark.parametrize("name", mechanism_names(plus=True))
def test_make_mechanism_scram(name: str) -> None:
    mech = make_mechanism(name, cb=TLS, nonce_factory=lambda: "S", server_first_extensions="h=x")
    assert isinstance(mech, ScramServer)
    assert mech.name == name
    plus = name.endswith("-PLUS")
    hash_name = name.removeprefix("SCRAM-").removesuffix("-PLUS")
    client = ScramClient(
        hash_name,
        "user",
        "pencil",
        nonce="C",
        cb_type="tls-exporter" if plus else None,
        cb_data=EXPORTER_DATA if plus else b"",
    )
    server_first = to_server_first(mech, client.first(), hash_name)
    assert server_first.startswith(b"r=CS,")
    assert server_first.endswith(b",h=x")
    assert isinstance(mech.step(client.final(server_first)), Success)


@pytest.mark.parametrize(
    "name", ["DIGEST-MD5", "SCRAM-SHA-384", "scram-sha-256", "SCRAM-SHA-256-PLUS-PLUS", ""]
)
def test_make_mechanism_unknown(name: str) -> None:
    with pytest.raises(KeyError):
        make_mechanism(name, cb=NO_TLS)


def test_make_mechanism_plain_type() -> None:
    assert isinstance(make_mechanism("PLAIN", cb=TLS), PlainServer)


def test_reprs_hide_secrets() -> None:
    creds = derive_credentials("pencil", "SHA-256", salt=SALT, iterations=4096)
    text = repr(creds)
    assert "4096" in text
    assert repr(creds.stored_key) not in text
    assert repr(creds.server_key) not in text
    assert "stored_key" not in text

    cb_text = repr(TLS)
    assert "tls-exporter" in cb_text
    assert repr(EXPORTER_DATA) not in cb_text
    assert repr(ENDPOINT_DATA) not in cb_text
    assert "\\x" not in cb_text

    client = ScramClient("SHA-256", "user", "s3cr3t-pw")
    assert "s3cr3t-pw" not in repr(client)
    assert "'user'" in repr(client)


def test_channel_binding_context_copies_its_mapping() -> None:
    bindings = {"tls-exporter": EXPORTER_DATA}
    cb = ChannelBindingContext(bindings=bindings, plus_advertised=True)
    bindings["tls-exporter"] = b"changed"
    bindings["tls-unique"] = b"added"
    assert dict(cb.bindings) == {"tls-exporter": EXPORTER_DATA}
    with pytest.raises(TypeError):
        cb.bindings["x"] = b"y"  # type: ignore[index]
