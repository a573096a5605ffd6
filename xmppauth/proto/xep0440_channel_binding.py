"""XEP-0440 SASL Channel-Binding Type Capability: the binding types usable on this stream.

Implements §2 (``<sasl-channel-binding/>`` beside the mechanisms, one ``<channel-binding type/>`` per type
the transport can compute: ``tls-server-end-point`` always on TLS, ``tls-exporter`` on TLS 1.3). States
touched: EXPECT_AUTH (the features). The bindings themselves are checked by the SCRAM -PLUS mechanisms
(:mod:`.sasl.scram`) and enter the XEP-0474 hash (:mod:`.xep0474_ssdp`).
"""

from __future__ import annotations

from collections.abc import Mapping

from . import ns
from .xml import escape_attr

__all__ = ["advertisement"]


def advertisement(channel_bindings: Mapping[str, bytes]) -> str:
    """The feature listing the types of ``channel_bindings`` (sorted), or "" when there are none."""
    if not channel_bindings:
        return ""
    types = "".join(f"<channel-binding type='{escape_attr(cb)}'/>" for cb in sorted(channel_bindings))
    return f"<sasl-channel-binding xmlns='{ns.SASL_CB}'>{types}</sasl-channel-binding>"
