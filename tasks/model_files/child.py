"""The isolated conversion process: ``python -I child.py <job folder>``.

Started by ``tasks.isolated_conversion`` for every uploaded Keras file (and architecture-only
``model.json``), with an environment that holds no settings, secrets or database address,
in a job folder of its own. In this order it:

1. sets its resource limits (CPU time, memory, file size, open files);
2. imports TensorFlow, tf_keras, Keras 3 and tensorflowjs (only the Python installation is read);
3. confines itself (``isolation.confine``: Landlock, seccomp), so from here on it can read
   nothing but code and write nothing but its job folder, and open no socket;
4. reads the upload, checks it with the allow-list again, converts it, and writes
   ``out/model.json`` + shards and ``result.json`` (``{"ok": true, "inputShapes": ...,
   "outputShapes": ..., "kerasVersion": ...}`` or ``{"ok": false, "problems": [...]}``).

Whatever it writes, the parent checks again: it trusts nothing that comes out of here.
"""

from __future__ import annotations

import json
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def readable_paths() -> list[Path]:
    """What the confined process may read: the Python installation, the project's code, CPU facts.

    Never the project's folder itself nor anything that contains it (its secret-key file, its
    SQLite database and its media live there), even when Python is installed above it.
    """
    python = sysconfig.get_paths()
    paths = {Path(python[key]) for key in ("stdlib", "platstdlib", "purelib", "platlib") if python.get(key)}
    paths |= {Path(p) for p in sys.path if p and Path(p).is_absolute() and Path(p).is_dir()}
    paths |= {ROOT / "tasks"}
    paths |= {Path(p) for p in ("/usr/lib", "/usr/lib64", "/lib", "/lib64", "/etc/ld.so.cache", "/etc/localtime",
                                "/usr/share/zoneinfo", "/dev/urandom", "/dev/zero")}
    # TensorFlow reads the CPU topology; /proc/self is this process only (never the parent's environ).
    paths |= {Path(p) for p in ("/proc/self", "/proc/stat", "/proc/cpuinfo", "/proc/meminfo",
                                "/sys/devices/system/cpu", "/sys/fs/cgroup")}
    # The resolved paths too: a symlinked venv is reached through its target.
    paths |= {p.resolve() for p in paths if not str(p).startswith("/proc/self")}
    root = ROOT.resolve()
    return sorted(p for p in paths if not (root == p or root.is_relative_to(p)))


def _write_result(job_dir: Path, result: dict) -> None:
    (job_dir / "result.json").write_text(json.dumps(result))


def main(job_dir: Path) -> int:
    job = json.loads((job_dir / "job.json").read_text())
    sys.path.insert(0, str(ROOT))
    from tasks.model_files.isolation import Limits, confine, restrict_resources

    restrict_resources(Limits(**job["limits"]))
    from tasks.keras_import import convert_keras_source, import_conversion_libraries, model_shapes, source_keras_version
    from tasks.model_files.errors import UploadError

    import_conversion_libraries()
    applied = confine(readable_paths(), [job_dir, Path("/dev/null")])
    print(f"isolated conversion: {', '.join(applied) or 'resource limits only'}", file=sys.stderr, flush=True)
    if job.get("require_confinement") and not any(p.startswith("landlock") for p in applied):
        _write_result(job_dir, {"ok": False, "problems": [
            "This server cannot confine the conversion process (Landlock is unavailable) and is set to require "
            "it (DISCO_CONVERSION_REQUIRE_LANDLOCK): the model was not converted. An administrator can see why "
            "in the worker's log."]})
        return 0
    data = (job_dir / "source").read_bytes()
    try:
        artifacts = convert_keras_source(job["kind"], job["name"], data, max_bytes=job["max_bytes"])
        out = job_dir / "out"
        out.mkdir()
        (out / "model.json").write_bytes(artifacts.model_json_bytes())
        for name, shard in artifacts.shards.items():
            (out / name).write_bytes(shard)
        inputs, outputs = model_shapes(out / "model.json")
        _write_result(job_dir, {"ok": True, "inputShapes": inputs, "outputShapes": outputs,
                                "kerasVersion": source_keras_version(job["kind"], data)})
    except UploadError as exc:
        _write_result(job_dir, {"ok": False, "problems": exc.problems})
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
