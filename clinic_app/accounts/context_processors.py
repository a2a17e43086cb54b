"""Template context: which roles the signed-in user has (for navigation)."""

from __future__ import annotations

from django.http import HttpRequest

from clinic_app.models import Role


def roles(request: HttpRequest) -> dict[str, bool]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    names = set(user.groups.values_list("name", flat=True))
    return {
        "is_clinician": Role.CLINICIAN.value in names,
        "is_guideline_admin": Role.GUIDELINE_ADMIN.value in names,
        "is_auditor": Role.AUDITOR.value in names,
    }
