"""Liveness and readiness, for a load balancer or an orchestrator in front of several processes.

* ``GET /healthz``: ``200 ok`` whenever the process answers HTTP at all (its event loop runs).
* ``GET /readyz``: whether this process should be given new clients: ``200`` when it is not stopping,
  its database answers a query within 2 s and, with several processes (``CHANNEL_LAYER_URL``), its own
  heartbeat came back to it through Redis lately; otherwise ``503``. The body says which check failed,
  as JSON (``{"node": ..., "checks": {...}}``), and never anything secret.

Like every page they answer only to the host names of ``DJANGO_ALLOWED_HOSTS``: a load balancer's probe
sends one of them (docs/deploy.md).
"""

from __future__ import annotations

import asyncio

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from xmppauth.cluster import CLUSTER
from xmppauth.offloop import off_loop
from xmppauth.transport.limits import process_limits

DATABASE_WAIT = 2.0  # seconds the readiness check waits for the database


@off_loop
def _database_answers() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


@require_GET
async def live(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok\n", content_type="text/plain; charset=utf-8")


@require_GET
async def ready(request: HttpRequest) -> JsonResponse:
    checks: dict[str, str] = {"serving": "stopping" if process_limits().stopping is not None else "ok"}
    try:
        await asyncio.wait_for(_database_answers(), DATABASE_WAIT)
        checks["database"] = "ok"
    except TimeoutError:
        checks["database"] = f"no answer within {DATABASE_WAIT:.0f} s"
    except Exception as exc:  # the check's answer is the failure's kind, for the operator
        checks["database"] = f"failing ({type(exc).__name__})"
    if CLUSTER.active:
        checks["channel_layer"] = "ok" if CLUSTER.hears_itself() else "its heartbeat did not come back lately"
    status = 200 if all(value == "ok" for value in checks.values()) else 503
    return JsonResponse({"node": settings.XMPP_NODE, "checks": checks}, status=status)
