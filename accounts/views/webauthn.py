"""Security keys and passkeys in the portal: the JSON endpoints that static/accounts/webauthn.js calls,
for the sign-in's second step, a passkey sign-in without a password, re-authentication and
registering a key.

Each ceremony has two POSTs (CSRF token in the ``X-CSRFToken`` header): ``…/options/`` answers
``{"publicKey": options}`` for ``PublicKeyCredential.parse…OptionsFromJSON`` and keeps the ceremony in
the session; ``…/verify/`` takes ``{"credential": credential.toJSON(), …}``, removes the ceremony from
the session whatever happens (a challenge is used once) and answers ``{"redirect": url}`` or
``{"error": text}``. A request the guards turn away gets a redirect, which the script follows.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.text import capfirst
from django.views.decorators.http import require_GET, require_POST

from .. import webauthn
from ..models import User
from ..webauthn import AssertionCheck, Ceremony, WebAuthnError
from .guard import (
    PortalRequest,
    actor,
    announce,
    keep_verified,
    mark_reauthenticated,
    pending_signin,
    reauthenticated,
    safe_next,
    signed_in,
)
from .signin import finish_signin

#: Session keys of the ceremonies under way, one per purpose.
SIGNIN = "portal.webauthn.signin"
PASSKEY = "portal.webauthn.passkey"
REAUTH = "portal.webauthn.reauth"
REGISTER = "portal.webauthn.register"


def _body(request: HttpRequest) -> dict[str, Any]:
    try:
        data = json.loads(request.body)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        return {}
    return data if isinstance(data, dict) else {}


def _error(text: str) -> JsonResponse:
    return JsonResponse({"error": capfirst(text)}, status=400)


def _options(request: HttpRequest, key: str, made: tuple[str, Ceremony] | None) -> JsonResponse:
    """Keep the ceremony under ``key`` and answer its options."""
    if made is None:
        return _error(webauthn.MESSAGES["no_credential"])
    options, ceremony = made
    request.session[key] = ceremony.to_dict()
    return JsonResponse({"publicKey": json.loads(options)})


def _answer(request: HttpRequest, key: str) -> tuple[AssertionCheck, dict[str, Any]]:
    """The assertion in the request checked against the ceremony kept under ``key`` (now removed)."""
    body = _body(request)
    ceremony = Ceremony.take(request.session, key)
    return webauthn.authenticate(ceremony, json.dumps(body.get("credential"))), body


# -- the sign-in's second step --------------------------------------------------------------------


@require_POST
def signin_options(request: HttpRequest) -> HttpResponseBase:
    pending = pending_signin(request)
    if pending is None:
        return redirect("accounts:sign-in")
    return _options(request, SIGNIN, webauthn.authentication_options(pending.user.pk))


@require_POST
def signin_verify(request: HttpRequest) -> HttpResponseBase:
    pending = pending_signin(request)
    if pending is None:
        return redirect("accounts:sign-in")
    result, _ = _answer(request, SIGNIN)
    if not result.ok or result.user_id != pending.user.pk:
        text = result.text or webauthn.MESSAGES["unknown_credential"]
        announce(request, pending.user, ok=False, detail=f"web sign-in: password+security key: {text}")
        return _error(text)
    url = finish_signin(request, pending.user, result.credential, "password+security key", pending.next)
    return JsonResponse({"redirect": url})


# -- a passkey sign-in, without a password ----------------------------------------------------------


@require_POST
def passkey_options(request: HttpRequest) -> HttpResponseBase:
    return _options(request, PASSKEY, webauthn.authentication_options(None))


@require_POST
def passkey_verify(request: HttpRequest) -> HttpResponseBase:
    result, body = _answer(request, PASSKEY)
    user = User.objects.filter(pk=result.user_id, is_active=True).first() if result.user_id else None
    if not result.ok or user is None:
        if user is not None:
            announce(request, user, ok=False, detail=f"web sign-in: passkey: {result.text}")
        return _error(result.text or "This account cannot sign in.")
    url = finish_signin(request, user, result.credential, "passkey", str(body.get("next", "")))
    return JsonResponse({"redirect": url})


# -- re-authentication ----------------------------------------------------------------------------


@signed_in
@require_POST
def reauth_options(request: PortalRequest) -> HttpResponseBase:
    return _options(request, REAUTH, webauthn.authentication_options(request.user.pk))


@signed_in
@require_POST
def reauth_verify(request: PortalRequest) -> HttpResponseBase:
    result, body = _answer(request, REAUTH)
    if not result.ok or result.user_id != request.user.pk:
        text = result.text or webauthn.MESSAGES["unknown_credential"]
        announce(request, request.user, ok=False, detail=f"web re-authentication: security key: {text}")
        return _error(text)
    mark_reauthenticated(request)
    return JsonResponse({"redirect": safe_next(request, str(body.get("next", "")), "accounts:security")})


# -- registering a key ----------------------------------------------------------------------------


@signed_in
@reauthenticated()
@require_GET
def key_add(request: PortalRequest) -> HttpResponse:
    return render(request, "accounts/key_add.html", {"name_max": webauthn.NAME_MAX})


@signed_in
@reauthenticated("accounts:key-add")
@require_POST
def key_add_options(request: PortalRequest) -> HttpResponseBase:
    try:
        webauthn.clean_name(str(_body(request).get("name", "")))  # before the person touches the key
    except WebAuthnError as exc:
        return _error(str(exc))
    return _options(request, REGISTER, webauthn.registration_options(request.user))


@signed_in
@reauthenticated("accounts:key-add")
@require_POST
def key_add_verify(request: PortalRequest) -> HttpResponseBase:
    body = _body(request)
    ceremony = Ceremony.take(request.session, REGISTER)
    try:
        credential = webauthn.register(
            request.user,
            ceremony,
            json.dumps(body.get("credential")),
            str(body.get("name", "")),
            actor=actor(request),
        )
    except WebAuthnError as exc:
        return _error(str(exc))
    keep_verified(request, credential)
    messages.success(request, f"Security key “{credential.name}” added.")
    return JsonResponse({"redirect": reverse("accounts:security")})
