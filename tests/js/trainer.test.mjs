// static/disco/trainer.js: backend choice, the split, and the training loop on TF.js's cpu backend.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';

import { readFileSync } from 'node:fs';

import {
  Trainer, TrainingError, compileFromTrainingConfig, ensureCompiled, explainError, splitIndices, seededRandom,
  targetEncoding,
} from '../../static/disco/trainer.js';
import { chooseBackend } from '../../static/disco/backends.js';

const require = createRequire(import.meta.url);
globalThis.tf = require('@tensorflow/tfjs');
const tf = globalThis.tf;
await tf.setBackend('cpu');

const task = (extra = {}) => ({ id: 't', trainingInformation: {
  dataType: 'tabular', epochs: 4, roundDuration: 2, batchSize: 8, validationSplit: 0.25, ...extra } });

function mlp(units = 1) {
  const model = tf.sequential({ layers: [tf.layers.dense({ inputShape: [2], units: 8, activation: 'relu' }),
    tf.layers.dense({ units, activation: units === 1 ? 'sigmoid' : 'softmax' })] });
  model.compile({ optimizer: tf.train.adam(0.05), loss: units === 1 ? 'binaryCrossentropy' : 'categoricalCrossentropy',
    metrics: ['accuracy'] });
  return model;
}

/** y = 1 when x0 > x1: learnable. */
function data(n = 64) {
  const random = seededRandom(3);
  const x = Float32Array.from({ length: n * 2 }, () => random() * 2 - 1);
  const y = Float32Array.from({ length: n }, (_, i) => (x[2 * i] > x[2 * i + 1] ? 1 : 0));
  return { dataType: 'tabular', count: n, x, xShape: [2], y, yShape: [1], labels: [], trainCount: n - 16 };
}

test('wasm for dense models, webgl for convolutions and embeddings, cpu last', () => {
  const conv = tf.sequential({ layers: [tf.layers.conv2d({ inputShape: [4, 4, 1], filters: 2, kernelSize: 3 })] });
  const emb = tf.sequential({ layers: [tf.layers.embedding({ inputDim: 10, outputDim: 2, inputLength: 3 })] });
  assert.equal(chooseBackend(mlp(), ['wasm', 'webgl', 'cpu']), 'wasm');
  assert.equal(chooseBackend(conv, ['wasm', 'webgl', 'cpu']), 'webgl');
  assert.equal(chooseBackend(emb, ['wasm', 'webgl', 'cpu']), 'webgl');
  assert.equal(chooseBackend(conv, ['wasm', 'cpu']), 'cpu');
  assert.equal(chooseBackend(mlp(), ['cpu']), 'cpu');
});

test('the split keeps at least one validation sample and is reproducible', () => {
  const a = splitIndices(10, 0.2, seededRandom(1));
  assert.equal(a.train.length, 8);
  assert.equal(a.validation.length, 2);
  assert.deepEqual([...a.train, ...a.validation].sort((p, q) => p - q), [...Array(10).keys()]);
  assert.deepEqual(splitIndices(10, 0.2, seededRandom(1)), a);
  assert.equal(splitIndices(3, 0.01, seededRandom(1)).validation.length, 1);
});

test('targets follow the loss: one-hot for categorical, raw for binary', () => {
  assert.equal(targetEncoding(mlp(1)), 'raw');
  assert.equal(targetEncoding(mlp(3)), 'onehot');
});

test('trains in rounds, learns, reports metrics per epoch and keeps memory flat', async () => {
  const rounds = [];
  const epochs = [];
  const trainer = new Trainer(mlp(), task({ epochs: 6 }), {
    onEpochEnd: (epoch, logs) => { epochs.push(logs); },
    onRoundEnd: async (round) => { rounds.push(round); },
  });
  const result = await trainer.train(data(200));
  assert.equal(result.stopped, false);
  assert.equal(result.epochs, 6);
  assert.deepEqual(rounds, [1, 2, 3]);
  assert.deepEqual(epochs.map((e) => e.round), [1, 1, 2, 2, 3, 3]);
  for (const e of epochs) for (const key of ['loss', 'acc', 'val_loss', 'val_acc', 'samplesPerSecond']) assert.ok(Number.isFinite(e[key]), key);
  assert.ok(epochs[5].loss < epochs[0].loss);
  assert.ok(epochs[5].val_acc >= 0.85, `val_acc ${epochs[5].val_acc}`);
  assert.equal(new Set(epochs.map((e) => e.numTensors)).size, 1, epochs.map((e) => e.numTensors).join(','));
});

test('class indices are one-hot encoded for a softmax model', async () => {
  const d = data(64);
  const trainer = new Trainer(mlp(2), task({ epochs: 2 }));
  const result = await trainer.train({ ...d, y: Int32Array.from(d.y), yShape: [], labels: ['no', 'yes'] });
  assert.equal(result.epochs, 2);
});

test('stop() ends training at the next batch and keeps the model', async () => {
  let batches = 0;
  const trainer = new Trainer(mlp(), task({ epochs: 50 }), {
    onBatchEnd: () => { batches += 1; if (batches === 3) trainer.stop(); },
  });
  const result = await trainer.train(data(200));
  assert.equal(result.stopped, true);
  assert.equal(batches, 3);
  assert.equal(trainer.running, false);
});

test('a stop asked while the loop yields starts no further batch', async () => {
  let batches = 0; let ticks = 0; let flag = false;
  const trainer = new Trainer(mlp(), task({ epochs: 50 }), {
    yieldMs: 0,
    nextTick: async () => { ticks += 1; if (ticks === 2) flag = true; }, // Stop pressed during the 2nd yield
    shouldStop: () => flag,
    onBatchEnd: () => { batches += 1; },
  });
  const result = await trainer.train(data(200));
  assert.equal(result.stopped, true);
  assert.equal(batches, 2);
});

test('a NaN loss stops training with a message saying what to do', async () => {
  const d = data(32);
  d.x[0] = NaN;
  const trainer = new Trainer(mlp(), task());
  await assert.rejects(trainer.train(d), (error) => error instanceof TrainingError && /NaN/.test(error.message)
    && /standardize|fresh model/.test(error.advice));
});

test('errors are explained with advice', () => {
  assert.match(explainError(new Error('Failed to allocate memory'), 'webgl').advice, /fewer|smaller/);
  assert.match(explainError(new Error('WebGL context lost'), 'webgl').advice, /CPU/);
  assert.match(explainError(new Error("Kernel 'X' not registered for backend 'wasm'"), 'wasm').advice, /another backend/);
});

const trainingVectors = JSON.parse(readFileSync(new URL('../vectors/training_config.json', import.meta.url), 'utf8'));

function assertCompiled(model, compiled, name) {
  assert.equal(model.loss, compiled.loss, name);
  assert.equal(model.optimizer.getClassName(), compiled.optimizer, name);
  const optimizerConfig = model.optimizer.getConfig();
  assert.ok(Math.abs(optimizerConfig.learningRate - compiled.learningRate) < 1e-6, name);
  if (compiled.momentum) assert.ok(Math.abs(optimizerConfig.momentum - compiled.momentum) < 1e-6, name);
}

test('models compile as their Keras author did, from the training_config the converter writes', () => {
  for (const { name, training_config: config, compiled } of trainingVectors.cases) {
    const model = tf.sequential({ layers: [tf.layers.dense({ inputShape: [2], units: 1 })] });
    assert.equal(compileFromTrainingConfig(model, config), compiled !== null, name);
    if (compiled !== null) assertCompiled(model, compiled, name);
    model.dispose();
  }
});

test('models without a training_config compile with the defaults the Python participant uses too', () => {
  for (const { name, outputUnits, dataType, compiled } of trainingVectors.defaults) {
    const model = tf.sequential({ layers: [tf.layers.dense({ inputShape: [2], units: outputUnits })] });
    ensureCompiled(model, task({ dataType }));
    assertCompiled(model, compiled, name);
    model.dispose();
  }
});

test('wasm threads: one per core when cross-origin isolated on more than 2 cores, else one', async () => {
  const { wasmThreadsWanted } = await import('../../static/disco/backends.js');
  // 2 cores: one thread (measured faster for every predefined model; backends.test.mjs has the size rule).
  assert.equal(wasmThreadsWanted({ crossOriginIsolated: true, navigator: { hardwareConcurrency: 2 } }), 1);
  assert.equal(wasmThreadsWanted({ crossOriginIsolated: true, navigator: { hardwareConcurrency: 4 } }), 4);
  assert.equal(wasmThreadsWanted({ crossOriginIsolated: true, navigator: { hardwareConcurrency: 12 } }), 12);
  assert.equal(wasmThreadsWanted({ crossOriginIsolated: false, navigator: { hardwareConcurrency: 8 } }), 1);
  assert.equal(wasmThreadsWanted({ crossOriginIsolated: true, navigator: {} }), 1);
});

test('after each round the global model the session left is scored on the validation split', async () => {
  const seen = [];
  const model = mlp();
  const trainer = new Trainer(model, task({ epochs: 4 }), {
    // The session writes the round's global model: here, weights that make the model predict 0.5 everywhere.
    onRoundEnd: async (_round, m) => { m.weights.forEach((w) => w.write(tf.zerosLike(w.read()))); },
    onRoundEvaluated: async (round, scores) => { seen.push({ round, ...scores }); },
  });
  await trainer.train(data(64));
  assert.deepEqual(seen.map((s) => [s.round, s.samples]), [[1, 16], [2, 16]]); // the 16 held-out samples
  for (const s of seen) {
    assert.ok(Math.abs(s.loss - Math.log(2)) < 1e-5, `the zeroed model's loss, ${s.loss}`); // not the trained one's
    assert.ok(s.acc >= 0 && s.acc <= 1);
  }
  const alone = [];
  await new Trainer(mlp(), task({ epochs: 2 }), { onRoundEnd: async () => {},
    onRoundEvaluated: async (round) => { alone.push(round); } }).train({ ...data(64), trainCount: 64 });
  assert.deepEqual(alone, []); // no validation split: nothing to score, nothing reported
});
