"""XEP-0050 ad-hoc commands (xep0050_commands) running the three XEP-0133 administration commands
(xep0133_admin): the commands, sessions, errors."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from lxml import etree

from accounts.models import User
from sessions_acl.models import AuthEvent, Client, FastToken, Revocation
from tests.helpers import account, canon, db
from xmppauth.features import xep0050_commands as adhoc
from xmppauth.features import xep0133_admin

ROOT = Path(__file__).resolve().parents[1]

# database_sync_to_async runs the ORM in a worker thread: the rows must be committed to be seen.
pytestmark = pytest.mark.django_db(transaction=True)

ADMIN = "http://jabber.org/protocol/admin"
ADMIN_JID = "admin@example.org/desk"
_PARSER = etree.XMLParser(remove_blank_text=True)


def assert_xml(el: etree._Element, expected: str) -> None:
    assert canon(el) == canon(expected)


@pytest.fixture(autouse=True)
def _domain_and_clean_sessions(settings: Any) -> Iterator[None]:
    settings.XMPP_DOMAIN = "example.org"
    adhoc._sessions.clear()
    yield
    adhoc._sessions.clear()


def online() -> tuple[int, int]:
    return 3, 5


async def run(
    command: str, *, iq_id: str = "c1", sender: str = ADMIN_JID, iq_type: str = "set"
) -> etree._Element:
    stanza = etree.fromstring(
        f"<iq xmlns='jabber:client' type='{iq_type}' id='{iq_id}' from='{sender}' to='example.org'>{command}</iq>",
        _PARSER,
    )
    return await adhoc.handle(stanza, stanza[0], actor="admin@example.org", online=online)


def command(node: str, attrs: str = "", body: str = "") -> str:
    return (
        f"<command xmlns='http://jabber.org/protocol/commands' node='{ADMIN}#{node}' {attrs}>{body}</command>"
    )


def submit(*jids: str) -> str:
    values = "".join(f"<value>{jid}</value>" for jid in jids)
    return (
        "<x xmlns='jabber:x:data' type='submit'>"
        f"<field type='hidden' var='FORM_TYPE'><value>{ADMIN}</value></field>"
        f"<field type='jid-multi' var='accountjids'>{values}</field></x>"
    )


def sessionid_of(reply: etree._Element) -> str:
    command_el = reply.find("{http://jabber.org/protocol/commands}command")
    assert command_el is not None
    sessionid = command_el.get("sessionid")
    assert sessionid is not None
    return sessionid


def error(
    error_type: str, condition: str, text: str, *, specific: str = "", iq_id: str = "c1", to: str = ADMIN_JID
) -> str:
    app = f"<{specific} xmlns='http://jabber.org/protocol/commands'/>" if specific else ""
    return f"""
        <iq xmlns='jabber:client' type='error' id='{iq_id}' from='example.org' to='{to}'>
          <error type='{error_type}'>
            <{condition} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>
            <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas' xml:lang='en'>{text}</text>
            {app}
          </error>
        </iq>"""


def give_fast_token(user: User) -> None:
    now = timezone.now()
    client = Client.objects.create(user=user, user_agent_id=f"ua-{user.username}", last_seen=now)
    FastToken.objects.create(
        client=client,
        slot=FastToken.Slot.CURRENT,
        mechanism="HT-SHA-256-NONE",
        key=b"k" * 32,
        nonce=b"n" * 16,
        expires=now + timedelta(days=1),
    )


def revocations() -> list[tuple[str, bool, str]]:
    return list(Revocation.objects.order_by("id").values_list("username", "all_sessions", "text"))


def fast_tokens(username: str) -> int:
    return FastToken.objects.filter(client__user__username=username).count()


async def start_end_user_session(sender: str = ADMIN_JID) -> str:
    return sessionid_of(await run(command("end-user-session", "action='execute'"), sender=sender))


# ---------------------------------------------------------------------------------- discovery
def test_command_items_list_the_three_admin_commands() -> None:
    assert adhoc.command_items() == [
        (f"{ADMIN}#get-online-users-num", "Get Number of Online Users"),
        (f"{ADMIN}#get-registered-users-num", "Get Number of Registered Users"),
        (f"{ADMIN}#end-user-session", "End User Session"),
    ]


_ONLINE_NUM_IN_A_FRESH_PROCESS = (
    "stanza = etree.fromstring(\"<iq xmlns='jabber:client' type='set' id='c1' from='a@localhost/r'>"
    "<command xmlns='http://jabber.org/protocol/commands' node='http://jabber.org/protocol/admin"
    "#get-online-users-num'/></iq>\"); "
    "print(asyncio.run(adhoc.handle(stanza, stanza[0], actor='a', online=lambda: (3, 5)))[0].get('status'))"
)


@pytest.mark.parametrize(
    ("first_call", "found"),
    [("print(len(adhoc.command_items()))", "3"), (_ONLINE_NUM_IN_A_FRESH_PROCESS, "completed")],
    ids=["command_items", "handle"],
)
def test_the_commands_are_registered_before_the_first_lookup_in_a_fresh_process(
    first_call: str, found: str
) -> None:
    """A fresh interpreter that imported only the framework: the first call loads xep0133_admin."""
    code = (
        "import asyncio, sys, django; from lxml import etree; django.setup(); "
        "from xmppauth.features import xep0050_commands as adhoc; "
        f"print('xmppauth.features.xep0133_admin' in sys.modules); {first_call}"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "xmppauth.settings"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    loaded_before, printed = out.stdout.strip().splitlines()
    assert loaded_before == "False"
    assert printed == found


def test_a_node_has_one_command() -> None:
    with pytest.raises(ValueError, match="two commands"):
        adhoc.register_command(
            xep0133_admin.NODE_END_USER_SESSION, "End User Session", start=xep0133_admin._online_users_num
        )
    assert len(adhoc.command_items()) == 3


# ---------------------------------------------------------------------------------- one-stage commands
async def test_get_online_users_num_completes_with_a_result_form() -> None:
    reply = await run(command("get-online-users-num", "action='execute'"))
    sessionid = sessionid_of(reply)
    assert len(sessionid) >= 20
    assert_xml(
        reply,
        f"""
        <iq xmlns='jabber:client' type='result' id='c1' from='example.org' to='{ADMIN_JID}'>
          <command xmlns='http://jabber.org/protocol/commands' node='{ADMIN}#get-online-users-num'
                   sessionid='{sessionid}' status='completed'>
            <x xmlns='jabber:x:data' type='result'>
              <field type='hidden' var='FORM_TYPE'><value>{ADMIN}</value></field>
              <field type='text-single' label='The number of online users' var='onlineusersnum'>
                <value>3</value>
              </field>
              <field type='text-single' label='The number of online sessions' var='x-onlinesessionsnum'>
                <value>5</value>
              </field>
            </x>
          </command>
        </iq>""",
    )
    assert adhoc._sessions == {}


async def test_get_registered_users_num_counts_active_accounts() -> None:
    for name, active in (("alice", True), ("bob", True), ("carol", False)):
        await db(account, name, is_active=active)
    reply = await run(command("get-registered-users-num"))  # no action: execute (XEP-0050 §4.1)
    sessionid = sessionid_of(reply)
    assert_xml(
        reply,
        f"""
        <iq xmlns='jabber:client' type='result' id='c1' from='example.org' to='{ADMIN_JID}'>
          <command xmlns='http://jabber.org/protocol/commands' node='{ADMIN}#get-registered-users-num'
                   sessionid='{sessionid}' status='completed'>
            <x xmlns='jabber:x:data' type='result'>
              <field type='hidden' var='FORM_TYPE'><value>{ADMIN}</value></field>
              <field type='text-single' label='The number of registered users' var='registeredusersnum'>
                <value>2</value>
              </field>
            </x>
          </command>
        </iq>""",
    )


async def test_each_execution_gets_its_own_random_sessionid() -> None:
    first = sessionid_of(await run(command("get-online-users-num")))
    second = sessionid_of(await run(command("get-online-users-num")))
    assert first != second


# ---------------------------------------------------------------------------------- end-user-session
async def test_end_user_session_first_stage_asks_for_accountjids() -> None:
    reply = await run(command("end-user-session", "action='execute'"))
    sessionid = sessionid_of(reply)
    assert_xml(
        reply,
        f"""
        <iq xmlns='jabber:client' type='result' id='c1' from='example.org' to='{ADMIN_JID}'>
          <command xmlns='http://jabber.org/protocol/commands' node='{ADMIN}#end-user-session'
                   sessionid='{sessionid}' status='executing'>
            <actions execute='complete'><complete/></actions>
            <x xmlns='jabber:x:data' type='form'>
              <title>Ending a User Session</title>
              <instructions>Fill out this form to end every session and FAST token of the accounts.</instructions>
              <field type='hidden' var='FORM_TYPE'><value>{ADMIN}</value></field>
              <field type='jid-multi' label='The Jabber ID(s) for which to end sessions' var='accountjids'>
                <required/>
              </field>
            </x>
          </command>
        </iq>""",
    )
    assert list(adhoc._sessions) == [sessionid]


async def test_completing_ends_every_session_and_fast_token_of_the_accounts() -> None:
    for name in ("alice", "bob", "carol"):
        await db(account, name)
        await db(give_fast_token, await db(User.objects.get, username=name))
    sessionid = await start_end_user_session()
    reply = await run(
        command(
            "end-user-session",
            f"sessionid='{sessionid}' action='complete'",
            submit("alice@example.org", "Bob@Example.org/laptop", "alice@example.org"),
        ),
        iq_id="c2",
    )
    assert_xml(
        reply,
        f"""
        <iq xmlns='jabber:client' type='result' id='c2' from='example.org' to='{ADMIN_JID}'>
          <command xmlns='http://jabber.org/protocol/commands' node='{ADMIN}#end-user-session'
                   sessionid='{sessionid}' status='completed'>
            <note type='info'>Ended every session and FAST token of 2 accounts: alice@example.org, bob@example.org.</note>
          </command>
        </iq>""",
    )
    text = "every session of this account was ended by admin@example.org: ended by a server administrator"
    assert await db(revocations) == [("alice", True, text), ("bob", True, text)]
    assert [await db(fast_tokens, name) for name in ("alice", "bob", "carol")] == [0, 0, 1]
    events = await db(
        lambda: list(
            AuthEvent.objects.filter(kind=AuthEvent.Kind.REVOKED).values_list("user__username", "actor")
        )
    )
    assert sorted(events) == [("alice", "admin@example.org"), ("bob", "admin@example.org")]
    assert adhoc._sessions == {}


async def test_the_submission_may_use_the_default_execute_action() -> None:
    await db(account, "alice")
    sessionid = await start_end_user_session()
    reply = await run(command("end-user-session", f"sessionid='{sessionid}'", submit("alice@example.org")))
    assert_xml(
        reply,
        f"""
        <iq xmlns='jabber:client' type='result' id='c1' from='example.org' to='{ADMIN_JID}'>
          <command xmlns='http://jabber.org/protocol/commands' node='{ADMIN}#end-user-session'
                   sessionid='{sessionid}' status='completed'>
            <note type='info'>Ended every session and FAST token of 1 account: alice@example.org.</note>
          </command>
        </iq>""",
    )
    assert await db(revocations) == [
        (
            "alice",
            True,
            "every session of this account was ended by admin@example.org: ended by a server administrator",
        )
    ]


async def test_unknown_accounts_and_foreign_domains_are_named_and_nothing_is_ended() -> None:
    await db(account, "alice")
    sessionid = await start_end_user_session()
    reply = await run(
        command(
            "end-user-session",
            f"sessionid='{sessionid}' action='complete'",
            submit(
                "alice@example.org",
                "romeo@example.net",
                "example.org",
                "ghost@example.org",
                "a b@example.org",
            ),
        )
    )
    assert_xml(
        reply,
        error(
            "modify",
            "bad-request",
            "cannot end the sessions of romeo@example.net (not an account of example.org), "
            "example.org (not an account of example.org), a b@example.org (not a valid JID), "
            "ghost@example.org (no such account)",
        ),
    )
    assert await db(revocations) == []
    # The session stays open: the administrator can correct the form and submit again.
    reply = await run(
        command("end-user-session", f"sessionid='{sessionid}' action='complete'", submit("alice@example.org"))
    )
    assert reply.get("type") == "result"
    assert [name for name, _, _ in await db(revocations)] == ["alice"]


async def test_only_unknown_accounts_are_also_refused() -> None:
    sessionid = await start_end_user_session()
    reply = await run(
        command("end-user-session", f"sessionid='{sessionid}' action='complete'", submit("ghost@example.org"))
    )
    assert_xml(
        reply,
        error("modify", "bad-request", "cannot end the sessions of ghost@example.org (no such account)"),
    )
    assert await db(revocations) == []


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ("", "submit the form (jabber:x:data type='submit')"),
        (
            "<x xmlns='jabber:x:data' type='form'><field var='accountjids'><value>alice@example.org</value></field></x>",
            "submit the form (jabber:x:data type='submit')",
        ),
        (
            "<x xmlns='jabber:x:data' type='cancel'><field var='accountjids'><value>alice@example.org</value></field></x>",
            "submit the form (jabber:x:data type='submit')",
        ),
        ("<x xmlns='jabber:x:data' type='submit'/>", "accountjids is required"),
        (
            "<x xmlns='jabber:x:data' type='submit'><field var='accountjids'><value> </value></field></x>",
            "accountjids is required",
        ),
        (
            "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:other</value></field>"
            "<field var='accountjids'><value>alice@example.org</value></field></x>",
            f"the FORM_TYPE is not {ADMIN}",
        ),
    ],
    ids=["no-form", "not-submit", "cancel-form", "no-field", "blank-value", "wrong-form-type"],
)
async def test_a_bad_submission_is_bad_payload(body: str, text: str) -> None:
    await db(account, "alice")
    sessionid = await start_end_user_session()
    reply = await run(command("end-user-session", f"sessionid='{sessionid}' action='complete'", body))
    assert_xml(reply, error("modify", "bad-request", text, specific="bad-payload"))
    assert await db(revocations) == []
    assert list(adhoc._sessions) == [sessionid]


async def test_cancel_ends_the_session() -> None:
    sessionid = await start_end_user_session()
    reply = await run(command("end-user-session", f"sessionid='{sessionid}' action='cancel'"))
    assert_xml(
        reply,
        f"""
        <iq xmlns='jabber:client' type='result' id='c1' from='example.org' to='{ADMIN_JID}'>
          <command xmlns='http://jabber.org/protocol/commands' node='{ADMIN}#end-user-session'
                   sessionid='{sessionid}' status='canceled'/>
        </iq>""",
    )
    reply = await run(
        command("end-user-session", f"sessionid='{sessionid}' action='complete'", submit("alice@example.org"))
    )
    assert_xml(
        reply,
        error(
            "modify",
            "bad-request",
            "no such command session (unknown, expired or finished)",
            specific="bad-sessionid",
        ),
    )


BAD_SESSION = "no such command session (unknown, expired or finished)"


async def test_an_unknown_sessionid_is_bad_sessionid() -> None:
    reply = await run(
        command("end-user-session", "sessionid='forged' action='complete'", submit("alice@example.org"))
    )
    assert_xml(reply, error("modify", "bad-request", BAD_SESSION, specific="bad-sessionid"))


async def test_a_finished_session_cannot_be_used_again() -> None:
    await db(account, "alice")
    sessionid = await start_end_user_session()
    body = submit("alice@example.org")
    assert (await run(command("end-user-session", f"sessionid='{sessionid}'", body))).get("type") == "result"
    reply = await run(command("end-user-session", f"sessionid='{sessionid}'", body))
    assert_xml(reply, error("modify", "bad-request", BAD_SESSION, specific="bad-sessionid"))
    assert len(await db(revocations)) == 1


async def test_a_session_expires_after_ten_minutes(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(adhoc, "_clock", lambda: now[0])
    await db(account, "alice")
    sessionid = await start_end_user_session()
    now[0] += 600.0
    reply = await run(
        command("end-user-session", f"sessionid='{sessionid}' action='complete'", submit("alice@example.org"))
    )
    assert_xml(reply, error("modify", "bad-request", BAD_SESSION, specific="bad-sessionid"))
    assert adhoc._sessions == {}
    assert await db(revocations) == []
    fresh = await start_end_user_session()
    now[0] += 599.0
    reply = await run(
        command("end-user-session", f"sessionid='{fresh}' action='complete'", submit("alice@example.org"))
    )
    assert reply.get("type") == "result"


async def test_a_session_belongs_to_the_full_jid_that_started_it() -> None:
    sessionid = await start_end_user_session()
    other = "admin@example.org/phone"
    reply = await run(
        command(
            "end-user-session", f"sessionid='{sessionid}' action='complete'", submit("alice@example.org")
        ),
        sender=other,
    )
    assert_xml(reply, error("modify", "bad-request", BAD_SESSION, specific="bad-sessionid", to=other))
    assert list(adhoc._sessions) == [sessionid]


async def test_a_sessionid_of_another_node_is_bad_sessionid() -> None:
    sessionid = await start_end_user_session()
    reply = await run(command("get-online-users-num", f"sessionid='{sessionid}' action='cancel'"))
    assert_xml(reply, error("modify", "bad-request", BAD_SESSION, specific="bad-sessionid"))


async def test_the_oldest_sessions_are_dropped_beyond_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(adhoc, "MAX_SESSIONS", 2)
    first = await start_end_user_session()
    second = await start_end_user_session()
    third = await start_end_user_session()
    assert set(adhoc._sessions) == {second, third}
    assert first not in adhoc._sessions


@pytest.mark.parametrize("action", ["complete", "next", "prev", "cancel"])
async def test_continuing_without_a_sessionid_is_bad_sessionid(action: str) -> None:
    reply = await run(command("end-user-session", f"action='{action}'", submit("alice@example.org")))
    assert_xml(
        reply,
        error(
            "modify",
            "bad-request",
            f"the '{action}' action continues a command and needs its sessionid",
            specific="bad-sessionid",
        ),
    )


@pytest.mark.parametrize("action", ["next", "prev"])
async def test_next_and_prev_are_bad_action_and_keep_the_session(action: str) -> None:
    sessionid = await start_end_user_session()
    reply = await run(command("end-user-session", f"sessionid='{sessionid}' action='{action}'"))
    assert_xml(
        reply,
        error(
            "modify",
            "bad-request",
            "this command has a single form: complete it or cancel it",
            specific="bad-action",
        ),
    )
    assert list(adhoc._sessions) == [sessionid]


async def test_an_unknown_action_is_malformed_action() -> None:
    reply = await run(command("get-online-users-num", "action='jump'"))
    assert_xml(reply, error("modify", "bad-request", "unknown action 'jump'", specific="malformed-action"))


# ---------------------------------------------------------------------------------- other errors
async def test_an_unknown_node_is_item_not_found() -> None:
    reply = await run(command("delete-user", "action='execute'"))
    assert_xml(reply, error("cancel", "item-not-found", f"no command '{ADMIN}#delete-user'"))
    reply = await run("<command xmlns='http://jabber.org/protocol/commands' action='execute'/>")
    assert_xml(reply, error("cancel", "item-not-found", "no node"))


async def test_a_get_is_bad_request() -> None:
    reply = await run(command("get-online-users-num"), iq_type="get")
    assert_xml(reply, error("modify", "bad-request", "commands are executed with an iq of type set"))


async def test_another_payload_is_bad_request() -> None:
    reply = await run("<query xmlns='http://jabber.org/protocol/disco#items'/>")
    assert_xml(reply, error("modify", "bad-request", "not an ad-hoc command"))
