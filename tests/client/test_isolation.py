"""disco_client stands alone: no module of it loads the server (Django, aggregation, tasks, disco_site), and
only its TensorFlow layer may load TensorFlow (which it does only when a model is loaded, not on import)."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import disco_client

ROOT = Path(__file__).parents[2]
SERVER = ("django", "aggregation", "tasks", "disco_site", "accounts", "channels", "celery", "rest_framework")
TENSORFLOW = ("tensorflow", "tf_keras", "tensorflowjs", "keras")
MODULES = sorted(f"disco_client.{m.name}" for m in pkgutil.iter_modules(disco_client.__path__))

PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
if sys.argv[2] == "all":  # and every name the package exports
    import disco_client
    for name in disco_client.__all__:
        getattr(disco_client, name)
print(json.dumps(sorted(sys.modules)))
"""


def _loaded_by(module: str, names: str = "all") -> list[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, module, names], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_the_package_has_the_modules_the_readme_names():
    assert {"disco_client.codec", "disco_client.parts", "disco_client.remote", "disco_client.participant",
            "disco_client.peer", "disco_client.trainer", "disco_client.keras"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_a_client_module_loads_nothing_of_the_server(module):
    loaded = _loaded_by(module)
    assert [m for m in loaded if m.split(".")[0] in SERVER] == []
    # Not even the TensorFlow layer imports TensorFlow before it loads a model.
    assert [m for m in loaded if m.split(".")[0] in TENSORFLOW] == []


@pytest.mark.parametrize("module", [m for m in MODULES if m not in ("disco_client.peer", "disco_client.peer_crypto",
                                                                    "disco_client.keras")])
def test_only_the_decentralized_protocol_needs_cryptography(module):
    assert [m for m in _loaded_by(module, "none") if m.startswith("cryptography")] == []
