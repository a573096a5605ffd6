"""/healthz and /readyz (xmppauth/health.py): what a load balancer asks each process."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from django.test import Client

from xmppauth.transport.limits import STOPPING, process_limits

pytestmark = pytest.mark.django_db


@pytest.fixture
def stopping() -> Iterator[None]:
    limits = process_limits()
    limits.stopping = STOPPING
    yield
    limits.stopping = None


def test_a_live_process_says_ok() -> None:
    answer = Client().get("/healthz")
    assert answer.status_code == 200
    assert answer.content == b"ok\n"


def test_a_ready_process_names_each_check_and_itself() -> None:
    answer = Client().get("/readyz")
    assert answer.status_code == 200, answer.content
    body = json.loads(answer.content)
    assert body["checks"] == {"serving": "ok", "database": "ok"}  # one process: no channel layer to check
    assert body["node"]


def test_a_stopping_process_is_not_ready(stopping: None) -> None:
    answer = Client().get("/readyz")
    assert answer.status_code == 503
    assert json.loads(answer.content)["checks"]["serving"] == "stopping"
    assert Client().get("/healthz").status_code == 200  # still alive while it stops


def test_the_checks_answer_only_get() -> None:
    assert Client().post("/readyz").status_code == 405
