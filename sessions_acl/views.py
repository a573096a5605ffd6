"""The security log page of the portal: the signed-in account's own events, newest first."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import render

from accounts.views.guard import PortalRequest, signed_in

from .models import AuthEvent

PER_PAGE = 50


@signed_in
def security_log(request: PortalRequest) -> HttpResponse:
    events = AuthEvent.objects.filter(user=request.user).order_by("-created", "-id")
    page = Paginator(events, PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "sessions_acl/log.html", {"page": page})
