"""The archive's quota per account (XMPP_ARCHIVE_MAX_BYTES; xmppauth/archive.py) against each database: an
archive over its quota loses its oldest messages down to 7/8 of it, one under it and other accounts' lose
nothing, and the sizes the quota adds up are UTF-8 bytes (migration 0012 measures older rows the same way)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from django.db.migrations.executor import MigrationExecutor

from tests.races import VENDORS, default_database, fresh_database, postgresql_database, sqlite_database
from xmppauth import archive

STANZA = "<message><body>{n} héllo wörld ✓ {pad}</body></message>"  # multi-byte: bytes, not characters


def trim(accounts: dict[int, str], quota: int) -> None:
    """:func:`archive._trim` in this thread (the database is this thread's for the test)."""
    archive._trim.func(accounts, quota)  # type: ignore[attr-defined]


def add(user_id: int, count: int, *, first: int = 0) -> int:
    """``count`` messages in the account's archive, oldest first; the UTF-8 bytes of each."""
    from xmppauth.models import ArchivedMessage

    rows = []
    for n in range(first, first + count):
        text = STANZA.format(n=f"{n:04d}", pad="x" * 900)
        rows.append(
            ArchivedMessage(
                user_id=user_id,
                archive_id=f"id{n:06d}",
                with_jid="b@localhost",
                peer="b@localhost/r",
                outgoing=False,
                stamp=datetime.now(UTC),
                stanza=text,
                size=len(text.encode()),
            )
        )
    ArchivedMessage.objects.bulk_create(rows)
    return len(rows[0].stanza.encode())


def kept(user_id: int) -> list[int]:
    from xmppauth.models import ArchivedMessage

    return [
        int(aid[2:])
        for aid in ArchivedMessage.objects.filter(user_id=user_id).values_list("archive_id", flat=True)
    ]


@pytest.mark.parametrize("vendor", VENDORS)
def test_an_archive_over_its_quota_loses_its_oldest_down_to_seven_eighths_and_no_other_loses_any(
    vendor: str, tmp_path: Path, django_db_blocker: Any
) -> None:
    with fresh_database(vendor, tmp_path, django_db_blocker):
        from accounts.models import User

        ann, bea = User.objects.create(username="ann"), User.objects.create(username="bea")
        size = add(ann.pk, 100)
        add(bea.pk, 100, first=1000)
        quota = 60 * size
        trim({ann.pk: "ann", bea.pk: "bea"}, quota + 40 * size)  # both under: nothing
        assert len(kept(ann.pk)) == len(kept(bea.pk)) == 100

        trim({ann.pk: "ann"}, quota)
        left = kept(ann.pk)
        assert left == list(range(100 - len(left), 100))  # the newest, without a gap
        assert len(left) == int(quota * 7 / 8) // size  # as many as fit in 7/8 of the quota
        assert len(kept(bea.pk)) == 100  # not named, not touched


@pytest.mark.parametrize("vendor", VENDORS)
def test_migration_0012_measures_archived_messages_in_utf8_bytes(
    vendor: str, tmp_path: Path, django_db_blocker: Any
) -> None:
    fresh = sqlite_database(tmp_path) if vendor == "sqlite" else postgresql_database()
    with fresh as config, django_db_blocker.unblock(), default_database(config):
        executor = MigrationExecutor(connections["default"])
        executor.migrate([("xmppauth", "0011_offline_message_size")])
        apps = executor.loader.project_state([("xmppauth", "0011_offline_message_size")]).apps
        user = apps.get_model("accounts", "User").objects.create(username="ann")
        text = "<message><body>ünïcödé ✓ 😀</body></message>"
        apps.get_model("xmppauth", "ArchivedMessage").objects.create(
            user=user,
            archive_id="a1",
            with_jid="b@localhost",
            peer="b@localhost",
            outgoing=True,
            stamp=datetime.now(UTC),
            stanza=text,
        )
        executor = MigrationExecutor(connections["default"])
        executor.migrate([("xmppauth", "0012_archived_message_size")])
        apps = executor.loader.project_state([("xmppauth", "0012_archived_message_size")]).apps
        row = apps.get_model("xmppauth", "ArchivedMessage").objects.get(archive_id="a1")
        assert row.size == len(text.encode()) > len(text)


@pytest.mark.parametrize("vendor", VENDORS)
def test_the_newest_message_stays_even_when_it_alone_is_over_the_quota(
    vendor: str, tmp_path: Path, django_db_blocker: Any
) -> None:
    """Found by a black-box attack: a message larger than 7/8 of the quota removed itself, and the
    archive was left empty."""
    with fresh_database(vendor, tmp_path, django_db_blocker):
        from accounts.models import User

        ann = User.objects.create(username="ann")
        size = add(ann.pk, 10)
        trim({ann.pk: "ann"}, size // 2)
        assert kept(ann.pk) == [9]


@pytest.mark.parametrize("vendor", VENDORS)
def test_messages_kept_for_a_client_to_fetch_survive_a_trim_until_their_time_is_up(
    vendor: str, tmp_path: Path, django_db_blocker: Any
) -> None:
    """Found by a second black-box attack: a Bind2 login clears the stored copies of messages its archive
    holds, for the client to fetch there; a trim between the login and the fetch removed them, and they
    were lost. Those messages are now kept from the trim for a while (archive.keep_for_fetching)."""
    from datetime import timedelta

    from xmppauth.models import ArchivedMessage

    with fresh_database(vendor, tmp_path, django_db_blocker):
        from accounts.models import User

        ann = User.objects.create(username="ann")
        size = add(ann.pk, 20)
        held = archive._keep.func("ann", ["id000002", "id000003", "id000099"])  # type: ignore[attr-defined]
        assert held == {"id000002", "id000003"}  # (99 is not there: its stored copy is sent instead)
        ArchivedMessage.objects.filter(archive_id="id000003").update(
            kept_until=datetime.now(UTC) - timedelta(seconds=1)
        )
        trim({ann.pk: "ann"}, 5 * size)
        assert kept(ann.pk) == [2, *range(16, 20)]  # 2 still to be fetched; 3's time was up
