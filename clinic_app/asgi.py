"""ASGI entry point: HTTP through Django, websockets through Channels (auth + origin checked)."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinic_app.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.db import database_sync_to_async  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from clinic_app.accounts.permissions import user_has_role  # noqa: E402
from clinic_app.asgi_limits import BodySizeLimit, Scope, session_key, session_user  # noqa: E402
from clinic_app.models import Role  # noqa: E402
from clinic_app.routing import websocket_urlpatterns  # noqa: E402


@database_sync_to_async
def _may_upload(key: str) -> bool:
    user = session_user(session_key=key)
    return user is not None and user_has_role(user, Role.GUIDELINE_ADMIN)


async def _body_limit(scope: Scope) -> int:
    """Uploads may carry UPLOAD_MAX_BYTES (plus the form around them); other requests far less.

    Only a signed-in guideline admin may send an upload-sized body: anyone else (anonymous
    included) would otherwise make the server spool half a gigabyte per request to disk before
    the view refuses them. The session is checked from the cookie before the body is read.
    """
    small = max(2 * settings.DATA_UPLOAD_MAX_MEMORY_SIZE, 10_000_000)
    if not str(scope.get("path", "")).startswith("/guidelines/upload"):
        return small
    large = settings.UPLOAD_MAX_BYTES + 1_000_000
    key = session_key(scope)
    if key is not None and await _may_upload(key):
        return large
    return min(small, large)  # never more for others than for an admin


application = ProtocolTypeRouter(
    {
        "http": BodySizeLimit(django_asgi_app, _body_limit),
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
