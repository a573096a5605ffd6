"""Credentials with identities: SCRAM alternatives (app passwords) and PLAIN credential ids."""

from __future__ import annotations

import base64
import dataclasses
from dataclasses import dataclass
from typing import cast

import pytest

from tests.proto.transcript import SALT, Transcript
from xmppauth.proto import events as ev
from xmppauth.proto.errors import LocalProtocolError, SaslCondition
from xmppauth.proto.sasl import (
    Challenge,
    ChannelBindingContext,
    Failure,
    NeedCredentials,
    PlainServer,
    ScramClient,
    ScramCredentials,
    ScramServer,
    Success,
    derive_credentials,
)

SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
SASL2 = "urn:xmpp:sasl:2"
NO_TLS = ChannelBindingContext()
OTHER_SALT = b"another-salt-16b"


def creds(
    password: str, credential_id: str = "", *, salt: bytes = SALT, iterations: int = 4096
) -> ScramCredentials:
    return dataclasses.replace(
        derive_credentials(password, "SHA-256", salt=salt, iterations=iterations), credential_id=credential_id
    )


def exchange(
    password: str, account: ScramCredentials, alternatives: list[ScramCredentials]
) -> tuple[ScramClient, Success | Failure]:
    client = ScramClient("SHA-256", "user", password, nonce="CNONCE")
    server = ScramServer("SHA-256", plus=False, cb=NO_TLS, nonce_factory=lambda: "SNONCE")
    assert server.start(client.first()) == NeedCredentials(username="user")
    challenge = server.provide_credentials(account, alternatives)
    assert isinstance(challenge, Challenge)
    result = server.step(client.final(challenge.data))
    assert isinstance(result, Success | Failure)
    return client, result


# ------------------------------------------------------------------------------------ SCRAM
def test_credential_id_defaults_to_the_account_password() -> None:
    assert derive_credentials("pencil", "SHA-256", salt=SALT, iterations=4096).credential_id == ""


def test_the_account_password_still_works_and_matches_as_empty_id() -> None:
    client, result = exchange("pencil", creds("pencil"), [creds("app-secret", "app-1")])
    assert isinstance(result, Success)
    assert result.credential_id == ""
    assert client.verify_server_final(result.additional_data or b"")


def test_a_matching_alternative_is_named_and_signs_the_server_final() -> None:
    client, result = exchange(
        "app-secret", creds("pencil"), [creds("other", "app-0"), creds("app-secret", "app-1")]
    )
    assert isinstance(result, Success)
    assert result.credential_id == "app-1"
    # v= comes from the app password's ServerKey: only then can this client verify it
    assert client.verify_server_final(result.additional_data or b"")


@pytest.mark.parametrize(
    "alternative",
    [
        creds("app-secret", "app-1", salt=OTHER_SALT),
        creds("app-secret", "app-1", iterations=5000),
    ],
    ids=["other-salt", "other-iterations"],
)
def test_an_alternative_with_other_salt_or_iterations_is_ignored(alternative: ScramCredentials) -> None:
    _, result = exchange("app-secret", creds("pencil"), [alternative])
    assert result == Failure(condition=SaslCondition.NOT_AUTHORIZED, text="invalid credentials")


def test_no_candidate_matching_is_not_authorized() -> None:
    _, result = exchange("wrong", creds("pencil"), [creds("app-secret", "app-1"), creds("more", "app-2")])
    assert result == Failure(condition=SaslCondition.NOT_AUTHORIZED, text="invalid credentials")


def test_server_first_uses_the_account_salt_and_iterations() -> None:
    server = ScramServer("SHA-256", plus=False, cb=NO_TLS, nonce_factory=lambda: "SNONCE")
    server.start(b"n,,n=user,r=CNONCE")
    challenge = server.provide_credentials(
        creds("pencil"), [creds("x", "app", salt=OTHER_SALT, iterations=9000)]
    )
    assert challenge == Challenge(data=f"r=CNONCESNONCE,s={base64.b64encode(SALT).decode()},i=4096".encode())


@dataclass
class SpyCredentials:
    """Credentials that count how often StoredKey is read."""

    salt: bytes
    iterations: int
    server_key: bytes
    credential_id: str
    _stored_key: bytes
    reads: int = 0

    @property
    def stored_key(self) -> bytes:
        self.reads += 1
        return self._stored_key


def spy(c: ScramCredentials) -> SpyCredentials:
    return SpyCredentials(c.salt, c.iterations, c.server_key, c.credential_id, c.stored_key)


def test_every_candidate_is_checked_even_after_a_match() -> None:
    account, last = spy(creds("pencil")), spy(creds("app-secret", "app-1"))
    client = ScramClient("SHA-256", "user", "pencil", nonce="CNONCE")
    server = ScramServer("SHA-256", plus=False, cb=NO_TLS, nonce_factory=lambda: "SNONCE")
    server.start(client.first())
    challenge = server.provide_credentials(account, [cast(ScramCredentials, last)])
    assert isinstance(challenge, Challenge)
    before = last.reads
    result = server.step(client.final(challenge.data))
    assert isinstance(result, Success)
    assert result.credential_id == ""
    assert last.reads > before  # the account matched first; the app password was still computed


@pytest.mark.parametrize(
    "alternative",
    [
        creds("pencil", "app-1", salt=OTHER_SALT),
        creds("pencil", "app-1", iterations=5000),
    ],
    ids=["other-salt", "other-iterations"],
)
def test_an_alternative_with_other_salt_or_iterations_is_never_looked_at(
    alternative: ScramCredentials,
) -> None:
    ignored = spy(alternative)
    client = ScramClient("SHA-256", "user", "pencil", nonce="CNONCE")
    server = ScramServer("SHA-256", plus=False, cb=NO_TLS, nonce_factory=lambda: "SNONCE")
    server.start(client.first())
    challenge = server.provide_credentials(creds("pencil"), [cast(ScramCredentials, ignored)])
    assert isinstance(challenge, Challenge)
    assert isinstance(server.step(client.final(challenge.data)), Success)
    assert ignored.reads == 0


def test_an_alternative_for_another_hash_is_a_local_error() -> None:
    server = ScramServer("SHA-256", plus=False, cb=NO_TLS)
    server.start(b"n,,n=user,r=abc")
    sha1 = dataclasses.replace(
        derive_credentials("x", "SHA-1", salt=SALT, iterations=4096), credential_id="app-1"
    )
    with pytest.raises(LocalProtocolError):
        server.provide_credentials(creds("pencil"), [sha1])


def test_credential_ids_are_not_secrets_but_keys_are() -> None:
    text = repr(creds("pencil", "app-1"))
    assert "app-1" in text
    assert "stored_key" not in text


# ------------------------------------------------------------------------------------ PLAIN
def test_plain_reports_the_credential_id_given() -> None:
    mech = PlainServer()
    mech.start(b"\0user\0app-secret")
    assert mech.password_checked(True, "app-1") == Success(
        username="user", additional_data=None, credential_id="app-1"
    )
    mech = PlainServer()
    mech.start(b"\0user\0pencil")
    result = mech.password_checked(True)
    assert isinstance(result, Success)
    assert result.credential_id == ""


# ------------------------------------------------------------------------------------ transcripts
def app_stream() -> Transcript:
    t = Transcript.tcp(secure=True)
    t.app_passwords = {"alice": {"app-1": "phone-secret", "app-2": "laptop-secret"}}
    t.app_salts = {"app-2": OTHER_SALT}  # stored with another salt: never usable with SCRAM
    t.open_secure()
    return t


def scram_sasl2(t: Transcript, password: str) -> tuple[ScramClient, bytes]:
    client = ScramClient("SHA-256", "alice", password, nonce="CNONCE")
    t.client(
        f"<authenticate xmlns='{SASL2}' mechanism='SCRAM-SHA-256'>"
        f"<initial-response>{base64.b64encode(client.first()).decode()}</initial-response></authenticate>"
    )
    server_first = base64.b64decode(t.output().decode().split(">", 1)[1].split("<", 1)[0])
    t.client(f"<response xmlns='{SASL2}'>{base64.b64encode(client.final(server_first)).decode()}</response>")
    return client, t.output()


def test_scram_with_an_app_password_over_sasl2() -> None:
    t = app_stream()
    client, out = scram_sasl2(t, "phone-secret")
    assert t.last(ev.Authenticated) == ev.Authenticated(
        localpart="alice", mechanism="SCRAM-SHA-256", profile="sasl2", credential_id="app-1"
    )
    data = out.decode().split("<additional-data>", 1)[1].split("<", 1)[0]
    assert client.verify_server_final(base64.b64decode(data))


def test_scram_with_the_account_password_over_sasl2() -> None:
    t = app_stream()
    scram_sasl2(t, "wonderland")
    assert t.last(ev.Authenticated).credential_id == ""


def test_scram_with_an_app_password_of_another_salt_fails() -> None:
    t = app_stream()
    _, out = scram_sasl2(t, "laptop-secret")
    assert out.startswith(f"<failure xmlns='{SASL2}'><not-authorized xmlns='{SASL}'/>".encode())


def test_scram_with_an_app_password_over_rfc6120() -> None:
    t = app_stream()
    client = ScramClient("SHA-256", "alice", "phone-secret", nonce="CNONCE")
    t.client(
        f"<auth xmlns='{SASL}' mechanism='SCRAM-SHA-256'>{base64.b64encode(client.first()).decode()}</auth>"
    )
    server_first = base64.b64decode(t.output().decode().split(">", 1)[1].split("<", 1)[0])
    t.client(f"<response xmlns='{SASL}'>{base64.b64encode(client.final(server_first)).decode()}</response>")
    assert t.last(ev.Authenticated) == ev.Authenticated(
        localpart="alice", mechanism="SCRAM-SHA-256", credential_id="app-1"
    )


@pytest.mark.parametrize(
    ("password", "credential_id"), [("wonderland", ""), ("phone-secret", "app-1"), ("laptop-secret", "app-2")]
)
def test_plain_reports_which_credential_matched(password: str, credential_id: str) -> None:
    t = app_stream()
    token = base64.b64encode(f"\0alice\0{password}".encode()).decode()
    t.client(
        f"<authenticate xmlns='{SASL2}' mechanism='PLAIN'><initial-response>{token}</initial-response></authenticate>"
    )
    assert t.last(ev.Authenticated).credential_id == credential_id


def test_plain_over_rfc6120_reports_the_credential_id() -> None:
    t = app_stream()
    t.login_plain(password="phone-secret")
    assert t.last(ev.Authenticated) == ev.Authenticated(
        localpart="alice", mechanism="PLAIN", credential_id="app-1"
    )
