"""Transports: what carries an XMPP client stream to the stream application (xmppauth/consumer.py).

Each transport runs one instance of the application per connection, with an ASGI scope of type
``xmpp`` and one message set, so that the application never knows which transport carries it:

- :mod:`.tcp`: raw TCP (STARTTLS on 5222, direct TLS on 5223), TLS done in the transport;
- :mod:`.websocket`: RFC 7395 over Daphne's WebSocket (``/xmpp-websocket``); the scope says
  ``"xmpp_framing": "websocket"``: every ``xmpp.receive`` is one message holding one element.

Transport -> application: ``xmpp.connect {tls, encrypted?}`` (``tls`` is the connection's TLS, None
before STARTTLS and on a WebSocket; ``encrypted``, when present, is the transport's word that the
stream is encrypted all the same, behind wss or a TLS-terminating proxy), ``xmpp.receive {bytes}``,
``xmpp.tls_established {tls}``, ``xmpp.stream_error {condition, text}`` (the client sent what the
transport refuses; the stream ends with that RFC 6120 stream error), ``xmpp.disconnect {reason}``.

Application -> transport: ``xmpp.send {frames}`` (a list of byte strings: one element each, or any
piece of the stream when unframed; TCP also takes ``{bytes}``), ``xmpp.starttls``, ``xmpp.close``.
The details of each are in the transport's module.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
ASGIApp = Callable[..., Awaitable[None]]  # application(scope, receive, send)
