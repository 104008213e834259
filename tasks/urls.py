from django.urls import path

from . import views

app_name = "tasks"

urlpatterns = [
    path("", views.task_list, name="list"),
    path("<str:task_id>/", views.task_detail, name="detail"),
    path("<str:task_id>/model.json", views.current_model_json, name="model-json"),
    path("<str:task_id>/versions/<int:number>/<str:name>", views.version_file, name="version-file"),
]
