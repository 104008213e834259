// static/disco/backends.js: choosing from measured figures, timeouts, the probe on TF.js's cpu backend.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';

import {
  TimeoutError, describeFigures, fastestBackend, probeBackends, randomBatch, withTimeout,
} from '../../static/disco/backends.js';

const require = createRequire(import.meta.url);
globalThis.tf = require('@tensorflow/tfjs');
const tf = globalThis.tf;
await tf.setBackend('cpu');

const ok = (backend, ms) => ({ backend, ms, warmupMs: ms * 3, status: 'ok' });

test('the fastest measured backend wins; ties go to the first figure', () => {
  assert.deepEqual(fastestBackend([ok('webgl', 12), ok('wasm', 4.5), ok('cpu', 30)], 'webgl'),
    { backend: 'wasm', measured: true });
  assert.deepEqual(fastestBackend([ok('cpu', 7), ok('wasm', 7)], 'wasm'), { backend: 'cpu', measured: true });
});

test('figures that are not measurements never win; none measured falls back to the rule', () => {
  const figures = [
    { backend: 'webgl', ms: null, warmupMs: null, status: 'timeout', reason: 'over 1200 ms' },
    { backend: 'wasm', ms: null, warmupMs: null, status: 'unable', reason: 'cannot train this model' },
    { backend: 'cpu', ms: Number.NaN, warmupMs: null, status: 'error', reason: 'failed (boom)' },
  ];
  assert.deepEqual(fastestBackend(figures, 'webgl'), { backend: 'webgl', measured: false });
  assert.deepEqual(fastestBackend([...figures, ok('cpu', 90)], 'webgl'), { backend: 'cpu', measured: true });
  assert.deepEqual(fastestBackend([], 'cpu'), { backend: 'cpu', measured: false });
});

test('describeFigures reads like the page shows it', () => {
  assert.equal(describeFigures([ok('wasm', 4.52), { backend: 'webgl', status: 'timeout', reason: 'over 1200 ms' }]),
    'wasm 4.5 ms, webgl over 1200 ms');
});

test('withTimeout: a slow promise rejects with TimeoutError and settles later; a fast one resolves', async () => {
  const timers = { pending: [], setTimeout(fn, ms) { this.pending.push({ fn, ms }); return this.pending.length; },
    clearTimeout() {} };
  let finish;
  const slow = new Promise((resolve) => { finish = resolve; });
  const { result, settled } = withTimeout(slow, 250, 'webgl: one training batch', timers);
  assert.equal(timers.pending[0].ms, 250);
  timers.pending[0].fn();
  await assert.rejects(result, (error) => error instanceof TimeoutError && /webgl: one training batch took longer than 250 ms/.test(error.message));
  let done = false;
  settled.then(() => { done = true; });
  await Promise.resolve();
  assert.equal(done, false);
  finish(1);
  await settled;
  assert.equal(done, true);

  const fast = withTimeout(Promise.resolve(42), 1000, 'x');
  assert.equal(await fast.result, 42);
  await assert.rejects(withTimeout(Promise.reject(new Error('no')), 1000, 'x').result, /no/);
});

const mlp = () => {
  const m = tf.sequential({ layers: [tf.layers.dense({ inputShape: [4], units: 8, activation: 'relu' }),
    tf.layers.dense({ units: 3, activation: 'softmax' })] });
  m.compile({ optimizer: 'sgd', loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
  return m;
};

test('randomBatch fits the model: one-hot targets for categorical losses', () => {
  const batch = randomBatch(mlp(), 5);
  assert.deepEqual(batch.xs.shape, [5, 4]);
  assert.deepEqual(batch.ys.shape, [5, 3]);
  assert.deepEqual(Array.from(batch.ys.sum(1).dataSync()), [1, 1, 1, 1, 1]);
  batch.dispose();
});

test('the probe times each backend it may use and skips the rest once its time is up', async () => {
  const before = tf.memory().numTensors;
  const probe = await probeBackends(async () => mlp(), 8, { backends: ['cpu'] });
  assert.equal(probe.backend, 'cpu');
  assert.equal(probe.measured, true);
  assert.equal(probe.figures.length, 1);
  assert.equal(probe.figures[0].status, 'ok');
  assert.ok(probe.figures[0].ms > 0 && probe.figures[0].warmupMs > 0);
  assert.equal(tf.memory().numTensors, before); // every probe model and batch disposed

  let clock = 0;
  const late = await probeBackends(async () => { clock += 2000; return mlp(); }, 8, { backends: ['cpu'], now: () => clock });
  assert.equal(late.figures[0].status, 'skipped');
  assert.deepEqual([late.backend, late.measured], ['cpu', false]);
});

test('without cross-origin isolation the page is told wasm runs on one thread, and why', async () => {
  const { wasmThreadsInfo, wasmThreadsWanted } = await import('../../static/disco/backends.js');
  const scope = { crossOriginIsolated: false, navigator: { hardwareConcurrency: 8 } };
  assert.equal(wasmThreadsWanted(scope), 1);
  const info = wasmThreadsInfo(scope);
  assert.equal(info.threads, 1);
  assert.match(info.text, /^1 thread: this page is not cross-origin isolated/);
});

// ------------------------------------------------------------------------------------------
// WebGPU: probed only where navigator.gpu gives an adapter. The fake 'webgpu' backend here is TF.js's
// cpu backend under another name (the cpu kernels registered for it), so it really trains.

const {
  availableBackends, chooseBackend, probeOrder, webgpuSelectable, webgpuUnavailable,
} = await import('../../static/disco/backends.js');

let webgpuStarts = 0;
function registerFakeWebgpu(factory) {
  if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
  for (const kernel of tf.getKernelsForBackend('cpu')) {
    if (!tf.getKernel(kernel.kernelName, 'webgpu')) tf.registerKernel({ ...kernel, backendName: 'webgpu' });
  }
  const CpuBackend = tf.findBackend('cpu').constructor;
  tf.registerBackend('webgpu', factory ?? (() => { webgpuStarts += 1; return new CpuBackend(); }));
}
const gpuScope = (requestAdapter) => ({ navigator: { gpu: { requestAdapter } } });

test('webgpu registered at TF.js\'s priority 3 is lowered to 0, so TF.js never starts it unasked', async () => {
  const { keepWebgpuExplicit } = await import('../../static/disco/backends.js');
  registerFakeWebgpu();
  tf.removeBackend('webgpu');
  let started = 0;
  tf.registerBackend('webgpu', async () => { started += 1; throw new Error('never unasked'); }, 3);
  assert.equal(tf.engine().registryFactory.webgpu.priority, 3);
  assert.equal(keepWebgpuExplicit(tf), true);
  assert.equal(tf.engine().registryFactory.webgpu.priority, 0);
  assert.equal(keepWebgpuExplicit(tf), false); // idempotent
  assert.ok(availableBackends().includes('webgpu'));
  assert.equal(started, 0);
  tf.removeBackend('webgpu');
  assert.equal(keepWebgpuExplicit(tf), false); // no webgpu: nothing to do
});

test('webgpuUnavailable: no navigator.gpu, a null adapter, a failing request each give a reason; an adapter gives none', async () => {
  assert.match(await webgpuUnavailable({ navigator: {} }), /no navigator\.gpu/);
  assert.match(await webgpuUnavailable({}), /no navigator\.gpu/);
  assert.match(await webgpuUnavailable(gpuScope(async () => null)), /requestAdapter\(\) returned null/);
  assert.match(await webgpuUnavailable(gpuScope(async () => { throw new Error('GPU process crashed'); })),
    /requestAdapter\(\) failed: GPU process crashed/);
  assert.match(await webgpuUnavailable(gpuScope(() => new Promise(() => {})), 20), /took longer than 20 ms/);
  assert.equal(await webgpuUnavailable(gpuScope(async () => ({ features: new Set() }))), null);
});

test('webgpu is listed once registered, probed after webgl, and never the static rule\'s choice', () => {
  registerFakeWebgpu();
  assert.ok(availableBackends().includes('webgpu'));
  assert.deepEqual(probeOrder('wasm', ['webgpu', 'wasm', 'webgl', 'cpu']), ['wasm', 'webgl', 'webgpu', 'cpu']);
  assert.deepEqual(probeOrder('webgl', ['webgpu', 'webgl', 'cpu']), ['webgl', 'webgpu', 'cpu']);
  assert.equal(chooseBackend(mlp(), ['webgpu', 'cpu']), 'cpu');
  assert.equal(chooseBackend(mlp(), ['webgpu', 'webgl', 'cpu']), 'webgl');
  tf.removeBackend('webgpu');
  assert.ok(!availableBackends().includes('webgpu'));
});

test('without an adapter webgpu is not probed: its figure says why, and the probe still measures the rest', async () => {
  registerFakeWebgpu();
  webgpuStarts = 0;
  for (const scope of [{ navigator: {} }, gpuScope(async () => null)]) {
    const probe = await probeBackends(async () => mlp(), 8, { backends: ['webgpu', 'cpu'], scope });
    const figure = probe.figures.find((f) => f.backend === 'webgpu');
    assert.equal(figure.status, 'unable');
    assert.equal(figure.ms, null);
    assert.match(figure.reason, /no navigator\.gpu|returned null/);
    assert.match(describeFigures(probe.figures), /webgpu (this browser offers no WebGPU|no WebGPU adapter here)/);
    assert.deepEqual([probe.backend, probe.measured], ['cpu', true]);
    assert.equal(webgpuSelectable(probe.figures), false);
  }
  assert.equal(webgpuStarts, 0); // the backend was never started
  assert.equal(tf.getBackend(), 'cpu');
  tf.removeBackend('webgpu');
});

test('with an adapter webgpu is probed: a measured time, and it wins when fastest', async () => {
  registerFakeWebgpu();
  webgpuStarts = 0;
  let asked = 0;
  const scope = gpuScope(async () => { asked += 1; return { features: new Set() }; });
  const probe = await probeBackends(async () => mlp(), 8, { backends: ['webgpu', 'cpu'], scope });
  const figure = probe.figures.find((f) => f.backend === 'webgpu');
  assert.equal(asked, 1);
  assert.equal(webgpuStarts, 1);
  assert.equal(figure.status, 'ok');
  assert.ok(figure.ms > 0 && figure.warmupMs > 0, JSON.stringify(figure));
  assert.deepEqual(probe.figures.map((f) => f.backend), ['cpu', 'webgpu']);
  assert.equal(webgpuSelectable(probe.figures), true);
  assert.equal(tf.getBackend(), 'cpu'); // the probe leaves TF.js where it found it

  // Measured times decide: with a clock that makes webgpu's batches cheap, it is chosen.
  let clock = 0;
  const now = () => { clock += tf.getBackend() === 'webgpu' ? 1 : 5; return clock; };
  const fast = await probeBackends(async () => mlp(), 8, { backends: ['webgpu', 'cpu'], scope, now, budgetMs: 1e6 });
  assert.deepEqual([fast.backend, fast.measured], ['webgpu', true]);
  await tf.setBackend('cpu');
  tf.removeBackend('webgpu');
});

test('a webgpu backend that fails to start is reported, not chosen, and breaks nothing', async () => {
  registerFakeWebgpu(() => { throw new Error('requestDevice failed'); });
  const scope = gpuScope(async () => ({ features: new Set() }));
  const probe = await probeBackends(async () => mlp(), 8, { backends: ['webgpu', 'cpu'], scope });
  const figure = probe.figures.find((f) => f.backend === 'webgpu');
  assert.equal(figure.status, 'error');
  assert.match(figure.reason, /^failed \(The webgpu backend could not start/);
  assert.deepEqual([probe.backend, probe.measured], ['cpu', true]);
  assert.equal(webgpuSelectable(probe.figures), false);
  assert.equal(tf.getBackend(), 'cpu');
  tf.removeBackend('webgpu');
});

test('webgpu is still asked for an adapter once the probe\'s time is up, so the selector knows whether to offer it', async () => {
  registerFakeWebgpu();
  webgpuStarts = 0;
  let clock = 0;
  const late = await probeBackends(async () => { clock += 2000; return mlp(); }, 8,
    { backends: ['webgpu', 'cpu'], now: () => clock, scope: gpuScope(async () => ({})) });
  assert.deepEqual(late.figures.map((f) => [f.backend, f.status]), [['cpu', 'skipped'], ['webgpu', 'skipped']]);
  assert.equal(webgpuStarts, 0);
  assert.equal(webgpuSelectable(late.figures), true);
  const none = await probeBackends(async () => { clock += 2000; return mlp(); }, 8,
    { backends: ['webgpu', 'cpu'], now: () => clock, scope: gpuScope(async () => null) });
  assert.equal(none.figures.find((f) => f.backend === 'webgpu').status, 'unable');
  tf.removeBackend('webgpu');
});

test('a small model, or a 2-core machine, gets one wasm thread; else one per core; the address can force a count', async () => {
  const {
    WASM_ONE_THREAD_BELOW, WASM_ONE_THREAD_UP_TO_CORES, forcedWasmThreads, parameterCount, wasmThreadsChoice,
    wasmThreadsWanted,
  } = await import('../../static/disco/backends.js');
  // Sizes from model.json's weightsManifest (or artifacts.weightSpecs), before the model is loaded.
  const manifest = [{ paths: ['w.bin'], weights: [
    { name: 'dense/kernel', shape: [12, 64], dtype: 'float32' }, { name: 'dense/bias', shape: [64], dtype: 'float32' },
    { name: 'out/kernel', shape: [64, 1], dtype: 'float32' }, { name: 'out/bias', shape: [1], dtype: 'float32' }] }];
  assert.equal(parameterCount(manifest), 12 * 64 + 64 + 64 + 1);
  assert.equal(parameterCount(manifest[0].weights), 12 * 64 + 64 + 64 + 1);
  assert.equal(parameterCount(undefined), 0);

  const isolated = { crossOriginIsolated: true, navigator: { hardwareConcurrency: 4 }, location: { search: '' } };
  assert.deepEqual(wasmThreadsChoice(isolated, { parameters: 897 }), { threads: 1, reason: 'small-model' });
  assert.deepEqual(wasmThreadsChoice(isolated, { parameters: WASM_ONE_THREAD_BELOW - 1 }), { threads: 1, reason: 'small-model' });
  assert.deepEqual(wasmThreadsChoice(isolated, { parameters: WASM_ONE_THREAD_BELOW }), { threads: 4, reason: 'cores' });
  assert.deepEqual(wasmThreadsChoice(isolated, { parameters: 1_663_370 }), { threads: 4, reason: 'cores' });
  assert.equal(wasmThreadsWanted(isolated), 4);  // size unknown: one per core, as before
  assert.equal(wasmThreadsWanted({ ...isolated, navigator: {} }), 1);
  // On 2 cores (or fewer) one thread whatever the size: the second competes with the page for the other core.
  const twoCores = { ...isolated, navigator: { hardwareConcurrency: WASM_ONE_THREAD_UP_TO_CORES } };
  assert.deepEqual(wasmThreadsChoice(twoCores, { parameters: 1_663_370 }), { threads: 1, reason: 'few-cores' });
  assert.deepEqual(wasmThreadsChoice(twoCores, { parameters: 897 }), { threads: 1, reason: 'small-model' });
  assert.deepEqual(wasmThreadsChoice({ ...isolated, navigator: { hardwareConcurrency: 3 } }, { parameters: 1e6 }),
    { threads: 3, reason: 'cores' });

  // ?wasm_threads=N (bench/browser_train.py --wasm-threads) or an explicit count wins over the size rule.
  const forced = { ...twoCores, location: { search: '?probe_ms=900&wasm_threads=2' } };
  assert.equal(forcedWasmThreads(forced), 2);
  assert.deepEqual(wasmThreadsChoice(forced, { parameters: 897 }), { threads: 2, reason: 'forced' });
  assert.deepEqual(wasmThreadsChoice(isolated, { parameters: 1_663_370, forced: 1 }), { threads: 1, reason: 'forced' });
  for (const search of ['?wasm_threads=0', '?wasm_threads=two', '?wasm_threads=1.5', '?wasm_threads=']) {
    assert.equal(forcedWasmThreads({ location: { search } }), null, search);
  }
  assert.equal(forcedWasmThreads({}), null);
  // Without cross-origin isolation there is one thread whatever is asked.
  assert.deepEqual(wasmThreadsChoice({ ...forced, crossOriginIsolated: false }, { parameters: 1_663_370 }),
    { threads: 1, reason: 'not-isolated' });
});
