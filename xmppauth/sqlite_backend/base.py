"""Django's SQLite backend, with the "%s" -> "?" conversion of each query done by ``str.replace`` when
the query holds no "%%".

Django converts every query from the "format" parameter style to sqlite3's "qmark" style with the
regular expression ``(?<!%)%s`` over the whole SQL: about 180 instructions per character, some 70,000 for
the login read alone, about 2 % of a login (docs/performance.md, 2026-12-07). Without "%%" in the query,
no "%s" can be preceded by "%", so a plain replace gives the same text; queries with "%%", and named
("pyformat") parameters, go to Django's own conversion.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.backends.sqlite3 import base


class SQLiteCursorWrapper(base.SQLiteCursorWrapper):
    def convert_query(self, query: str, *, param_names: Iterable[str] | None = None) -> str:
        if param_names is None and "%%" not in query:
            return query.replace("%s", "?")
        return str(super().convert_query(query, param_names=param_names))


class DatabaseWrapper(base.DatabaseWrapper):
    def create_cursor(self, name: Any = None) -> SQLiteCursorWrapper:
        return self.connection.cursor(factory=SQLiteCursorWrapper)  # type: ignore[no-any-return]
