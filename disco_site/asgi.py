"""ASGI entry point: HTTP through Django, WebSockets through Channels consumers."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "disco_site.settings")
# Django must be set up before anything imports models (the consumers do).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from aggregation.routing import websocket_urlpatterns  # noqa: E402
from aggregation.sweeper import start_in_web_process  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

# The participants' heartbeat and, embedded (no broker), the sweeper with its recovery at start.
# Off in the test process (conftest sets both intervals to 0): tests call sweep() themselves.
start_in_web_process()
