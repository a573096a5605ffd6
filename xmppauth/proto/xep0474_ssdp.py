"""XEP-0474 SASL SCRAM Downgrade Protection (0.4+): the ``h=`` attribute of the server-first-message.

Implements §3 (the hash of the advertised mechanisms and channel-binding types). States touched:
none; :mod:`.rfc6120_sasl` adds the attribute when it starts a SCRAM mechanism.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping

__all__ = ["ssdp_attribute"]


def ssdp_attribute(mechanism: str, offered: tuple[str, ...], channel_bindings: Mapping[str, bytes]) -> str:
    """XEP-0474 (0.4+) ``h=`` for the SCRAM server-first-message.

    S is the advertised mechanisms of the profile in use, sorted by octet and joined with 0x1E,
    followed, when XEP-0440 channel-binding types were advertised, by 0x1F and the sorted types
    joined with 0x1E; ``h`` is base64(H(S)) with the hash of the SCRAM mechanism in use. Both our
    profiles advertise the same list, and FAST (HT-*) mechanisms are never part of it.
    """
    text = "\x1e".join(sorted(offered))
    if channel_bindings:
        text += "\x1f" + "\x1e".join(sorted(channel_bindings))
    hash_name = mechanism.removeprefix("SCRAM-").removesuffix("-PLUS").replace("-", "").lower()
    digest = hashlib.new(hash_name, text.encode()).digest()
    return "h=" + base64.b64encode(digest).decode()
