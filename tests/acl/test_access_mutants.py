"""Decisions of sessions_acl.access that the table tests (test_access.py) did not pin down.

Each case here was written for a mutant of sessions_acl/access.py that survived the table tests
(docs/access.md, "Mutation testing"): the exact texts a refused client reads, the operator's log
line for a dropped answer, requests and answers without an id, and the ledger's order.
"""

from __future__ import annotations

import logging

import pytest

from sessions_acl import access
from sessions_acl.access import (
    ADMIN,
    CLIENTS_MANAGE,
    MESSAGES_RECEIVE,
    MESSAGES_SEND,
    PEP_WRITE,
    PRESENCE,
    ROLES,
    ROSTER_READ,
    ROSTER_WRITE,
    SCOPES,
    Pending,
    SessionAccess,
)
from tests.acl import test_access
from xmppauth.proto.access import TARGETS, Admission
from xmppauth.proto.errors import StanzaErrorCondition
from xmppauth.proto.jid import JID

BOB = JID("bob", "localhost", "phone")


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


# ------------------------------------------------------------------ what a refused client reads
@pytest.mark.parametrize(
    ("kind", "stanza_type", "target", "payload", "text"),
    [
        ("message", "chat", "peer", None, "messages.send (sending messages)"),
        ("message", "error", "peer", None, "messages.send (sending messages)"),
        ("presence", "available", "server", None, "presence (sending presence)"),
        ("iq", "get", "peer", "{vcard-temp}vCard", "messages.send (requests to other entities)"),
        ("iq", "get", "server", "{jabber:iq:roster}query", "roster.read (reading the roster)"),
        ("iq", "set", "account", "{jabber:iq:roster}query", "roster.write (changing the roster)"),
        ("iq", "get", "server", "{urn:xmpp:cam:0}list", "clients.manage (managing clients and the password)"),
        (
            "iq",
            "set",
            "server",
            "{jabber:iq:register}query",
            "clients.manage (managing clients and the password)",
        ),
        (
            "iq",
            "set",
            "server",
            "{http://jabber.org/protocol/commands}command",
            "admin (server administration)",
        ),
        (
            "iq",
            "set",
            "server",
            "{urn:xmpp:carbons:2}enable",
            "messages.receive (message carbons and the message archive)",
        ),
        (
            "iq",
            "set",
            "server",
            "{urn:xmpp:carbons:2}disable",
            "messages.receive (message carbons and the message archive)",
        ),
    ],
)
def test_a_refusal_names_the_missing_scope_and_what_it_guards(
    kind: str, stanza_type: str, target: str, payload: str | None, text: str
) -> None:
    denial = SessionAccess(frozenset()).check_inbound(kind, stanza_type, target, payload, BOB, "x1")
    assert denial is not None
    assert denial.condition is StanzaErrorCondition.FORBIDDEN
    assert denial.text == f"this session's grant does not include {text}"


def test_an_unsolicited_answer_is_refused_as_not_allowed_with_a_text_for_the_log() -> None:
    denial = SessionAccess(frozenset(SCOPES)).check_inbound("iq", "result", "peer", None, BOB, "q1")
    assert denial is not None
    assert denial.condition is StanzaErrorCondition.NOT_ALLOWED
    assert denial.text == "an answer to no request this session received"


def test_it_logs_which_unsolicited_answer_it_dropped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="xmppauth.access")
    policy = SessionAccess(frozenset(SCOPES))
    policy.check_inbound("iq", "result", "peer", None, BOB, "q1")
    policy.admit("iq", "error", BOB, "q2")
    policy.admit("message", "error", BOB, "m3")  # may receive messages: no drop, no log line
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        (
            "xmppauth.access",
            "dropped an iq result to bob@localhost/phone (id 'q1'): it answers no request this session received",
        ),
        ("xmppauth.access", "dropped an unsolicited iq error from bob@localhost/phone (id 'q2')"),
    ]


def test_it_logs_an_unsolicited_message_error_to_a_session_without_receive(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="xmppauth.access")
    assert SessionAccess(ROLES["notifier"]).admit("message", "error", BOB, None) is Admission.DROP
    assert caplog.messages == ["dropped an unsolicited message error from bob@localhost/phone (id None)"]


# ------------------------------------------------------------------ iq children the table does not name
@pytest.mark.parametrize("target", ["server", "account"])
@pytest.mark.parametrize("payload", [None, "query"])
def test_an_iq_without_a_namespaced_child_needs_no_scope(target: str, payload: str | None) -> None:
    """No child (or a tag in no namespace) is none of the scoped requests; the server answers it."""
    for stanza_type in ("get", "set"):
        assert SessionAccess(frozenset()).check_inbound("iq", stanza_type, target, payload) is None


# ------------------------------------------------------------------ pairing without ids
def test_a_request_routed_without_an_id_may_be_answered_without_one() -> None:
    policy = SessionAccess(frozenset({MESSAGES_RECEIVE}))
    assert policy.admit("iq", "get", BOB, None) is Admission.WHOLE
    assert policy.check_inbound("iq", "result", "peer", None, BOB, "x") is not None
    assert policy.check_inbound("iq", "result", "peer", None, BOB, None) is None


def test_the_messages_a_session_without_receive_sends_are_remembered_only_with_an_id() -> None:
    policy = SessionAccess(ROLES["notifier"])
    assert policy.check_inbound("message", "chat", "peer", None, BOB, None) is None
    assert policy.check_inbound("message", "chat", "peer", None, BOB, "") is None
    assert len(policy.asked) == 0
    assert policy.check_inbound("message", "normal", "peer", None, BOB, "m1") is None
    assert len(policy.asked) == 1


def test_an_error_a_session_sends_opens_no_way_back_for_an_error() -> None:
    """A message error answers nothing: an error to it is not owed, so it is dropped."""
    policy = SessionAccess(ROLES["notifier"])
    assert policy.check_inbound("message", "error", "peer", None, BOB, "e1") is None
    assert len(policy.asked) == 0
    assert policy.admit("message", "error", BOB, "e1") is Admission.DROP


# ------------------------------------------------------------------ a message is a message, whatever its type
@pytest.mark.parametrize("stanza_type", ["chat", "normal", "headline", "groupchat", "result", "get", "bogus"])
def test_a_message_of_any_type_but_error_needs_messages_receive(stanza_type: str) -> None:
    assert SessionAccess(frozenset()).may_receive("message", stanza_type) is False
    assert SessionAccess(frozenset(SCOPES) - {MESSAGES_RECEIVE}).may_receive("message", stanza_type) is False
    assert SessionAccess(frozenset({MESSAGES_RECEIVE})).may_receive("message", stanza_type) is True


def test_allows_answers_by_the_grant() -> None:
    policy = SessionAccess(frozenset({PRESENCE, ROSTER_READ}))
    assert [s for s in SCOPES if policy.allows(s)] == [PRESENCE, ROSTER_READ]
    policy.scopes = frozenset({ADMIN})  # a grant changed while the session runs
    assert [s for s in SCOPES if policy.allows(s)] == [ADMIN]


# ------------------------------------------------------------------ the ledger's order
def test_asking_again_for_a_request_pushes_out_nothing_else() -> None:
    pending = Pending(limit=2, seconds=60, clock=Clock())
    pending.add(BOB, "a")
    pending.add(BOB, "b")
    pending.add(BOB, "b")  # the same request again, with the ledger full
    assert len(pending) == 2
    assert pending.take(BOB, "a")
    assert pending.take(BOB, "b")


def test_asking_again_makes_a_request_the_newest() -> None:
    pending = Pending(limit=3, seconds=60, clock=Clock())
    for stanza_id in ("a", "b", "a", "c", "d"):  # "a" again: "b" is now the oldest
        pending.add(BOB, stanza_id)
    assert [pending.take(BOB, i) for i in ("a", "b", "c", "d")] == [True, False, True, True]


def test_the_defaults_bound_each_ledger_to_256_requests_for_two_minutes() -> None:
    clock = Clock()
    policy = SessionAccess(frozenset({MESSAGES_SEND}), clock=clock)
    for n in range(257):
        policy.check_inbound("iq", "get", "peer", "{vcard-temp}vCard", BOB, str(n))
    assert len(policy.asked) == 256
    assert policy.admit("iq", "result", BOB, "0") is Admission.DROP  # the oldest, pushed out
    clock.now += 120
    assert policy.admit("iq", "result", BOB, "1") is Admission.WHOLE
    clock.now += 0.5
    assert policy.admit("iq", "result", BOB, "2") is Admission.DROP


def test_the_two_ledgers_are_separate() -> None:
    policy = SessionAccess(frozenset({MESSAGES_SEND, MESSAGES_RECEIVE}))
    policy.admit("iq", "get", BOB, "q1")  # owed to bob
    assert policy.admit("iq", "result", BOB, "q1") is Admission.DROP  # not something it asked
    policy.check_inbound("iq", "get", "peer", "{vcard-temp}vCard", BOB, "q2")  # asked of bob
    assert policy.check_inbound("iq", "result", "peer", None, BOB, "q2") is not None  # not owed


# ------------------------------------------------------------------ names people type and the database stores
def test_the_scope_catalogue_is_exactly_these_names_with_these_descriptions() -> None:
    assert list(SCOPES.items()) == [
        ("messages.send", "Send messages"),
        ("messages.receive", "Receive messages"),
        ("presence", "See and share online status"),
        ("roster.read", "Read the contact list"),
        ("roster.write", "Change the contact list"),
        (
            "pep.write",
            "Publish what the account shares with its contacts (avatar, encryption keys, bookmarks)",
        ),
        ("clients.manage", "List and revoke this account's clients, change its password"),
        ("admin", "Administer the server (staff accounts only)"),
    ]
    assert tuple(SCOPES) == (
        MESSAGES_SEND,
        MESSAGES_RECEIVE,
        PRESENCE,
        ROSTER_READ,
        ROSTER_WRITE,
        PEP_WRITE,
        CLIENTS_MANAGE,
        ADMIN,
    )


def test_the_role_names_are_these_in_this_order() -> None:
    assert list(ROLES) == ["full", "bot", "notifier", "read-only", "admin"]
    assert {"admin", "clients.manage"} == access.NEVER_FOR_APP_PASSWORDS


def test_a_scopes_error_lists_every_unknown_name_and_every_known_one() -> None:
    with pytest.raises(access.UnknownScope) as raised:
        access.validate_scopes(["nope", "bogus", MESSAGES_SEND])
    assert str(raised.value) == (
        "unknown scope bogus, nope; known scopes: messages.send, messages.receive, presence, "
        "roster.read, roster.write, pep.write, clients.manage, admin"
    )
    with pytest.raises(access.UnknownScope) as raised:
        access.scopes_for_role("boss")
    assert str(raised.value) == "unknown role 'boss'; roles: full, bot, notifier, read-only, admin"
    with pytest.raises(ValueError, match=r"^an app password can never carry clients\.manage$"):
        access.validate_scopes([CLIENTS_MANAGE], app_password=True)
    assert access.validate_scopes([MESSAGES_SEND, PRESENCE], app_password=True) == {MESSAGES_SEND, PRESENCE}


def test_the_table_covers_every_target_a_policy_is_asked_about() -> None:
    """xmppauth.proto.access.TARGETS is the contract with the stream; the table tests walk exactly it."""
    assert TARGETS == ("server", "account", "contact", "peer")
    assert {row[2] for row in test_access.INBOUND} == set(TARGETS)
