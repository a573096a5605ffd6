"""XEP-0484 Fast Authentication Streamlining Tokens: the stream's part of FAST.

Implements §3.1 (the HT-* mechanisms, advertised inside SASL2's ``<inline/>`` only, never in the
mechanism lists and so never in the XEP-0474 hash; ejabberd #4331), §3.2-§3.3 (``<fast count
invalidate/>`` and ``<request-token mechanism/>`` in ``<authenticate/>``) and §3.4 (``<token
token expiry/>`` inside ``<success/>``). States touched: EXPECT_AUTH (parsing ``<authenticate/>``,
through :mod:`.xep0388_sasl2`) and TASKS/TASK/EXPECT_BIND/BOUND (the token goes into whichever
``<success/>`` ends the exchange). Checking a token is the driver's: :class:`~.events.TokenCheckNeeded`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from lxml import etree

from . import ns
from .errors import LocalProtocolError
from .events import UserAgent
from .numbers import parse_uint
from .sasl import HT_MECHANISMS, fast_mechanism_names
from .xml import escape_attr

__all__ = ["Fast"]

_Q_FAST = ns.qname(ns.FAST, "fast")
_Q_REQUEST_TOKEN = ns.qname(ns.FAST, "request-token")
# <fast count=…/>: a positive integer of at most 18 digits, so it fits a signed 64-bit column
_MAX_COUNT = 10**18 - 1


@dataclass(frozen=True, kw_only=True, slots=True)
class _IssuedToken:
    """A FAST token waiting for ``<success/>``; kept out of every repr."""

    token: str = field(repr=False)
    expiry: str


class Fast:
    """What FAST offered on one stream, what ``<authenticate/>`` asked, and the token to hand out."""

    __slots__ = ("count", "enabled", "invalidate", "issued", "offered", "request")

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.offered: tuple[str, ...] = ()
        self.request: str | None = None  # the mechanism of <request-token/>
        self.count: int | None = None  # <fast count/> of the token in use
        self.invalidate = False
        self.issued: _IssuedToken | None = None

    def advertisement(self, channel_bindings: Mapping[str, bytes]) -> str:
        """The ``<fast/>`` inline feature (empty when FAST is off or nothing is usable)."""
        self.offered = fast_mechanism_names(channel_bindings) if self.enabled else ()
        if not self.offered:
            return ""
        names = "".join(f"<mechanism>{name}</mechanism>" for name in self.offered)
        return f"<fast xmlns='{ns.FAST}'>{names}</fast>"

    def extra_mechanisms(self) -> tuple[str, ...]:
        """Mechanisms a SASL2 client may ask for beyond the advertised list.

        An HT-* mechanism that is not advertised because its channel binding is missing still
        gets as far as the mechanism, which fails it with malformed-request and says why.
        """
        return tuple(HT_MECHANISMS) if self.enabled else ()

    def forget(self) -> None:
        """An RFC 6120 ``<auth/>`` carries no FAST elements."""
        self.request = None
        self.count = None
        self.invalidate = False

    def parse(self, authenticate: etree._Element, mechanism: str, user_agent: UserAgent | None) -> str | None:
        """The FAST children of ``<authenticate/>``; the text of a malformed-request, or None."""
        self.forget()
        if not self.enabled:
            return None  # FAST is not offered: its elements mean nothing here
        ua_id = user_agent.id if user_agent is not None else None
        count: int | None = None
        invalidate = False
        fast = authenticate.find(_Q_FAST)
        if fast is not None:
            raw_count = fast.get("count")
            if raw_count is not None:
                count = parse_uint(raw_count, maximum=_MAX_COUNT, positive=True)
                if count is None:
                    return "<fast count='…'/> must be a positive integer"
            invalidate = fast.get("invalidate") in ("true", "1")
        using_token = mechanism in HT_MECHANISMS
        if using_token and not ua_id:
            return f"{mechanism} (a FAST token) needs <user-agent id='…'/>: tokens belong to one client"
        request = authenticate.find(_Q_REQUEST_TOKEN)
        if request is not None:
            wanted = request.get("mechanism", "")
            if wanted not in self.offered:
                return (
                    f"<request-token/> names {wanted[:64] or 'no mechanism'}, "
                    "which is not a FAST mechanism offered on this stream"
                )
            if not ua_id:
                return "a FAST token needs <user-agent id='…'/>"
            self.request = wanted
        if using_token:  # count and invalidate are about the token in use
            self.count = count
            self.invalidate = invalidate
        return None

    def issue(self, token: str, expiry: str, user_agent: UserAgent | None) -> None:
        """Keep ``token`` for the coming ``<success/>`` (see :meth:`C2SStream.issue_token`)."""
        if not self.enabled:
            raise LocalProtocolError("FAST is not enabled on this stream")
        if user_agent is None or not user_agent.id:
            raise LocalProtocolError("a FAST token needs the client's <user-agent id=…/>")
        if self.invalidate and self.request is None:
            raise LocalProtocolError("the client invalidated its token and requested no new one")
        if not token or not expiry:
            raise LocalProtocolError("a FAST token needs a value and an expiry")
        self.issued = _IssuedToken(token=token, expiry=expiry)

    def take_token_element(self) -> str:
        """§3.4: the ``<token/>`` for ``<success/>`` (once), or "" when none was issued."""
        token, self.issued = self.issued, None
        if token is None:
            return ""
        return (
            f"<token xmlns='{ns.FAST}' token='{escape_attr(token.token)}'"
            f" expiry='{escape_attr(token.expiry)}'/>"
        )
