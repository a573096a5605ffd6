"""XEP-0494 Client Access Management (``urn:xmpp:cam:0``): list and revoke over XMPP.

What is listed: every client installation that is not revoked (``c<id>``: SASL2 user agents,
and one entry for the account's clients without an id) and every live app password
(``a<id>``). ``<permission status>`` follows the grant: ``unrestricted`` with every scope the
account could have, ``normal`` when only ``clients.manage``/``admin`` are missing, otherwise
``restricted`` with the scopes inside ``<scopes xmlns='urn:xmppauth:grant:0'>`` (docs/access.md).

Revoking ends the client's sessions at once and kills its FAST tokens and grant. A client that
has presented the account password since it last changed could log in again with it, so the
answer is then, as XEP-0494 §3.2 says, ``service-unavailable`` with
``<password-reset-required/>`` (the revocation itself has still happened).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils import timezone
from lxml import etree

from accounts.models import User
from xmppauth.proto import ns
from xmppauth.proto.numbers import parse_uint

from . import access, revocation, tokens
from .models import AppPassword, Client, Grant, Session

MAX_ID = 2**63 - 1  # the largest BigAutoField key: a longer id could not even be looked up


def _sub(parent: etree._Element, local: str, text: str | None = None) -> etree._Element:
    el = etree.SubElement(parent, ns.qname(ns.CAM, local))
    if text is not None:
        el.text = text
    return el


def _permission(parent: etree._Element, scopes: frozenset[str], staff: bool) -> None:
    everything = access.ROLES["admin" if staff else "full"]
    permission = _sub(parent, "permission")
    if scopes >= everything:
        permission.set("status", "unrestricted")
    elif scopes >= everything - {access.CLIENTS_MANAGE, access.ADMIN}:
        permission.set("status", "normal")
    else:
        permission.set("status", "restricted")
        detail = etree.SubElement(permission, ns.qname(ns.GRANT, "scopes"), nsmap=ns.default(ns.GRANT))
        for scope in sorted(scopes):
            etree.SubElement(detail, ns.qname(ns.GRANT, "scope")).text = scope


def client_list(user: User) -> etree._Element:
    """The ``<clients/>`` payload for ``user``."""
    now = timezone.now()
    clients_el = etree.Element(ns.qname(ns.CAM, "clients"), nsmap=ns.default(ns.CAM))
    live = set(Session.objects.filter(user=user, ended__isnull=True).values_list("client_id", "grant_id"))
    live_clients = {c for c, _ in live}
    live_grants = {g for _, g in live}
    for client in Client.objects.filter(user=user, revoked__isnull=True).select_related("grant"):
        el = _sub(clients_el, "client")
        el.set("id", f"c{client.pk}")
        el.set("type", "session")
        el.set("connected", "true" if client.pk in live_clients else "false")
        _sub(el, "first-seen", tokens.xep0082(client.first_seen))
        _sub(el, "last-seen", tokens.xep0082(client.last_seen))
        auth = _sub(el, "auth")
        if _knows_password(client, user):
            _sub(auth, "password")
        if client.fast_tokens.filter(expires__gt=now).exists():
            _sub(auth, "fast")
        grant = client.grant
        scopes = set(grant.scopes) if grant is not None and grant.is_live(now) else set()
        _permission(el, access.session_scopes(scopes, app_password=False, staff=user.is_staff), user.is_staff)
        agent = _sub(el, "user-agent")
        _sub(
            agent,
            "software",
            client.software or ("clients without an id" if not client.user_agent_id else ""),
        )
        if client.device:
            _sub(agent, "device", client.device)
    apps = AppPassword.objects.filter(user=user, grant__in=Grant.objects.live(now))
    for app in apps.select_related("grant"):
        grant = app.grant
        el = _sub(clients_el, "client")
        el.set("id", f"a{app.pk}")
        el.set("type", "session" if grant.last_used else "access")
        el.set("connected", "true" if grant.pk in live_grants else "false")
        _sub(el, "first-seen", tokens.xep0082(app.created))
        if grant.last_used:
            _sub(el, "last-seen", tokens.xep0082(grant.last_used))
        _sub(_sub(el, "auth"), "grant")
        _permission(
            el, access.session_scopes(grant.scopes, app_password=True, staff=user.is_staff), user.is_staff
        )
        _sub(_sub(el, "user-agent"), "software", f"app password: {app.label}")
    return clients_el


def _knows_password(client: Client, user: User) -> bool:
    seen = client.password_seen
    return seen is not None and (user.password_changed is None or seen > user.password_changed)


@dataclass(frozen=True)
class RevokeOutcome:
    found: bool
    password_reset_required: bool = False


def revoke(user: User, client_ref: str, *, actor: str) -> RevokeOutcome:
    """Revoke ``c<id>`` or ``a<id>`` of ``user`` (ids of other accounts are simply not found)."""
    kind = client_ref[:1]
    pk = parse_uint(client_ref[1:], maximum=MAX_ID)
    if pk is None:
        return RevokeOutcome(found=False)
    try:
        if kind == "c":
            client = revocation.revoke_client(pk, actor=actor, user=user)
            return RevokeOutcome(found=True, password_reset_required=_knows_password(client, user))
        if kind == "a":
            revocation.revoke_app_password(pk, actor=actor, user=user)
            return RevokeOutcome(found=True)
    except revocation.NotFound:
        pass
    return RevokeOutcome(found=False)
