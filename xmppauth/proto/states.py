"""The states of a client-to-server stream, what each accepts, and the moves between them.

Modelled on h11's ``_state.py``: the table is the specification, and :func:`check_move` refuses a
move it does not list, so a negotiator that moves the stream somewhere it cannot go fails loudly
in the tests instead of quietly on the wire. What the stream waits for from its driver is a
second, independent dimension (:class:`Waiting`): a state says which elements may come next, a
wait says which answer of the driver the stream is paused for.
"""

from __future__ import annotations

import enum

from .errors import LocalProtocolError

__all__ = ["ACCEPTS", "MOVES", "State", "Waiting", "check_move"]


class State(enum.Enum):
    """Stream states (RFC 6120 §4-§7); :data:`ACCEPTS` says what each accepts."""

    EXPECT_HEADER = enum.auto()
    EXPECT_STARTTLS = enum.auto()
    TLS_HANDSHAKE = enum.auto()
    EXPECT_AUTH = enum.auto()
    SASL = enum.auto()
    TASKS = enum.auto()
    TASK = enum.auto()
    EXPECT_BIND = enum.auto()
    BOUND = enum.auto()
    CLOSED = enum.auto()


class Waiting(enum.Enum):
    """The driver's answer a stream is paused for (no element is handled until it comes)."""

    TLS = "tls"  # StartTlsRequested → tls_established()
    CREDENTIALS = "credentials"  # CredentialsNeeded → provide_credentials()
    PASSWORD = "password"  # noqa: S105  PasswordCheckNeeded → password_checked()
    TOKEN = "token"  # noqa: S105  TokenCheckNeeded → provide_tokens()
    AUTHORIZE = "authorize"  # Authenticated (RFC 6120 SASL) → continue_with([]) or refuse()
    TASKS = "tasks"  # Authenticated (SASL2) → continue_with(steps) or refuse()
    TASK = "task"  # TaskStarted / TaskData → task_challenge(), task_succeeded(), task_failed()
    BIND = "bind"  # BindRequested → bind_resource() or bind_failed()
    RESUME = "resume"  # ResumeRequested → resume_succeeded() or resume_failed()


#: What each state accepts from the peer, and who handles it.
ACCEPTS: dict[State, str] = {
    State.EXPECT_HEADER: "a stream header (<stream:stream> or <open/>): the core",
    State.EXPECT_STARTTLS: "<starttls/> only (RFC 6120 §5.3.1: TLS is mandatory on TCP): the core",
    State.TLS_HANDSHAKE: "nothing: bytes read before TLS is up are discarded (RFC 6120 §5.4.3.3)",
    State.EXPECT_AUTH: "<auth/> (RFC 6120 §6.4.2), <authenticate/> (XEP-0388 §2.6): the two SASL modules",
    State.SASL: "<response/>, <abort/> of the profile in use (RFC 6120 §6.4.3-6.4.6, XEP-0388 §2.6)",
    State.TASKS: "<next task=…/>, <abort/> (XEP-0388 §2.7, after <continue/>): xep0388_sasl2",
    State.TASK: "<task-data/>, <abort/> (a task in progress): xep0388_sasl2",
    State.EXPECT_BIND: "the bind iq, the legacy session iq, XEP-0198 <resume/>: rfc6120_bind, xep0198_sm",
    State.BOUND: "stanzas (rfc6120_stanzas) and the XEP-0198/XEP-0352 nonzas",
    State.CLOSED: "nothing; the stream is over",
}

_AUTHENTICATING = frozenset({State.SASL, State.EXPECT_AUTH})
_AFTER_AUTHENTICATION = frozenset(
    {State.TASKS, State.TASK, State.EXPECT_AUTH, State.EXPECT_BIND, State.BOUND}
)

#: The moves each state allows (to CLOSED is always allowed, and staying put is no move).
MOVES: dict[State, frozenset[State]] = {
    # features: STARTTLS required, mechanisms, or (after a SASL restart) binding
    State.EXPECT_HEADER: frozenset({State.EXPECT_STARTTLS, State.EXPECT_AUTH, State.EXPECT_BIND}),
    State.EXPECT_STARTTLS: frozenset({State.TLS_HANDSHAKE}),
    State.TLS_HANDSHAKE: frozenset({State.EXPECT_HEADER}),  # the restart after TLS
    State.EXPECT_AUTH: _AUTHENTICATING,
    # a failure goes back to EXPECT_AUTH; RFC 6120 SASL restarts; SASL2 goes on to its tasks
    State.SASL: _AUTHENTICATING | {State.EXPECT_HEADER, State.TASKS},
    State.TASKS: _AFTER_AUTHENTICATION,
    State.TASK: _AFTER_AUTHENTICATION,
    State.EXPECT_BIND: frozenset({State.BOUND}),
    State.BOUND: frozenset(),
    State.CLOSED: frozenset(),
}


def check_move(current: State, target: State) -> None:
    """Refuse a move :data:`MOVES` does not list (our bug, not the peer's)."""
    if target is not current and target is not State.CLOSED and target not in MOVES[current]:
        raise LocalProtocolError(f"the stream cannot move from {current.name} to {target.name}")
