"""RFC 4616 PLAIN server mechanism."""

from __future__ import annotations

import pytest

from xmppauth.proto.errors import LocalProtocolError, SaslCondition
from xmppauth.proto.sasl import (
    Challenge,
    ChannelBindingContext,
    Failure,
    NeedPasswordCheck,
    PlainServer,
    ScramCredentials,
    Success,
    make_mechanism,
)


def test_good_login_with_initial_response() -> None:
    mech = PlainServer()
    assert mech.name == "PLAIN"
    assert mech.start(b"\0user\0pencil") == NeedPasswordCheck(username="user", password="pencil")
    assert mech.password_checked(True) == Success(username="user", additional_data=None, authzid=None)


def test_good_login_without_initial_response() -> None:
    mech = PlainServer()
    assert mech.start(None) == Challenge(data=b"")
    assert mech.step(b"\0user\0pencil") == NeedPasswordCheck(username="user", password="pencil")
    assert mech.password_checked(True) == Success(username="user", additional_data=None)


def test_empty_initial_response_asks_for_the_message() -> None:
    mech = PlainServer()
    assert mech.start(b"") == Challenge(data=b"")
    assert isinstance(mech.step(b"\0user\0pencil"), NeedPasswordCheck)


def test_wrong_password() -> None:
    mech = PlainServer()
    assert isinstance(mech.start(b"\0user\0wrong"), NeedPasswordCheck)
    assert mech.password_checked(False) == Failure(
        condition=SaslCondition.NOT_AUTHORIZED, text="invalid credentials"
    )


def test_authzid_is_carried_to_success() -> None:
    mech = PlainServer()
    assert mech.start(b"admin@example.org\0user\0pencil") == NeedPasswordCheck(
        username="user", password="pencil"
    )
    result = mech.password_checked(True)
    assert isinstance(result, Success)
    assert result.authzid == "admin@example.org"
    assert result.username == "user"


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(b"user\0pencil", id="one-nul"),
        pytest.param(b"userpencil", id="no-nul"),
        pytest.param(b"a\0user\0pencil\0x", id="three-nuls"),
        pytest.param(b"\0\0pencil", id="empty-authcid"),
        pytest.param(b"\0user\0", id="empty-password"),
        pytest.param(b"\0\0", id="all-empty"),
        pytest.param(b"\0user\0\xc2\xad", id="password-empty-after-saslprep"),
        pytest.param(b"\0\xc2\xad\0pencil", id="authcid-empty-after-saslprep"),
        pytest.param(b"\0us\xffer\0pencil", id="bad-utf8-authcid"),
        pytest.param(b"\0user\0pen\xc3cil", id="bad-utf8-password"),
        pytest.param(b"\xff\0user\0pencil", id="bad-utf8-authzid"),
        pytest.param(b"\0user\0pen\x07cil", id="password-prohibited"),
        pytest.param(b"\0us\x7fer\0pencil", id="authcid-prohibited"),
        pytest.param(b"\0" + b"u" * 600 + b"\0" + b"p" * 600, id="too-long"),
    ],
)
def test_malformed(message: bytes) -> None:
    mech = PlainServer()
    result = mech.start(message)
    assert isinstance(result, Failure)
    assert result.condition is SaslCondition.MALFORMED_REQUEST
    with pytest.raises(LocalProtocolError):
        mech.password_checked(True)


def test_malformed_after_empty_challenge() -> None:
    mech = PlainServer()
    mech.start(None)
    result = mech.step(b"")
    assert isinstance(result, Failure)
    assert result.condition is SaslCondition.MALFORMED_REQUEST


def test_accepts_255_octet_fields() -> None:
    # RFC 4616 §2: each of authzid, authcid, passwd "MUST accept up to 255 octets".
    authzid, authcid, passwd = "z" * 255, "u" * 255, "p" * 255
    mech = PlainServer()
    result = mech.start(f"{authzid}\0{authcid}\0{passwd}".encode())
    assert result == NeedPasswordCheck(username=authcid, password=passwd)
    done = mech.password_checked(True)
    assert isinstance(done, Success)
    assert done.authzid == authzid


def test_saslprep_is_applied() -> None:
    mech = PlainServer()
    result = mech.start("\0I\u00adX\0pen\u00a0cil".encode())
    assert result == NeedPasswordCheck(username="IX", password="pen cil")


def test_unassigned_code_points_allowed_as_queries() -> None:
    mech = PlainServer()
    assert mech.start("\0\u0221\0\u0221".encode()) == NeedPasswordCheck(username="\u0221", password="\u0221")


def test_username_case_is_kept() -> None:
    mech = PlainServer()
    assert mech.start(b"\0User\0pencil") == NeedPasswordCheck(username="User", password="pencil")


def test_password_not_in_repr() -> None:
    result = PlainServer().start(b"\0user\0s3cr3t-pw")
    assert isinstance(result, NeedPasswordCheck)
    assert "s3cr3t-pw" not in repr(result)
    assert "username='user'" in repr(result)


def test_call_order_is_enforced() -> None:
    mech = PlainServer()
    with pytest.raises(LocalProtocolError):
        mech.step(b"\0user\0pencil")
    with pytest.raises(LocalProtocolError):
        mech.password_checked(True)
    with pytest.raises(LocalProtocolError):
        mech.provide_credentials(None)
    creds = ScramCredentials(salt=b"s" * 16, iterations=4096, stored_key=b"k" * 32, server_key=b"k" * 32)
    with pytest.raises(LocalProtocolError):
        mech.provide_credentials(creds)
    mech.start(b"\0user\0pencil")
    with pytest.raises(LocalProtocolError):
        mech.start(b"\0user\0pencil")
    with pytest.raises(LocalProtocolError):
        mech.step(b"\0user\0pencil")
    mech.password_checked(True)
    with pytest.raises(LocalProtocolError):
        mech.password_checked(True)
    with pytest.raises(LocalProtocolError):
        mech.step(b"\0user\0pencil")


def test_finished_after_failure() -> None:
    mech = PlainServer()
    assert isinstance(mech.start(b"garbage"), Failure)
    with pytest.raises(LocalProtocolError):
        mech.step(b"\0user\0pencil")


def test_make_mechanism_plain() -> None:
    mech = make_mechanism("PLAIN", cb=ChannelBindingContext(bindings={}, plus_advertised=False))
    assert isinstance(mech, PlainServer)
    assert mech.start(b"\0user\0pencil") == NeedPasswordCheck(username="user", password="pencil")
