// static/disco/train_worker_protocol.js: weights and data made ready to post, and the page's client.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';

import {
  TrainWorkerClient, WorkerError, applyWeightEntries, dataForWorker, weightBuffers, weightEntries,
} from '../../static/disco/train_worker_protocol.js';

const require = createRequire(import.meta.url);
globalThis.tf = require('@tensorflow/tfjs');
const tf = globalThis.tf;
await tf.setBackend('cpu');

const mlp = () => tf.sequential({ layers: [tf.layers.dense({ inputShape: [3], units: 2 })] });

test('weight entries carry names, shapes and copies; applying them is the reverse', () => {
  const source = mlp();
  const target = mlp();
  const entries = weightEntries(source);
  assert.deepEqual(entries.map((e) => e.shape), [[3, 2], [2]]);
  assert.deepEqual(entries.map((e) => e.dtype), ['float32', 'float32']);
  assert.equal(weightBuffers(entries).length, 2);
  applyWeightEntries(target, entries);
  assert.deepEqual(Array.from(target.weights[0].read().dataSync()), Array.from(source.weights[0].read().dataSync()));
  new Float32Array(entries[0].buffer).fill(7); // a copy: the source model is untouched
  assert.notEqual(source.weights[0].read().dataSync()[0], 7);
});

test('applying entries of another shape names the weight at fault', () => {
  const entries = weightEntries(mlp());
  entries[0] = { ...entries[0], shape: [2, 3] };
  assert.throws(() => applyWeightEntries(mlp(), entries), /shape 2x3 where the model has 3x2/);
  assert.throws(() => applyWeightEntries(mlp(), entries.slice(1)), /Expected 2 weights, got 1/);
});

test('data for the worker: typed arrays copied and listed for transfer, functions left out', () => {
  const data = { count: 2, x: new Float32Array([1, 2, 3, 4]), y: new Int32Array([0, 1]), xShape: [2],
    state: { mean: [1] }, release: () => {} };
  const { data: copy, transfer } = dataForWorker(data);
  assert.deepEqual(Array.from(copy.x), [1, 2, 3, 4]);
  assert.notEqual(copy.x.buffer, data.x.buffer);
  assert.deepEqual(transfer, [copy.x.buffer, copy.y.buffer]);
  assert.equal(copy.release, undefined);
  assert.deepEqual(copy.state, { mean: [1] });
});

/** A worker stand-in: records what is posted, lets the test answer. */
class FakeWorker extends EventTarget {
  constructor() { super(); this.posted = []; }
  postMessage(message, transfer) { this.posted.push({ message, transfer }); }
  answer(data) { this.dispatchEvent(Object.assign(new Event('message'), { data })); }
  terminate() {}
}

test('the client matches answers to requests, passes events on and rebuilds errors with advice', async () => {
  const worker = new FakeWorker();
  const events = [];
  const client = new TrainWorkerClient(/** @type {any} */ (worker), (e) => events.push(e));
  const first = client.request('setBackend', { name: 'cpu' });
  const second = client.request('train', { data: {} });
  assert.deepEqual(worker.posted.map((p) => [p.message.id, p.message.type]), [[1, 'setBackend'], [2, 'train']]);
  worker.answer({ event: 'batch', batch: 1 });
  worker.answer({ id: 2, ok: false, error: { message: 'The loss became NaN', advice: 'Reload.', name: 'TrainingError' } });
  worker.answer({ id: 1, ok: true, result: { backend: 'cpu' } });
  assert.deepEqual(await first, { backend: 'cpu' });
  await assert.rejects(second, (error) => error instanceof WorkerError && error.advice === 'Reload.' && /NaN/.test(error.message));
  assert.deepEqual(events, [{ event: 'batch', batch: 1 }]);
  assert.throws(() => client.request('eval'), /Unknown request eval/);
});

test('stop raises the shared flag when the page is cross-origin isolated', async () => {
  globalThis.crossOriginIsolated = true;
  try {
    const worker = new FakeWorker();
    const client = new TrainWorkerClient(/** @type {any} */ (worker));
    assert.equal(Atomics.load(client.stopFlag, 0), 0);
    const stopped = client.stop();
    assert.equal(Atomics.load(client.stopFlag, 0), 1);
    assert.equal(worker.posted[0].message.type, 'stop');
    worker.answer({ id: 1, ok: true, result: {} });
    await stopped;
  } finally {
    delete globalThis.crossOriginIsolated;
  }
});

test('a failed worker refuses pending and later requests at once', async () => {
  const worker = new FakeWorker();
  const client = new TrainWorkerClient(/** @type {any} */ (worker));
  const pending = client.request('train', {});
  worker.dispatchEvent(Object.assign(new Event('error'), { message: 'out of memory' }));
  await assert.rejects(pending, /out of memory/);
  await assert.rejects(client.request('getWeights'), /out of memory/);
  assert.equal(worker.posted.length, 1);
});
