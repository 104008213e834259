"""Every benchmark script imports: nothing else runs them in CI, and a moved module once broke bench/crowd.py's
task provider (``tasks.keras_env`` became ``disco_client.keras_env``) without any test noticing."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
MODULES = sorted(p.stem for p in BENCH.glob("*.py") if p.stem != "__init__")


def test_the_bench_folder_has_scripts():
    assert {"crowd", "crowd_tasks", "round", "browser_train"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_a_bench_script_imports(name: str):
    module = importlib.import_module(f"bench.{name}")
    assert module.__name__ == f"bench.{name}"
