"""Audit receivers: sign-in, sign-in failure, sign-out and role (group membership) changes."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group, User
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import m2m_changed
from django.dispatch import receiver
from django.http import HttpRequest

from clinic_app.audit import audit_record
from clinic_app.middleware import acting


def _ip(request: HttpRequest | None) -> str:
    return "" if request is None else str(request.META.get("REMOTE_ADDR", ""))


@receiver(user_logged_in)
def _logged_in(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    audit_record(action="auth.login", actor=user, source_ip=_ip(request))


@receiver(user_logged_out)
def _logged_out(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    audit_record(action="auth.logout", actor=user, source_ip=_ip(request))


@receiver(user_login_failed)
def _login_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    audit_record(
        action="auth.login_failed",
        actor=str(credentials.get("username", "")),
        outcome="failure",
        source_ip=_ip(request),
    )


# Groups a user had before ``clear()``: the post_clear signal no longer knows them.
_CLEARED = "_audit_cleared_groups"


def _memberships(instance: Any, reverse: bool, pk_set: set[int] | None) -> dict[int, list[str]]:
    """``{user id: sorted group names}`` touched by one change, either side of the relation."""
    if not reverse:  # user.groups.add(...): instance is the user, pk_set holds group ids
        names = Group.objects.filter(pk__in=pk_set or ()).values_list("name", flat=True)
        return {instance.pk: sorted(names)}
    # group.user_set.add(...): instance is the group, pk_set holds user ids
    return {user_id: [instance.name] for user_id in sorted(pk_set or ())}


@receiver(m2m_changed, sender=User.groups.through)
def _roles_changed(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: set[int] | None, **kwargs: Any
) -> None:
    """Record every change of a user's groups (roles), by the signed-in user of the request
    that made it (``ActingUserMiddleware``); outside a request (commands, shell) the actor is
    ``system``."""
    if action == "pre_clear":
        if reverse:
            members = {pk: [instance.name] for pk in instance.user_set.values_list("pk", flat=True)}
        else:
            members = {instance.pk: sorted(instance.groups.values_list("name", flat=True))}
        setattr(instance, _CLEARED, members)
        return
    if action == "post_clear":
        members = getattr(instance, _CLEARED, {})
        if hasattr(instance, _CLEARED):
            delattr(instance, _CLEARED)
    elif action in ("post_add", "post_remove"):
        members = _memberships(instance, reverse, pk_set)
    else:
        return
    usernames = dict(User.objects.filter(pk__in=members).values_list("pk", "username"))
    who = acting()
    for user_id, groups in members.items():
        if not groups:  # clear() of a user without groups
            continue
        audit_record(
            action="user.roles_changed",
            actor=who.username if who is not None else "system",
            source_ip=who.source_ip if who is not None else "",
            object_type="user",
            object_id=user_id,
            details={"change": action, "groups": groups, "username": usernames.get(user_id, "")},
        )
