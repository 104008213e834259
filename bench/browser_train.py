"""In-browser training throughput (samples/s) of the predefined tasks' models, next to tf_keras.

Starts its own platform (as tests/live_platform.py does: migrate, load_default_tasks, daphne) and a
headless Chromium, then for each task and backend trains the task's served model with trainer.js's
loop (model.trainOnBatch on random data of the right shape, task batch size) and times it after one
warm-up batch. tf_keras trains the same Keras model on the same batch size in this process.

    .venv/bin/python bench/browser_train.py [--only titanic mnist]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.live_platform import CHROMIUM_ARGS, daphne, manage, platform_env  # noqa: E402

# task id -> (backends to try, batches to time). MobileNets: 1 small batch only (slow in browsers).
PLAN: dict[str, tuple[list[str], int]] = {
    "titanic": (["wasm", "cpu", "webgl"], 30),
    "mnist": (["webgl", "cpu"], 4),
    "lus_covid": (["webgl", "cpu"], 4),
    "cifar10": (["webgl"], 1),
    "simple_face": (["webgl"], 1),
    "wikitext": (["webgl", "cpu"], 3),
}

BROWSER_BENCH = """
async ({taskId, backend, batches}) => {
  const {setBackend, compileFromTrainingConfig, ensureCompiled, targetEncoding} =
    await import('/static/disco/trainer.js');
  const {textModelInputs} = await import('/static/disco/data.js');
  const task = await (await fetch(`/api/tasks/${taskId}/`)).json();
  await setBackend(backend);
  const artifacts = await tf.io.http(`/tasks/${taskId}/model.json`).load();
  const model = await tf.loadLayersModel(tf.io.fromMemory(artifacts));
  if (!compileFromTrainingConfig(model, artifacts.modelTopology.training_config)) ensureCompiled(model, task);
  const batch = task.trainingInformation.batchSize;
  const inputs = model.inputs.map((t) => t.shape);
  let xs;
  if (task.trainingInformation.dataType === 'text') {
    xs = textModelInputs(tf.randomUniform([batch, inputs[0][1]], 0, 257, 'int32'));
  } else {
    xs = tf.randomUniform([batch, ...inputs[0].slice(1)]);
  }
  const out = model.outputs[0].shape;
  const units = out[out.length - 1];
  let ys;
  const enc = targetEncoding(model);
  if (enc === 'sparse') ys = tf.randomUniform([batch, ...out.slice(1, -1), 1], 0, units, 'int32').toFloat();
  else if (enc === 'onehot') ys = tf.oneHot(tf.randomUniform([batch], 0, units, 'int32'), units).toFloat();
  else ys = tf.randomUniform([batch, units]).round();
  await model.trainOnBatch(xs, ys);  // warm-up: shader compilation, wasm init
  const t0 = performance.now();
  for (let i = 0; i < batches; i++) await model.trainOnBatch(xs, ys);
  const seconds = (performance.now() - t0) / 1000;
  return {backend: tf.getBackend(), batch, samplesPerSecond: batch * batches / seconds};
}
"""


def keras_rate(task_id: str, batches: int) -> tuple[int, float]:
    """(batch size, samples/s) of tf_keras training the task's model on random data."""
    from tasks.providers import get_provider

    provider = get_provider(task_id)
    spec = provider.get_task()
    model = provider.get_model()
    batch = spec.batch_size
    rng = np.random.default_rng(0)
    xs = [rng.random((batch, *t.shape[1:])).astype(t.dtype.as_numpy_dtype) for t in model.inputs]
    if spec.data_type == "text":
        length = model.inputs[0].shape[1]
        xs[0] = rng.integers(0, 257, (batch, length)).astype("int32")
        xs[1] = np.tile(np.arange(length, dtype="int32"), (batch, 1))
        ys = rng.integers(0, 257, (batch, length, 1)).astype("float32")
    else:
        units = model.outputs[0].shape[-1]
        ys = (rng.random((batch, units)) > 0.5).astype("float32") if units == 1 else \
            np.eye(units, dtype="float32")[rng.integers(0, units, batch)]
    model.train_on_batch(xs, ys)
    start = time.perf_counter()
    for _ in range(max(batches, 3)):
        model.train_on_batch(xs, ys)
    return batch, batch * max(batches, 3) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(PLAN), help="Benchmark only these tasks.")
    args = parser.parse_args()
    plan = {k: v for k, v in PLAN.items() if not args.only or k in args.only}
    import os

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "disco_site.settings")
    import django

    django.setup()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        env = platform_env(workdir)
        manage(env, "migrate", "--noinput")
        manage(env, "load_default_tasks", "--only", *plan)
        with daphne(env, workdir / "daphne.log") as base, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            print(f"{'task':<12} {'backend':<8} {'batch':>5} {'browser samples/s':>18} {'tf_keras samples/s':>19} "
                  f"{'ratio':>7}")
            for task_id, (backends, batches) in plan.items():
                batch, keras = keras_rate(task_id, batches)
                for backend in backends:
                    page = browser.new_page()
                    page.goto(f"{base}/")
                    page.add_script_tag(url=f"{base}/static/disco/tfjs_csp_shim.js")  # the CSP refuses eval
                    page.add_script_tag(url=f"{base}/static/vendor/tfjs/tf.min.js")
                    page.add_script_tag(url=f"{base}/static/vendor/tfjs-backend-wasm/tf-backend-wasm.min.js")
                    try:
                        args = {"taskId": task_id, "backend": backend, "batches": batches}
                        result = page.evaluate(BROWSER_BENCH, args)
                        rate = result["samplesPerSecond"]
                        print(f"{task_id:<12} {result['backend']:<8} {batch:>5} {rate:>18,.1f} {keras:>19,.1f} "
                              f"{keras / rate:>6.1f}x", flush=True)
                    except Exception as exc:  # noqa: BLE001 - report and go on with the next backend
                        print(f"{task_id:<12} {backend:<8} {batch:>5} {'failed: ' + str(exc).splitlines()[0][:60]}",
                              flush=True)
                    page.close()
            browser.close()


if __name__ == "__main__":
    main()
