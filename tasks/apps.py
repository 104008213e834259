from django.apps import AppConfig


class TasksConfig(AppConfig):
    name = "tasks"
    verbose_name = "Task catalogue"
    default_auto_field = "django.db.models.BigAutoField"
