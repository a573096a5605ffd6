"""The stream's state table (xmppauth/proto/states.py): every move a stream makes is one it lists."""

from __future__ import annotations

import pytest

from tests.proto.transcript import Transcript
from xmppauth.proto import events as ev
from xmppauth.proto.errors import LocalProtocolError
from xmppauth.proto.states import ACCEPTS, MOVES, State, Waiting, check_move

SASL2 = "urn:xmpp:sasl:2"


def test_every_state_says_what_it_accepts_and_where_it_may_go() -> None:
    assert set(ACCEPTS) == set(State)
    assert set(MOVES) == set(State)
    # nothing comes back from CLOSED, and a bound stream only ever closes
    assert MOVES[State.CLOSED] == frozenset()
    assert MOVES[State.BOUND] == frozenset()


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (State.BOUND, State.EXPECT_AUTH),  # no second authentication on a bound stream
        (State.EXPECT_HEADER, State.BOUND),  # no binding without authenticating
        (State.EXPECT_STARTTLS, State.EXPECT_AUTH),  # no mechanisms before TLS
        (State.CLOSED, State.EXPECT_HEADER),  # a closed stream stays closed
        (State.EXPECT_AUTH, State.TASKS),  # tasks only after a mechanism ran
    ],
)
def test_a_move_the_table_does_not_list_is_our_bug(current: State, target: State) -> None:
    with pytest.raises(LocalProtocolError, match=f"from {current.name} to {target.name}"):
        check_move(current, target)


@pytest.mark.parametrize("state", list(State))
def test_closing_and_staying_put_are_always_allowed(state: State) -> None:
    check_move(state, State.CLOSED)
    check_move(state, state)


def test_a_sasl2_login_with_bind2_makes_exactly_the_listed_moves() -> None:
    t = Transcript.tcp(secure=True, fast=True)
    t.open_secure()
    moves: list[State] = []
    move = t.stream.move

    def recording(state: State) -> None:
        moves.append(state)
        move(state)

    t.stream.move = recording  # type: ignore[method-assign]
    t.client(
        f"<authenticate xmlns='{SASL2}' mechanism='PLAIN'><initial-response>AGFsaWNlAHdvbmRlcmxhbmQ="
        f"</initial-response><bind xmlns='urn:xmpp:bind:0'/></authenticate>"
    )
    assert any(isinstance(e, ev.BindRequested) for e in t.events)
    assert moves == [State.SASL, State.TASKS, State.BOUND]
    assert t.stream.state is State.BOUND
    assert t.stream.waiting is None


def test_an_answer_the_stream_is_not_waiting_for_names_both_waits() -> None:
    t = Transcript.tcp(secure=True)
    t.auto_tasks = False
    t.open_secure()
    with pytest.raises(LocalProtocolError, match="not waiting for bind \\(waiting: None\\)"):
        t.stream.bind_resource("phone")
    assert Waiting("bind") is Waiting.BIND
