"""Transcripts of the core's side of the guessing limits (accounts/guessing.py decides; the driver
answers): a request for credentials refused before anything is checked, and an account held by its
limit, where only app passwords may still match and a failure says why."""

from __future__ import annotations

import base64
import re

from tests.proto.test_sasl2 import BIND2, SASL2, UA, USER_AGENT, authenticate, plain, secure
from tests.proto.transcript import Transcript
from xmppauth.proto import events as ev
from xmppauth.proto.errors import SaslCondition
from xmppauth.proto.sasl import ScramClient
from xmppauth.proto.stream import State

SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
WAIT = "too many failed attempts from your address: try again in 4 s"
HELD = "too many failed attempts for this account: try again in 2 s"


def test_the_driver_hears_the_user_agent_of_the_attempt() -> None:
    t = secure()
    t.client(authenticate("PLAIN", plain(), extra=USER_AGENT + BIND2))
    assert t.last(ev.PasswordCheckNeeded).user_agent_id == UA
    t = secure()
    t.client(
        authenticate("SCRAM-SHA-256", _b64(ScramClient("SHA-256", "alice", "x").first()), extra=USER_AGENT)
    )
    assert t.last(ev.CredentialsNeeded).user_agent_id == UA


def test_a_refused_sasl2_attempt_fails_unchecked_with_the_wait_and_may_be_retried() -> None:
    t = secure()
    t.refuse_checks = (SaslCondition.TEMPORARY_AUTH_FAILURE, WAIT)
    t.client(authenticate("PLAIN", plain(), extra=USER_AGENT + BIND2))
    t.server(
        f"<failure xmlns='{SASL2}'><temporary-auth-failure xmlns='{SASL}'/>"
        f"<text xml:lang='en'>{WAIT}</text></failure>"
    )
    assert t.stream.state is State.EXPECT_AUTH
    assert not any(isinstance(e, ev.Authenticated) for e in t.events)
    failed = t.last(ev.AuthFailed)
    assert failed.condition is SaslCondition.TEMPORARY_AUTH_FAILURE
    t.refuse_checks = None
    t.client(authenticate("PLAIN", plain(), extra=USER_AGENT + BIND2))
    assert t.last(ev.Authenticated).localpart == "alice"


def test_a_refused_rfc6120_scram_attempt_fails_before_the_server_first_message() -> None:
    t = Transcript.tcp(secure=True)
    t.open_secure()
    t.refuse_checks = (SaslCondition.TEMPORARY_AUTH_FAILURE, WAIT)
    first = ScramClient("SHA-256", "alice", "wonderland").first()
    t.client(f"<auth xmlns='{SASL}' mechanism='SCRAM-SHA-256'>{_b64(first)}</auth>")
    t.server(f"<failure xmlns='{SASL}'><temporary-auth-failure/><text xml:lang='en'>{WAIT}</text></failure>")


def test_a_held_account_refuses_its_password_with_the_reason_and_takes_an_app_password() -> None:
    t = secure()
    t.app_passwords = {"alice": {"app:7": "bot-secret-bot-secret"}}
    t.limited = (SaslCondition.TEMPORARY_AUTH_FAILURE, HELD)
    t.client(authenticate("PLAIN", plain(), extra=USER_AGENT))  # the right account password
    t.server(
        f"<failure xmlns='{SASL2}'><temporary-auth-failure xmlns='{SASL}'/>"
        f"<text xml:lang='en'>{HELD}</text></failure>"
    )
    t.client(authenticate("PLAIN", plain(password="bot-secret-bot-secret"), extra=USER_AGENT))
    assert t.last(ev.Authenticated).credential_id == "app:7"


def test_a_held_account_refuses_a_scram_proof_with_the_reason() -> None:
    t = secure()
    t.limited = (SaslCondition.TEMPORARY_AUTH_FAILURE, HELD)
    client = ScramClient("SHA-256", "alice", "wonderland")
    t.client(authenticate("SCRAM-SHA-256", _b64(client.first()), extra=USER_AGENT))
    challenge = t.output()
    server_first = base64.b64decode(re.search(rb"<challenge[^>]*>([^<]*)<", challenge).group(1))  # type: ignore[union-attr]
    t.client(f"<response xmlns='{SASL2}'>{_b64(client.final(server_first))}</response>")
    t.server(
        f"<failure xmlns='{SASL2}'><temporary-auth-failure xmlns='{SASL}'/>"
        f"<text xml:lang='en'>{HELD}</text></failure>"
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
