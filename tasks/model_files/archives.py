"""Zip archives from strangers: checked against zip-slip, links, encryption and zip bombs."""

from __future__ import annotations

import io
import stat
import zipfile
import zlib
from collections.abc import Iterable
from typing import Any

from .errors import UploadError

# The platform's default limit on a model (DISCO_MAX_MODEL_BYTES), for callers without settings.
DEFAULT_MAX_BYTES = 200 * 1024 * 1024
MAX_ZIP_MEMBERS = 1000
MAX_COMPRESSION_RATIO = 100
# Below this many uncompressed bytes the ratio is not checked: tiny files (HDF5 headers,
# JSON configs) compress very well and can do no harm.
RATIO_CHECK_FROM_BYTES = 1024 * 1024
_CHUNK = 1024 * 1024


def megabytes(n: int) -> str:
    """A size for messages: "3.2 MB" from one MiB on, "1,234 bytes" below."""
    return f"{n / (1024 * 1024):.1f} MB" if n >= 1024 * 1024 else f"{n:,} bytes"


class SafeZip:
    """A zip archive checked against zip-slip, symlinks and zip bombs before any member is read.

    The central directory is checked when opened; ``read`` enforces the same limits on the
    bytes actually inflated (a forged directory cannot lie its way past them).
    """

    def __init__(self, data: bytes, label: str = "The zip file", *, limit: int):
        self.label = label
        try:
            self.zip = zipfile.ZipFile(io.BytesIO(data))
            infos = self.zip.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
            raise UploadError([f"{label} is damaged or truncated ({exc}): create it again and re-upload it."]) from None
        self.limit = limit
        self._read_total = 0
        problems: list[str] = []
        if len(infos) > MAX_ZIP_MEMBERS:
            problems.append(f"{label} holds {len(infos)} files; at most {MAX_ZIP_MEMBERS} are accepted. "
                            "Zip only the model's files.")
        for info in infos:
            problem = _unsafe_member(info)
            if problem:
                problems.append(f"{label} {problem}")
        total = sum(i.file_size for i in infos)
        packed = sum(i.compress_size for i in infos)
        if total > self.limit:
            problems.append(f"{label} unpacks to {megabytes(total)}, more than this platform's limit of "
                            f"{megabytes(self.limit)}. Upload a smaller model.")
        elif total > RATIO_CHECK_FROM_BYTES and total > MAX_COMPRESSION_RATIO * max(packed, 1):
            problems.append(f"{label} unpacks to {megabytes(total)} from {packed:,} bytes "
                            f"(over {MAX_COMPRESSION_RATIO}:1): it looks like a zip bomb and is refused. "
                            "A real model does not compress that much.")
        if problems:
            raise UploadError(problems)
        self.infos = [i for i in infos if not i.is_dir()]

    def names(self) -> list[str]:
        return [i.filename for i in self.infos]

    def read(self, name: str) -> bytes:
        """A member's bytes, read in chunks and stopped as soon as a limit is passed."""
        info = self.zip.getinfo(name)
        out = bytearray()
        try:
            with self.zip.open(info) as fh:
                while chunk := fh.read(_CHUNK):
                    out += chunk
                    self._read_total += len(chunk)
                    if len(out) > info.file_size or self._read_total > self.limit:
                        raise UploadError([f"{self.label} inflates to more than it declares or than the limit of "
                                           f"{megabytes(self.limit)}: it is refused as a zip bomb."])
                    if len(out) > RATIO_CHECK_FROM_BYTES and len(out) > MAX_COMPRESSION_RATIO * max(
                            info.compress_size, 1):
                        raise UploadError([f"{self.label}: {name} compresses over {MAX_COMPRESSION_RATIO}:1; "
                                           "it looks like a zip bomb and is refused."])
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as exc:
            if isinstance(exc, UploadError):
                raise
            raise UploadError([f"{self.label} is damaged or truncated ({name}: {exc}): "
                               "create it again and re-upload it."]) from None
        return bytes(out)

    def extract_to(self, directory: Any, names: Iterable[str] | None = None) -> None:
        """Write members (all by default) under ``directory``; member paths were checked on opening."""
        from pathlib import Path

        root = Path(directory).resolve()
        for name in names if names is not None else self.names():
            target = (root / name).resolve()
            if root not in target.parents:  # pragma: no cover - refused on opening already
                raise UploadError([f"{self.label} has a member outside its folder: {name}."])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.read(name))


def _unsafe_member(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
        return (f"has a member with an unsafe path ({name!r}: absolute or with '..'), which could write outside "
                "its folder. Zip the model's folder with relative paths only.")
    if stat.S_ISLNK(info.external_attr >> 16):
        return f"has a symbolic link ({name!r}); links are not accepted. Zip the real files."
    if info.flag_bits & 0x1:
        return f"is encrypted ({name!r}); upload an archive without a password."
    return None
