"""How many bytes one answer, or one piece of a longer delivery, may put before a client at once.

The TCP transport drops a client that leaves more than XMPP_MAX_OUTGOING_BYTES unread (transport/tcp.py):
what the server sends of its own accord in bulk must stay well below that, whatever the client asked for.
Lists a client asks for whole, in one answer that cannot be split (the roster, RFC 6121 §2.1.3; the
blocklist, XEP-0191 §3.2), are bounded where they are changed instead: a change that would make the answer
larger than :func:`answer_bytes` is refused (found by a black-box attack: a roster of names full of ``>``,
each sent back as ``&gt;``, made a 5 MB answer, and every client that fetched it was dropped).

Three places send in bulk, each bounded by :func:`piece_bytes`: the stored messages at a login (a piece at
a time, as the client reads: xmppauth/stored_delivery.py), a page of the message archive (fewer
messages than asked, and ``complete='false'``: features/xep0313_mam.py), and a PEP ``<items/>`` answer
(the newest that fit: pep.py). Each gives at least one message or item, whatever its size (a stanza is
at most XMPP_MAX_STANZA_BYTES, and the outgoing limit is never below that).
"""

from __future__ import annotations

from django.conf import settings

#: A piece when the outgoing limit is off (0): sending in pieces still keeps a slow client's backlog small.
UNLIMITED_PIECE = 512 * 1024


def piece_bytes() -> int:
    """A quarter of XMPP_MAX_OUTGOING_BYTES (512 KiB of the default 2 MiB), at least 64 KiB;
    `UNLIMITED_PIECE` when that limit is off."""
    limit = int(settings.XMPP_MAX_OUTGOING_BYTES)
    return max(64 * 1024, limit // 4) if limit else UNLIMITED_PIECE


def answer_bytes() -> int:
    """The largest whole answer a list may make: half of XMPP_MAX_OUTGOING_BYTES (1 MiB of the default
    2 MiB: room for what else a login brings at once), at least 256 KiB; 1 MiB when that limit is off."""
    limit = int(settings.XMPP_MAX_OUTGOING_BYTES)
    return max(256 * 1024, limit // 2) if limit else 1024 * 1024
