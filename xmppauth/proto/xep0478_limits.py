"""XEP-0478 Stream Limits Advertisement: the largest top-level element a stream accepts.

§2.1: "The responding entity advertises its limits in the <stream:features/> element that it sends at
the start of the stream", as ``<limits xmlns='urn:xmpp:stream-limits:0'><max-bytes>N</max-bytes>``.
Ours grow once the client has authenticated (§3: "It is acceptable for the limits on a stream to
change whenever new stream features are announced - such as before and after authentication"), so the
features before authentication name the pre-authentication limit and those after it (after a restart,
or after a Bind2 ``<success/>``) the limit for stanzas. ``<idle-seconds/>`` is left out: no stream is
closed for being idle once it has authenticated (before that, the whole negotiation has a deadline,
which is no idle time).
"""

from __future__ import annotations

from . import ns


def advertisement(max_bytes: int) -> str:
    """The ``<limits/>`` stream feature for a stream that accepts elements of ``max_bytes`` at most."""
    return f"<limits xmlns='{ns.STREAM_LIMITS}'><max-bytes>{max_bytes}</max-bytes></limits>"
