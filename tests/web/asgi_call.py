"""One HTTP request through an ASGI application, in the test's own thread: for the ASGI wrappers the site
puts around Django (security headers, the admin gate) without a server."""

from __future__ import annotations

import asyncio
from typing import Any

from asgiref.sync import async_to_sync


def http_scope(
    path: str, server: tuple[str, int] | None = ("127.0.0.1", 8000), **extra: Any
) -> dict[str, Any]:
    """A GET of ``path`` from 127.0.0.1 to ``server`` (``extra`` replaces or adds keys)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"localhost")],
        "client": ("127.0.0.1", 50000),
        "server": server,
        **extra,
    }


def call(app: Any, request: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    """``request`` (an http scope) through ``app``: status, headers (names in lower case), body."""
    sent: list[dict[str, Any]] = []
    requested: list[bool] = []

    async def receive() -> dict[str, Any]:
        if not requested:
            requested.append(True)
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # no disconnect: Django cancels this when it has answered
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async_to_sync(app)(request, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = {bytes(k).decode("latin-1").lower(): bytes(v).decode("latin-1") for k, v in start["headers"]}
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], headers, body
