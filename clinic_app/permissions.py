"""Role checks for views."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.shortcuts import render

from clinic_app.models import Role
from clinic_app.selectors import user_has_role

View = Callable[..., HttpResponseBase]


def role_required(role: Role, *also: Role) -> Callable[[View], View]:
    """Anonymous users go to the login page; signed-in users with none of the roles (``role``
    or any of ``also``) get a 403 page."""
    roles = (role, *also)

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not any(user_has_role(request.user, r) for r in roles):
                label = " or ".join(str(r.label) for r in roles)
                return render(request, "403.html", {"role": label}, status=403)
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
