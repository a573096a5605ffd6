"""Re-authentication: the page that asks a signed-in person for their password or any second factor
before a change to how their account signs in (the decorator that sends them here is
:func:`.guard.reauthenticated`; a security key answers through :mod:`.webauthn`)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from ..forms import PasswordForm
from .codes import LOG_NAMES, CodeForms
from .guard import PortalRequest, announce, mark_reauthenticated, safe_next, signed_in
from .password import MESSAGES, check_password


@signed_in
@require_http_methods(["GET", "POST"])
def reauth(request: PortalRequest) -> HttpResponseBase:
    user = request.user
    next_url = request.POST.get("next", request.GET.get("next", ""))
    data = request.POST if request.method == "POST" else None
    factor = data.get("factor") if data is not None else None
    password = PasswordForm(data if factor == "password" else None, prefix="password")
    codes = CodeForms(user, data)
    failed = ""
    if factor == "password" and password.is_valid():
        checked = check_password(request, user.username, password.cleaned_data["password"])
        if checked.user is not None and checked.user.pk == user.pk:
            return _passed(request, next_url)
        password.add_error(
            "password", MESSAGES["wrong_password"] if checked.reason == "wrong" else checked.text
        )
        failed = "password: wrong password" if checked.reason == "wrong" else ""
    elif (code := codes.check()) is not None:
        if code.ok:
            if code.note:
                messages.info(request, code.note)
            return _passed(request, next_url)
        failed = f"{LOG_NAMES[str(codes.submitted)]}: {code.text}"
    if failed:
        announce(request, user, ok=False, detail=f"web re-authentication: {failed}")
    return render(request, "accounts/reauth.html", {"password": password, "codes": codes, "next": next_url})


def _passed(request: PortalRequest, next_url: str) -> HttpResponse:
    mark_reauthenticated(request)
    return HttpResponseRedirect(safe_next(request, next_url, "accounts:security"))
