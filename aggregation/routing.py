"""WebSocket routes, mounted by ``disco_site.asgi`` under the ``websocket`` protocol."""

from django.urls import path

from .consumers import FederatedConsumer
from .observers import RoundObserverConsumer
from .signalling import SignallingConsumer

websocket_urlpatterns = [
    path("ws/federated/<str:task_id>/", FederatedConsumer.as_asgi()),
    path("ws/decentralized/<str:task_id>/", SignallingConsumer.as_asgi()),
    path("ws/observe/<str:task_id>/", RoundObserverConsumer.as_asgi()),
]
