"""The SQLite backend's placeholder conversion (xmppauth/sqlite_backend) gives exactly the text Django's
own gives, for any query: the embedded default runs every query through it."""

from __future__ import annotations

import sqlite3

import pytest
from django.db import connection
from django.db.backends.sqlite3.base import SQLiteCursorWrapper as DjangoCursor
from hypothesis import given
from hypothesis import strategies as st

from xmppauth.sqlite_backend.base import SQLiteCursorWrapper

PIECES = st.lists(st.sampled_from(["%s", "%%", "%", "s", "x", "'", "%%s", "%(a)s", "?", " "]), max_size=30)


_DB = sqlite3.connect(":memory:", check_same_thread=False)
OURS = _DB.cursor(factory=SQLiteCursorWrapper)
DJANGOS = _DB.cursor(factory=DjangoCursor)


def _ours(query: str) -> str:
    return OURS.convert_query(query)


def _django(query: str) -> str:
    return str(DJANGOS.convert_query(query))


@given(PIECES)
def test_it_converts_any_query_as_django_does(pieces: list[str]) -> None:
    query = "".join(pieces)
    assert _ours(query) == _django(query)


def test_the_usual_cases() -> None:
    assert _ours("SELECT a FROM t WHERE b = %s AND c = %s") == "SELECT a FROM t WHERE b = ? AND c = ?"
    assert _ours("SELECT '%%s' WHERE x = %s") == "SELECT '%s' WHERE x = ?"  # "%%" goes to Django's
    assert _ours("SELECT 1 WHERE x LIKE '%%%s'") == _django("SELECT 1 WHERE x LIKE '%%%s'")


@pytest.mark.django_db
def test_the_embedded_default_uses_it() -> None:
    if connection.vendor != "sqlite":
        pytest.skip("DATABASE_URL names another database")
    with connection.cursor() as cursor:
        assert isinstance(cursor.cursor, SQLiteCursorWrapper)
        cursor.execute("SELECT %s || '%%'", ["50"])
        assert cursor.fetchone() == ("50%",)
