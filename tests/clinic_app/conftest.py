from __future__ import annotations

import pytest
from django.contrib.auth.models import User


@pytest.fixture
def clinician(db: None) -> User:
    return User.objects.get(username="clinician")


@pytest.fixture
def auditor(db: None) -> User:
    return User.objects.get(username="auditor")


@pytest.fixture
def guideline_admin(db: None) -> User:
    return User.objects.get(username="guideline-admin")
