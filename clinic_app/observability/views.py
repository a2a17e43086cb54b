"""Views for operators and reviewers: liveness, readiness, Prometheus metrics, the quality page."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from clinic_app.accounts.permissions import role_required
from clinic_app.core.client_ip import client_ip
from clinic_app.models import Role
from clinic_app.observability import metrics, quality
from clinic_app.observability.readiness import readiness_check


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness: the process serves HTTP (no dependency is checked)."""
    return JsonResponse({"status": "ok"})


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition, for scrapers only: with ``METRICS_TOKEN`` set, the request must
    carry it as a bearer token; without one, only this machine (loopback) is answered."""
    if settings.METRICS_TOKEN:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        allowed = hmac.compare_digest(given.encode(), settings.METRICS_TOKEN.encode())
    else:
        allowed = client_ip(request) in ("127.0.0.1", "::1")
    if not allowed:
        return HttpResponse("Forbidden: metrics are for the monitoring system.", status=403)
    body, content_type = metrics.exposition()
    return HttpResponse(body, content_type=content_type)


@require_GET
def readyz(request: HttpRequest) -> HttpResponse:
    """Readiness: database, Redis, the live index and the generator; 503 when one fails."""
    checks = readiness_check()
    ready = all(c.ok for c in checks)
    body = {
        "status": "ready" if ready else "not ready",
        "checks": {c.name: {"ok": c.ok, "detail": c.detail, "ms": c.ms} for c in checks},
    }
    return JsonResponse(body, status=200 if ready else 503)


@role_required(Role.GUIDELINE_ADMIN, Role.AUDITOR)
@require_GET
def quality_page(request: HttpRequest) -> HttpResponse:
    """Answers over time and recorded evaluations compared, for guideline admins and auditors
    (read-only; aggregates only, no question text)."""
    try:
        window = int(request.GET.get("days", quality.DEFAULT_WINDOW))
    except ValueError:
        window = quality.DEFAULT_WINDOW
    if window not in quality.WINDOWS:
        window = quality.DEFAULT_WINDOW
    trends = quality.quality_trends(window_days=window, configuration=request.GET.get("config", ""))
    return render(
        request,
        "quality.html",
        {
            "trends": trends,
            "chart_data": trends.to_json(),
            "windows": quality.WINDOWS,
            "window": window,
            "tables": quality.evaluation_comparison(threshold=settings.QUALITY_DROP_THRESHOLD),
            "threshold": settings.QUALITY_DROP_THRESHOLD,
        },
    )
