"""The sans-IO XMPP core: no Django, no asyncio, no sockets. Bytes in, events and bytes out."""

from __future__ import annotations
