from django.apps import AppConfig


class AggregationConfig(AppConfig):
    name = "aggregation"
    verbose_name = "Collaborative training"
    default_auto_field = "django.db.models.BigAutoField"
