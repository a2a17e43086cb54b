"""Audit receivers: sign-in, sign-in failure, sign-out and role (group membership) changes;
session receivers: stamp new sessions, and end open sockets when a session or account ends."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group, User
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save
from django.dispatch import receiver
from django.http import HttpRequest

from clinic_app.accounts.sessions import session_end_broadcast, session_start
from clinic_app.audit.record import audit_record
from clinic_app.core.client_ip import client_ip
from clinic_app.core.middleware import acting
from clinic_app.observability import metrics


def _ip(request: HttpRequest | None) -> str:
    return "" if request is None else client_ip(request)


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
    metrics.LOGIN_FAILURES.inc()
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


# ------------------------------------------------------------------------------- sessions
# Each change below ends sessions (Django's get_user stops accepting them) or a clinician's
# right to ask; ``session_end_broadcast`` tells the user's open sockets once it commits, and
# every socket checks its own session (clinic_app.accounts.sessions).


@receiver(user_logged_in)
def _session_started(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if request is not None and hasattr(request, "session"):
        session_start(session=request.session)


@receiver(user_logged_out)
def _session_signed_out(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if user is None or user.pk is None:
        return
    session = getattr(request, "session", None)
    # Sent before logout() flushes the session: name it, so its sockets close without a check.
    key = session.session_key if session is not None else None
    session_end_broadcast(user_id=user.pk, reason="logout", session_key=key)


# The stored password and is_active before a save, to tell what the save changed.
_BEFORE = "_session_fields_before"


@receiver(pre_save, sender=User)
def _remember_credentials(
    sender: Any, instance: User, raw: bool, update_fields: Any, **kwargs: Any
) -> None:
    if raw or instance.pk is None:
        return
    if update_fields is not None and not {"password", "is_active"} & set(update_fields):
        return  # e.g. last_login on every sign-in: no query
    before = User.objects.filter(pk=instance.pk).values("password", "is_active").first()
    setattr(instance, _BEFORE, before)


@receiver(post_save, sender=User)
def _credentials_changed(
    sender: Any, instance: User, created: bool, raw: bool, **kwargs: Any
) -> None:
    before = instance.__dict__.pop(_BEFORE, None)
    if created or raw or before is None:
        return
    if before["password"] != instance.password:
        # Also a password set by an admin, or a hash upgrade: the session hash changes.
        session_end_broadcast(user_id=instance.pk, reason="password_changed")
    elif before["is_active"] and not instance.is_active:
        session_end_broadcast(user_id=instance.pk, reason="deactivated")


@receiver(post_delete, sender=User)
def _user_deleted(sender: Any, instance: User, **kwargs: Any) -> None:
    session_end_broadcast(user_id=instance.pk, reason="deleted")


# Users of a group before ``group.user_set.clear()``: post_clear no longer knows them.
_CLEARING = "_session_cleared_users"


@receiver(m2m_changed, sender=User.groups.through)
def _roles_removed(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: set[int] | None, **kwargs: Any
) -> None:
    """Any role removed (remove, clear, or ``set`` without it) makes the user's sockets check
    whether they are still a clinician."""
    if action == "pre_clear" and reverse:
        setattr(instance, _CLEARING, list(instance.user_set.values_list("pk", flat=True)))
        return
    if action == "post_clear":
        users = instance.__dict__.pop(_CLEARING, []) if reverse else [instance.pk]
    elif action == "post_remove":
        users = sorted(pk_set or ()) if reverse else [instance.pk]
    else:
        return
    for user_id in users:
        session_end_broadcast(user_id=user_id, reason="role_removed")
