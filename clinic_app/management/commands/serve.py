"""Serve the app (HTTP and websockets) with uvicorn: `python manage.py serve [--host H] [--port P]`.

Uvicorn hands a request body to the app as it arrives, with flow control, so the size limit in
``clinic_app.asgi_limits`` refuses an oversized upload on its headers before the body is read or
stored anywhere. (daphne, Channels' own server, first spools the whole body to a temporary
file; it stays installed for ``manage.py runserver`` in development.)
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

# Websocket frames above this close the socket at the transport; the consumer answers anything
# over its own, smaller limit (MAX_MESSAGE_BYTES) with a clear message first.
WS_MAX_BYTES = 1_048_576


class Command(BaseCommand):
    help = "Serve HTTP and websockets with uvicorn (what `make run` and the image run)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args: Any, **options: Any) -> None:
        import uvicorn
        from django.conf import settings

        uvicorn.run(
            "clinic_app.asgi:application",
            host=options["host"],
            port=options["port"],
            lifespan="off",  # Channels' router has no lifespan protocol
            loop="asyncio",
            http="httptools",
            ws="websockets-sansio",
            ws_max_size=WS_MAX_BYTES,
            # X-Forwarded-For/-Proto only from TRUSTED_PROXIES (core/client_ip.py's rule, for
            # websockets too). uvicorn's default trusts 127.0.0.1, where any local client could
            # pick its own address and slip past the per-address sign-in lockout.
            forwarded_allow_ips=list(settings.TRUSTED_PROXIES),
            timeout_graceful_shutdown=10,
            log_level="info",
            access_log=False,
        )
