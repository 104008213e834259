from django.urls import path

from aggregation.views import rounds_dashboard

from . import contributor_views, sample_views, train_views, views

app_name = "tasks"

urlpatterns = [
    path("", views.task_list, name="list"),
    path("new/", contributor_views.create_task_view, name="create"),
    path("mine/", contributor_views.my_tasks, name="mine"),
    path("<str:task_id>/edit/", contributor_views.edit_task_view, name="edit"),
    path("<str:task_id>/jobs/", contributor_views.job_status, name="jobs"),
    path("<str:task_id>/sample-data/", sample_views.sample_manifest, name="sample-data"),
    path("<str:task_id>/sample-data/<str:name>", sample_views.sample_file, name="sample-file"),
    path("<str:task_id>/sample-data.zip", sample_views.sample_zip, name="sample-zip"),
    path("<str:task_id>/train/", train_views.task_train, name="train"),
    path("<str:task_id>/join/<str:secret>/", views.join, name="join"),
    path("<str:task_id>/invitation/", views.rotate_invitation_view, name="rotate-invitation"),
    path("<str:task_id>/rounds/", rounds_dashboard, name="rounds"),
    path("<str:task_id>/", views.task_detail, name="detail"),
    path("<str:task_id>/model.json", views.current_model_json, name="model-json"),
    path("<str:task_id>/versions/<int:number>/<str:name>", views.version_file, name="version-file"),
]
