"""What XEP-0163's presence hook costs each broadcast presence (``xmppauth/pep.py`` ``Eventing.presence``).

Every available presence a client sends goes through it: it reads the XEP-0115 ``<c/>`` and, when the
capabilities are the ones it already has, does nothing more. This times that common case (the same caps
again, and a presence without caps), with the real ``Eventing`` and a stand-in session and router.
A first presence or new caps start a background task (a disco#info query at most once per software
version, then the last items read): that is not on the presence's path and not timed here.

    .venv/bin/python bench/pep_presence.py            # best of 5 runs of 200,000 presences each
"""

from __future__ import annotations

import os
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "xmppauth.settings")

import django

django.setup()

from xmppauth import pep  # noqa: E402
from xmppauth.proto.jid import JID  # noqa: E402
from xmppauth.proto.xml_names import parse_element  # noqa: E402

CAPS = b"<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://example.org' ver='abc='/>"


class _Session:
    jid = JID("alice", "localhost", "phone")
    available = True

    def __init__(self, caps: str) -> None:
        self.feature_state: dict[str, object] = {pep.CAPS: caps}


class _Router:
    def changed(self, session: object) -> None:
        return None


def _time(presence: bytes, caps: str, number: int) -> float:
    eventing, router, session = pep.Eventing(), _Router(), _Session(caps)
    stanza = parse_element(presence)
    runs = timeit.repeat(
        lambda: eventing.presence(router, session, stanza, False),  # type: ignore[arg-type]
        number=number,
        repeat=5,
    )
    return min(runs) / number


def main() -> None:
    number = 200_000
    head = b"<presence xmlns='jabber:client'><show>away</show>"
    same = _time(head + CAPS + b"</presence>", "sha-1 abc=", number)
    none = _time(head + b"</presence>", "", number)
    print(f"per broadcast presence: same caps again {same * 1e9:,.0f} ns, no caps {none * 1e9:,.0f} ns")


if __name__ == "__main__":
    main()
