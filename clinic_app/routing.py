"""Websocket routes."""

from __future__ import annotations

from django.urls import path

from clinic_app.answers.consumers import AskConsumer

websocket_urlpatterns = [path("ws/ask/", AskConsumer.as_asgi())]
