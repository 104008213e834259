from django.contrib import admin
from django.urls import include, path
from rest_framework.routers import DefaultRouter

from accounts.api import TokenView
from aggregation.api import TaskRoundsView
from tasks import views as task_views
from tasks.api import AggregationRegistryViewSet, TaskViewSet

router = DefaultRouter()
router.register("tasks", TaskViewSet, basename="task")
router.register("aggregators", AggregationRegistryViewSet, basename="aggregators")

urlpatterns = [
    path("", task_views.home, name="home"),
    path("tasks/", include("tasks.urls")),
    path("api/token/", TokenView.as_view(), name="api-token"),
    path("api/tasks/<str:task_id>/rounds/", TaskRoundsView.as_view(), name="api-task-rounds"),
    path("api/tasks/<str:task_id>/rounds.csv", TaskRoundsView.as_view(), {"format": "csv"}, name="api-task-rounds-csv"),
    path("api/", include(router.urls)),
    path("accounts/", include("accounts.urls")),
    path("admin/", admin.site.urls),
]
