"""Events the C2S stream machine hands to its driver (h11 style: frozen, keyword-only facts and requests).

Requests (the machine pauses until the driver answers with the named method):
- :class:`StartTlsRequested` → flush output, start TLS, then ``tls_established()``;
- :class:`CredentialsNeeded` → ``provide_credentials()``;
- :class:`PasswordCheckNeeded` → ``password_checked()``;
- :class:`TokenCheckNeeded` → ``provide_tokens()`` (XEP-0484 FAST);
- :class:`Authenticated` → ``continue_with()`` (tasks, possibly none) or ``refuse()``;
- :class:`BindRequested` → ``bind_resource()`` or ``bind_failed()``.
Facts: :class:`AuthFailed`, :class:`StanzaReceived`, :class:`IqRequest`, :class:`IqAnswered`,
:class:`StreamClosed`.

:class:`IqRequest` does not pause the machine: it is an iq get/set addressed to the server or to
the account's own bare JID whose payload namespace is in ``StreamConfig.driver_iq_namespaces``
(e.g. XEP-0494 client management handled by the application). The driver answers whenever it
is ready with ``send_stanza()`` (a result or an error, ``id`` copied, ``to`` the stanza's
``from``, ``from`` its ``to`` if it had one); the core answers such an iq no more, where it
would otherwise have said ``service-unavailable``. What the core answers itself (ping, disco,
carbons, session) stays with the core even if its namespace is listed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from .errors import SaslCondition, StreamErrorCondition
from .jid import JID


@dataclass(frozen=True, kw_only=True, slots=True)
class StartTlsRequested:
    """``<proceed/>`` is queued: write it, then switch the transport to TLS."""


@dataclass(frozen=True, kw_only=True, slots=True)
class CredentialsNeeded:
    """SCRAM needs the stored credentials of ``localpart`` for ``hash_name``.

    ``localpart`` is None when the SASL username is not a valid localpart: answer with fake
    credentials for ``username`` exactly as for an unknown account.
    """

    username: str
    localpart: str | None
    hash_name: str
    #: the SASL2 ``<user-agent id>`` of the stream, if any (a client known to the account is not held
    #: by the account's guessing limit)
    user_agent_id: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class PasswordCheckNeeded:
    """PLAIN needs a password verdict for ``localpart`` (None: not a valid localpart, answer False)."""

    username: str
    localpart: str | None
    password: str = field(repr=False)
    user_agent_id: str | None = None  # as in CredentialsNeeded


@dataclass(frozen=True, kw_only=True, slots=True)
class TokenCheckNeeded:
    """XEP-0484 FAST: an HT-* mechanism needs the tokens of ``localpart`` for this client.

    Answer ``provide_tokens()`` with the tokens issued to (``localpart``, ``user_agent_id``), e.g.
    the ``current`` and ``new`` slots of XEP-0484's recommended algorithm; those past their
    expiry, or failing the 0-RTT replay rule for ``count``, should be left out (or the driver
    fails them itself). ``localpart`` is None when the SASL username is not a valid localpart:
    answer with no tokens. ``invalidate`` is the client asking to retire the token it uses
    (``<fast invalidate='true'/>``), ``count`` its ``<fast count=…/>``.
    """

    username: str
    localpart: str | None
    mechanism: str
    user_agent_id: str
    count: int | None = None
    invalidate: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class UserAgent:
    """XEP-0388 §2.4 ``<user-agent/>``: the client installation (never shown to other entities)."""

    id: str | None
    software: str | None = None
    device: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Authenticated:
    """Authentication succeeded: a request, answered with ``continue_with()`` or ``refuse()``.

    RFC 6120 SASL (``profile="sasl"``): ``continue_with([])`` sends ``<success/>`` (a restart
    follows); ``refuse()`` sends ``<failure/>`` instead.
    XEP-0388 SASL2 (``profile="sasl2"``): the driver answers ``continue_with(steps)``
    with the tasks still required (second factors, XEP-0480 upgrades), or none; after the last
    task come the inline resume or Bind2 (:class:`ResumeRequested`, :class:`BindRequested` with
    ``inline=True``) and then ``<success/>``.

    ``credential_id`` says which credential matched: ``""`` for the account password, else the
    ``credential_id`` of the SCRAM alternative (app password), the id given to
    ``password_checked()`` for PLAIN, or the FAST token's id for HT-*.

    XEP-0484 (SASL2 with ``StreamConfig.fast``): ``fast_request`` is the HT-* mechanism the client
    named in ``<request-token/>``; hand out a token with ``issue_token()`` before ``<success/>``
    goes out. When an HT-* mechanism was used, ``fast_invalidate`` and ``fast_count`` are what its
    ``<fast/>`` said: retire the token just used (and issue none unless ``fast_request``), and
    the 0-RTT attempt counter. Both stay at their defaults for other mechanisms.
    """

    localpart: str
    mechanism: str
    profile: str = "sasl"
    user_agent: UserAgent | None = None
    upgrades: tuple[str, ...] = ()  # XEP-0480 tasks the client asked for (SASL2)
    credential_id: str = ""
    fast_request: str | None = None
    fast_invalidate: bool = False
    fast_count: int | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class AuthFailed:
    """A SASL attempt failed; ``<failure/>`` is queued (for logging and rate limiting)."""

    username: str | None
    mechanism: str
    condition: SaslCondition
    text: str


@dataclass(frozen=True, kw_only=True, slots=True)
class BindRequested:
    """Resource binding; ``resource`` is the prepared wish, or None to let the driver pick one.

    ``inline`` marks XEP-0386 Bind2 inside SASL2: the wish is the client's tag plus a suffix that
    is stable per user-agent id, so a reconnecting client gets its resource back (and the older
    session with it is replaced, as XEP-0386 §3 recommends).
    """

    resource: str | None
    inline: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class ResumeRequested:
    """XEP-0198 §5 (``inline``: XEP-0198 §9 inside SASL2): find the hibernated session ``previd``
    of this account and answer ``resume_succeeded()`` or ``resume_failed()``."""

    previd: str
    h: str | None
    inline: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskStarted:
    """XEP-0388 §2.7: the client picked ``task`` with ``<next/>`` (``payload``: its first child).

    Answer with ``task_challenge()``, ``task_succeeded()`` or ``task_failed()``.
    """

    task: str
    payload: etree._Element | None


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskData:
    """The client's ``<task-data/>`` for the running task; answered like :class:`TaskStarted`."""

    task: str
    payload: etree._Element | None


@dataclass(frozen=True, kw_only=True, slots=True)
class ClientStateChanged:
    """XEP-0352: the client went active or inactive (hold back what can wait while inactive)."""

    active: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class StanzaReceived:
    """A stanza for the router, ``from`` already stamped with the session's full JID.

    ``to`` is the prepared destination (None: the stanza had no ``to``, e.g. broadcast presence).
    The element is owned by the receiver of this event; do not mutate it after routing it.
    """

    kind: str  # "message" | "presence" | "iq"
    type: str
    to: JID | None
    stanza: etree._Element


@dataclass(frozen=True, kw_only=True, slots=True)
class IqRequest:
    """An iq get/set in one of ``StreamConfig.driver_iq_namespaces``, for the driver to answer.

    ``target`` is ``"server"`` (no ``to``, or a bare domain of ours), ``"account"`` (the
    session's own bare JID) or ``"contact"`` (another local account's bare JID, for a namespace in
    ``StreamConfig.driver_contact_namespaces``: the server answers on that account's behalf, as
    XEP-0163 PEP does); ``payload`` is the iq's single child. ``from`` is stamped already.
    Answer with ``send_stanza()``; see the module docstring.
    """

    stanza: etree._Element
    payload: etree._Element
    target: str


@dataclass(frozen=True, kw_only=True, slots=True)
class IqAnswered:
    """An iq result or error the client sent to the server or to its own bare JID (RFC 6120 §8.2.3:
    it ends there), e.g. the answer to a request the driver sent the client (XEP-0115's disco#info).
    The core does nothing more with it; the driver may ignore it."""

    stanza: etree._Element


@dataclass(frozen=True, kw_only=True, slots=True)
class StreamClosed:
    """The stream is over; write what is queued and close the transport.

    ``condition`` is the stream error we sent (None for an orderly close by either side).
    """

    condition: StreamErrorCondition | None
    text: str = ""
    by_peer: bool = False


Event = (
    StartTlsRequested
    | CredentialsNeeded
    | PasswordCheckNeeded
    | TokenCheckNeeded
    | Authenticated
    | AuthFailed
    | BindRequested
    | ResumeRequested
    | TaskStarted
    | TaskData
    | ClientStateChanged
    | StanzaReceived
    | IqRequest
    | IqAnswered
    | StreamClosed
)
