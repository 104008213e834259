"""Cut a model upload off as soon as its files pass ``DISCO_MAX_MODEL_BYTES``, while it streams.

``ModelUploadLimitHandler`` is the first of ``FILE_UPLOAD_HANDLERS``, so it sees every chunk
of every file of a request before the handlers that keep it (in memory or in a temporary
file in ``FILE_UPLOAD_TEMP_DIR``). It counts the bytes of all files together; past the
limit it stops the upload (``StopUpload``): the file being received is closed and its
temporary file removed, and what was complete is closed with the request. A request whose
``Content-Length`` is already larger than the limit plus the form's other fields is refused
at its first file: the fields before it are read (the CSRF token among them), no file byte is.

The refusal is left on the request (``refused_upload(request)``); the task form and the API
show it as their model error. The same handlers serve DRF's multipart parser.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import HttpRequest

# Per-part headers and boundaries of a multipart body (besides its fields, counted apart).
PART_OVERHEAD = 64 * 1024
_ATTRIBUTE = "disco_refused_upload"


def max_upload_bytes() -> int:
    return int(settings.DISCO_MAX_MODEL_BYTES)


def max_request_bytes() -> int:
    """The largest multipart body that can hold an acceptable model: its files, fields and headers."""
    return max_upload_bytes() + int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0) + PART_OVERHEAD


def refusal_message(seen: int, *, before_reading: bool = False) -> str:
    limit = max_upload_bytes()
    what = (f"The upload is {seen / 1e6:.1f} MB, so it was refused before it was read"
            if before_reading else f"The model files pass {seen / 1e6:.1f} MB, so the upload was stopped")
    return (f"{what}: the limit is {limit / 1e6:.1f} MB for all model files together (setting "
            "DISCO_MAX_MODEL_BYTES). Nothing was stored. Upload a smaller model.")


def refused_upload(request: Any) -> str | None:
    """The message of an upload this request's handler stopped (a DRF request or a Django one), or None."""
    request = getattr(request, "_request", request)
    return getattr(request, _ATTRIBUTE, None)


class ModelUploadLimitHandler(FileUploadHandler):
    """Counts the bytes of all files of one request and stops the upload past the model size limit."""

    def __init__(self, request: HttpRequest | None = None):
        super().__init__(request)
        self.received = 0
        self.too_long = False

    def _refuse(self, message: str) -> None:
        if self.request is not None:
            setattr(self.request, _ATTRIBUTE, message)

    def handle_raw_input(self, input_data: Any, META: dict, content_length: int, boundary: Any,  # noqa: N803
                         encoding: str | None = None) -> None:
        self.received = 0
        self.too_long = bool(content_length and content_length > max_request_bytes())
        if self.too_long:
            self._refuse(refusal_message(content_length, before_reading=True))
        return None

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        if self.too_long:  # the fields before the first file (the CSRF token, ...) are read; no file is
            raise StopUpload(connection_reset=True)

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > max_upload_bytes():
            self._refuse(refusal_message(self.received))
            raise StopUpload(connection_reset=True)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None
