"""RFC 6121 §3 presence subscriptions: the state of one contact and how subscription stanzas move it.

Implements the subscription states of Appendix A.1 (plus the pre-approval flag of §3.4), the
server's handling of outbound subscription stanzas (A.2.1-A.2.4: route or not, and the new state)
and of inbound ones (A.3.1-A.3.4: deliver or not, and the new state), with §3.1.3's auto-reply
``subscribed`` and §3.4's pre-approval; and §2.5.2, the stanzas sent when a roster item is removed.

A pure decision: the router loads the :class:`State` an account holds for a contact, calls
:func:`outbound` on the sender's side (and, if the stanza is forwarded, :func:`inbound` on the
receiver's side), stores the new states and acts on the flags. Stamping ``from`` with the bare JID
(§3), the presence that a new or lost subscription causes (§3.1.5, §3.2.2, §3.3.3) and roster
pushes are the router's work. An ``auto_reply`` is the contact's server answering on the contact's
behalf: it goes straight to the requester as an inbound stanza and never through :func:`outbound`
(whose A.2.3 table would drop it, since the contact's side already says "from").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

__all__ = [
    "KINDS",
    "Inbound",
    "Outbound",
    "State",
    "Subscription",
    "ask",
    "inbound",
    "outbound",
    "probe_answered",
    "receives_presence_from",
    "roster_removed",
    "sends_presence_to",
    "visible",
]

Subscription = Literal["none", "to", "from", "both"]
_SUBSCRIPTIONS: frozenset[str] = frozenset(get_args(Subscription))

#: The presence types that manage subscriptions (§3); any other type is not for this module.
KINDS = frozenset({"subscribe", "subscribed", "unsubscribe", "unsubscribed"})


@dataclass(frozen=True, kw_only=True, slots=True)
class State:
    """What one account holds about one contact (A.1), seen from the account's side.

    ``pending_out``: the account asked for the contact's presence and has no answer (shown as
    ``ask='subscribe'``); ``pending_in``: the contact asked for the account's presence and the
    account has not answered (never shown in the roster, §3.1.3); ``approved``: the account
    approved a request that has not come yet (§3.4, shown as ``approved='true'``).

    Only the nine states of A.1, and pre-approval on those of them with neither a subscription
    from the contact nor a request from it, can be built; anything else is a ValueError (there is
    no "To + Pending Out": a subscription already granted cannot be pending). ``State()`` is
    "None", the same as no roster item at all.
    """

    subscription: Subscription = "none"
    pending_out: bool = False
    pending_in: bool = False
    approved: bool = False

    def __post_init__(self) -> None:
        if self.subscription not in _SUBSCRIPTIONS:
            raise ValueError(f"unknown subscription {self.subscription!r}")
        if self.pending_out and _to(self):
            raise ValueError("pending out with a subscription to the contact already")
        if self.pending_in and _from(self):
            raise ValueError("pending in with a subscription from the contact already")
        if self.approved and (self.pending_in or _from(self)):
            raise ValueError("pre-approval with a request or a subscription from the contact")


@dataclass(frozen=True, kw_only=True, slots=True)
class Outbound:
    """The account sent a subscription stanza (A.2): its new state, whether the server stamps
    and routes the stanza to the contact, and whether the account's interested resources get a
    roster push."""

    state: State
    forward: bool
    push: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class Inbound:
    """A subscription stanza came for the account (A.3): its new state, whether the stanza is
    delivered to the account's available resources, whether its interested resources get a roster
    push, and the type the server answers with on the account's behalf, if any."""

    state: State
    deliver: bool
    push: bool
    auto_reply: str | None = None


def _to(state: State) -> bool:
    return state.subscription in ("to", "both")


def _from(state: State) -> bool:
    return state.subscription in ("from", "both")


def _subscription(to: bool, from_: bool) -> Subscription:
    if to:
        return "both" if from_ else "to"
    return "from" if from_ else "none"


def _with(
    state: State,
    *,
    to: bool | None = None,
    from_: bool | None = None,
    pending_out: bool | None = None,
    pending_in: bool | None = None,
    approved: bool | None = None,
) -> State:
    """``state`` with the given parts changed (None: kept)."""
    return State(
        subscription=_subscription(
            _to(state) if to is None else to, _from(state) if from_ is None else from_
        ),
        pending_out=state.pending_out if pending_out is None else pending_out,
        pending_in=state.pending_in if pending_in is None else pending_in,
        approved=state.approved if approved is None else approved,
    )


def _check(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"not a subscription presence type: {kind!r}")


def ask(state: State) -> str | None:
    """The roster item's ``ask`` attribute (§2.1.2.2): "subscribe" while a request is pending out."""
    return "subscribe" if state.pending_out else None


def visible(state: State) -> tuple[Subscription, str | None, bool]:
    """What a roster push shows of the state (§2.1.2): subscription, ask and approved; a pending
    inbound request is not shown (§3.1.3), so changing only it pushes nothing."""
    return (state.subscription, ask(state), state.approved)


def sends_presence_to(state: State) -> bool:
    """The contact is subscribed to the account, so it gets the account's presence (§4.2.2, §4.4.2)."""
    return _from(state)


def receives_presence_from(state: State) -> bool:
    """The account is subscribed to the contact, so it gets the contact's presence (and probes it, §4.3)."""
    return _to(state)


def probe_answered(state: State) -> bool:
    """A probe from the contact is answered with the account's presence (§4.3.2): only a subscriber's."""
    return _from(state)


def outbound(state: State, kind: str) -> Outbound:
    """The account sent presence of type ``kind`` to the contact's bare JID (A.2, §3.1.2, §3.2.2,
    §3.3.2, §3.1.5 and §3.4).

    - subscribe (A.2.1): always routed; pending out is set unless already subscribed to;
    - unsubscribe (A.2.2): always routed; the subscription to the contact and a pending request end;
    - subscribed (A.2.3): with a pending inbound request, it is approved and routed; with a
      subscription from the contact already, nothing happens; otherwise it is a pre-approval
      (§3.4), kept and not routed;
    - unsubscribed (A.2.4): with a pending inbound request it is denied, with a subscription from
      the contact it is cancelled, and routed; otherwise it is not routed and only cancels a
      pre-approval (note [1] of A.2.4).
    """
    _check(kind)
    forward = True
    if kind == "subscribe":
        new = state if _to(state) else _with(state, pending_out=True)
    elif kind == "unsubscribe":
        new = _with(state, to=False, pending_out=False)
    elif kind == "subscribed":
        if state.pending_in:
            new = _with(state, from_=True, pending_in=False)
        else:
            forward = False
            new = state if _from(state) else _with(state, approved=True)
    else:  # unsubscribed
        if state.pending_in or _from(state):
            new = _with(state, from_=False, pending_in=False)
        else:
            forward = False
            new = _with(state, approved=False)
    return Outbound(state=new, forward=forward, push=visible(new) != visible(state))


def inbound(state: State, kind: str) -> Inbound:
    """The contact's presence of type ``kind`` came for the account (A.3, §3.1.3, §3.1.6, §3.2.3,
    §3.3.3 and §3.4).

    - subscribe (A.3.1): a new request sets pending in and is delivered; a repeated one is dropped;
      if the contact is subscribed already the server answers "subscribed" itself (§3.1.3); if the
      account pre-approved (§3.4) the subscription is granted, answered "subscribed" and not
      delivered;
    - unsubscribe (A.3.2): ends the contact's subscription or withdraws its pending request, and is
      delivered; otherwise dropped;
    - subscribed (A.3.3): answers the account's pending request, which becomes a subscription to
      the contact, and is delivered; otherwise dropped (nothing asked, or subscribed already);
    - unsubscribed (A.3.4): denies the account's pending request or cancels its subscription to
      the contact, and is delivered; otherwise dropped.
    """
    _check(kind)
    reply: str | None = None
    if kind == "subscribe":
        if _from(state):
            new, reply = state, "subscribed"
        elif state.pending_in:
            new = state
        elif state.approved:
            new, reply = _with(state, from_=True, approved=False), "subscribed"
        else:
            new = _with(state, pending_in=True)
        deliver = new.pending_in and not state.pending_in
    elif kind == "unsubscribe":
        new = _with(state, from_=False, pending_in=False)
        deliver = new != state
    elif kind == "subscribed":
        new = _with(state, to=True, pending_out=False) if state.pending_out else state
        deliver = new != state
    else:  # unsubscribed
        new = _with(state, to=False, pending_out=False)
        deliver = new != state
    return Inbound(state=new, deliver=deliver, push=visible(new) != visible(state), auto_reply=reply)


def roster_removed(state: State) -> tuple[str, ...]:
    """The types sent to the contact on the account's behalf when it removes the roster item (§2.5.2).

    §2.5.2 names "unsubscribe" for a subscription to the contact and "unsubscribed" for one from
    it. A pending request is ended the same way (what A.2.2 and A.2.4 do with it), so the contact is
    not left with a request that nobody can answer or withdraw any more: "unsubscribe" withdraws
    the account's own pending request, "unsubscribed" denies the contact's. A pre-approval goes
    with the item and was never sent, so nothing is sent for it. The order is fixed: "unsubscribe"
    first, then "unsubscribed".
    """
    kinds: list[str] = []
    if _to(state) or state.pending_out:
        kinds.append("unsubscribe")
    if _from(state) or state.pending_in:
        kinds.append("unsubscribed")
    return tuple(kinds)
