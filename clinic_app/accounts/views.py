"""The landing page: each role goes to its own start page."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from clinic_app.accounts.permissions import user_has_role
from clinic_app.models import Role


def home(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect("login")
    for role, target in (
        (Role.CLINICIAN, "ask"),
        (Role.GUIDELINE_ADMIN, "guidelines"),
        (Role.AUDITOR, "audit"),
    ):
        if user_has_role(request.user, role):
            return redirect(target)
    return render(request, "403.html", {"role": "any"}, status=403)
