"""URL routes."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from clinic_app import guideline_views, views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path(settings.METRICS_PATH, views.metrics_view, name="metrics"),
    path("login/", auth_views.LoginView.as_view(template_name="login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("ask/", views.ask, name="ask"),
    path("api/answers/<int:answer_id>/", views.answer_detail, name="answer-detail"),
    path("api/answers/<int:answer_id>/thread/", views.answer_thread, name="answer-thread"),
    path("api/passages/<int:passage_id>/", views.passage_detail, name="passage-detail"),
    path("api/answers/<int:answer_id>/feedback/", views.answer_feedback, name="answer-feedback"),
    path("api/history/", views.history_search, name="history-search"),
    path("guidelines/feedback/", views.feedback_queue, name="feedback-queue"),
    path(
        "guidelines/feedback/<int:feedback_id>/review/",
        views.feedback_mark_reviewed,
        name="feedback-review",
    ),
    path("quality/", views.quality_page, name="quality"),
    path("guidelines/", guideline_views.guidelines, name="guidelines"),
    path("guidelines/upload/", guideline_views.upload, name="guidelines-upload"),
    path("guidelines/jobs/<int:job_id>/", guideline_views.ingest_job, name="ingest-job"),
    path(
        "guidelines/jobs/<int:job_id>/status",
        guideline_views.ingest_job_status,
        name="ingest-job-status",
    ),
    path("guidelines/index/rollback/", guideline_views.index_rollback, name="index-rollback"),
    path(
        "guidelines/<int:guideline_id>/", guideline_views.guideline_detail, name="guideline-detail"
    ),
    path(
        "guidelines/<int:guideline_id>/original",
        guideline_views.guideline_original,
        name="guideline-original",
    ),
    path(
        "guidelines/<int:guideline_id>/<slug:action>/",
        guideline_views.guideline_action,
        name="guideline-action",
    ),
    path("audit/", views.audit, name="audit"),
    path("audit/events/<int:seq>/", views.audit_event_detail, name="audit-event"),
    path("audit/export.csv", views.audit_export_csv, name="audit-export-csv"),
    path("audit/export.jsonl", views.audit_export_jsonl, name="audit-export-jsonl"),
    path("audit/verify/", views.audit_chain_verify, name="audit-verify"),
    path(settings.ADMIN_URL_PATH, admin.site.urls),
]
