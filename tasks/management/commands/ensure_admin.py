"""``manage.py ensure_admin``: make sure an administrator account exists (idempotent)."""

from __future__ import annotations

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = ("Create the superuser DISCO_ADMIN_USER (default 'admin') if missing, with the password from "
            "DISCO_ADMIN_PASSWORD or a generated one, printed once.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default=os.environ.get("DISCO_ADMIN_USER") or "admin")

    def handle(self, *args, username: str, **options) -> None:
        users = get_user_model()
        if users.objects.filter(username=username).exists():
            self.stdout.write(f"Administrator '{username}' exists (set DISCO_ADMIN_PASSWORD before the first run "
                              "to choose its password, or use `manage.py changepassword`).")
            return
        password = os.environ.get("DISCO_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        users.objects.create_superuser(username=username, email="", password=password)
        shown = "from DISCO_ADMIN_PASSWORD" if os.environ.get("DISCO_ADMIN_PASSWORD") else password
        self.stdout.write(self.style.SUCCESS(f"Created administrator '{username}' with password: {shown}"))
