"""XEP-0480 SASL Upgrade Tasks for SCRAM (``UPGR-SCRAM-SHA-256``, ``UPGR-SCRAM-SHA-512``).

Implements §2.1 (the ``<upgrade/>`` children of SASL2's ``<authentication/>``), §2.2 (the client
asking for them in ``<authenticate/>``) and §3 (the SCRAM task data). States touched: EXPECT_AUTH
(advertised and asked for, through :mod:`.xep0388_sasl2`); the task itself runs in TASK, driven by
the driver with the helpers below.

An account that lacks credentials for a hash (e.g. imported with SCRAM-SHA-1 only) gets them
at its next login, without the password: the server sends a salt and an iteration count in
``<task-data/>``, the client answers with the SaltedPassword for them, from which the server
derives and stores StoredKey and ServerKey (XEP-0480 §3).
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from lxml import etree

from . import ns
from .sasl import ScramCredentials, credentials_from_salted_password

NS = ns.SCRAM_UPGRADE
_Q_HASH = ns.qname(NS, "hash")
_Q_UPGRADE = ns.qname(ns.SASL_UPGRADE, "upgrade")
TASKS = ("UPGR-SCRAM-SHA-256", "UPGR-SCRAM-SHA-512")


def advertisement() -> str:
    """§2.1: the upgrade tasks this server offers, as children of ``<authentication/>``."""
    return "".join(f"<upgrade xmlns='{ns.SASL_UPGRADE}'>{name}</upgrade>" for name in TASKS)


def requested(authenticate: etree._Element) -> tuple[str, ...]:
    """§2.2: the offered upgrades the client asks for in ``<authenticate/>``, in its order."""
    return tuple(
        name for up in authenticate.iterfind(_Q_UPGRADE) if (name := (up.text or "").strip()) in TASKS
    )


def hash_of(task: str) -> str | None:
    """``UPGR-SCRAM-SHA-256`` → ``SHA-256``; None for a task that is not a SCRAM upgrade."""
    if not task.startswith("UPGR-SCRAM-"):
        return None
    name = task.removeprefix("UPGR-SCRAM-")
    return name if name in ("SHA-1", "SHA-256", "SHA-512") else None


def salt_challenge(salt: bytes, iterations: int) -> str:
    return f"<salt xmlns='{NS}' iterations='{iterations}'>{base64.b64encode(salt).decode()}</salt>"


def credentials_from_answer(
    payload: etree._Element | None, hash_name: str, *, salt: bytes, iterations: int
) -> ScramCredentials | None:
    """The new credentials from the client's ``<hash/>``, or None when it is malformed."""
    if payload is None or payload.tag != _Q_HASH:
        return None
    try:
        salted = base64.b64decode((payload.text or "").strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(salted) != hashlib.new(hash_name.replace("-", "").lower()).digest_size:
        return None
    return credentials_from_salted_password(salted, hash_name, salt=salt, iterations=iterations)
