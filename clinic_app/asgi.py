"""ASGI entry point: HTTP through Django, websockets through Channels (auth + origin checked)."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinic_app.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from clinic_app.asgi_limits import BodySizeLimit  # noqa: E402
from clinic_app.routing import websocket_urlpatterns  # noqa: E402


def _body_limit(path: str) -> int:
    """Uploads may carry UPLOAD_MAX_BYTES (plus the form around them); other requests far less."""
    if path.startswith("/guidelines/upload"):
        return settings.UPLOAD_MAX_BYTES + 1_000_000
    return max(2 * settings.DATA_UPLOAD_MAX_MEMORY_SIZE, 10_000_000)


application = ProtocolTypeRouter(
    {
        "http": BodySizeLimit(django_asgi_app, _body_limit),
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
