"""Transcripts of XEP-0388 tasks with the XEP-0480 SCRAM upgrade tasks."""

from __future__ import annotations

import base64
import hashlib

import pytest

from tests.proto.transcript import SALT, Transcript
from xmppauth.proto import events as ev
from xmppauth.proto.sasl import ScramClient, derive_credentials
from xmppauth.proto.stream import State

SASL2 = "urn:xmpp:sasl:2"
UPGRADE = "urn:xmpp:sasl:upgrade:0"
SCRAM_UPGRADE = "urn:xmpp:scram-upgrade:0"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def sha1_only() -> Transcript:
    t = Transcript.tcp(secure=True)
    t.hashes = {"alice": {"SHA-1"}}
    t.open_secure()
    return t


def scram_sha1_with_upgrades(t: Transcript, *upgrades: str) -> ScramClient:
    client = ScramClient("SHA-1", "alice", "wonderland")
    requested = "".join(f"<upgrade xmlns='{UPGRADE}'>{u}</upgrade>" for u in upgrades)
    t.client(
        f"<authenticate xmlns='{SASL2}' mechanism='SCRAM-SHA-1'><initial-response>{b64(client.first())}"
        f"</initial-response>{requested}</authenticate>"
    )
    server_first = base64.b64decode(t.output().decode().split(">", 1)[1].split("<", 1)[0])
    t.client(f"<response xmlns='{SASL2}'>{b64(client.final(server_first))}</response>")
    return client


def salted(password: str, hash_name: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac(hash_name, password.encode(), salt, iterations)


def test_an_account_missing_sha256_is_upgraded_without_its_password() -> None:
    t = sha1_only()
    client = scram_sha1_with_upgrades(t, "UPGR-SCRAM-SHA-256")
    out = t.output().decode()
    # XEP-0388 §2.7: the mechanism's final data travels in the first <continue/>
    assert out.startswith(f"<continue xmlns='{SASL2}'><additional-data>")
    assert out.endswith("<tasks><task>UPGR-SCRAM-SHA-256</task></tasks></continue>")
    data = out.split("<additional-data>", 1)[1].split("<", 1)[0]
    assert client.verify_server_final(base64.b64decode(data))
    assert t.stream.state is State.TASKS
    (started,) = t.client(f"<next xmlns='{SASL2}' task='UPGR-SCRAM-SHA-256'/>")
    assert started == ev.TaskStarted(task="UPGR-SCRAM-SHA-256", payload=None)
    t.server(
        f"<task-data xmlns='{SASL2}'><salt xmlns='{SCRAM_UPGRADE}' iterations='4096'>{b64(SALT)}</salt></task-data>"
    )
    answer = b64(salted("wonderland", "sha256", SALT, 4096))
    t.client(f"<task-data xmlns='{SASL2}'><hash xmlns='{SCRAM_UPGRADE}'>{answer}</hash></task-data>")
    assert (
        t.output()
        .decode()
        .startswith(
            f"<success xmlns='{SASL2}'><authorization-identifier>alice@localhost</authorization-identifier></success>"
        )
    )
    # what was stored verifies a SCRAM-SHA-256 login with the same password
    assert t.upgraded["SHA-256"] == derive_credentials("wonderland", "SHA-256", salt=SALT, iterations=4096)
    assert t.stream.state is State.EXPECT_BIND


def test_upgrades_run_one_after_the_other() -> None:
    t = sha1_only()
    scram_sha1_with_upgrades(t, "UPGR-SCRAM-SHA-256", "UPGR-SCRAM-SHA-512")
    assert t.output().decode().endswith("<tasks><task>UPGR-SCRAM-SHA-256</task></tasks></continue>")
    for name, hash_name in (("UPGR-SCRAM-SHA-256", "sha256"), ("UPGR-SCRAM-SHA-512", "sha512")):
        t.client(f"<next xmlns='{SASL2}' task='{name}'/>")
        t.output()
        t.client(
            f"<task-data xmlns='{SASL2}'><hash xmlns='{SCRAM_UPGRADE}'>"
            f"{b64(salted('wonderland', hash_name, SALT, 4096))}</hash></task-data>"
        )
        out = t.output().decode()
        if name.endswith("256"):
            assert (
                out == f"<continue xmlns='{SASL2}'><tasks><task>UPGR-SCRAM-SHA-512</task></tasks></continue>"
            )
    assert out.startswith(f"<success xmlns='{SASL2}'>")
    assert set(t.upgraded) == {"SHA-256", "SHA-512"}


def test_no_task_when_the_account_already_has_the_hash() -> None:
    t = Transcript.tcp(secure=True)
    t.open_secure()
    scram_sha1_with_upgrades(t, "UPGR-SCRAM-SHA-256")
    assert t.output().decode().startswith(f"<success xmlns='{SASL2}'>")


def test_unknown_upgrade_names_are_ignored() -> None:
    t = sha1_only()
    scram_sha1_with_upgrades(t, "UPGR-DIGEST-MD5")
    assert t.last(ev.Authenticated).upgrades == ()
    assert t.output().decode().startswith(f"<success xmlns='{SASL2}'>")


def test_a_task_that_was_not_offered_fails_the_authentication() -> None:
    t = sha1_only()
    scram_sha1_with_upgrades(t, "UPGR-SCRAM-SHA-256")
    t.output()
    t.client(f"<next xmlns='{SASL2}' task='TOTP'/>")
    assert (
        t.output()
        .decode()
        .startswith(f"<failure xmlns='{SASL2}'><malformed-request xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
    )
    assert t.stream.state is State.EXPECT_AUTH
    assert t.stream.authenticated_localpart is None
    t.client("<message to='bob@localhost'><body>sneaky</body></message>")
    t.stream_error("not-authorized")


def test_a_malformed_answer_fails_the_task() -> None:
    t = sha1_only()
    scram_sha1_with_upgrades(t, "UPGR-SCRAM-SHA-256")
    t.client(f"<next xmlns='{SASL2}' task='UPGR-SCRAM-SHA-256'/>")
    t.output()
    t.client(f"<task-data xmlns='{SASL2}'><hash xmlns='{SCRAM_UPGRADE}'>{b64(b'short')}</hash></task-data>")
    assert b"<malformed-request" in t.output()
    assert "SHA-256" not in t.upgraded


def test_abort_during_a_task() -> None:
    t = sha1_only()
    scram_sha1_with_upgrades(t, "UPGR-SCRAM-SHA-256")
    t.client(f"<next xmlns='{SASL2}' task='UPGR-SCRAM-SHA-256'/>")
    t.output()
    t.client(f"<abort xmlns='{SASL2}'/>")
    assert b"<aborted xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>" in t.output()
    assert t.stream.state is State.EXPECT_AUTH


@pytest.mark.parametrize(
    "intruder",
    [
        "<message to='bob@localhost'><body>early</body></message>",
        f"<authenticate xmlns='{SASL2}' mechanism='PLAIN'/>",
        f"<task-data xmlns='{SASL2}'/>",  # no task started yet
    ],
)
def test_anything_but_the_task_flow_is_a_stream_error(intruder: str) -> None:
    t = sha1_only()
    scram_sha1_with_upgrades(t, "UPGR-SCRAM-SHA-256")
    t.output()
    t.client(intruder)
    t.stream_error("policy-violation")


def test_upgrade_tasks_are_advertised_under_authentication() -> None:
    t = Transcript.tcp(secure=True)
    t.client(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
        "xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
    )
    out = t.output().decode()
    authentication = out.split("<authentication ", 1)[1].split("</authentication>", 1)[0]
    inline = authentication.split("<inline>", 1)[1].rsplit("</inline>", 1)[0]
    assert f"<upgrade xmlns='{UPGRADE}'>UPGR-SCRAM-SHA-256</upgrade>" in authentication
    assert "upgrade" not in inline  # XEP-0480 §2.1: direct children, not inline features


def test_a_step_can_say_why_in_its_continue() -> None:
    """XEP-0388 "Continue": an optional <text/> after the tasks, one per step."""
    t = Transcript.tcp(secure=True)
    t.auto_tasks = False
    t.open_secure()
    t.client(
        f"<authenticate xmlns='{SASL2}' mechanism='PLAIN'><initial-response>AGFsaWNlAHdvbmRlcmxhbmQ="
        "</initial-response></authenticate>"
    )
    t.output()
    t.stream.continue_with([["TOTP", "X-RECOVERY"], ["UPGR-SCRAM-SHA-256"]], ["a second factor <please>"])
    assert t.output().decode() == (
        f"<continue xmlns='{SASL2}'><tasks><task>TOTP</task><task>X-RECOVERY</task></tasks>"
        "<text xml:lang='en'>a second factor &lt;please&gt;</text></continue>"
    )
    t.client(f"<next xmlns='{SASL2}' task='X-RECOVERY'/>")
    t.stream.task_succeeded()
    # the second step has no text
    assert (
        t.output().decode()
        == f"<continue xmlns='{SASL2}'><tasks><task>UPGR-SCRAM-SHA-256</task></tasks></continue>"
    )


@pytest.mark.parametrize(
    ("next_", "text"),
    [
        ("<next xmlns='urn:xmpp:sasl:2' task='TOTP'/>", "TOTP was not offered"),
        ("<next xmlns='urn:xmpp:sasl:2'/>", "&lt;next/&gt; names no task"),
    ],
)
def test_the_failure_names_the_task_that_was_not_offered(next_: str, text: str) -> None:
    t = sha1_only()
    scram_sha1_with_upgrades(t, "UPGR-SCRAM-SHA-256")
    t.output()
    t.client(next_)
    assert f"<text xml:lang='en'>{text}</text>" in t.output().decode()
