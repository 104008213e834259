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
