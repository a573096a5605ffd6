"""XEP-0388 Extensible SASL Profile (SASL2), with its task machinery.

Implements §2.1 (``<authentication/>`` beside RFC 6120's mechanisms, with ``<inline/>`` features:
XEP-0198 resumption, XEP-0386 Bind2, XEP-0484 FAST; and XEP-0480's ``<upgrade/>``), §2.6
(``<authenticate/>`` with ``<user-agent/>``, the exchange, ``<failure/>``), §2.6.4 and §2.7 (tasks:
``<continue/>``, ``<next/>``, ``<task-data/>``) and §2.6.4 ``<success/>`` with the inline results.
States touched: EXPECT_AUTH → SASL (the mechanism, run by :mod:`.rfc6120_sasl`) → TASKS ⇄ TASK →
BOUND (inline resume or Bind2) or EXPECT_BIND.

Tasks are named by the driver: it answers :class:`~.events.Authenticated` with the steps still to
do (:meth:`Sasl2.continue_with`), each a list of alternatives, and runs the task the client picks
through :class:`~.events.TaskStarted` / :class:`~.events.TaskData` and ``task_challenge()``,
``task_succeeded()``, ``task_failed()``. A new task (a second factor, say) needs nothing here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from lxml import etree

from . import ns, xep0198_sm, xep0386_bind2, xep0480_upgrade
from .errors import SaslCondition, StreamError, StreamErrorCondition
from .events import Authenticated, BindRequested, Event, ResumeRequested, TaskData, TaskStarted, UserAgent
from .rfc6120_sasl import b64, mechanism_list
from .states import State, Waiting
from .xml import escape_text

if TYPE_CHECKING:
    from .stream import C2SStream

__all__ = ["Sasl2"]

_Q_NEXT = ns.qname(ns.SASL2, "next")
_Q_TASK_DATA = ns.qname(ns.SASL2, "task-data")
_Q_ABORT = ns.qname(ns.SASL2, "abort")
_Q_USER_AGENT = ns.qname(ns.SASL2, "user-agent")
_Q_INITIAL_RESPONSE = ns.qname(ns.SASL2, "initial-response")
_MAX_USER_AGENT_TEXT = 256


class Sasl2:
    """What ``<authenticate/>`` carried, the tasks still to do, and the ``<success/>`` to come."""

    __slots__ = (
        "alternatives",
        "bind2",
        "failed_inline",
        "resume",
        "resume_inline",
        "steps",
        "stream",
        "success_pending",
        "task",
        "upgrades",
        "user_agent",
    )

    def __init__(self, stream: C2SStream) -> None:
        self.stream = stream
        self.user_agent: UserAgent | None = None
        self.bind2: xep0386_bind2.Bind2Request | None = None
        self.resume: tuple[str, str | None] | None = None  # XEP-0198 <resume/> inside <authenticate/>
        self.resume_inline = False  # the ResumeRequested came from <authenticate/>
        self.failed_inline = ""  # XEP-0198 <failed/> for <success/> after a failed inline resume
        self.upgrades: tuple[str, ...] = ()
        self.steps: list[tuple[tuple[str, ...], str]] = []  # (alternatives, the <text/> of their <continue/>)
        self.alternatives: tuple[str, ...] = ()
        self.task = ""
        self.success_pending = False  # issue_token() may be called until <success/>

    # ------------------------------------------------------------------ offering
    def advertisement(self) -> str:
        """§2.1: ``<authentication/>`` with the mechanisms RFC 6120 SASL offers too."""
        stream = self.stream
        return (
            f"<authentication xmlns='{ns.SASL2}'>{mechanism_list(stream.sasl.offered)}"
            f"<inline>{xep0198_sm.FEATURE}{xep0386_bind2.ADVERTISEMENT}"
            f"{stream.fast.advertisement(stream.channel_bindings)}</inline>"
            f"{xep0480_upgrade.advertisement()}</authentication>"
        )

    def forget(self) -> None:
        """An RFC 6120 ``<auth/>``: nothing of SASL2 applies."""
        self.user_agent = None
        self.bind2 = None
        self.resume = None
        self.upgrades = ()

    # ------------------------------------------------------------------ elements
    def on_element(self, el: etree._Element, local: str) -> Event | None:
        """``<authenticate/>``, ``<response/>``, ``<abort/>`` in EXPECT_AUTH or SASL."""
        stream = self.stream
        sasl = stream.sasl
        in_exchange = stream.state is State.SASL
        if in_exchange and sasl.profile != "sasl2":
            raise StreamError(
                StreamErrorCondition.POLICY_VIOLATION, "an RFC 6120 SASL exchange is in progress"
            )
        if local == "authenticate" and stream.state is State.EXPECT_AUTH:
            return self.on_authenticate(el)
        if local == "response" and in_exchange:
            return sasl.on_response(el)
        if local == "abort" and in_exchange:
            return sasl.fail(SaslCondition.ABORTED, "aborted by the client")
        raise StreamError(StreamErrorCondition.POLICY_VIOLATION, f"unexpected <{local}/> in SASL2")

    def on_authenticate(self, el: etree._Element) -> Event | None:
        stream = self.stream
        sasl = stream.sasl
        sasl.profile = "sasl2"
        self.user_agent = _user_agent(el)
        self.bind2 = xep0386_bind2.parse(el)
        self.resume = xep0198_sm.inline_resume(el)
        self.upgrades = xep0480_upgrade.requested(el)
        name = el.get("mechanism", "")
        stream.mechanism_name = name
        if name not in sasl.usable():
            return sasl.fail(SaslCondition.INVALID_MECHANISM, f"{name or 'no mechanism'} is not offered")
        problem = stream.fast.parse(el, name, self.user_agent)
        if problem:
            return sasl.fail(SaslCondition.MALFORMED_REQUEST, problem)
        if self.bind2 is not None and self.bind2.tag_problem:
            # XEP-0386 defines no bind error; XEP-0388 fails with an RFC 6120 §6.5 condition
            return sasl.fail(SaslCondition.MALFORMED_REQUEST, self.bind2.tag_problem)
        initial_el = el.find(_Q_INITIAL_RESPONSE)
        if initial_el is None:
            return sasl.start(name, None)
        text = (initial_el.text or "").strip()
        return sasl.start(name, "=" if text in ("", "=") else text)

    def authenticated(self, localpart: str, credential_id: str) -> Event:
        """§2.6.4: the mechanism succeeded; the driver now says which tasks follow."""
        stream = self.stream
        assert stream.mechanism_name is not None
        stream.move(State.TASKS)
        stream.wait(Waiting.TASKS)
        self.success_pending = True
        fast = stream.fast
        return Authenticated(
            localpart=localpart,
            mechanism=stream.mechanism_name,
            profile="sasl2",
            user_agent=self.user_agent,
            upgrades=self.upgrades,
            credential_id=credential_id,
            fast_request=fast.request,
            fast_invalidate=fast.invalidate,
            fast_count=fast.count,
        )

    def failed(self) -> None:
        """The authentication failed (a task too): nothing of it carries on."""
        self.steps = []
        self.success_pending = False

    # ------------------------------------------------------------------ tasks (§2.7)
    def continue_with(self, steps: Sequence[Sequence[str]], texts: Sequence[str] = ()) -> None:
        texts = list(texts) + [""] * (len(steps) - len(texts))
        self.steps = [(tuple(step), text) for step, text in zip(steps, texts, strict=False) if step]
        self.stream.push_event(self.next_step())

    def task_challenge(self, payload: str) -> None:
        self.stream.emit(f"<task-data xmlns='{ns.SASL2}'>{payload}</task-data>".encode())

    def next_step(self) -> Event | None:
        if not self.steps:
            return self.finish()
        stream = self.stream
        alternatives, text = self.steps.pop(0)
        self.alternatives = alternatives
        extra, stream.sasl.additional_data = stream.sasl.additional_data, None
        data = f"<additional-data>{b64(extra)}</additional-data>" if extra else ""
        tasks = "".join(f"<task>{escape_text(name)}</task>" for name in alternatives)
        # XEP-0388 "Continue": an optional human-readable <text/> explaining the step
        said = f"<text xml:lang='en'>{escape_text(text)}</text>" if text else ""
        stream.emit(f"<continue xmlns='{ns.SASL2}'>{data}<tasks>{tasks}</tasks>{said}</continue>".encode())
        stream.move(State.TASKS)
        return None

    def on_task_element(self, el: etree._Element) -> Event | None:
        """An element in TASKS or TASK."""
        stream = self.stream
        tag = el.tag
        if tag == _Q_ABORT:
            return stream.sasl.fail(SaslCondition.ABORTED, "aborted by the client")
        payload = next((child for child in el if isinstance(child.tag, str)), None)
        if stream.state is State.TASKS and tag == _Q_NEXT:
            name = el.get("task", "")
            if name not in self.alternatives:
                return stream.sasl.fail(
                    SaslCondition.MALFORMED_REQUEST,
                    f"{name} was not offered" if name else "<next/> names no task",
                )
            self.task = name
            stream.move(State.TASK)
            stream.wait(Waiting.TASK)
            return TaskStarted(task=name, payload=payload)
        if stream.state is State.TASK and tag == _Q_TASK_DATA:
            stream.wait(Waiting.TASK)
            return TaskData(task=self.task, payload=payload)
        # §2.6: nothing else may be sent while authentication is in progress
        raise StreamError(StreamErrorCondition.POLICY_VIOLATION, f"unexpected {tag} during SASL2 tasks")

    # ------------------------------------------------------------------ the end of the exchange
    def finish(self) -> Event | None:
        """All tasks done: inline resume first, then Bind2, then ``<success/>`` (XEP-0198 §9, XEP-0386)."""
        if self.resume is not None:
            previd, h = self.resume
            self.resume_inline = True
            self.stream.wait(Waiting.RESUME)
            return ResumeRequested(previd=previd, h=h, inline=True)
        return self.bind_or_succeed()

    def bind_or_succeed(self) -> BindRequested | None:
        """Bind2 when the client asked for it, else ``<success/>`` and RFC 6120 binding."""
        stream = self.stream
        if self.bind2 is not None:
            return stream.binding.request_inline(self.bind2)
        self.success(f"{stream.authenticated_localpart}@{stream.domain}", "")
        stream.binding.offer()
        return None

    def success(self, authorization_identifier: str, inline_results: str) -> None:
        """§2.6.4 ``<success/>``: the identity, then the inline results and the FAST token."""
        stream = self.stream
        inline_results = self.failed_inline + inline_results + stream.fast.take_token_element()
        self.failed_inline = ""
        self.success_pending = False
        extra, stream.sasl.additional_data = stream.sasl.additional_data, None
        data = f"<additional-data>{b64(extra)}</additional-data>" if extra else ""
        stream.emit(
            f"<success xmlns='{ns.SASL2}'>{data}<authorization-identifier>"
            f"{escape_text(authorization_identifier)}</authorization-identifier>{inline_results}</success>".encode()
        )


def _child_text(el: etree._Element, local: str) -> str | None:
    child = el.find(ns.qname(ns.SASL2, local))
    if child is None or not child.text:
        return None
    return child.text.strip()[:_MAX_USER_AGENT_TEXT] or None


def _user_agent(authenticate: etree._Element) -> UserAgent | None:
    """§2.6: ``<user-agent id>`` with ``<software/>`` and ``<device/>``, all optional."""
    ua = authenticate.find(_Q_USER_AGENT)
    if ua is None:
        return None
    ua_id = (ua.get("id") or "").strip()[:_MAX_USER_AGENT_TEXT] or None
    return UserAgent(id=ua_id, software=_child_text(ua, "software"), device=_child_text(ua, "device"))
