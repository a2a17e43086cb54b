"""URL routes."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from clinic_app import views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("login/", auth_views.LoginView.as_view(template_name="login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("ask/", views.ask, name="ask"),
    path("api/answers/<int:answer_id>/", views.answer_detail, name="answer-detail"),
    path("api/passages/<int:passage_id>/", views.passage_detail, name="passage-detail"),
    path("guidelines/", views.guidelines, name="guidelines"),
    path("audit/", views.audit, name="audit"),
    path("audit/events/<int:seq>/", views.audit_event_detail, name="audit-event"),
    path("audit/export.csv", views.audit_export_csv, name="audit-export-csv"),
    path("audit/export.jsonl", views.audit_export_jsonl, name="audit-export-jsonl"),
    path("audit/verify/", views.audit_chain_verify, name="audit-verify"),
    path("admin/", admin.site.urls),
]
