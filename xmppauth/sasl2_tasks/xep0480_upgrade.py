"""XEP-0480 SASL upgrade tasks for SCRAM (``UPGR-SCRAM-SHA-256``, ``UPGR-SCRAM-SHA-512``) as a SASL2 task.

Offered when the client asked for them in ``<authenticate/>`` (XEP-0480 §2.2), the login used the
account password, and the account has no credentials for that hash yet. The task sends a fresh
salt and the iteration count (§3.1); the client answers with the SaltedPassword for them, from
which the server derives and stores StoredKey and ServerKey (§3.2). The wire format is
:mod:`xmppauth.proto.xep0480_upgrade`'s; the salt is this login's task state.
"""

from __future__ import annotations

import logging
import secrets

from django.conf import settings
from lxml import etree

from sessions_acl.login import Authorization
from xmppauth import sasl2_tasks, services
from xmppauth.proto import events as ev
from xmppauth.proto import xep0480_upgrade as upgrade
from xmppauth.proto.errors import SaslCondition

log = logging.getLogger("xmppauth.c2s")

#: Every name :func:`upgrade.hash_of` accepts (advertised are only those of ``upgrade.TASKS``).
NAMES = frozenset(f"UPGR-SCRAM-{name}" for name in ("SHA-1", "SHA-256", "SHA-512"))
_SALT = "xep0480_upgrade.salt"  # TaskContext.state key: the salt sent in this login's challenge


async def offer(
    context: sasl2_tasks.TaskContext, event: ev.Authenticated, result: Authorization
) -> list[list[str]]:
    if not event.upgrades or result.credential != "password":
        # XEP-0480 upgrades derive the account's keys from the password: never from an app
        # password or a token.
        return []
    missing = await services.missing_hashes(event.localpart)
    return [[task] for task in event.upgrades if upgrade.hash_of(task) in missing]


async def start(context: sasl2_tasks.TaskContext, name: str, payload: etree._Element | None) -> None:
    salt = secrets.token_bytes(16)
    context.state[_SALT] = salt
    context.challenge(upgrade.salt_challenge(salt, settings.XMPP_SCRAM_ITERATIONS))


async def data(context: sasl2_tasks.TaskContext, name: str, payload: etree._Element | None) -> None:
    hash_name = upgrade.hash_of(name)
    salt = context.state.get(_SALT, b"")
    assert hash_name is not None
    assert isinstance(salt, bytes)
    creds = upgrade.credentials_from_answer(
        payload, hash_name, salt=salt, iterations=settings.XMPP_SCRAM_ITERATIONS
    )
    if creds is None:
        context.failed(SaslCondition.MALFORMED_REQUEST, "expected <hash/> with the SaltedPassword")
        return
    await services.store_scram(context.localpart, hash_name, creds)
    log.info("%s: %s upgraded to SCRAM-%s", context.peer, context.localpart, hash_name)
    await context.succeeded()


sasl2_tasks.register(names=NAMES, offer=offer, start=start, data=data, order=100)
