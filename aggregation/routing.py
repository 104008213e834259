"""WebSocket routes, mounted by ``disco_site.asgi`` under the ``websocket`` protocol.

The federated (``/ws/federated/<task>/``) and decentralized signalling consumers
register here.
"""

from django.urls import URLPattern

websocket_urlpatterns: list[URLPattern] = []
