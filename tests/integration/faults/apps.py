"""Wraps chosen server functions so that they raise when the fault file names them (tests only)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.apps import AppConfig
from django.conf import settings

log = logging.getLogger("tests.faults")


class InjectedFault(RuntimeError):
    """What a wrapped function raises: a stand-in for any bug in that step."""


def _targets() -> dict[str, tuple[object, str, bool]]:
    """Fault name -> (object holding the function, attribute, whether it is a coroutine function)."""
    from xmppauth import services
    from xmppauth.consumer import StreamConsumer
    from xmppauth.features import rfc6121_roster as roster
    from xmppauth.features import xep0050_commands as adhoc
    from xmppauth.features import xep0077_register as register
    from xmppauth.proto import xep0480_upgrade as upgrade
    from xmppauth.proto.stream import C2SStream
    from xmppauth.router import ROUTER

    return {
        # before authentication, and authorizing the login
        "services.scram_credentials": (services, "scram_credentials", True),
        "services.authorize": (services, "authorize", True),
        # SASL2 tasks (XEP-0480 upgrades)
        "upgrade.salt_challenge": (upgrade, "salt_challenge", False),
        # binding and resuming
        "services.open_session": (services, "open_session", True),
        "StreamConsumer._bind": (StreamConsumer, "_bind", True),
        "StreamConsumer.take_over": (StreamConsumer, "take_over", True),
        "services.resume_session": (services, "resume_session", True),
        # stanzas from the client, and the requests the driver answers
        "ROUTER.route": (ROUTER, "route", True),
        "roster.handle": (roster, "handle", True),
        "register.handle": (register, "handle", True),
        "adhoc.handle": (adhoc, "handle", True),
        "services.cam_list": (services, "cam_list", True),
        "services.cam_revoke": (services, "cam_revoke", True),
        "services.take_offline": (services, "take_offline", True),
        # background work and timers
        "services.touch_session": (services, "touch_session", True),
        "C2SStream.request_ack": (C2SStream, "request_ack", False),
        # the router's and the control listener's calls into a session
        "C2SStream.send_raw": (C2SStream, "send_raw", False),
        "C2SStream.queue_detached": (C2SStream, "queue_detached", False),
        "StreamConsumer._close": (StreamConsumer, "_close", True),
        # the clean-up itself
        "ROUTER.session_ended": (ROUTER, "session_ended", True),
    }


def _check(name: str, moment: str) -> None:
    """Raise InjectedFault (once) if the fault file names ``name`` at ``moment``."""
    path = settings.DATA_DIR / "fault"
    try:
        wanted = path.read_text().split()
    except FileNotFoundError:
        return
    if wanted[:1] != [name] or (wanted[1:2] or ["before"])[0] != moment:
        return
    try:
        path.unlink()
    except FileNotFoundError:
        return  # another call fired it first
    log.warning("injecting a fault in %s (%s)", name, moment)
    raise InjectedFault(f"injected fault in {name} ({moment})")


def _wrap(name: str, original: Callable[..., Any], is_async: bool) -> Callable[..., Any]:
    if is_async:

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            _check(name, "before")
            result = await original(*args, **kwargs)
            _check(name, "after")
            return result

        return wrapper

    def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
        _check(name, "before")
        result = original(*args, **kwargs)
        _check(name, "after")
        return result

    return sync_wrapper


class FaultsConfig(AppConfig):
    name = "tests.integration.faults"
    label = "faults"

    def ready(self) -> None:
        for name, (owner, attribute, is_async) in _targets().items():
            setattr(owner, attribute, _wrap(name, getattr(owner, attribute), is_async))
