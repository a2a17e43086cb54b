"""Roles: who may do what (a user's groups), and the view decorator that checks it."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.shortcuts import render

from clinic_app.models import Role

View = Callable[..., HttpResponseBase]


def user_has_role(user: AbstractBaseUser | AnonymousUser, role: Role) -> bool:
    """Whether ``user`` is signed in and belongs to ``role``'s group."""
    if not user.is_authenticated:
        return False
    return bool(user.groups.filter(name=role.value).exists())  # type: ignore[attr-defined]


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
