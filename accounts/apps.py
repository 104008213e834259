from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Contributor accounts: sign up, log in, log out (Django's auth, server-rendered pages)."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "accounts"
