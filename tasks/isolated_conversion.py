"""Converting an uploaded model in a separate, confined OS process (``tasks.model_files.child``).

An uploaded Keras file is a stranger's program as much as a model: Keras rebuilds objects
from it, and ``.h5``/SavedModel loading has run code that a file carried. So no upload is
ever loaded in the web process or the worker itself, in embedded mode neither. Each job:

- gets a fresh folder (mode 0700) outside the media storage, with the upload in it;
- starts ``python -I child.py <folder>`` with an environment holding no Django settings, no
  secrets, no database or broker address (only what TensorFlow needs), in its own session;
- is bounded: CPU time and memory (rlimits set by the child before it imports anything),
  wall-clock time (the parent kills the whole process group), file sizes, open files;
- is confined by the child before it reads the upload (``model_files.isolation``);
- gives back only files the parent then checks as an untrusted TF.js upload: names,
  sizes, ``tfjs_format.parse_layers_model`` and the allow-list.

A killed, timed-out or crashed conversion raises ``UploadError`` with a plain reason.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from disco_client.model_allowlist import config_problems

from .model_files import child
from .model_files.archives import megabytes
from .model_files.errors import UploadError
from .model_files.isolation import Limits
from .tfjs_format import LayersModelArtifacts, ModelFormatError, parse_layers_model

log = logging.getLogger(__name__)

# Variables the child may inherit: none of them names a secret, a database or a broker.
_PASSED_ENV = ("PATH", "LANG", "LC_ALL", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS")
_MAX_OUTPUT_FILES = 1000
# The program the isolated process runs (tests substitute probes that misbehave on purpose).
CHILD_SCRIPT = Path(child.__file__)
_LOG_TAIL = 4000


@dataclass(frozen=True)
class ConvertedModel:
    """What an isolated conversion produced, checked: the artifacts and the shapes Keras computed."""

    artifacts: LayersModelArtifacts
    input_shapes: list[list[int | None]]
    output_shapes: list[list[int | None]]
    keras_version: str


def conversion_limits() -> Limits:
    max_bytes = int(settings.DISCO_MAX_MODEL_BYTES)
    return Limits(cpu_seconds=int(settings.DISCO_CONVERSION_CPU_SECONDS),
                  memory_bytes=int(settings.DISCO_CONVERSION_MEMORY_MB) * 1024 * 1024,
                  wall_seconds=int(settings.DISCO_CONVERSION_TIMEOUT),
                  file_bytes=4 * max_bytes + 64 * 1024 * 1024)


def _child_env(job_dir: Path) -> dict[str, str]:
    env = {name: os.environ[name] for name in _PASSED_ENV if os.environ.get(name)}
    env.setdefault("PATH", "/usr/bin:/bin")
    env.update(HOME=str(job_dir), TMPDIR=str(job_dir), PYTHONHASHSEED="random", TF_USE_LEGACY_KERAS="1",
               TF_CPP_MIN_LOG_LEVEL="2", TFDF_DISABLE_WELCOME_MESSAGE="1", CUDA_VISIBLE_DEVICES="",
               PYTHONDONTWRITEBYTECODE="1")
    return env


def convert_untrusted(kind: str, name: str, data: bytes) -> ConvertedModel:
    """Convert an uploaded model (``kind`` from ``uploads.inspect_model_upload``) in an isolated process."""
    limits = conversion_limits()
    job_dir = Path(tempfile.mkdtemp(prefix="disco-isolated-", dir=settings.DISCO_CONVERSION_TEMP_DIR or None))
    try:
        job_dir.chmod(0o700)
        (job_dir / "source").write_bytes(data)
        (job_dir / "job.json").write_text(json.dumps({
            "kind": kind, "name": name, "max_bytes": int(settings.DISCO_MAX_MODEL_BYTES),
            "limits": limits.__dict__, "require_confinement": bool(settings.DISCO_CONVERSION_REQUIRE_LANDLOCK),
        }))
        _run_child(job_dir, limits)
        return _read_result(job_dir)
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)


def _run_child(job_dir: Path, limits: Limits) -> None:
    log_path = job_dir / "child.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-I", str(CHILD_SCRIPT), str(job_dir)], cwd=job_dir,
                                env=_child_env(job_dir), stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True)
    try:
        code = proc.wait(timeout=limits.wall_seconds)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise UploadError([f"The conversion took longer than {limits.wall_seconds} seconds and was stopped. "
                           "Upload a smaller model, or ask the administrator to raise DISCO_CONVERSION_TIMEOUT."]
                          ) from None
    except BaseException:  # a Celery soft time limit, a shutdown: never leave the child running
        _kill_group(proc)
        raise
    finally:
        _kill_group(proc)  # whatever it started goes with it
    tail = _tail(log_path)
    if code == 0:
        confinement = [line for line in tail.splitlines() if line.startswith("isolated conversion:")]
        log.info("Isolated conversion finished (%s)", confinement[-1] if confinement else "no confinement reported")
        return
    log.warning("Isolated conversion exited with %s:\n%s", code, tail)
    if code in (-signal.SIGXCPU, -signal.SIGKILL) and "MemoryError" not in tail:
        raise UploadError([f"The conversion used more than its {limits.cpu_seconds} seconds of CPU time (or was "
                           "killed) and was stopped. Upload a smaller model, or ask the administrator to raise "
                           "DISCO_CONVERSION_CPU_SECONDS."])
    if "MemoryError" in tail or "bad_alloc" in tail or "Cannot allocate memory" in tail:
        raise UploadError([f"The conversion needed more than its {megabytes(limits.memory_bytes)} of memory and "
                           "was stopped. Upload a smaller model, or ask the administrator to raise "
                           "DISCO_CONVERSION_MEMORY_MB."])
    raise UploadError(["The conversion process failed unexpectedly (exit status "
                       f"{code}). Check that the model loads with keras.models.load_model and save it again; an "
                       "administrator can see the details in the worker's log."])


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, path.stat().st_size - _LOG_TAIL))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _read_result(job_dir: Path) -> ConvertedModel:
    try:
        result = json.loads((job_dir / "result.json").read_text())
    except (OSError, ValueError):
        raise UploadError(["The conversion process ended without a result: save the model again and re-upload "
                           "it; an administrator can see the details in the worker's log."]) from None
    if not isinstance(result, dict) or not result.get("ok"):
        problems = result.get("problems") if isinstance(result, dict) else None
        if not isinstance(problems, list) or not problems or not all(isinstance(p, str) for p in problems):
            problems = ["The model could not be converted."]
        raise UploadError([p[:2000] for p in problems[:20]])
    artifacts = _read_output(job_dir / "out")
    problems = config_problems(artifacts.model_json)
    if problems:
        raise UploadError(problems)
    version = str(result.get("kerasVersion") or "")
    return ConvertedModel(artifacts, _shapes(result.get("inputShapes")), _shapes(result.get("outputShapes")),
                          version if version in ("2", "3") else "")


def _read_output(out: Path) -> LayersModelArtifacts:
    """The child's files, read as an untrusted TF.js upload: plain files with plain names, within the size limit."""
    limit = int(settings.DISCO_MAX_MODEL_BYTES)
    if not out.is_dir() or out.is_symlink():
        raise UploadError(["The conversion produced no model files."])
    entries = list(out.iterdir())
    if len(entries) > _MAX_OUTPUT_FILES or any(e.is_symlink() or not e.is_file() for e in entries):
        raise UploadError(["The conversion produced unexpected files; the result was discarded."])
    if sum(e.stat().st_size for e in entries) > limit:
        raise UploadError([f"The converted model is larger than this platform's limit of {megabytes(limit)}."])
    files = {e.name: e.read_bytes() for e in entries}
    model_json = files.pop("model.json", None)
    if model_json is None:
        raise UploadError(["The conversion produced no model.json."])
    try:
        return parse_layers_model(model_json, files, require_weights=True)
    except ModelFormatError as exc:
        raise UploadError(["The converted model is not a usable TF.js layers model: " + " ".join(exc.problems)]
                          ) from None


def _shapes(value: object) -> list[list[int | None]]:
    if not isinstance(value, list):
        return []
    return [[d if isinstance(d, int) and not isinstance(d, bool) and d >= 0 else None for d in shape]
            for shape in value[:64] if isinstance(shape, list) and len(shape) <= 16]
