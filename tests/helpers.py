"""Helpers shared by the database-level tests: accounts, the ORM from async tests, XML comparison.

The named accounts are fixtures in tests/conftest.py (``alice``, ``bob``); ``account()`` makes them
and any other. The integration server creates the same names with the same passwords
(tests/integration/server.py ``ACCOUNTS``), so alice's password is "wonderland" in every tier.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from lxml import etree

from tests.integration.server import ACCOUNTS

if TYPE_CHECKING:
    from accounts.models import User

_HASHED: dict[str, tuple[str, dict[str, Any]]] = {}
_PARSER = etree.XMLParser(remove_blank_text=True)


def account(username: str, password: str | None = None, **fields: Any) -> User:
    """A saved account; its password is ``password``, else the one ``ACCOUNTS`` gives the name, else
    "wonderland". Hashing is slow on purpose, so each password is hashed once per process and its
    hashes (Django's and the SCRAM keys, which do not depend on the name) are copied."""
    from accounts.models import User

    secret = password if password is not None else ACCOUNTS.get(username, "wonderland")
    if secret not in _HASHED:
        probe = User(username=username)
        probe.set_password(secret)
        _HASHED[secret] = (probe.password, probe.scram)
    hashed, scram = _HASHED[secret]
    return User.objects.create(username=username, password=hashed, scram=copy.deepcopy(scram), **fields)


async def db(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ORM code from an async test (Django refuses it on the event loop)."""
    return await sync_to_async(fn)(*args, **kwargs)


def canon(xml: str | etree._Element) -> str:
    """Canonical XML (C14N 2.0, whitespace between elements dropped), for whole-reply comparisons."""
    if not isinstance(xml, str):
        xml = etree.tostring(xml).decode()
    return str(etree.canonicalize(etree.tostring(etree.fromstring(xml, _PARSER)).decode(), strip_text=True))
