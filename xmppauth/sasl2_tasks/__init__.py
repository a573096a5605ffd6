"""SASL2 tasks (XEP-0388 §2.7), one module per task family, behind one small interface.

When the mechanism has succeeded and the login is authorized, the core waits for the driver's
list of steps (``C2SStream.continue_with``): each step is a list of alternative task names, of
which the client picks one with ``<next task='…'/>``. The driver asks every task module here
(:func:`offer`) and concatenates what they want, in the modules' ``order``. The core then emits
:class:`~xmppauth.proto.events.TaskStarted` for the client's pick and
:class:`~xmppauth.proto.events.TaskData` for each ``<task-data/>`` that follows; the driver hands
them to the module that declared the name (:func:`run`), which answers through
the :class:`TaskContext` with a challenge, success or failure. A name that no module declares
fails the task with ``malformed-request``.

A task module (``xep0480_upgrade``; second factors come as ``xep0400_totp`` and the like) calls
:func:`register` once, at import. Every module of this package is imported the first time a
login needs the tasks: adding a task family is one new module, with no change to the consumer or
to the stream core.

Order: a step list is offered in ascending ``order``. The XEP-0480 upgrades take 100 and run last:
they store new credentials, which only a login that has passed everything else should do; second
factors belong below that (e.g. 10, leaving room on both sides).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from lxml import etree

from accounts import guessing
from sessions_acl.login import Authorization
from xmppauth import services
from xmppauth.plugins import import_submodules
from xmppauth.proto import events as ev
from xmppauth.proto.errors import SaslCondition

log = logging.getLogger("xmppauth.c2s")


class TaskAnswers(Protocol):
    """How a task answers the client: the stream's driver API (``C2SStream``) for tasks."""

    def task_challenge(self, payload: str) -> None: ...
    def task_succeeded(self) -> None: ...
    def task_failed(self, condition: SaslCondition, text: str) -> None: ...


@dataclass(kw_only=True)
class TaskContext:
    """One login's tasks: who logs in, how to answer, and each task's own state for this login."""

    localpart: str  # the account that authenticated
    user_id: int  # its row
    peer: str  # the client's address, for the log
    stream: TaskAnswers
    is_open: Callable[[], bool]  # False once the stream has ended: answers are dropped then
    state: dict[str, object] = field(default_factory=dict)  # by task module, for this login only
    address: str = ""  # the client's IP address, for the guessing limits of codes
    user_agent_id: str | None = None  # its SASL2 user-agent id (a client known to the account)
    #: Steps offered and not yet passed (set by the driver from what :func:`offer` returned).
    remaining: int = 0
    #: Run once, after the last task has succeeded and before the stream sends <success/> (the driver
    #: records the login's client and grant there, and issues a FAST token: XEP-0484 hands one out only
    #: after every task). It returns None, or the condition and text that fail the login instead.
    before_success: Callable[[], Awaitable[tuple[SaslCondition, str] | None]] | None = None
    #: The second factors this login passed (their task names), for the session record and the log.
    passed: list[str] = field(default_factory=list)

    def challenge(self, payload: str) -> None:
        """``<task-data/>`` with ``payload`` (XML text); the client's answer comes to :func:`data`."""
        if self.is_open():
            self.stream.task_challenge(payload)

    async def succeeded(self, name: str = "") -> None:
        """The task ``name`` is passed: the next step, or (after the last) ``<success/>``."""
        if name:
            self.passed.append(name)
        self.remaining -= 1
        if self.remaining <= 0 and self.before_success is not None:
            hook, self.before_success = self.before_success, None
            refusal = await hook()
            if refusal is not None:
                self.failed(*refusal)
                return
        if self.is_open():
            self.stream.task_succeeded()

    def failed(self, condition: SaslCondition, text: str) -> None:
        if self.is_open():
            self.stream.task_failed(condition, text)


Offer = Callable[[TaskContext, ev.Authenticated, Authorization], Awaitable[list[list[str]]]]
"""``offer(context, authenticated, authorization)``: the steps this module wants the login to do
(each a list of alternative task names of its own), or ``[]``."""
Step = Callable[[TaskContext, str, etree._Element | None], Awaitable[None]]
"""``start(context, name, payload)`` / ``data(context, name, payload)``: run task ``name`` on the
client's ``<next/>`` or ``<task-data/>`` (``payload``: its first child, if any) and answer it
through ``context`` (once)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskFamily:
    names: frozenset[str]
    offer: Offer
    start: Step
    data: Step
    order: int
    group: str | None = None


_families: list[TaskFamily] = []
_by_name: dict[str, TaskFamily] = {}


def register(
    *, names: frozenset[str], offer: Offer, start: Step, data: Step, order: int, group: str | None = None
) -> None:
    """Run the tasks ``names`` with these functions; ``order`` places its steps (module docstring).

    Families of one ``group`` are alternatives to each other: what they offer becomes one step whose
    tasks the client picks from (the second factors: any one of TOTP, a security key, a recovery
    code will do), placed at the group's first family."""
    family = TaskFamily(names=names, offer=offer, start=start, data=data, order=order, group=group)
    taken = names & _by_name.keys()
    if taken:
        raise ValueError(f"two modules for the tasks {', '.join(sorted(taken))}")
    _families.append(family)
    _families.sort(key=lambda f: f.order)
    _by_name.update(dict.fromkeys(names, family))


async def offer(
    context: TaskContext, event: ev.Authenticated, authorization: Authorization
) -> list[list[str]]:
    """Every module's steps for this login, in their order."""
    import_submodules(__name__)
    steps: list[list[str]] = []
    grouped: dict[str, list[str]] = {}  # group -> the one step its families share
    for family in _families:
        offered = await family.offer(context, event, authorization)
        if family.group is None:
            steps.extend(offered)
            continue
        names = [name for step in offered for name in step]
        if not names:
            continue
        if family.group not in grouped:
            grouped[family.group] = []
            steps.append(grouped[family.group])
        grouped[family.group].extend(names)
    return steps


#: What a person is told in the <continue/> of a grouped step (XEP-0388 "Continue" <text/>): a client
#: that cannot do tasks at least shows why its login stops there.
GROUP_TEXTS = {
    "second-factor": "this account needs a second factor: answer one of these tasks, or log in with an app "
    "password if this client cannot",
}


def text_of(step: list[str]) -> str:
    """The <text/> for ``step``: its group's, when every task of it belongs to one group; else ""."""
    groups = {family.group for name in step if (family := _by_name.get(name)) is not None}
    if len(groups) == 1:
        (group,) = groups
        return GROUP_TEXTS.get(group or "", "")
    return ""


class CodeCheck(Protocol):
    """What checking a code says (``accounts.totp.TotpCheck``, ``accounts.recovery.CodeCheck``)."""

    @property
    def ok(self) -> bool: ...
    @property
    def text(self) -> str: ...


def register_code_factor(
    *,
    name: str,
    kind: str,
    element: str,
    check: Callable[..., Awaitable[CodeCheck]],
    order: int,
    max_length: int = 64,
) -> None:
    """A second factor answered with one code (TOTP, a recovery code): task ``name``, offered when the
    login's ``second_factors`` include ``kind``; the code is the text of ``element`` (Clark name), sent
    with ``<next/>`` or after the server's empty ``element``; ``check(user_id, code, throttled=...)``
    decides, its wait after wrong codes sparing a client that logged in to the account before (the owner
    is never locked out by someone guessing codes). A failure fails the authentication with
    not-authorized and the check's text."""
    namespace, _, local = element[1:].partition("}")
    expected = f"expected <{local} xmlns='{namespace}'>CODE</{local}>"

    async def offer(context: TaskContext, event: ev.Authenticated, result: Authorization) -> list[list[str]]:
        return [[name]] if kind in result.second_factors else []

    async def answer(context: TaskContext, payload: etree._Element | None) -> None:
        if payload is None or payload.tag != element or len(payload):
            context.failed(SaslCondition.MALFORMED_REQUEST, expected)
            return
        # a code is a guess like a password: the same limits, per address and per account
        # (accounts/guessing.py); a code that comes too early is refused unchecked
        verdict = await services.claim_guess(context.localpart, context.address, context.user_agent_id)
        if verdict.refused:
            log.info("%s: %s code of %s refused unchecked", context.peer, name, context.localpart)
            context.failed(SaslCondition.TEMPORARY_AUTH_FAILURE, guessing.refusal_text(verdict))
            return
        known = await services.known_client(context.localpart, context.user_agent_id)
        result = await check(context.user_id, (payload.text or "").strip()[:max_length], throttled=not known)
        if result.ok:
            await services.give_back(verdict.claim)
        else:
            log.info("%s: %s failed the %s task: %s", context.peer, context.localpart, name, result.text)
            context.failed(SaslCondition.NOT_AUTHORIZED, result.text)
            return
        await context.succeeded(name)

    async def start(context: TaskContext, task: str, payload: etree._Element | None) -> None:
        if payload is None:
            context.challenge(f"<{local} xmlns='{namespace}'/>")
            return
        await answer(context, payload)

    async def data(context: TaskContext, task: str, payload: etree._Element | None) -> None:
        await answer(context, payload)

    register(names=frozenset({name}), offer=offer, start=start, data=data, order=order, group="second-factor")


async def run(context: TaskContext, event: ev.TaskStarted | ev.TaskData) -> None:
    """The client picked a task (``<next/>``) or answered it (``<task-data/>``): to its module."""
    import_submodules(__name__)
    family = _by_name.get(event.task)
    if family is None:
        context.failed(SaslCondition.MALFORMED_REQUEST, f"no task {event.task}")
    elif isinstance(event, ev.TaskStarted):
        await family.start(context, event.task, event.payload)
    else:
        await family.data(context, event.task, event.payload)
