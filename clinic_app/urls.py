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
    path("admin/", admin.site.urls),
]
