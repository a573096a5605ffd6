"""The driver's answers to the core's login requests, for one stream (RFC 6120 §6, XEP-0388, XEP-0484).

The core asks and this answers: SCRAM credentials (``CredentialsNeeded``), PLAIN password checks
(``PasswordCheckNeeded``) and FAST tokens (``TokenCheckNeeded``) through :mod:`xmppauth.services`,
off the event loop; then, once the mechanism has succeeded (``Authenticated``), the grant the
login gets or its refusal, and the SASL2 tasks it must do (:mod:`xmppauth.sasl2_tasks`, which
also runs them: ``TaskStarted``, ``TaskData``). A failed attempt (``AuthFailed``) goes to the
security log. The consumer hands these events to :meth:`Login.answer` and learns of an admitted
login through its ``admitted`` callback, before any task runs.

An answer that comes back after the stream has ended is dropped (``is_open``).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable

from django.conf import settings

from accounts import guessing
from sessions_acl.access import SessionAccess
from sessions_acl.login import Authorization, Refusal
from xmppauth import failed_logins, sasl2_tasks, services
from xmppauth.proto import events as ev
from xmppauth.proto.errors import SaslCondition
from xmppauth.proto.jid import InvalidJID, prep_localpart
from xmppauth.proto.stream import C2SStream

log = logging.getLogger("xmppauth.c2s")

#: The events :meth:`Login.answer` takes.
EVENTS = (
    ev.CredentialsNeeded,
    ev.PasswordCheckNeeded,
    ev.TokenCheckNeeded,
    ev.Authenticated,
    ev.AuthFailed,
    ev.TaskStarted,
    ev.TaskData,
)


class Login:
    """The login conversation of one stream (there may be several attempts)."""

    def __init__(
        self,
        stream: C2SStream,
        *,
        address: str,
        peer: str,
        is_open: Callable[[], bool],
        admitted: Callable[[Authorization, SessionAccess, float, float], None],
        past_first_step: Callable[[], Awaitable[object]] | None = None,
        failed: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.stream = stream
        self.address = address  # the client's IP address, for the records
        self.peer = peer  # address and port, for the log
        self.is_open = is_open
        # (grant, access, when the grant was read, when the credential read began): the login may go on
        self.admitted = admitted
        # the credential was right (a second factor may follow): the connection is a user's, not one the
        # limits may give up to make room while its owner types a code (found by a black-box attack)
        self.past_first_step = past_first_step
        # an attempt failed (a second factor too): the stream is nobody's again (found by a second attack: a
        # failed code kept the stream from being given up until XMPP_PREAUTH_TIMEOUT)
        self.failed = failed
        #: time.time() when this attempt began reading its credential: a revocation committed
        #: before it (a password change, "log out everywhere") does not concern this login
        self._began = 0.0
        self._tasks: sasl2_tasks.TaskContext | None = None  # the SASL2 tasks of the current attempt
        #: (account, mechanism) of an attempt that passed the password step and owes its second factor
        self._owed: tuple[str, str] | None = None
        #: the guessing-limit turns of the attempt being checked (accounts/guessing.py)
        self._claim: guessing.Claim | None = None
        self._held = False  # the attempt being checked is refused or held by a guessing limit

    @property
    def factors(self) -> tuple[str, ...]:
        """The second factors (task names) the current attempt passed: for the session record."""
        return tuple(self._tasks.passed) if self._tasks is not None else ()

    async def answer(self, event: ev.Event) -> None:
        """Answer one of :data:`EVENTS`."""
        stream = self.stream
        if isinstance(event, (ev.CredentialsNeeded, ev.PasswordCheckNeeded, ev.TokenCheckNeeded)):
            self._began = time.time()
        if isinstance(event, ev.CredentialsNeeded):
            creds, alternatives, verdict = await services.scram_credentials(
                event.localpart, event.username, event.hash_name, self.address, event.user_agent_id
            )
            if self.is_open() and not self._refused(verdict):
                stream.provide_credentials(creds, alternatives, self._limited(verdict))
        elif isinstance(event, ev.PasswordCheckNeeded):
            credential, verdict = await services.check_password(
                event.localpart, event.username, event.password, self.address, event.user_agent_id
            )
            if self.is_open() and not self._refused(verdict):
                stream.password_checked(credential is not None, credential or "", self._limited(verdict))
        elif isinstance(event, ev.TokenCheckNeeded):
            candidates, verdict = await services.fast_candidates(
                event.localpart, event.user_agent_id, self.address
            )
            if self.is_open() and not self._refused(verdict):
                stream.provide_tokens(candidates)
        elif isinstance(event, ev.Authenticated):
            await self._authorize(event)
        elif isinstance(event, ev.AuthFailed):
            await self._failed(event)
        elif isinstance(event, (ev.TaskStarted, ev.TaskData)):
            assert self._tasks is not None  # the core runs tasks only after continue_with()
            await sasl2_tasks.run(self._tasks, event)
        else:
            raise TypeError(f"not a login event: {event!r}")

    def _refused(self, verdict: guessing.Verdict) -> bool:
        """Refuse an attempt the client's address may not make now (nothing was checked); else keep its
        claim, given back if the mechanism succeeds (a failure stays counted)."""
        self._claim = verdict.claim
        self._held = verdict.refused
        if verdict.scope != "address":
            return False
        log.info("%s: login attempt refused unchecked: guessing limit of the address", self.peer)
        self.stream.refuse(SaslCondition.TEMPORARY_AUTH_FAILURE, guessing.refusal_text(verdict))
        return True

    @staticmethod
    def _limited(verdict: guessing.Verdict) -> tuple[SaslCondition, str] | None:
        """Held by the account's limit: only app passwords are checked, and a failure says why."""
        if verdict.scope != "account":
            return None
        return SaslCondition.TEMPORARY_AUTH_FAILURE, guessing.refusal_text(verdict)

    async def _authorize(self, event: ev.Authenticated) -> None:
        """The mechanism succeeded: find the grant this login gets (or refuse it), then tasks."""
        stream = self.stream
        agent = event.user_agent
        authorizing = time.monotonic()  # a revocation applied from now on may have been missed by the read
        claim, self._claim = self._claim, None
        self._held = False
        result = await services.authorize(
            event.localpart,
            claim=claim,
            credential_id=event.credential_id,
            mechanism=event.mechanism,
            user_agent_id=agent.id if agent is not None else None,
            software=agent.software if agent is not None else None,
            device=agent.device if agent is not None else None,
            fast_request=event.fast_request,
            fast_invalidate=event.fast_invalidate,
            fast_count=event.fast_count,
            address=self.address,
            tasks=event.profile == "sasl2",
        )
        if not self.is_open():
            return
        if isinstance(result, Refusal):
            log.info("%s: login of %s refused: %s", self.peer, event.localpart, result.text)
            # the AuthFailed that follows goes to the security log
            stream.refuse(SaslCondition(result.condition), result.text)
            return
        if not result.pending:
            self._admit(result, authorizing)
        if self.past_first_step is not None:
            await self.past_first_step()
            if not self.is_open():
                return
        self._tasks = sasl2_tasks.TaskContext(
            localpart=event.localpart,
            user_id=result.user_id,
            peer=self.peer,
            stream=stream,
            is_open=self.is_open,
            address=self.address,
            user_agent_id=agent.id if agent is not None else None,
        )
        if result.pending:
            # The grant, the client's record and the token come once the second factor is passed.
            self._tasks.before_success = functools.partial(self._finish_after_tasks, event)
            self._owed = (event.localpart, event.mechanism)
        steps = await sasl2_tasks.offer(self._tasks, event, result)
        self._tasks.remaining = len(steps)
        if not steps and self._tasks.before_success is not None:  # no task after all: finish now
            hook, self._tasks.before_success = self._tasks.before_success, None
            refusal = await hook()
            if refusal is not None:
                if self.is_open():
                    stream.refuse(*refusal)
                return
        if self.is_open():
            stream.continue_with(steps, [sasl2_tasks.text_of(step) for step in steps])
        log.info(
            # with a second factor to pass, the mechanism is only the first step: the log must not
            # read as a login of someone who had the password and nothing else
            "%s %s as %s with %s (%s, %s%s)",
            self.peer,
            "passed the password step, second factor pending," if result.second_factors else "authenticated",
            event.localpart,
            event.mechanism,
            "SASL2" if event.profile == "sasl2" else "RFC 6120 SASL",
            result.credential if result.credential != "app-password" else f"app password {result.label!r}",
            f", {agent.software or '?'} on {agent.device or '?'}" if agent is not None else "",
        )

    def _admit(self, result: Authorization, authorizing: float) -> None:
        """The login holds the grant ``result`` (read at ``authorizing``): its access, and its token."""
        access = SessionAccess(
            result.scopes, limit=settings.XMPP_PENDING_REQUESTS, seconds=settings.XMPP_PENDING_REQUEST_SECONDS
        )
        self.admitted(result, access, authorizing, self._began)
        self.stream.access = access
        if result.token is not None:
            self.stream.issue_token(result.token.token, result.token.expiry)

    async def _finish_after_tasks(self, event: ev.Authenticated) -> tuple[SaslCondition, str] | None:
        """Every task is passed: record the client and grant, issue the FAST token asked for (XEP-0484),
        admit the login; or the condition and text that refuse it (the account went meanwhile)."""
        self._owed = None
        agent = event.user_agent
        authorizing = time.monotonic()
        result = await services.finish_after_tasks(
            event.localpart,
            user_agent_id=(agent.id or "") if agent is not None else "",
            software=agent.software if agent is not None else None,
            device=agent.device if agent is not None else None,
            fast_request=event.fast_request,
        )
        if isinstance(result, Refusal):
            log.info("%s: login of %s refused after its tasks: %s", self.peer, event.localpart, result.text)
            return SaslCondition(result.condition), result.text
        if self.is_open():
            self._admit(result, authorizing)
        return None

    async def _failed(self, event: ev.AuthFailed) -> None:
        self._claim = None  # a failure stays counted
        if self.failed is not None:
            await self.failed()
        held, self._held = self._held, False
        if held:  # refused or held by a guessing limit: no row per attempt (the checked ones are there)
            log.info("%s: login attempt as %r held by the guessing limit", self.peer, event.username)
            return
        log.info(
            "%s failed to authenticate as %r with %s: %s",
            self.peer,
            event.username,
            event.mechanism,
            event.condition.value,
        )
        owed, self._owed = self._owed, None
        if owed is not None:  # the password was right: the owner must learn that the factor stopped it
            why = "the client gave up" if event.condition is SaslCondition.ABORTED else event.text
            failed_logins.record(
                owed[0],
                owed[1],
                event.condition.value,
                self.address,
                factor_failed=why or event.condition.value,
            )
            return
        if event.condition is SaslCondition.ABORTED:
            return
        stream_from = self.stream.stream_from
        localpart = stream_from.local if stream_from is not None else None
        # written after the answer, in a batch (failed_logins.py): an existing account must not answer later
        failed_logins.record(
            _localpart(event.username) or localpart, event.mechanism, event.condition.value, self.address
        )

    async def abandoned(self) -> None:
        """The stream ended: a login that passed the password step and never its second factor goes to
        the security log (someone has the password)."""
        owed, self._owed = self._owed, None
        if owed is not None:
            failed_logins.record(
                owed[0],
                owed[1],
                "aborted",
                self.address,
                factor_failed="the connection ended before an answer",
            )


def _localpart(username: str | None) -> str | None:
    try:
        return prep_localpart(username) if username else None
    except InvalidJID:
        return None
