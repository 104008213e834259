"""The Django secret key: from the environment, or from a key file made once on first use.

No key is built into the code. ``SECRET_KEY`` in the environment wins. Otherwise the key
is read from ``DISCO_SECRET_KEY_FILE`` (default ``BASE_DIR/.secret_key``, git-ignored); in
development and embedded use (``DEBUG`` on) that file is generated on first use with
``secrets``. With ``DEBUG`` off a key is never generated and the default file is not read:
a deployment names its key (``SECRET_KEY`` or an explicit ``DISCO_SECRET_KEY_FILE``), so
that every web process and worker shares it and it survives a rebuild.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path

MIN_LENGTH = 32


class SecretKeyError(RuntimeError):
    """No usable secret key; the message says what to set."""


def read_key_file(path: Path) -> str:
    key = path.read_text(encoding="utf-8").strip()
    if len(key) < MIN_LENGTH:
        raise SecretKeyError(f"The secret key file {path} holds {len(key)} characters; a key needs at least "
                             f"{MIN_LENGTH}. Delete the file to have a new one generated (DEBUG on), or write a "
                             "long random key into it.")
    return key


def create_key_file(path: Path) -> str:
    """Write a fresh random key to ``path`` unless it exists; return the key the file holds.

    Race-safe between processes: the key is written to a private temporary file (mode 0600)
    that is then hard-linked to ``path``, which fails if another process got there first.
    The file therefore never appears empty or half written, and every process ends up
    with the same key.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".secret_key.", dir=path.parent)  # mkstemp creates it with mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(secrets.token_urlsafe(50) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):  # another process made it first: use theirs
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
    return read_key_file(path)


def load_secret_key(*, env_key: str, key_file: str, default_file: Path, debug: bool) -> str:
    """The secret key to use, following the rules in the module docstring."""
    if env_key:
        return env_key
    if not debug:
        # The development file is never used in production: a deployment names its key explicitly.
        if key_file and Path(key_file).exists():
            return read_key_file(Path(key_file))
        where = f" (no file at {key_file})" if key_file else ""
        raise SecretKeyError(
            "SECRET_KEY must be set when DEBUG is off: set the SECRET_KEY environment variable to a long random "
            "value (e.g. python -c 'import secrets; print(secrets.token_urlsafe(50))'), or DISCO_SECRET_KEY_FILE to "
            f"a file holding one{where}. No key is generated with DEBUG off (see README, 'Configuration').")
    path = Path(key_file) if key_file else default_file
    if path.exists():
        return read_key_file(path)
    return create_key_file(path)
