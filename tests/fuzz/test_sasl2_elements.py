"""Fuzzing the SASL2, Bind2 and FAST element handlers (xep0388_sasl2, xep0386_bind2, xep0484_fast).

Properties:

- the parsers of ``<authenticate/>``'s children (user agent, Bind2 ``<bind/>``, ``<fast/>``,
  ``<request-token/>``, inline ``<resume/>``, XEP-0480 ``<upgrade/>``) take any children and give
  defined values: a Bind2 tag is a valid resourcepart of at most 64 characters or a reason to refuse,
  the resource made from it is a valid resourcepart, a FAST count is in range;
- on a stream, any ``<authenticate/>`` is answered with a SASL2 ``<challenge/>``, ``<failure/>``
  (with exactly one RFC 6120 condition), ``<continue/>``, ``<task-data/>`` or ``<success/>`` (never
  both a success and a failure), or ends the stream with a stream error; so is every random
  ``<response/>``, ``<next/>``, ``<task-data/>``, ``<abort/>`` or other element sent while
  authentication is in progress. Never an exception, never silence.
"""

from __future__ import annotations

from typing import Any

from hypothesis import event, given
from hypothesis import strategies as st
from lxml import etree

from tests.fuzz.common import fuzz
from tests.fuzz.machine import (
    BINDINGS,
    SASL2,
    FuzzDriver,
    authenticate_children,
    authenticate_elements,
    header,
    logins,
    mechanisms,
    open_frame,
    payloads,
    texts,
)
from xmppauth.proto import xep0198_sm, xep0386_bind2, xep0480_upgrade
from xmppauth.proto.errors import SaslCondition
from xmppauth.proto.events import UserAgent
from xmppauth.proto.jid import JID, prep_resource
from xmppauth.proto.states import State
from xmppauth.proto.xep0388_sasl2 import _user_agent
from xmppauth.proto.xep0484_fast import Fast
from xmppauth.proto.xml import escape_attr

_CONDITIONS = {f"{{urn:ietf:params:xml:ns:xmpp-sasl}}{c.value}" for c in SaslCondition}


@fuzz(3)
@given(
    children=authenticate_children(),
    mechanism=mechanisms,
    enabled=st.booleans(),
    bindings=st.sampled_from([{}, BINDINGS]),
)
def test_authenticate_children_parse_to_defined_values(
    children: str, mechanism: str, enabled: bool, bindings: dict[str, bytes]
) -> None:
    el = etree.fromstring(
        f"<authenticate xmlns='{SASL2}' mechanism='{escape_attr(mechanism)}'>{children}</authenticate>"
    )
    mechanism = el.get("mechanism", "")
    ua = _user_agent(el)
    if ua is not None:
        for value in (ua.id, ua.software, ua.device):
            assert value is None or 0 < len(value) <= 256
    bind = xep0386_bind2.parse(el)
    if bind is not None:
        if bind.tag_problem:
            assert bind.tag is None
        elif bind.tag is not None:
            assert prep_resource(bind.tag) == bind.tag
            assert len(bind.tag) <= 64
        if not bind.tag_problem:
            for agent in (ua, None, UserAgent(id="x")):
                resource = xep0386_bind2.resource_for(bind, agent, "alice")
                assert prep_resource(resource) == resource
                assert JID("alice", "localhost").with_resource(resource).resource == resource
    resume = xep0198_sm.inline_resume(el)
    assert resume is None or resume[0]
    assert set(xep0480_upgrade.requested(el)) <= set(xep0480_upgrade.TASKS)
    fast = Fast(enabled)
    fast.advertisement(bindings)
    problem = fast.parse(el, mechanism, ua)
    if problem is None:
        assert fast.request is None or fast.request in fast.offered
        assert fast.count is None or 0 < fast.count < 10**18
    else:
        assert isinstance(problem, str)
        assert enabled


_FOLLOW_UPS = st.one_of(
    payloads.map(lambda p: f"<response xmlns='{SASL2}'>{p}</response>"),
    st.just(f"<abort xmlns='{SASL2}'/>"),
    texts.map(lambda t: f"<next xmlns='{SASL2}' task='{escape_attr(t)}'/>"),
    st.sampled_from(["TOTP", "X-RECOVERY", "UPGR-SCRAM-SHA-256"]).map(
        lambda t: f"<next xmlns='{SASL2}' task='{t}'/>"
    ),
    st.sampled_from(
        ["", "<code xmlns='urn:x'>1</code>", "<hash xmlns='urn:xmpp:scram-upgrade:0'>AAAA</hash>"]
    ).map(lambda p: f"<task-data xmlns='{SASL2}'>{p}</task-data>"),
    st.builds(lambda el: el, authenticate_elements()),
    st.just("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>=</response>"),
    st.just("<message to='bob@localhost'><body>early</body></message>"),
)


def _answers(frames: list[bytes], framed: bool) -> list[etree._Element]:
    """The top-level elements the server sent (the stream header and footer aside)."""
    if framed:
        return [etree.fromstring(frame) for frame in frames]
    data = b"".join(frames).replace(b"</stream:stream>", b"")
    root = etree.fromstring(b"<r xmlns:stream='http://etherx.jabber.org/streams'>" + data + b"</r>")
    return list(root)


def _defined_answer(driver: FuzzDriver, before: State, new: list[bytes]) -> None:
    """During authentication: a SASL2 answer to every element, or a stream error that closes the stream."""
    if before not in (State.EXPECT_AUTH, State.SASL, State.TASKS, State.TASK):
        return  # authenticated (or closed) already: nothing of SASL2 is expected
    if driver.closed_with is not None:
        event(f"stream error {driver.closed_with.condition}")
        return
    answers = [a for a in _answers(new, driver.stream.framed) if a.tag.startswith(f"{{{SASL2}}}")]
    kinds = [a.tag.split("}")[1] for a in answers]
    assert kinds, (driver.stream.state, new)
    event(f"answer {kinds[0]}")
    assert kinds[0] in ("challenge", "failure", "continue", "success", "task-data"), kinds
    assert kinds.count("success") + kinds.count("failure") <= 1, kinds
    for answer in answers:
        if answer.tag == f"{{{SASL2}}}failure":
            conditions = [child.tag for child in answer if child.tag in _CONDITIONS]
            assert len(conditions) == 1, etree.tostring(answer)


@fuzz(4)
@given(
    framed=st.booleans(),
    fast=st.booleans(),
    bindings=st.sampled_from([{}, BINDINGS]),
    first=st.one_of(authenticate_elements().map(lambda x: [x]), logins()),
    more=st.lists(_FOLLOW_UPS, max_size=5),
    data=st.data(),
)
def test_any_authenticate_gets_a_defined_answer(
    framed: bool,
    fast: bool,
    bindings: dict[str, bytes],
    first: list[str | tuple[str, ...]],
    more: list[str],
    data: st.DataObject,
) -> None:
    def choose(options: list[Any]) -> Any:
        return data.draw(st.sampled_from(options))

    driver = FuzzDriver(framed=framed, secure=True, fast=fast, choose=choose, bindings=bindings)
    driver.send((open_frame() if framed else header()).encode())
    for step in [*first, *more]:
        seen, before = len(driver.output), driver.stream.state
        driver.step(step)
        driver.check()
        _defined_answer(driver, before, driver.output[seen:])
