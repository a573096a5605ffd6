"""WebAuthn as a SASL2 task (``X-WEBAUTHN``, namespace ``urn:xmppauth:webauthn:0``): a security key or
passkey as the second factor of an XMPP login.

Not an XEP: the task is ours, specified in docs/protocol/webauthn-task.md. Offered, as one of the
second-factor alternatives (``group="second-factor"``), after a password login of an account with a
registered security key or passkey; never after a FAST token or an app password. Two messages:

- the client picks the task, ``<next task='X-WEBAUTHN'/>``; the server answers with
  ``<options xmlns='urn:xmppauth:webauthn:0'>{…}</options>``, the JSON of a
  ``PublicKeyCredentialRequestOptions`` (what ``PublicKeyCredential.parseRequestOptionsFromJSON()``
  takes: the challenge, the RP id, the account's credentials, user verification);
- the client answers ``<task-data><assertion xmlns='urn:xmppauth:webauthn:0'>{…}</assertion></task-data>``
  with the JSON of the credential the authenticator returned (``credential.toJSON()``).

The challenge is used once: a second answer, a late one (``XMPP_WEBAUTHN_TIMEOUT_SECONDS``) or one for
another origin or RP id fails, as does a key whose signature counter went backwards
(``accounts.webauthn``). A failure fails the authentication with ``not-authorized`` and a text.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from lxml import etree

from accounts.webauthn import Ceremony
from sessions_acl.login import Authorization
from xmppauth import sasl2_tasks, services
from xmppauth.proto import events as ev
from xmppauth.proto import ns
from xmppauth.proto.errors import SaslCondition
from xmppauth.sasl2_tasks import TaskContext

WEBAUTHN = "X-WEBAUTHN"
ASSERTION = ns.qname(ns.WEBAUTHN, "assertion")
MAX_ANSWER = 64 * 1024  # characters of JSON; an assertion is a few kB at most
_CEREMONY = "webauthn"  # the key of this task's ceremony in the login's state


async def _offer(context: TaskContext, event: ev.Authenticated, result: Authorization) -> list[list[str]]:
    return [[WEBAUTHN]] if "webauthn" in result.second_factors else []


async def _start(context: TaskContext, task: str, payload: etree._Element | None) -> None:
    if payload is not None:
        context.failed(SaslCondition.MALFORMED_REQUEST, "X-WEBAUTHN starts empty: wait for the options")
        return
    made = await services.webauthn_options(context.user_id)
    if made is None:  # removed since the login began
        context.failed(
            SaslCondition.NOT_AUTHORIZED, "no security key or passkey is registered for this account"
        )
        return
    options, ceremony = made
    context.state[_CEREMONY] = ceremony
    context.challenge(f"<options xmlns='{ns.WEBAUTHN}'>{escape(options)}</options>")


async def _data(context: TaskContext, task: str, payload: etree._Element | None) -> None:
    ceremony = Ceremony.take(context.state, _CEREMONY)
    if payload is None or payload.tag != ASSERTION or len(payload) or not (payload.text or "").strip():
        context.failed(
            SaslCondition.MALFORMED_REQUEST, f"expected <assertion xmlns='{ns.WEBAUTHN}'>JSON</assertion>"
        )
        return
    answer = payload.text or ""
    if len(answer) > MAX_ANSWER:
        context.failed(SaslCondition.MALFORMED_REQUEST, "the assertion is too long")
        return
    result = await services.webauthn_verify(ceremony, answer)
    if not result.ok or result.user_id != context.user_id:
        text = result.text or "this security key or passkey is not registered for this account"
        sasl2_tasks.log.info("%s: %s failed the %s task: %s", context.peer, context.localpart, task, text)
        context.failed(SaslCondition.NOT_AUTHORIZED, text)
        return
    await context.succeeded(WEBAUTHN)


sasl2_tasks.register(
    names=frozenset({WEBAUTHN}), offer=_offer, start=_start, data=_data, order=15, group="second-factor"
)
