"""A stand-in for ``tasks/model_files/child.py`` that misbehaves on purpose (``python -I isolation_probe.py <job>``).

It starts exactly as the real child does (the same resource limits, the same confinement
with the same readable paths), then does what the job's ``name`` asks instead of converting:

- ``spin``: burn CPU forever; ``sleep``: sleep forever; ``memory``: allocate without end;
- ``escape:<secret file>:<tcp port>``: try everything a payload would, and report each outcome
  as the job's "problems" (the parent turns them into an ``UploadError`` the test reads).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _attempt(label: str, action) -> str:  # noqa: ANN001
    try:
        result = action()
    except OSError as exc:
        return f"{label}: refused ({exc.strerror or exc})"
    return f"{label}: ALLOWED ({str(result)[:60]!r})"


def _escape(job_dir: Path, secret: str, port: int) -> list[str]:
    parent = os.getppid()
    outcomes = [
        _attempt("read secret file", lambda: Path(secret).read_text()),
        _attempt("read parent environ", lambda: Path(f"/proc/{parent}/environ").read_bytes()),
        _attempt("write outside job folder", lambda: Path(secret).with_name("written-by-probe").write_text("x")),
        _attempt("list project root", lambda: os.listdir(ROOT)),
        _attempt("tcp connect", lambda: socket.create_connection(("127.0.0.1", port), timeout=3)),
        _attempt("unix socket", lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)),
        _attempt("write job folder", lambda: (job_dir / "scratch").write_text("ok")),
        _attempt("read python stdlib", lambda: Path(json.__file__).read_text()[:10]),
    ]
    outcomes.append("environment: " + ",".join(sorted(os.environ)))
    return outcomes


def main(job_dir: Path) -> int:
    job = json.loads((job_dir / "job.json").read_text())
    sys.path.insert(0, str(ROOT))
    from tasks.model_files.child import readable_paths
    from tasks.model_files.isolation import Limits, confine, restrict_resources

    restrict_resources(Limits(**job["limits"]))
    applied = confine(readable_paths(), [job_dir, Path("/dev/null")])
    action, *args = job["name"].split(":")
    if action == "spin":
        while True:
            pass
    if action == "sleep":
        time.sleep(3600)
    if action == "memory":
        hoard = []
        while True:
            hoard.append(bytearray(16 * 1024 * 1024))
    outcomes = [f"protections: {', '.join(applied)}", *_escape(job_dir, args[0], int(args[1]))]
    (job_dir / "result.json").write_text(json.dumps({"ok": False, "problems": outcomes}))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
