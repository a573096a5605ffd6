"""The archive's quota per account (XMPP_ARCHIVE_MAX_BYTES, issue 12) on a real server. Before, a user who
sent at the read rate grew two archives (the sender's and the recipient's) without end: the disk filled at
128 KiB/s per connection. An archive over its quota loses its oldest messages; no message is refused."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.integration.rawclient import Session
from tests.integration.server import Server, running_server
from tests.integration.test_archive import PASSWORD, RSM, bodies, last_id, online, query

pytestmark = pytest.mark.integration

QUOTA = 64 * 1024
CHECK_EVERY = 4096  # xmppauth.archive.check_every(QUOTA)
SENT = 300


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    accounts = dict.fromkeys(("alice", "bob", "carol", "dave", "erin"), PASSWORD)
    with running_server(
        tmp_path_factory.mktemp("archive-quota"),
        accounts,
        XMPP_ARCHIVE_MAX_BYTES=str(QUOTA),
        XMPP_BIND2_OFFLINE_FROM_ARCHIVE="1",  # the default (other test modules turn it off)
    ) as srv:
        yield srv


def whole_archive(session: Session, with_jid: str) -> list[str]:
    """The bodies of every message of the session's archive with ``with_jid``, oldest first."""
    got: list[str] = []
    pages, after = 0, ""
    while True:
        page = query(
            session, f"all{pages}", with_jid=with_jid, rsm=f"<set xmlns='{RSM}'><max>100</max>{after}</set>"
        )
        got += bodies(page)
        pages += 1
        if b"complete='true'" in page:
            return got
        after = f"<after>{last_id(page)}</after>"
        assert pages < 50


def test_an_archive_past_its_quota_keeps_its_newest_messages_and_every_message_is_delivered(
    server: Server,
) -> None:
    alice, bob, carol = online(server, "alice"), online(server, "bob"), online(server, "carol")
    carol.send(f"<message to='{bob.jid}' type='chat' id='early'><body>before the flood</body></message>")
    bob.expect("before the flood</body>")
    filler = "x" * 1000
    for n in range(SENT):
        alice.send(f"<message to='{bob.jid}' type='chat' id='m{n}'><body>{n:03d} {filler}</body></message>")
    got = bob.expect(f"<body>{SENT - 1:03d} x+</body>.*?</message>", timeout=30)
    delivered = re.findall(rb"<body>(\d{3}) x+</body>", got)
    assert [int(n) for n in delivered] == list(range(SENT))  # nothing refused: every one delivered
    # a message as bob's archive keeps it: as delivered to him (alice's copy is a little smaller)
    stored = max(len(m) for m in re.findall(rb"<message[^>]*>.*?</message>", got))

    for session, contact in ((bob, "alice@localhost"), (alice, "bob@localhost")):
        kept = whole_archive(session, contact)
        numbers = [int(body[:3]) for body in kept]
        # the newest, in order, without a gap; the oldest went
        assert numbers == list(range(SENT - len(numbers), SENT)), numbers
        assert numbers[0] > 0
        # down to 7/8 of the quota when trimmed, then at most CHECK_EVERY more before the next look
        # (alice's copies are smaller than bob's by less than 200 bytes: she keeps a few more)
        assert len(numbers) * (stored - 200) <= QUOTA + CHECK_EVERY, (stored, len(numbers))
        assert len(numbers) * stored >= QUOTA * 7 // 8 - stored, (stored, len(numbers))

    # bob's archive with carol was trimmed too: the quota is the account's, all contacts together
    early = whole_archive(bob, "carol@localhost")
    assert early == []
    # carol's own archive is hers: one message, far below the quota, kept
    kept = whole_archive(carol, "bob@localhost")
    assert kept == ["before the flood"]

    log = (server.data_dir / "server.log").read_text()
    assert re.search(r"archive of bob over its quota \(\d+ bytes, the quota 65536\): its \d+ oldest", log), (
        log[-3000:]
    )
    assert filler not in log
    for session in (alice, bob, carol):
        session.close()


def test_stored_messages_whose_archive_copies_the_quota_removed_are_delivered_to_a_bind2_client(
    server: Server,
) -> None:
    """A Bind2 client fetches what waited for it from the archive, so stored messages the archive holds are
    not sent to it (XEP-0386 §2.3). Found by a black-box attack: with the quota below what waited, the
    oldest had been removed from the archive, and they were cleared from the store all the same: 254 of 300
    messages neither delivered nor kept. What the archive no longer holds is now delivered."""
    dave = online(server, "dave")
    filler = "z" * 1000
    for n in range(SENT):
        dave.send(
            f"<message to='erin@localhost' type='chat' id='o{n}'><body>{n:03d} {filler}</body></message>"
        )
    dave.quiet(1.0)  # stored (erin is offline), and archived behind the loop
    dave.close()
    erin = Session(server, "erin", PASSWORD, software="archive quota tests")
    assert erin.ok, erin.reply
    assert b"<bound xmlns='urn:xmpp:bind:0'" in erin.reply, erin.reply  # a Bind2 client
    erin.send("<presence/>")
    sent = [int(n) for n in re.findall(rb"<body>(\d{3}) z+</body>", erin.quiet(3.0))]
    archived = [int(body[:3]) for body in whole_archive(erin, "dave@localhost")]
    assert archived, "the archive kept nothing"
    assert archived == list(range(SENT - len(archived), SENT)), archived  # the newest
    assert sent == list(range(SENT - len(archived))), sent  # the rest, in order, sent
    erin.close()
