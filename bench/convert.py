"""Benchmark: TensorFlow / tensorflowjs import cost, and build + TF.js conversion of each predefined task's model.

Run from the project root: ``.venv/bin/python bench/convert.py``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "disco_site.settings")
# tensorflowjs imports tensorflow_decision_forests, whose welcome banner needs IPython when stdout is redirected.
os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")

import django  # noqa: E402

django.setup()

from disco_client.keras_env import tf_keras  # noqa: E402
from tasks.conversion import keras_model_to_tfjs  # noqa: E402
from tasks.providers import default_providers  # noqa: E402


def main() -> None:
    start = time.perf_counter()
    tf_keras()
    print(f"import TensorFlow (tf_keras): {time.perf_counter() - start:6.2f} s")
    start = time.perf_counter()
    import tensorflowjs  # noqa: F401  (TF_USE_LEGACY_KERAS is set by tf_keras() above)
    print(f"import tensorflowjs:          {time.perf_counter() - start:6.2f} s")
    print()
    header = f"{'task':<12} {'parameters':>12} {'build s':>9} {'convert s':>10} {'total bytes':>13}"
    print(header)
    print("-" * len(header))
    for provider in default_providers():
        task_id = provider.get_task().id
        start = time.perf_counter()
        model = provider.get_model()
        built = time.perf_counter() - start
        start = time.perf_counter()
        artifacts = keras_model_to_tfjs(model)
        converted = time.perf_counter() - start
        params, size = model.count_params(), artifacts.total_bytes
        print(f"{task_id:<12} {params:>12,} {built:>9.2f} {converted:>10.2f} {size:>13,}")
        tf_keras().backend.clear_session()


if __name__ == "__main__":
    main()
