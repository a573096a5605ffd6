"""RFC 6121 §3 subscription decisions: every row of Appendix A.2 and A.3, the classic flows, §2.5.2."""

from __future__ import annotations

import contextlib
import itertools
from collections import deque
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xmppauth.proto.rfc6121_subscriptions import (
    KINDS,
    Inbound,
    Outbound,
    State,
    Subscription,
    ask,
    inbound,
    outbound,
    probe_answered,
    receives_presence_from,
    roster_removed,
    sends_presence_to,
    visible,
)

# The nine states of A.1, named as the RFC names them ...
NONE = State()
NONE_PO = State(pending_out=True)
NONE_PI = State(pending_in=True)
NONE_POPI = State(pending_out=True, pending_in=True)
TO = State(subscription="to")
TO_PI = State(subscription="to", pending_in=True)
FROM = State(subscription="from")
FROM_PO = State(subscription="from", pending_out=True)
BOTH = State(subscription="both")
# ... and the three of them that can carry a pre-approval (§3.4).
NONE_A = State(approved=True)
NONE_PO_A = State(pending_out=True, approved=True)
TO_A = State(subscription="to", approved=True)

DEFINED = (NONE, NONE_PO, NONE_PI, NONE_POPI, TO, TO_PI, FROM, FROM_PO, BOTH)
ALL_STATES = (*DEFINED, NONE_A, NONE_PO_A, TO_A)
SUBSCRIPTIONS: tuple[Subscription, ...] = ("none", "to", "from", "both")

Row = tuple[State, State, bool, bool]  # start, new state, forward (or deliver), push
InRow = tuple[State, State, bool, bool, str | None]  # ... and the auto-reply


def _starts(rows: list[Row] | list[InRow]) -> list[State]:
    return [row[0] for row in rows]


# A.2.1: an outbound subscribe is routed from every state.
OUT_SUBSCRIBE: list[Row] = [
    (NONE, NONE_PO, True, True),
    (NONE_PO, NONE_PO, True, False),
    (NONE_PI, NONE_POPI, True, True),
    (NONE_POPI, NONE_POPI, True, False),
    (TO, TO, True, False),
    (TO_PI, TO_PI, True, False),
    (FROM, FROM_PO, True, True),
    (FROM_PO, FROM_PO, True, False),
    (BOTH, BOTH, True, False),
    # §3.4: a pre-approval is the account's own; asking for the contact's presence keeps it.
    (NONE_A, NONE_PO_A, True, True),
    (NONE_PO_A, NONE_PO_A, True, False),
    (TO_A, TO_A, True, False),
]

# A.2.2: an outbound unsubscribe is routed from every state.
OUT_UNSUBSCRIBE: list[Row] = [
    (NONE, NONE, True, False),
    (NONE_PO, NONE, True, True),
    (NONE_PI, NONE_PI, True, False),
    (NONE_POPI, NONE_PI, True, True),
    (TO, NONE, True, True),
    (TO_PI, NONE_PI, True, True),
    (FROM, FROM, True, False),
    (FROM_PO, FROM, True, True),
    (BOTH, FROM, True, True),
    (NONE_A, NONE_A, True, False),
    (NONE_PO_A, NONE_A, True, True),
    (TO_A, NONE_A, True, True),
]

# A.2.3: "pre-approval" rows are not routed and set approved (pushed: approved='true' appears).
OUT_SUBSCRIBED: list[Row] = [
    (NONE, NONE_A, False, True),
    (NONE_PO, NONE_PO_A, False, True),
    (NONE_PI, FROM, True, True),
    (NONE_POPI, FROM_PO, True, True),
    (TO, TO_A, False, True),
    (TO_PI, BOTH, True, True),
    (FROM, FROM, False, False),
    (FROM_PO, FROM_PO, False, False),
    (BOTH, BOTH, False, False),
    # pre-approving twice changes nothing
    (NONE_A, NONE_A, False, False),
    (NONE_PO_A, NONE_PO_A, False, False),
    (TO_A, TO_A, False, False),
]

# A.2.4: the unrouted rows can cancel a pre-approval (note [1]).
OUT_UNSUBSCRIBED: list[Row] = [
    (NONE, NONE, False, False),
    (NONE_PO, NONE_PO, False, False),
    (NONE_PI, NONE, True, False),  # a denial: the pending request was never in the roster
    (NONE_POPI, NONE_PO, True, False),
    (TO, TO, False, False),
    (TO_PI, TO, True, False),
    (FROM, NONE, True, True),
    (FROM_PO, NONE_PO, True, True),
    (BOTH, TO, True, True),
    (NONE_A, NONE, False, True),
    (NONE_PO_A, NONE_PO, False, True),
    (TO_A, TO, False, True),
]

# A.3.1: the starred rows are answered "subscribed" by the server (§3.1.3); a pre-approval
# grants the subscription without asking the account (§3.4).
IN_SUBSCRIBE: list[InRow] = [
    (NONE, NONE_PI, True, False, None),
    (NONE_PO, NONE_POPI, True, False, None),
    (NONE_PI, NONE_PI, False, False, None),
    (NONE_POPI, NONE_POPI, False, False, None),
    (TO, TO_PI, True, False, None),
    (TO_PI, TO_PI, False, False, None),
    (FROM, FROM, False, False, "subscribed"),
    (FROM_PO, FROM_PO, False, False, "subscribed"),
    (BOTH, BOTH, False, False, "subscribed"),
    (NONE_A, FROM, False, True, "subscribed"),
    (NONE_PO_A, FROM_PO, False, True, "subscribed"),
    (TO_A, BOTH, False, True, "subscribed"),
]

# A.3.2
IN_UNSUBSCRIBE: list[InRow] = [
    (NONE, NONE, False, False, None),
    (NONE_PO, NONE_PO, False, False, None),
    (NONE_PI, NONE, True, False, None),  # the request is withdrawn
    (NONE_POPI, NONE_PO, True, False, None),
    (TO, TO, False, False, None),
    (TO_PI, TO, True, False, None),
    (FROM, NONE, True, True, None),
    (FROM_PO, NONE_PO, True, True, None),
    (BOTH, TO, True, True, None),
    (NONE_A, NONE_A, False, False, None),
    (NONE_PO_A, NONE_PO_A, False, False, None),
    (TO_A, TO_A, False, False, None),
]

# A.3.3
IN_SUBSCRIBED: list[InRow] = [
    (NONE, NONE, False, False, None),
    (NONE_PO, TO, True, True, None),
    (NONE_PI, NONE_PI, False, False, None),
    (NONE_POPI, TO_PI, True, True, None),
    (TO, TO, False, False, None),
    (TO_PI, TO_PI, False, False, None),
    (FROM, FROM, False, False, None),
    (FROM_PO, BOTH, True, True, None),
    (BOTH, BOTH, False, False, None),
    (NONE_A, NONE_A, False, False, None),
    (NONE_PO_A, TO_A, True, True, None),
    (TO_A, TO_A, False, False, None),
]

# A.3.4
IN_UNSUBSCRIBED: list[InRow] = [
    (NONE, NONE, False, False, None),
    (NONE_PO, NONE, True, True, None),
    (NONE_PI, NONE_PI, False, False, None),
    (NONE_POPI, NONE_PI, True, True, None),
    (TO, NONE, True, True, None),
    (TO_PI, NONE_PI, True, True, None),
    (FROM, FROM, False, False, None),
    (FROM_PO, FROM, True, True, None),
    (BOTH, FROM, True, True, None),
    (NONE_A, NONE_A, False, False, None),
    (NONE_PO_A, NONE_A, True, True, None),
    (TO_A, NONE_A, True, True, None),
]


# --- the state space -------------------------------------------------------------------------


def test_exactly_the_states_of_a1_and_their_pre_approved_forms_can_be_built() -> None:
    built = set()
    for sub, out, in_, approved in itertools.product(SUBSCRIPTIONS, *[(False, True)] * 3):
        with contextlib.suppress(ValueError):
            built.add(State(subscription=sub, pending_out=out, pending_in=in_, approved=approved))
    assert built == set(ALL_STATES)
    assert len(built) == 12


@pytest.mark.parametrize(
    "fields",
    [
        {"subscription": "remove"},
        {"subscription": "to", "pending_out": True},
        {"subscription": "both", "pending_out": True},
        {"subscription": "from", "pending_in": True},
        {"subscription": "both", "pending_in": True},
        {"subscription": "from", "approved": True},
        {"pending_in": True, "approved": True},
    ],
)
def test_impossible_states_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        State(**fields)  # type: ignore[arg-type]


def test_no_state_is_the_same_as_no_roster_item() -> None:
    assert State() == NONE
    assert visible(State()) == ("none", None, False)


@pytest.mark.parametrize(
    "table",
    [OUT_SUBSCRIBE, OUT_UNSUBSCRIBE, OUT_SUBSCRIBED, OUT_UNSUBSCRIBED],
    ids=["A.2.1", "A.2.2", "A.2.3", "A.2.4"],
)
def test_each_outbound_table_covers_every_state_once(table: list[Row]) -> None:
    assert _starts(table) == list(ALL_STATES)


@pytest.mark.parametrize(
    "table",
    [IN_SUBSCRIBE, IN_UNSUBSCRIBE, IN_SUBSCRIBED, IN_UNSUBSCRIBED],
    ids=["A.3.1", "A.3.2", "A.3.3", "A.3.4"],
)
def test_each_inbound_table_covers_every_state_once(table: list[InRow]) -> None:
    assert _starts(table) == list(ALL_STATES)


# --- Appendix A, row by row --------------------------------------------------------------------


@pytest.mark.parametrize(("start", "new", "forward", "push"), OUT_SUBSCRIBE)
def test_a21_outbound_subscribe(start: State, new: State, forward: bool, push: bool) -> None:
    assert outbound(start, "subscribe") == Outbound(state=new, forward=forward, push=push)


@pytest.mark.parametrize(("start", "new", "forward", "push"), OUT_UNSUBSCRIBE)
def test_a22_outbound_unsubscribe(start: State, new: State, forward: bool, push: bool) -> None:
    assert outbound(start, "unsubscribe") == Outbound(state=new, forward=forward, push=push)


@pytest.mark.parametrize(("start", "new", "forward", "push"), OUT_SUBSCRIBED)
def test_a23_outbound_subscribed(start: State, new: State, forward: bool, push: bool) -> None:
    assert outbound(start, "subscribed") == Outbound(state=new, forward=forward, push=push)


@pytest.mark.parametrize(("start", "new", "forward", "push"), OUT_UNSUBSCRIBED)
def test_a24_outbound_unsubscribed(start: State, new: State, forward: bool, push: bool) -> None:
    assert outbound(start, "unsubscribed") == Outbound(state=new, forward=forward, push=push)


@pytest.mark.parametrize(("start", "new", "deliver", "push", "reply"), IN_SUBSCRIBE)
def test_a31_inbound_subscribe(
    start: State, new: State, deliver: bool, push: bool, reply: str | None
) -> None:
    assert inbound(start, "subscribe") == Inbound(state=new, deliver=deliver, push=push, auto_reply=reply)


@pytest.mark.parametrize(("start", "new", "deliver", "push", "reply"), IN_UNSUBSCRIBE)
def test_a32_inbound_unsubscribe(
    start: State, new: State, deliver: bool, push: bool, reply: str | None
) -> None:
    assert inbound(start, "unsubscribe") == Inbound(state=new, deliver=deliver, push=push, auto_reply=reply)


@pytest.mark.parametrize(("start", "new", "deliver", "push", "reply"), IN_SUBSCRIBED)
def test_a33_inbound_subscribed(
    start: State, new: State, deliver: bool, push: bool, reply: str | None
) -> None:
    assert inbound(start, "subscribed") == Inbound(state=new, deliver=deliver, push=push, auto_reply=reply)


@pytest.mark.parametrize(("start", "new", "deliver", "push", "reply"), IN_UNSUBSCRIBED)
def test_a34_inbound_unsubscribed(
    start: State, new: State, deliver: bool, push: bool, reply: str | None
) -> None:
    assert inbound(start, "unsubscribed") == Inbound(state=new, deliver=deliver, push=push, auto_reply=reply)


@pytest.mark.parametrize(("state", "kind"), list(itertools.product(ALL_STATES, sorted(KINDS))))
def test_a_push_goes_out_exactly_when_the_roster_item_shows_something_else(state: State, kind: str) -> None:
    out, inc = outbound(state, kind), inbound(state, kind)
    assert out.push == (visible(out.state) != visible(state))
    assert inc.push == (visible(inc.state) != visible(state))


# --- the flows between two local accounts -------------------------------------------------------


@dataclass(frozen=True)
class Exchange:
    """One subscription stanza from ``sender`` to ``receiver``, both local, as the router runs it."""

    sender: State
    receiver: State
    out: Outbound
    delivered: Inbound | None  # the receiver's side of it; None when the stanza was not routed
    answered: Inbound | None  # the sender's side of the auto-reply, if there was one


def send(sender: State, receiver: State, kind: str) -> Exchange:
    out = outbound(sender, kind)
    sender = out.state
    delivered = answered = None
    if out.forward:
        delivered = inbound(receiver, kind)
        receiver = delivered.state
        if delivered.auto_reply is not None:
            # The server answers for the receiver, straight into the sender's inbound handling.
            answered = inbound(sender, delivered.auto_reply)
            assert answered.auto_reply is None
            sender = answered.state
    return Exchange(sender, receiver, out, delivered, answered)


def remove(remover: State, other: State) -> tuple[State, tuple[Inbound, ...]]:
    """The remover deletes the roster item (§2.5.2); returns the other side's new state."""
    handled = []
    for kind in roster_removed(remover):
        handled.append(inbound(other, kind))
        other = handled[-1].state
        assert handled[-1].auto_reply is None
    return other, tuple(handled)


def test_a_subscribes_to_b_and_b_approves() -> None:
    ask_ = send(NONE, NONE, "subscribe")
    assert (ask_.sender, ask_.receiver) == (NONE_PO, NONE_PI)
    assert ask_.out.push  # ask='subscribe' shows in A's roster
    assert ask_.delivered is not None
    assert ask_.delivered.deliver  # B's clients see the request ...
    assert not ask_.delivered.push  # ... which is not a roster item (§3.1.3)
    yes = send(ask_.receiver, ask_.sender, "subscribed")
    b, a = yes.sender, yes.receiver
    assert (a, b) == (TO, FROM)
    assert yes.out.forward
    assert yes.out.push
    assert yes.delivered == Inbound(state=TO, deliver=True, push=True)


def test_mutual_subscription_ends_in_both_on_both_sides() -> None:
    a, b = NONE, NONE
    ex = send(a, b, "subscribe")
    a, b = ex.sender, ex.receiver
    ex = send(b, a, "subscribe")  # B asks back before answering: "None + Pending Out/In" on both
    b, a = ex.sender, ex.receiver
    assert a == b == NONE_POPI
    ex = send(b, a, "subscribed")
    b, a = ex.sender, ex.receiver
    assert (a, b) == (TO_PI, FROM_PO)
    ex = send(a, b, "subscribed")
    a, b = ex.sender, ex.receiver
    assert a == b == BOTH


def test_unsubscribe_and_unsubscribed_undo_a_mutual_subscription() -> None:
    ex = send(BOTH, BOTH, "unsubscribed")  # A cancels B's subscription to A
    a, b = ex.sender, ex.receiver
    assert (a, b) == (TO, FROM)
    assert ex.delivered is not None
    assert ex.delivered.deliver
    assert ex.delivered.push
    ex = send(a, b, "unsubscribe")  # A stops receiving B's presence
    a, b = ex.sender, ex.receiver
    assert a == b == NONE


def test_a_pre_approval_answers_the_request_without_asking_b() -> None:
    pre = send(NONE, NONE, "subscribed")  # B approves before A asked (§3.4)
    b, a = pre.sender, pre.receiver
    assert (a, b) == (NONE, NONE_A)
    assert not pre.out.forward
    assert pre.out.push  # approved='true' shows in B's roster
    ex = send(a, b, "subscribe")
    a, b = ex.sender, ex.receiver
    assert (a, b) == (TO, FROM)
    assert ex.delivered == Inbound(state=FROM, deliver=False, push=True, auto_reply="subscribed")
    assert ex.answered == Inbound(state=TO, deliver=True, push=True)


def test_a_cancelled_pre_approval_lets_the_request_through_again() -> None:
    ex = send(NONE_A, NONE, "unsubscribed")
    b = ex.sender
    assert b == NONE
    assert not ex.out.forward
    assert ex.out.push
    ex = send(NONE, b, "subscribe")
    assert ex.delivered is not None
    assert ex.delivered.deliver
    assert (ex.sender, ex.receiver) == (NONE_PO, NONE_PI)


def test_a_denied_request_clears_both_sides() -> None:
    ex = send(NONE, NONE, "subscribe")
    a, b = ex.sender, ex.receiver
    deny = send(b, a, "unsubscribed")
    b, a = deny.sender, deny.receiver
    assert a == b == NONE
    assert deny.out.forward
    assert deny.delivered == Inbound(state=NONE, deliver=True, push=True)  # A's ask goes away


def test_a_request_withdrawn_before_the_answer_clears_both_sides() -> None:
    ex = send(NONE, NONE, "subscribe")
    ex = send(ex.sender, ex.receiver, "unsubscribe")
    assert ex.sender == ex.receiver == NONE
    assert ex.delivered == Inbound(state=NONE, deliver=True, push=False)


def test_asking_again_when_subscribed_is_answered_by_the_server() -> None:
    ex = send(TO, FROM, "subscribe")
    assert (ex.sender, ex.receiver) == (TO, FROM)
    assert ex.delivered == Inbound(state=FROM, deliver=False, push=False, auto_reply="subscribed")
    assert ex.answered == Inbound(state=TO, deliver=False, push=False)


def test_a_repeated_request_is_routed_but_not_delivered_twice() -> None:
    ex = send(NONE_PO, NONE_PI, "subscribe")
    assert ex.out == Outbound(state=NONE_PO, forward=True, push=False)
    assert ex.delivered == Inbound(state=NONE_PI, deliver=False, push=False)


# --- §2.5.2 roster removal -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "kinds"),
    [
        (NONE, ()),
        (NONE_PO, ("unsubscribe",)),
        (NONE_PI, ("unsubscribed",)),
        (NONE_POPI, ("unsubscribe", "unsubscribed")),
        (TO, ("unsubscribe",)),
        (TO_PI, ("unsubscribe", "unsubscribed")),
        (FROM, ("unsubscribed",)),
        (FROM_PO, ("unsubscribe", "unsubscribed")),
        (BOTH, ("unsubscribe", "unsubscribed")),
        (NONE_A, ()),  # the pre-approval was never sent; it goes with the item
        (NONE_PO_A, ("unsubscribe",)),
        (TO_A, ("unsubscribe",)),
    ],
)
def test_removing_the_roster_item_ends_every_subscription_and_request(
    state: State, kinds: tuple[str, ...]
) -> None:
    assert roster_removed(state) == kinds


@pytest.mark.parametrize(
    ("remover", "other", "after", "delivered"),
    [
        (BOTH, BOTH, NONE, (True, True)),
        (TO, FROM, NONE, (True,)),
        (FROM, TO, NONE, (True,)),
        (NONE_PO, NONE_PI, NONE, (True,)),  # the request is withdrawn, not left dangling
        (NONE_PI, NONE_PO, NONE, (True,)),  # the request is denied
        (TO_PI, FROM_PO, NONE, (True, True)),
        (FROM, TO_A, NONE_A, (True,)),  # the other side's own pre-approval stays
    ],
)
def test_removal_leaves_the_other_side_with_nothing_to_or_from_the_remover(
    remover: State, other: State, after: State, delivered: tuple[bool, ...]
) -> None:
    new, handled = remove(remover, other)
    assert new == after
    assert tuple(h.deliver for h in handled) == delivered


# --- helpers and refusals ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "sends", "receives"),
    [
        (NONE, False, False),
        (TO, False, True),
        (FROM, True, False),
        (BOTH, True, True),
        (NONE_PI, False, False),
    ],
)
def test_who_hears_whose_presence(state: State, sends: bool, receives: bool) -> None:
    assert sends_presence_to(state) is sends
    assert probe_answered(state) is sends
    assert receives_presence_from(state) is receives


def test_ask_and_what_the_roster_shows() -> None:
    assert ask(NONE_POPI) == "subscribe"
    assert ask(TO_PI) is None
    assert visible(NONE_PI) == visible(NONE)
    assert visible(NONE_PO_A) == ("none", "subscribe", True)


@pytest.mark.parametrize("kind", ["probe", "available", "unavailable", "error", "", "Subscribe", "remove"])
def test_unknown_kinds_are_refused(kind: str) -> None:
    assert kind not in KINDS
    with pytest.raises(ValueError, match="not a subscription presence type"):
        outbound(NONE, kind)
    with pytest.raises(ValueError, match="not a subscription presence type"):
        inbound(NONE, kind)


def test_the_four_kinds() -> None:
    assert frozenset({"subscribe", "subscribed", "unsubscribe", "unsubscribed"}) == KINDS


# --- the two sides stay consistent -------------------------------------------------------------

# An operation: who acts ("a" or "b") and what it does: one of the four kinds sent to the other,
# or "remove" (it deletes the other from its roster, §2.5.2).
Op = tuple[str, str]
OPS: list[Op] = [(who, what) for who in "ab" for what in (*sorted(KINDS), "remove")]


def apply(a: State, b: State, op: Op) -> tuple[State, State]:
    who, what = op
    me, other = (a, b) if who == "a" else (b, a)
    if what == "remove":
        me, (other, _) = State(), remove(me, other)
    else:
        ex = send(me, other, what)
        me, other = ex.sender, ex.receiver
        if ex.out.forward and what in ("subscribed", "unsubscribed"):
            # A.2.3/A.2.4 route only when they change the sender's state, and the receiver's state
            # mirrors it, so an approval, denial or cancellation that is routed always lands.
            # (Not so for subscribe/unsubscribe: A.2.1/A.2.2 route from every state, and A.3.1/A.3.2
            # drop what changes nothing, so "forwarded implies delivered" does not hold for them.)
            assert ex.delivered is not None
            assert ex.delivered.deliver
        if ex.delivered is not None and what == "subscribe" and ex.delivered.deliver:
            assert me.pending_out  # a request reaches the contact only while it is pending
    return (me, other) if who == "a" else (other, me)


def consistent(a: State, b: State) -> None:
    """What holds between the two sides of one relationship when both accounts are local.

    - a subscription is seen the same from both ends: A is subscribed to B ("to"/"both") exactly
      when B has A as a subscriber ("from"/"both"), and the other way round;
    - a request is pending at both ends or at neither: A's pending out is B's pending in.
      This holds only because both sides are updated in the same step; across servers a request
      can be in flight, and then the RFC expects the sides to differ for a while (the reason A.2.1
      and A.2.2 route from every state, so a repeated stanza can resynchronise them). It also needs
      the pending states in §2.5.2 (see roster_removed): with only "to"/"from" looked at, removing
      an item while a request is pending would leave the other side's request dangling.

    Nothing is asserted about ``approved``: a pre-approval is the account's own note, never sent,
    with nothing on the contact's side to match it (the state validation already keeps it apart
    from a pending request or a subscription from the contact).
    """
    assert receives_presence_from(a) == sends_presence_to(b)
    assert receives_presence_from(b) == sends_presence_to(a)
    assert a.pending_out == b.pending_in
    assert b.pending_out == a.pending_in


@settings(max_examples=400)
@given(st.lists(st.sampled_from(OPS), max_size=40))
def test_any_sequence_of_operations_keeps_the_two_sides_consistent(ops: list[Op]) -> None:
    a, b = State(), State()
    for op in ops:
        a, b = apply(a, b, op)
        consistent(a, b)


def test_every_reachable_pair_is_consistent_and_every_state_is_reached() -> None:
    """The same property checked exhaustively: the pairs reachable from (None, None) are few."""
    start = (State(), State())
    seen = {start}
    todo = deque([start])
    while todo:
        pair = todo.popleft()
        consistent(*pair)
        for op in OPS:
            nxt = apply(*pair, op)
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert {a for a, _ in seen} == set(ALL_STATES)
