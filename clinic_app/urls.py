"""URL routes: every page and API of the app, each served by its domain package's views."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from clinic_app.accounts import views as account_views
from clinic_app.answers import views as answer_views
from clinic_app.audit import views as audit_views
from clinic_app.library import views as library_views
from clinic_app.observability import views as observability_views

urlpatterns = [
    path("", account_views.home, name="home"),
    path("healthz", observability_views.healthz, name="healthz"),
    path("readyz", observability_views.readyz, name="readyz"),
    path(settings.METRICS_PATH, observability_views.metrics_view, name="metrics"),
    path("login/", auth_views.LoginView.as_view(template_name="login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("ask/", answer_views.ask, name="ask"),
    path("api/answers/<int:answer_id>/", answer_views.answer_detail, name="answer-detail"),
    path("api/answers/<int:answer_id>/thread/", answer_views.answer_thread, name="answer-thread"),
    path("api/passages/<int:passage_id>/", answer_views.passage_detail, name="passage-detail"),
    path(
        "api/answers/<int:answer_id>/feedback/",
        answer_views.answer_feedback,
        name="answer-feedback",
    ),
    path("api/history/", answer_views.history_search, name="history-search"),
    path("guidelines/feedback/", answer_views.feedback_queue, name="feedback-queue"),
    path(
        "guidelines/feedback/<int:feedback_id>/review/",
        answer_views.feedback_mark_reviewed,
        name="feedback-review",
    ),
    path("quality/", observability_views.quality_page, name="quality"),
    path("guidelines/", library_views.guidelines, name="guidelines"),
    path("guidelines/upload/", library_views.upload, name="guidelines-upload"),
    path("guidelines/jobs/<int:job_id>/", library_views.ingest_job, name="ingest-job"),
    path(
        "guidelines/jobs/<int:job_id>/status",
        library_views.ingest_job_status,
        name="ingest-job-status",
    ),
    path("guidelines/index/rollback/", library_views.index_rollback, name="index-rollback"),
    path("guidelines/<int:guideline_id>/", library_views.guideline_detail, name="guideline-detail"),
    path(
        "guidelines/<int:guideline_id>/original",
        library_views.guideline_original,
        name="guideline-original",
    ),
    path(
        "guidelines/<int:guideline_id>/<slug:action>/",
        library_views.guideline_action,
        name="guideline-action",
    ),
    path("audit/", audit_views.audit, name="audit"),
    path("audit/events/<int:seq>/", audit_views.audit_event_detail, name="audit-event"),
    path("audit/export.csv", audit_views.audit_export_csv, name="audit-export-csv"),
    path("audit/export.jsonl", audit_views.audit_export_jsonl, name="audit-export-jsonl"),
    path("audit/verify/", audit_views.audit_chain_verify, name="audit-verify"),
    path(settings.ADMIN_URL_PATH, admin.site.urls),
]
