"""sessions_acl.access as a table: every scope by stanza kind, type and target, both directions.

The expectations below are written out by hand from docs/access.md, not computed from the code
under test: for each question, the one scope that opens it (or that nothing does, or that only a
pending request does). Every scope set tried is checked against every row, so a wrong decision
anywhere in ``SessionAccess`` fails here without a socket or a database.
"""

from __future__ import annotations

import itertools

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
from xmppauth.proto.access import Admission
from xmppauth.proto.errors import StanzaErrorCondition
from xmppauth.proto.jid import JID

BOB = JID("bob", "localhost", "phone")
CAROL = JID("carol", "localhost", "desk")

PING = "{urn:xmpp:ping}ping"
DISCO = "{http://jabber.org/protocol/disco#info}query"
ROSTER = "{jabber:iq:roster}query"
CAM_LIST = "{urn:xmpp:cam:0}list"
CAM_REVOKE = "{urn:xmpp:cam:0}revoke"
REGISTER = "{jabber:iq:register}query"
COMMAND = "{http://jabber.org/protocol/commands}command"
CARBONS_ENABLE = "{urn:xmpp:carbons:2}enable"
VCARD = "{vcard-temp}vCard"
MAM_QUERY = "{urn:xmpp:mam:2}query"
MAM_PREFS = "{urn:xmpp:mam:2}prefs"
BLOCKLIST = "{urn:xmpp:blocking}blocklist"
BLOCK = "{urn:xmpp:blocking}block"
UNBLOCK = "{urn:xmpp:blocking}unblock"
PUBSUB = "{http://jabber.org/protocol/pubsub}pubsub"  # XEP-0163 PEP, its own and its contacts'
PUBSUB_OWNER = "{http://jabber.org/protocol/pubsub#owner}pubsub"

MESSAGE_TYPES = ("chat", "normal", "headline", "groupchat", "error")
PRESENCE_TYPES = (
    "available",
    "unavailable",
    "subscribe",
    "subscribed",
    "unsubscribe",
    "unsubscribed",
    "probe",
    "error",
)
SUBSCRIPTION_TYPES = ("subscribe", "subscribed", "unsubscribe", "unsubscribed")
SUBSCRIBING = f"{PRESENCE}+{ROSTER_WRITE}"  # both needed, and a denial names the first one missing
TARGETS = ("server", "account", "contact", "peer")
ALWAYS = "always"  # no scope needed
ANSWER = "answer"  # passes only as the answer to a pending request

#: Scope sets tried against every row: none, each scope alone, everything but each scope, every role.
SCOPE_SETS: list[frozenset[str]] = (
    [frozenset()]
    + [frozenset({s}) for s in SCOPES]
    + [frozenset(SCOPES) - {s} for s in SCOPES]
    + list(ROLES.values())
)


def _inbound_rows() -> list[tuple[str, str, str, str | None, str]]:
    """(kind, type, target, payload, what opens it): the client → server half of the table."""
    rows: list[tuple[str, str, str, str | None, str]] = []
    for stanza_type, target in itertools.product(MESSAGE_TYPES, TARGETS):
        rows.append(("message", stanza_type, target, None, MESSAGES_SEND))  # errors included
    for stanza_type, target in itertools.product(PRESENCE_TYPES, TARGETS):
        # a subscription changes the contact lists of both sides (RFC 6121 §3): presence and roster.write
        opener = SUBSCRIBING if stanza_type in SUBSCRIPTION_TYPES else PRESENCE
        rows.append(("presence", stanza_type, target, None, opener))
    own = {  # iq get/set to the server or the own bare JID, by payload
        (PING, "get"): ALWAYS,
        (PING, "set"): ALWAYS,
        (DISCO, "get"): ALWAYS,
        (VCARD, "get"): ALWAYS,
        (ROSTER, "get"): ROSTER_READ,
        (ROSTER, "set"): ROSTER_WRITE,
        (BLOCKLIST, "get"): ROSTER_READ,  # XEP-0191
        (BLOCK, "set"): ROSTER_WRITE,
        (UNBLOCK, "set"): ROSTER_WRITE,
        (CAM_LIST, "get"): CLIENTS_MANAGE,
        (CAM_LIST, "set"): CLIENTS_MANAGE,
        (CAM_REVOKE, "set"): CLIENTS_MANAGE,
        (CAM_REVOKE, "get"): CLIENTS_MANAGE,  # slixmpp sends its revoke as a get
        (REGISTER, "get"): CLIENTS_MANAGE,
        (REGISTER, "set"): CLIENTS_MANAGE,
        (COMMAND, "get"): ADMIN,
        (COMMAND, "set"): ADMIN,
        (CARBONS_ENABLE, "set"): MESSAGES_RECEIVE,
        (MAM_QUERY, "set"): MESSAGES_RECEIVE,  # XEP-0313: the archive holds the account's messages
        (MAM_QUERY, "get"): MESSAGES_RECEIVE,
        (MAM_PREFS, "set"): MESSAGES_RECEIVE,
        (CARBONS_ENABLE, "get"): ALWAYS,  # answered feature-not-implemented, changes nothing
        (PUBSUB, "get"): PRESENCE,  # XEP-0163: what the account shares with those who see its presence
        (PUBSUB, "set"): PEP_WRITE,  # changing it: publish, retract, create, configure, delete
        (PUBSUB_OWNER, "get"): PRESENCE,
        (PUBSUB_OWNER, "set"): PEP_WRITE,
    }
    for (payload, stanza_type), opener in own.items():
        # "contact": another account's bare JID, answered by the server on its behalf (or refused)
        for target in ("server", "account", "contact"):
            rows.append(("iq", stanza_type, target, payload, opener))
        rows.append(("iq", stanza_type, "peer", payload, MESSAGES_SEND))  # routed requests
    for stanza_type in ("result", "error"):
        for target in ("server", "account", "contact"):
            rows.append(("iq", stanza_type, target, None, ALWAYS))  # answers end in the server
        rows.append(("iq", stanza_type, "peer", None, ANSWER))
    return rows


INBOUND = _inbound_rows()


def _label(scopes: frozenset[str]) -> str:
    return ",".join(sorted(scopes)) or "nothing"


@pytest.mark.parametrize("scopes", SCOPE_SETS, ids=_label)
def test_inbound_decisions_follow_the_table(scopes: frozenset[str]) -> None:
    for kind, stanza_type, target, payload, opener in INBOUND:
        policy = SessionAccess(scopes)
        peer = BOB if target == "peer" else None
        denial = policy.check_inbound(kind, stanza_type, target, payload, peer, "id1")
        row = (kind, stanza_type, target, payload)
        if opener == ALWAYS:
            assert denial is None, row
        elif opener == ANSWER:
            # nothing was routed to this session, so it owes nobody an answer
            assert denial is not None, row
            assert denial.condition is StanzaErrorCondition.NOT_ALLOWED, row
        elif not (missing := [scope for scope in opener.split("+") if scope not in scopes]):
            assert denial is None, row
        else:
            assert denial is not None, row
            assert denial.condition is StanzaErrorCondition.FORBIDDEN, row
            assert f"does not include {missing[0]} (" in denial.text, row


OUTBOUND = [
    *[("message", t, MESSAGES_RECEIVE) for t in MESSAGE_TYPES if t != "error"],
    *[("presence", t, PRESENCE) for t in PRESENCE_TYPES],
    ("iq", "get", MESSAGES_RECEIVE),
    ("iq", "set", MESSAGES_RECEIVE),
    ("pep", "headline", PRESENCE),  # XEP-0163 notifications
]


@pytest.mark.parametrize("scopes", SCOPE_SETS, ids=_label)
def test_outbound_decisions_follow_the_table(scopes: frozenset[str]) -> None:
    policy = SessionAccess(scopes)
    for kind, stanza_type, opener in OUTBOUND:
        assert policy.may_receive(kind, stanza_type) is (opener in scopes), (kind, stanza_type)
    # answers are let through to the pairing (admit), which the tests below check
    assert policy.may_receive("iq", "result") is True
    assert policy.may_receive("iq", "error") is True
    assert policy.may_receive("message", "error") is True


@pytest.mark.parametrize("scopes", SCOPE_SETS, ids=_label)
@pytest.mark.parametrize("answer", ["result", "error"])
def test_an_unsolicited_iq_answer_reaches_no_session(scopes: frozenset[str], answer: str) -> None:
    policy = SessionAccess(scopes)
    assert policy.admit("iq", answer, BOB, "id1") is Admission.DROP


@pytest.mark.parametrize("answer", ["result", "error"])
def test_an_iq_answer_reaches_the_session_that_asked_once(answer: str) -> None:
    policy = SessionAccess(frozenset({MESSAGES_SEND}))
    assert policy.check_inbound("iq", "get", "peer", VCARD, BOB, "v1") is None
    assert policy.admit("iq", answer, CAROL, "v1") is Admission.DROP  # someone else
    assert policy.admit("iq", answer, BOB, "v2") is Admission.DROP  # another id
    assert policy.admit("iq", answer, BOB, "v1") is Admission.WHOLE
    assert policy.admit("iq", answer, BOB, "v1") is Admission.DROP  # answered already


def test_a_session_answers_only_requests_routed_to_it_once() -> None:
    policy = SessionAccess(frozenset({MESSAGES_RECEIVE}))  # no messages.send
    assert policy.admit("iq", "get", BOB, "q1") is Admission.WHOLE
    assert policy.check_inbound("iq", "result", "peer", None, CAROL, "q1") is not None
    assert policy.check_inbound("iq", "result", "peer", None, BOB, "other") is not None
    assert policy.check_inbound("iq", "result", "peer", None, BOB, "q1") is None
    assert policy.check_inbound("iq", "error", "peer", None, BOB, "q1") is not None  # once


def test_a_session_without_messages_receive_gets_no_requests_and_so_answers_none() -> None:
    policy = SessionAccess(frozenset({PRESENCE}))
    assert policy.may_receive("iq", "get") is False
    assert policy.check_inbound("iq", "result", "peer", None, BOB, "q1") is not None
    assert policy.check_inbound("iq", "get", "peer", VCARD, BOB, "q1") is not None  # no messages.send


def test_message_errors_reach_a_session_without_receive_only_for_its_own_messages() -> None:
    policy = SessionAccess(ROLES["notifier"])
    assert policy.admit("message", "error", BOB, "m1") is Admission.DROP
    assert policy.check_inbound("message", "chat", "peer", None, BOB, "m1") is None
    assert policy.admit("message", "error", CAROL, "m1") is Admission.DROP
    assert policy.admit("message", "error", BOB, "m1") is Admission.ERROR_ONLY
    assert policy.admit("message", "error", BOB, "m1") is Admission.DROP  # once


def test_message_errors_reach_a_session_with_receive_whole() -> None:
    policy = SessionAccess(frozenset({MESSAGES_RECEIVE}))
    assert policy.admit("message", "error", BOB, "anything") is Admission.WHOLE
    assert policy.admit("message", "error", BOB, None) is Admission.WHOLE
    assert len(policy.asked) == 0  # nothing is remembered for a session that may receive


def test_a_session_that_may_receive_keeps_no_ledger_of_its_messages() -> None:
    policy = SessionAccess(frozenset({MESSAGES_SEND, MESSAGES_RECEIVE}))
    for n in range(10):
        assert policy.check_inbound("message", "chat", "peer", None, BOB, f"m{n}") is None
    assert len(policy.asked) == 0


def test_presence_and_other_stanzas_are_not_paired() -> None:
    policy = SessionAccess(frozenset())
    assert policy.admit("presence", "error", BOB, "p1") is Admission.WHOLE
    assert policy.admit("message", "chat", BOB, "m1") is Admission.WHOLE


def test_a_request_without_an_id_pairs_only_with_an_answer_without_one() -> None:
    policy = SessionAccess(frozenset({MESSAGES_SEND}))
    assert policy.check_inbound("iq", "get", "peer", VCARD, BOB, None) is None
    assert policy.admit("iq", "result", BOB, "x") is Admission.DROP
    assert policy.admit("iq", "result", BOB, None) is Admission.WHOLE


# ------------------------------------------------------------------------ bounded in number and time
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_pending_request_expires() -> None:
    clock = Clock()
    policy = SessionAccess(frozenset({MESSAGES_SEND}), seconds=30, clock=clock)
    policy.check_inbound("iq", "get", "peer", VCARD, BOB, "a")
    policy.check_inbound("iq", "get", "peer", VCARD, BOB, "b")
    clock.now += 30
    assert policy.admit("iq", "result", BOB, "a") is Admission.WHOLE  # on the deadline: still in time
    clock.now += 0.001
    assert policy.admit("iq", "result", BOB, "b") is Admission.DROP


def test_the_ledger_keeps_the_newest_requests_when_full() -> None:
    pending = Pending(limit=3, seconds=60, clock=Clock())
    for n in range(5):
        pending.add(BOB, str(n))
    assert len(pending) == 3
    assert not pending.take(BOB, "0")
    assert not pending.take(BOB, "1")
    assert [pending.take(BOB, str(n)) for n in (2, 3, 4)] == [True, True, True]
    assert len(pending) == 0


def test_asking_again_refreshes_a_request() -> None:
    clock = Clock()
    pending = Pending(limit=2, seconds=10, clock=clock)
    pending.add(BOB, "a")
    pending.add(BOB, "b")
    clock.now += 5
    pending.add(BOB, "a")  # the same id again: newest now, with a new deadline
    pending.add(BOB, "c")  # evicts b, the oldest
    clock.now += 8
    assert pending.take(BOB, "a")
    assert not pending.take(BOB, "b")


def test_a_resumed_session_adopts_what_it_waited_for() -> None:
    before = SessionAccess(frozenset({MESSAGES_SEND, MESSAGES_RECEIVE}))
    before.check_inbound("iq", "get", "peer", VCARD, BOB, "asked")
    before.admit("iq", "set", CAROL, "owed")
    after = SessionAccess(frozenset({MESSAGES_SEND, MESSAGES_RECEIVE}))
    after.adopt(before)
    assert after.admit("iq", "result", BOB, "asked") is Admission.WHOLE
    assert after.check_inbound("iq", "result", "peer", None, CAROL, "owed") is None


def test_adopting_respects_the_limit() -> None:
    before = SessionAccess(frozenset({MESSAGES_SEND}), limit=8)
    for n in range(8):
        before.check_inbound("iq", "get", "peer", VCARD, BOB, str(n))
    after = SessionAccess(frozenset({MESSAGES_SEND}), limit=4)
    after.adopt(before)
    assert len(after.asked) == 4


# ------------------------------------------------------------------------ roles and session scopes
def test_the_roles_are_exactly_these() -> None:
    expected = {
        "full": {
            MESSAGES_SEND,
            MESSAGES_RECEIVE,
            PRESENCE,
            ROSTER_READ,
            ROSTER_WRITE,
            PEP_WRITE,
            CLIENTS_MANAGE,
        },
        "bot": {MESSAGES_SEND, MESSAGES_RECEIVE, PRESENCE},
        "notifier": {MESSAGES_SEND},
        "read-only": {MESSAGES_RECEIVE, PRESENCE, ROSTER_READ},
        "admin": set(SCOPES),
    }
    assert expected == ROLES


@pytest.mark.parametrize(
    ("staff", "app_password", "expected"),
    [
        (True, False, set(SCOPES)),
        (False, False, set(SCOPES) - {ADMIN}),
        (True, True, set(SCOPES) - {ADMIN, CLIENTS_MANAGE}),
        (False, True, set(SCOPES) - {ADMIN, CLIENTS_MANAGE}),
    ],
)
def test_session_scopes_cut_the_grant_to_the_login(
    staff: bool, app_password: bool, expected: set[str]
) -> None:
    grant = [*SCOPES, "no.such.scope"]
    assert access.session_scopes(grant, app_password=app_password, staff=staff) == expected


def test_validate_scopes_refuses_unknown_names_and_app_password_extras() -> None:
    assert access.validate_scopes([MESSAGES_SEND]) == {MESSAGES_SEND}
    with pytest.raises(access.UnknownScope, match=r"unknown scope nope; known scopes: messages\.send"):
        access.validate_scopes(["nope", MESSAGES_SEND])
    with pytest.raises(ValueError, match=r"an app password can never carry admin, clients\.manage"):
        access.validate_scopes([ADMIN, CLIENTS_MANAGE, PRESENCE], app_password=True)
    assert access.validate_scopes([ADMIN, CLIENTS_MANAGE]) == {ADMIN, CLIENTS_MANAGE}
    with pytest.raises(access.UnknownScope, match="unknown role 'boss'; roles: full, bot"):
        access.scopes_for_role("boss")
    assert access.scopes_for_role("bot") == ROLES["bot"]


@pytest.mark.parametrize("scopes", SCOPE_SETS, ids=_label)
def test_it_says_it_receives_everything_only_when_it_does(scopes: frozenset[str]) -> None:
    policy = SessionAccess(scopes)
    kinds = [(k, t) for k, t, _ in OUTBOUND] + [("iq", "result"), ("iq", "error"), ("message", "error")]
    assert policy.may_receive_everything() is all(policy.may_receive(k, t) for k, t in kinds)


def test_a_request_the_server_answered_for_the_session_is_owed_no_more() -> None:
    policy = SessionAccess(frozenset({MESSAGES_RECEIVE}))
    assert policy.admit("iq", "get", BOB, "q1") is Admission.WHOLE
    assert policy.admit("iq", "get", BOB, "q2") is Admission.WHOLE
    policy.answered_for_it(BOB, "q1")  # say, bounced when a narrowed session resumed
    assert policy.check_inbound("iq", "result", "peer", None, BOB, "q1") is not None  # a second answer
    assert policy.check_inbound("iq", "result", "peer", None, BOB, "q2") is None
    assert policy.admit("iq", "get", BOB, None) is Admission.WHOLE  # a request without an id
    policy.answered_for_it(BOB, None)
    assert policy.check_inbound("iq", "result", "peer", None, BOB, None) is not None
