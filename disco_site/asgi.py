"""ASGI entry point: HTTP through Django, WebSockets through Channels consumers."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "disco_site.settings")
# A web process pools its PostgreSQL connections (settings.DISCO_DB_POOL says why only here). Set only while the
# settings load, so that processes started from this one (a test's Celery worker) do not inherit it.
_pool_by_default = "DISCO_DB_POOL" not in os.environ
if _pool_by_default:
    os.environ["DISCO_DB_POOL"] = "1"
# Django must be set up before anything imports models (the consumers do).
try:
    django_asgi_app = get_asgi_application()
finally:
    if _pool_by_default:
        del os.environ["DISCO_DB_POOL"]

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
