"""Django admin registrations (staff only; the app's own pages serve the roles).

Every addition, change and deletion made here is also appended to the audit chain, and the
clinical record (questions and answers) is read-only.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse

from clinic_app.audit.record import audit_record
from clinic_app.core.client_ip import client_ip
from clinic_app.models import Answer, Guideline, IndexVersion, Question


class AuditedAdminMixin:
    """Appends ``admin.added`` / ``admin.changed`` / ``admin.deleted`` events, in the same
    transaction as the change (Django's admin logs inside its atomic block)."""

    def _audit(self, request: HttpRequest, obj: Model, verb: str, message: Any) -> None:
        audit_record(
            action=f"admin.{verb}",
            actor=request.user,
            object_type=obj._meta.model_name or "",
            object_id=obj.pk,
            source_ip=client_ip(request),
            details={"object": str(obj)[:200], "change": str(message)[:2000]},
        )

    def log_addition(self, request: HttpRequest, obj: Model, message: Any) -> Any:
        self._audit(request, obj, "added", message)
        return super().log_addition(request, obj, message)  # type: ignore[misc]

    def log_change(self, request: HttpRequest, obj: Model, message: Any) -> Any:
        self._audit(request, obj, "changed", message)
        return super().log_change(request, obj, message)  # type: ignore[misc]

    def log_deletions(self, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
        for obj in queryset:
            self._audit(request, obj, "deleted", "")
        return super().log_deletions(request, queryset)  # type: ignore[misc]


class AuditedAdmin(AuditedAdminMixin, admin.ModelAdmin):
    pass


class ClinicalRecordAdmin(admin.ModelAdmin):
    """Questions and answers as the clinician saw them: viewable, never edited or deleted.

    Staff reading the clinical record is itself recorded (``admin.viewed``), as auditors'
    reading is: one event per list shown (with its filters) and one per record opened.
    """

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        if response.status_code == 200:
            filters = {k: v[:200] for k, v in sorted(request.GET.items())}
            self._audit_viewed(request, object_id="", details={"view": "list", "filters": filters})
        return response

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: Any = None,
    ) -> HttpResponse:
        response = super().change_view(request, object_id, form_url, extra_context)
        # Only a record actually shown: a refused POST or a missing object is no view.
        if response.status_code == 200:
            self._audit_viewed(request, object_id=object_id, details={"view": "object"})
        return response

    def _audit_viewed(self, request: HttpRequest, *, object_id: str, details: Any) -> None:
        audit_record(
            action="admin.viewed",
            actor=request.user,
            object_type=self.model._meta.model_name or "",
            object_id=object_id,
            source_ip=client_ip(request),
            details=details,
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AuditedUserAdmin(AuditedAdminMixin, UserAdmin):
    pass


class AuditedGroupAdmin(AuditedAdminMixin, GroupAdmin):
    pass


admin.site.register(Guideline, AuditedAdmin)
admin.site.register(IndexVersion, AuditedAdmin)
admin.site.register(Question, ClinicalRecordAdmin)
admin.site.register(Answer, ClinicalRecordAdmin)
admin.site.unregister(User)
admin.site.register(User, AuditedUserAdmin)
admin.site.unregister(Group)
admin.site.register(Group, AuditedGroupAdmin)
