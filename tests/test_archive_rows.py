"""What the router's archive (xmppauth/archive.py) makes of a message, before anything is written:
which archives keep it, under which id, and the <stanza-id/> the recipient gets (XEP-0313, XEP-0359)."""

from __future__ import annotations

import pytest
from lxml import etree

from xmppauth import archive
from xmppauth.proto import xep0313_mam as mam
from xmppauth.proto.jid import JID

Queued = list[tuple[list[archive.Row], bytes, bytes]]
ALICE = JID.parse("alice@localhost/desk")
BOB = JID.parse("bob@localhost/phone")


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> Queued:
    got: Queued = []
    monkeypatch.setattr(archive.WRITER, "queue", lambda rows, data, plain: got.append((rows, data, plain)))
    monkeypatch.setattr(archive, "_PREFS", {})
    return got


def message(inner: str = "<body>hi</body>", kind: str = "chat") -> etree._Element:
    return etree.fromstring(
        f"<message xmlns='jabber:client' from='{ALICE}' to='{BOB}' type='{kind}' id='m1'>{inner}</message>"
    )


def test_both_archives_keep_a_chat_under_one_id_and_the_recipient_gets_it(queued: Queued) -> None:
    stanza = message()
    rows = archive.Archive().prepare(ALICE, BOB, stanza)
    assert [(r.account, r.contact, r.outgoing) for r in rows] == [
        (BOB.bare, ALICE.bare, False),
        (ALICE.bare, BOB.bare, True),
    ]
    assert rows[0].archive_id == rows[1].archive_id
    assert mam.is_archive_id(rows[0].archive_id)
    plain = b"<message xmlns='jabber:client'><body>hi</body></message>"
    data = archive.Archive().write(rows, plain)
    assert data == (
        b"<message xmlns='jabber:client'><body>hi</body>"
        + f"<stanza-id xmlns='urn:xmpp:sid:0' id='{rows[0].archive_id}' by='bob@localhost'/>".encode()
        + b"</message>"
    )
    assert queued == [(rows, data, plain)]  # bob's copy with his id, alice's without


@pytest.mark.parametrize(
    "inner",
    [
        "<composing xmlns='http://jabber.org/protocol/chatstates'/>",
        "<body>x</body><no-store xmlns='urn:xmpp:hints'/>",
    ],
)
def test_a_message_not_worth_keeping_gets_no_rows(queued: Queued, inner: str) -> None:
    assert archive.Archive().prepare(ALICE, BOB, message(inner)) == []


def test_a_headline_is_not_archived(queued: Queued) -> None:
    assert archive.Archive().prepare(ALICE, BOB, message(kind="headline")) == []


def test_a_stanza_id_forged_in_the_recipients_name_goes_and_another_stays(queued: Queued) -> None:
    stanza = message(
        "<body>x</body><stanza-id xmlns='urn:xmpp:sid:0' id='forged' by='Bob@localhost'/>"
        "<stanza-id xmlns='urn:xmpp:sid:0' id='theirs' by='muc.example'/>"
    )
    archive.Archive().prepare(ALICE, BOB, stanza)
    assert [e.get("id") for e in stanza.findall("{urn:xmpp:sid:0}stanza-id")] == ["theirs"]


def test_preferences_decide_whose_archive_keeps_it(queued: Queued, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        archive,
        "_PREFS",
        {
            BOB.bare: mam.Prefs(default="never", always=frozenset({"carol@localhost"})),
            ALICE.bare: mam.Prefs(default="roster"),
        },
    )
    rows = archive.Archive().prepare(ALICE, BOB, message())
    assert [(r.account, r.roster_only) for r in rows] == [(ALICE.bare, True)]  # bob: never; alice: roster
    data = archive.Archive().write(rows, b"<message xmlns='jabber:client'><body>hi</body></message>")
    assert b"stanza-id" not in data  # the only row is alice's own (and the writer may drop it)
