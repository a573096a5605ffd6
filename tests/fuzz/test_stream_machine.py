"""Fuzzing the whole sans-IO stream machine (xmppauth/proto/stream.py) with random client transcripts.

A transcript is a list of client steps drawn from what a client sends in each state (headers,
STARTTLS, RFC 6120 SASL, SASL2 logins, binds, stanzas, XEP-0198 and XEP-0352 nonzas, the footer)
with random attributes, arbitrary elements and raw junk; steps are sometimes mutated and, on TCP,
cut at random places. The driver (``tests/fuzz/machine.py``) answers every request, its answers
chosen at random too.

Properties: the machine never raises; it answers only with XML that is well-formed (per stream, or
per WebSocket message); a stream error comes with the header first and the footer last and closes
the stream for good; the stream is CLOSED exactly when a StreamClosed was reported.
"""

from __future__ import annotations

from typing import Any

from hypothesis import event, given
from hypothesis import strategies as st

from tests.fuzz.common import chunkings, fuzz, mutated, rarely, stanzas
from tests.fuzz.machine import (
    BINDINGS,
    SASL,
    SASL2,
    FuzzDriver,
    attr_values,
    authenticate_elements,
    header,
    logins,
    mechanisms,
    numbers,
    open_frame,
    payloads,
    texts,
)
from xmppauth.proto.states import State
from xmppauth.proto.xml import escape_attr, escape_text, serialize

Step = str | tuple[str, ...]


def _a(name: str, value: str | None) -> str:
    return "" if value is None else f" {name}='{escape_attr(value)}'"


@st.composite
def headers(draw: st.DrawFn, framed: bool) -> str:
    to = draw(st.sampled_from(["localhost", "localhost"]) | attr_values)
    version = draw(st.sampled_from(["1.0", "1.0", "1.1", "2.0", "", "x"]))
    if framed:
        return open_frame(escape_attr(to), version)
    if draw(st.booleans()):
        return header(escape_attr(to), version)  # with the XML declaration: only right at the start
    extra = _a("from", draw(st.none() | attr_values)) + _a(
        "xml:lang", draw(st.none() | st.sampled_from(["en", ""]))
    )
    return header(escape_attr(to), version, extra).removeprefix("<?xml version='1.0'?>")


@st.composite
def stanza_steps(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["message", "presence", "iq"]))
    attrs = "".join(_a(name, draw(st.none() | attr_values)) for name in ("to", "from", "id")) + _a(
        "type", draw(st.none() | st.sampled_from(["get", "set", "result", "error", "chat", "subscribe", "x"]))
    )
    children = draw(
        st.lists(
            st.sampled_from(
                [
                    "<ping xmlns='urn:xmpp:ping'/>",
                    "<query xmlns='http://jabber.org/protocol/disco#info'/>",
                    "<query xmlns='http://jabber.org/protocol/disco#items' node='x'/>",
                    "<enable xmlns='urn:xmpp:carbons:2'/>",
                    "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'/>",
                    "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind>",
                    "<body>hi &amp; bye</body>",
                    "<query xmlns='jabber:iq:roster'/>",
                ]
            )
            | st.builds(lambda el: serialize(el).decode(), stanzas),
            max_size=2,
        )
    )
    return f"<{kind}{attrs}>{''.join(children)}</{kind}>"


@st.composite
def client_steps(draw: st.DrawFn, framed: bool) -> list[Step]:
    """One thing a client might send next; a login is several steps."""
    kind = draw(
        st.sampled_from(
            ["header", "starttls", "auth", "login", "login", "sasl2-login", "authenticate", "response", "abort",
             "bind", "session", "stanza", "stanza", "stanza", "stanza", "sm", "csi", "element", "close", "junk"]
        )
    )  # fmt: skip
    if kind == "header":
        return [draw(headers(framed))]
    if kind == "starttls":
        return ["<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"]
    if kind == "auth":
        mech = _a("mechanism", draw(st.none() | mechanisms))
        return [f"<auth xmlns='{SASL}'{mech}>{draw(payloads)}</auth>"]
    if kind == "login":
        return draw(logins("sasl"))
    if kind == "sasl2-login":
        return draw(logins("sasl2"))
    if kind == "authenticate":
        return [draw(authenticate_elements())]
    if kind == "response":
        ns = draw(st.sampled_from([SASL, SASL2]))
        if draw(st.booleans()):
            return [("scram-final", "sasl" if ns == SASL else "sasl2")]
        return [f"<response xmlns='{ns}'>{draw(payloads)}</response>"]
    if kind == "abort":
        return [f"<abort xmlns='{draw(st.sampled_from([SASL, SASL2]))}'/>"]
    if kind == "bind":
        resource = draw(st.none() | texts)
        inner = "" if resource is None else f"<resource>{escape_text(resource)}</resource>"
        return [f"<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>{inner}</bind></iq>"]
    if kind == "session":
        return ["<iq type='set' id='s1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>"]
    if kind == "stanza":
        return [draw(stanza_steps())]
    if kind == "sm":
        name = draw(st.sampled_from(["r", "a", "enable", "resume"]))
        attrs = _a("h", draw(st.none() | numbers)) + _a(
            "previd", draw(st.none() | st.sampled_from(["x", ""]))
        )
        attrs += _a("resume", draw(st.none() | st.sampled_from(["true", "false"])))
        return [f"<{name} xmlns='urn:xmpp:sm:3'{attrs}/>"]
    if kind == "csi":
        return [f"<{draw(st.sampled_from(['active', 'inactive']))} xmlns='urn:xmpp:csi:0'/>"]
    if kind == "element":
        return [serialize(draw(stanzas)).decode()]
    if kind == "close":
        return ["<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>" if framed else "</stream:stream>"]
    return [draw(st.binary(max_size=20)).decode("utf-8", "replace")]


@st.composite
def transcripts(draw: st.DrawFn, framed: bool, secure: bool = True) -> list[Step]:
    """A plausible start (header, STARTTLS, a login, a header again, a bind), then anything."""

    def good_header() -> str:  # mostly one that opens the stream: the states after it need fuzzing too
        return draw(headers(framed)) if draw(rarely(8)) else (open_frame() if framed else header())

    steps: list[Step] = [good_header()]
    if not secure and not draw(rarely(4)):
        steps += ["<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>", good_header()]
    if not draw(rarely(4)):
        profile = draw(st.sampled_from(["sasl", "sasl2"]))
        steps += draw(logins(profile))
        if profile == "sasl":
            steps.append(("restart",))
        if not draw(rarely(4)):
            steps.append("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
    for more in draw(st.lists(client_steps(framed), max_size=8)):
        steps += more
    return steps


def _run(framed: bool, secure: bool, fast: bool, steps: list[Step], data: st.DataObject) -> FuzzDriver:
    def choose(options: list[Any]) -> Any:
        return data.draw(st.sampled_from(options))

    bindings = data.draw(st.sampled_from([BINDINGS, None]))
    driver = FuzzDriver(framed=framed, secure=secure, fast=fast, choose=choose, bindings=bindings)
    seen = set()
    for step in steps:
        if isinstance(step, str) and data.draw(rarely(12)):
            step = data.draw(mutated(step.encode())).decode("utf-8", "surrogateescape")
        if isinstance(step, str) and not framed and data.draw(st.booleans()):
            for piece in data.draw(chunkings(step.encode("utf-8", "surrogateescape"))):
                driver.send(piece)
        elif isinstance(step, str):
            driver.send(step.encode("utf-8", "surrogateescape"))
        elif step == ("restart",):  # the header again, if the login got as far as the restart
            if driver.stream.state is State.EXPECT_HEADER:
                driver.send((open_frame() if framed else header()).encode())
        else:
            driver.step(step)
        driver.check()
        seen.add(driver.stream.state)
        if driver.stream.state is State.BOUND:
            driver.deliver()
            driver.check()
    if data.draw(st.booleans()):
        driver.eof()
        driver.check()
    for state in seen:
        event(f"visited {state.name}")
    closed = driver.closed_with
    assert (driver.stream.state is State.CLOSED) == (closed is not None)
    event(
        f"ended in {driver.stream.state.name}"
        + (f" ({closed.condition}: {closed.text[:40]})" if closed else "")
    )
    return driver


@fuzz(4)
@given(secure=st.booleans(), fast=st.booleans(), data=st.data())
def test_random_tcp_transcripts(secure: bool, fast: bool, data: st.DataObject) -> None:
    _run(False, secure, fast, data.draw(transcripts(framed=False, secure=secure)), data)


@fuzz(3)
@given(fast=st.booleans(), data=st.data())
def test_random_websocket_transcripts(fast: bool, data: st.DataObject) -> None:
    _run(True, True, fast, data.draw(transcripts(framed=True)), data)
