"""RFC 4616 PLAIN: ``[authzid] NUL authcid NUL passwd`` in one client message.

The mechanism only parses and prepares; verifying the password is the caller's job
(:class:`~xmppauth.proto.sasl.base.NeedPasswordCheck` / :meth:`PlainServer.password_checked`).
The password is never kept by the mechanism after it has been handed out.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from xmppauth.proto.errors import LocalProtocolError, SaslCondition
from xmppauth.proto.sasl.base import (
    Challenge,
    Failure,
    Mechanism,
    NeedPasswordCheck,
    Result,
    ScramCredentials,
    Success,
    TokenCandidate,
)
from xmppauth.proto.sasl.saslprep import saslprep

__all__ = ["MAX_MESSAGE_LENGTH", "PlainServer"]

#: RFC 4616 §2 ABNF: authzid, authcid and passwd are each "1*SAFE ; MUST accept up to 255
#: octets". 1024 leaves room for all three plus a margin, and bounds the work per message.
MAX_MESSAGE_LENGTH = 1024


class _State(enum.Enum):
    INITIAL = enum.auto()
    AWAIT_RESPONSE = enum.auto()
    AWAIT_CHECK = enum.auto()
    DONE = enum.auto()


class PlainServer(Mechanism):
    """Server side of PLAIN: :meth:`start` (or :meth:`step`) then :meth:`password_checked`."""

    name = "PLAIN"

    def __init__(self) -> None:
        self._state = _State.INITIAL
        self._username = ""
        self._authzid: str | None = None

    def __repr__(self) -> str:
        return f"<PlainServer {self._state.name}>"

    def _expect(self, state: _State) -> None:
        if self._state is not state:
            raise LocalProtocolError(f"PLAIN: call not allowed in state {self._state.name}")

    def _malformed(self, text: str) -> Failure:
        self._state = _State.DONE
        return Failure(condition=SaslCondition.MALFORMED_REQUEST, text=text)

    def start(self, initial_response: bytes | None) -> Result:
        self._expect(_State.INITIAL)
        if not initial_response:
            # No initial response: an empty challenge asks the client for its message.
            self._state = _State.AWAIT_RESPONSE
            return Challenge(data=b"")
        return self._message(initial_response)

    def step(self, response: bytes) -> Result:
        self._expect(_State.AWAIT_RESPONSE)
        return self._message(response)

    def provide_credentials(
        self, creds: ScramCredentials | None, alternatives: Sequence[ScramCredentials] = ()
    ) -> Result:
        raise LocalProtocolError("PLAIN does not use stored SCRAM credentials")

    def provide_tokens(self, candidates: Sequence[TokenCandidate]) -> Result:
        raise LocalProtocolError("PLAIN does not use FAST tokens")

    def password_checked(self, ok: bool, credential_id: str = "") -> Result:
        """The caller's verdict; ``credential_id`` names the secret that matched ("" = the password)."""
        self._expect(_State.AWAIT_CHECK)
        self._state = _State.DONE
        if not ok:
            return Failure(condition=SaslCondition.NOT_AUTHORIZED, text="invalid credentials")
        return Success(
            username=self._username,
            additional_data=None,
            authzid=self._authzid,
            credential_id=credential_id,
        )

    def _message(self, data: bytes) -> Result:
        if len(data) > MAX_MESSAGE_LENGTH:
            return self._malformed("PLAIN message too long")
        # message = [authzid] UTF8NUL authcid UTF8NUL passwd
        parts = data.split(b"\0")
        if len(parts) != 3:
            return self._malformed("PLAIN message must be [authzid] NUL authcid NUL passwd")
        # RFC 4616 §2: "The mechanism consists of a single message, a string of [UTF-8] encoded
        # [Unicode] characters, from the client to the server."
        try:
            authzid, authcid, passwd = (part.decode("utf-8") for part in parts)
        except UnicodeDecodeError:
            return self._malformed("PLAIN message is not UTF-8")
        # authcid = 1*SAFE, passwd = 1*SAFE
        if not authcid:
            return self._malformed("empty authcid")
        if not passwd:
            return self._malformed("empty password")
        try:
            username = saslprep(authcid, allow_unassigned=True)
        except ValueError:
            return self._malformed("authcid fails SASLprep")
        try:
            password = saslprep(passwd, allow_unassigned=True)
        except ValueError:
            return self._malformed("password fails SASLprep")
        if not username:
            return self._malformed("empty authcid")
        if not password:
            return self._malformed("empty password")

        self._username = username
        # The authzid's form is up to the application protocol (for XMPP a JID, RFC 6120
        # §6.3.8), so it is passed on unprepared for the caller to judge.
        self._authzid = authzid or None
        self._state = _State.AWAIT_CHECK
        return NeedPasswordCheck(username=username, password=password)
