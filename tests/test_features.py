"""The registries the driver looks protocols up in: iq handlers by namespace (xmppauth.features) and
SASL2 tasks by name (xmppauth.sasl2_tasks)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from lxml import etree

from sessions_acl.access import ROLES, SessionAccess
from xmppauth import features, sasl2_tasks
from xmppauth.features import rfc6121_roster, xep0050_commands, xep0077_register, xep0494_clients
from xmppauth.plugins import import_submodules
from xmppauth.proto import ns
from xmppauth.proto import xep0163_pep as pep_rules
from xmppauth.proto.errors import SaslCondition
from xmppauth.proto.events import TaskData, TaskStarted
from xmppauth.proto.jid import JID
from xmppauth.proto.xml import serialize

ALICE = JID("alice", "localhost", "phone")


def payload(xml: str) -> etree._Element:
    return etree.fromstring(f"<iq xmlns='jabber:client' type='get' id='q1' from='{ALICE}'>{xml}</iq>")[0]


# ---------------------------------------------------------------------------------- iq features
def test_the_core_is_told_the_namespaces_nodes_and_features_of_every_module() -> None:
    served = features.advertised()
    assert served.iq_namespaces == {
        *(ns.ROSTER, ns.REGISTER, ns.COMMANDS, ns.CAM, ns.MFA, ns.BLOCKING, ns.MAM),
        *(ns.PUBSUB, ns.PUBSUB_OWNER),
    }
    # PEP is served on other accounts' bare JIDs too (XEP-0163 §4: a contact's nodes)
    assert served.contact_namespaces == {ns.PUBSUB, ns.PUBSUB_OWNER}
    assert served.disco_nodes == {ns.COMMANDS}
    assert set(served.server_features) == {ns.COMMANDS, ns.BLOCKING, ns.MFA, "msgoffline"}
    assert len(served.server_features) == 4
    pep_features = tuple(f"{ns.PUBSUB}#{name}" for name in ("publish", "publish-options", "subscribe"))
    own = {ns.CAM, ns.MAM, f"{ns.MAM}#extended", "urn:xmpp:sid:0", ns.PUBSUB}
    assert {*own, *pep_features} <= set(served.account_features)
    assert (
        len(served.account_features)
        == len(set(served.account_features))
        == len(own) + len(pep_rules.FEATURES)
    )
    assert served.account_identities == (("pubsub", "pep"),)


@pytest.mark.parametrize(
    ("xml", "module", "name"),
    [
        (f"<query xmlns='{ns.ROSTER}'/>", rfc6121_roster, "_on_iq"),
        (f"<query xmlns='{ns.REGISTER}'/>", xep0077_register, "_on_iq"),
        (f"<command xmlns='{ns.COMMANDS}' node='x'/>", xep0050_commands, "_on_command"),
        (f"<query xmlns='{ns.DISCO_ITEMS}' node='{ns.COMMANDS}'/>", xep0050_commands, "_on_discovery"),
        (f"<query xmlns='{ns.DISCO_INFO}' node='{ns.COMMANDS}'/>", xep0050_commands, "_on_discovery"),
        (f"<list xmlns='{ns.CAM}'/>", xep0494_clients, "_on_iq"),
    ],
)
def test_it_finds_the_handler_by_namespace_or_disco_node(xml: str, module: Any, name: str) -> None:
    assert features.handler_for(payload(xml)) is getattr(module, name)


@pytest.mark.parametrize(
    "xml",
    [
        "<query xmlns='urn:example:nobody'/>",
        f"<query xmlns='{ns.DISCO_INFO}'/>",  # the core's own
        f"<query xmlns='{ns.DISCO_ITEMS}' node='urn:example:node'/>",
    ],
)
def test_it_has_no_handler_for_what_nobody_registered(xml: str) -> None:
    assert features.handler_for(payload(xml)) is None


def test_a_namespace_has_one_handler() -> None:
    with pytest.raises(ValueError, match="two handlers"):
        features.register(ns.ROSTER, rfc6121_roster._on_iq)
    with pytest.raises(ValueError, match="two handlers"):
        features.register_node(ns.COMMANDS, xep0050_commands._on_discovery)


def _context(scopes: frozenset[str], answers: list[etree._Element]) -> features.IqContext:
    async def answer(reply: etree._Element) -> None:
        answers.append(reply)

    return features.IqContext(
        user_id=1,
        jid=ALICE,
        session_id=None,
        access=SessionAccess(scopes),
        state={},
        answer=answer,
        account_sessions=list,
        credential="password",
        authenticated_ago=lambda: 0.0,
    )


@pytest.mark.parametrize(("role", "items"), [("admin", 3), ("full", 0)])
async def test_the_command_list_shows_its_items_to_admin_sessions_only(role: str, items: int) -> None:
    answers: list[etree._Element] = []
    request = payload(f"<query xmlns='{ns.DISCO_ITEMS}' node='{ns.COMMANDS}'/>")
    await xep0050_commands._on_discovery(_context(ROLES[role], answers), request.getparent(), request)
    [reply] = answers
    assert reply.get("type") == "result"
    assert reply[0].get("node") == ns.COMMANDS
    assert len(reply[0]) == items


async def test_the_command_list_is_an_automation_node() -> None:
    answers: list[etree._Element] = []
    request = payload(f"<query xmlns='{ns.DISCO_INFO}' node='{ns.COMMANDS}'/>")
    await xep0050_commands._on_discovery(_context(ROLES["full"], answers), request.getparent(), request)
    assert (
        serialize(answers[0])
        == (
            f'<iq xmlns="jabber:client" type="result" id="q1" to="{ALICE}">'
            f'<query xmlns="{ns.DISCO_INFO}" node="{ns.COMMANDS}">'
            '<identity category="automation" type="command-list"/></query></iq>'
        ).encode()
    )


# ---------------------------------------------------------------------------------- SASL2 tasks
class Answers:
    """What a task said to the client (the stream's task driver API)."""

    def __init__(self) -> None:
        self.said: list[tuple[Any, ...]] = []

    def task_challenge(self, payload: str) -> None:
        self.said.append(("challenge", payload))

    def task_succeeded(self) -> None:
        self.said.append(("succeeded",))

    def task_failed(self, condition: SaslCondition, text: str) -> None:
        self.said.append(("failed", condition, text))


def _login(answers: Answers, *, is_open: bool = True) -> sasl2_tasks.TaskContext:
    return sasl2_tasks.TaskContext(
        localpart="alice", user_id=1, peer="127.0.0.1:1", stream=answers, is_open=lambda: is_open
    )


@pytest.mark.parametrize("event", [TaskStarted, TaskData])
async def test_an_unknown_task_fails_with_malformed_request(event: Any) -> None:
    answers = Answers()
    await sasl2_tasks.run(_login(answers), event(task="X-NOBODY", payload=None))
    assert answers.said == [("failed", SaslCondition.MALFORMED_REQUEST, "no task X-NOBODY")]


async def test_a_task_module_runs_the_names_it_declares(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sasl2_tasks, "_families", list(sasl2_tasks._families))
    monkeypatch.setattr(sasl2_tasks, "_by_name", dict(sasl2_tasks._by_name))
    ran: list[str] = []

    async def offer(context: Any, event: Any, authorization: Any) -> list[list[str]]:
        return [["TEST-A", "TEST-B"]]

    async def start(context: sasl2_tasks.TaskContext, name: str, payload: Any) -> None:
        ran.append(f"start {name}")
        context.challenge("<x/>")

    async def data(context: sasl2_tasks.TaskContext, name: str, payload: Any) -> None:
        ran.append(f"data {name}")
        await context.succeeded()

    sasl2_tasks.register(names=frozenset({"TEST-A", "TEST-B"}), offer=offer, start=start, data=data, order=1)
    answers = Answers()
    login = _login(answers)
    await sasl2_tasks.run(login, TaskStarted(task="TEST-B", payload=None))
    await sasl2_tasks.run(login, TaskData(task="TEST-B", payload=None))
    assert ran == ["start TEST-B", "data TEST-B"]
    assert answers.said == [("challenge", "<x/>"), ("succeeded",)]
    assert sasl2_tasks._families[0].offer is offer  # order 1 comes before the upgrades' 100
    with pytest.raises(ValueError, match="two modules for the tasks TEST-A"):
        sasl2_tasks.register(names=frozenset({"TEST-A"}), offer=offer, start=start, data=data, order=2)


def test_the_upgrade_task_declares_every_scram_upgrade() -> None:
    import_submodules(sasl2_tasks.__name__)
    upgrade = sasl2_tasks._by_name["UPGR-SCRAM-SHA-256"]
    assert upgrade.names == {"UPGR-SCRAM-SHA-1", "UPGR-SCRAM-SHA-256", "UPGR-SCRAM-SHA-512"}


async def test_a_task_answers_nothing_once_the_stream_has_ended() -> None:
    answers = Answers()
    await sasl2_tasks.run(_login(answers, is_open=False), TaskStarted(task="X-NOBODY", payload=None))
    assert answers.said == []


@pytest.mark.django_db(transaction=True)
async def test_the_upgrade_task_adds_the_missing_scram_credentials(settings: Any) -> None:
    import base64
    import hashlib
    import re

    from asgiref.sync import sync_to_async

    from accounts.models import User
    from xmppauth.proto.events import Authenticated

    settings.XMPP_SCRAM_ITERATIONS = 4096

    def imported_with_sha1_only() -> None:
        user = User(username="alice")
        user.set_password("wonderland")
        user.scram = {"SHA-1": user.scram["SHA-1"]}
        user.save()

    await sync_to_async(imported_with_sha1_only)()
    answers = Answers()
    login = _login(answers)
    asked = Authenticated(localpart="alice", mechanism="PLAIN", upgrades=("UPGR-SCRAM-SHA-256",))
    by_token = SimpleNamespace(credential="fast-token", second_factors=())
    assert await sasl2_tasks.offer(login, asked, by_token) == []  # never from a token or app password
    by_password = SimpleNamespace(credential="password", second_factors=())
    assert await sasl2_tasks.offer(login, asked, by_password) == [["UPGR-SCRAM-SHA-256"]]

    await sasl2_tasks.run(login, TaskStarted(task="UPGR-SCRAM-SHA-256", payload=None))
    [(said, challenge)] = answers.said
    found = re.fullmatch(
        r"<salt xmlns='urn:xmpp:scram-upgrade:0' iterations='4096'>([^<]+)</salt>", challenge
    )
    assert said == "challenge"
    assert found is not None
    salted = hashlib.pbkdf2_hmac("sha256", b"wonderland", base64.b64decode(found.group(1)), 4096)
    answer = etree.fromstring(f"<hash xmlns='{ns.SCRAM_UPGRADE}'>{base64.b64encode(salted).decode()}</hash>")
    await sasl2_tasks.run(login, TaskData(task="UPGR-SCRAM-SHA-256", payload=answer))
    assert answers.said[1:] == [("succeeded",)]
    user = await User.objects.aget(username="alice")
    assert sorted(user.scram) == ["SHA-1", "SHA-256"]


def test_every_iq_namespace_a_feature_claims_is_in_the_scope_table() -> None:
    """A server feature is reached only through the core's access check (sessions_acl/access.py):
    a namespace missing from its table would be open to every session, app passwords included.
    So a new feature module needs its scopes decided there, for both get and set."""
    from sessions_acl.access import _INBOUND_IQ_SCOPES

    claimed = features.advertised().iq_namespaces
    assert ns.ROSTER in claimed  # the registry is not empty: the check below checks something
    missing = sorted(
        f"{namespace} {iq_type}"
        for namespace in claimed
        for iq_type in ("get", "set")
        if (namespace, iq_type) not in _INBOUND_IQ_SCOPES
    )
    assert not missing, f"no scope decided for {missing} in sessions_acl/access.py"


async def test_second_factors_of_several_modules_are_one_step_of_alternatives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import_submodules(sasl2_tasks.__name__)
    monkeypatch.setattr(sasl2_tasks, "_families", list(sasl2_tasks._families))
    monkeypatch.setattr(sasl2_tasks, "_by_name", dict(sasl2_tasks._by_name))

    async def key(context: Any, event: Any, authorization: Any) -> list[list[str]]:
        return [["X-KEY"]]

    async def nothing(context: Any, name: str, payload: Any) -> None:
        return None

    sasl2_tasks.register(
        names=frozenset({"X-KEY"}), offer=key, start=nothing, data=nothing, order=11, group="second-factor"
    )
    from xmppauth.proto.events import Authenticated

    asked = Authenticated(localpart="alice", mechanism="PLAIN")
    with_totp = SimpleNamespace(credential="password", second_factors=("totp",))
    # one step with both factors: the client picks one
    assert await sasl2_tasks.offer(_login(Answers()), asked, with_totp) == [["TOTP", "X-KEY"]]
    without = SimpleNamespace(credential="fast", second_factors=())
    assert await sasl2_tasks.offer(_login(Answers()), asked, without) == [["X-KEY"]]


async def test_the_hook_before_success_runs_once_after_the_last_task() -> None:
    answers = Answers()
    login = _login(answers)
    login.remaining = 2
    ran: list[list[tuple[Any, ...]]] = []

    async def hook() -> None:
        ran.append(list(answers.said))  # what the stream had been told when the hook ran
        return None

    login.before_success = hook
    await login.succeeded("TOTP")
    assert ran == []  # one step still to go
    await login.succeeded()
    assert ran == [[("succeeded",)]]  # after the last task passed, before the stream is told
    assert answers.said == [("succeeded",), ("succeeded",)]
    assert login.passed == ["TOTP"]
