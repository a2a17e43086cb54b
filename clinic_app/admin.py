"""Django admin registrations (staff only; the app's own pages serve the roles)."""

from __future__ import annotations

from django.contrib import admin

from clinic_app.models import Answer, Guideline, IndexVersion, Question

admin.site.register(Guideline)
admin.site.register(IndexVersion)
admin.site.register(Question)
admin.site.register(Answer)
