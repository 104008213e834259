// static/disco/evaluate.js: scores on fixed predictions and on a hand-made TF.js model, predictions, CSV.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';

import { evaluate, outputKind, predict, scorePredictions, toCsv } from '../../static/disco/evaluate.js';

const require = createRequire(import.meta.url);
globalThis.tf = require('@tensorflow/tfjs');
const tf = globalThis.tf;

/** LoadedData with three classes and given class indices. */
const classData = (y, x = new Float32Array(y.length * 3)) => ({
  dataType: 'image', count: y.length, x, xShape: [3], y: Int32Array.from(y), yShape: [],
  labels: ['cat', 'dog', 'fox'], files: y.map((_, i) => `img${i}.png`),
});

test('confusion matrix, accuracy, loss and per-class scores on fixed predictions', () => {
  const data = classData([0, 0, 1, 1, 2, 2]);
  const outputs = Float32Array.from([
    0.8, 0.1, 0.1, // cat -> cat
    0.2, 0.7, 0.1, // cat -> dog
    0.1, 0.8, 0.1, // dog -> dog
    0.1, 0.6, 0.3, // dog -> dog
    0.5, 0.2, 0.3, // fox -> cat
    0.1, 0.1, 0.8, // fox -> fox
  ]);
  const result = scorePredictions(data, outputs, 3);
  assert.equal(result.kind, 'classes');
  assert.deepEqual(result.confusion, [[1, 1, 0], [0, 2, 0], [1, 0, 1]]);
  assert.equal(result.accuracy, 4 / 6);
  const expectedLoss = -(Math.log(0.8) + Math.log(0.2) + Math.log(0.8) + Math.log(0.6) + Math.log(0.3) + Math.log(0.8)) / 6;
  assert.ok(Math.abs(result.loss - expectedLoss) < 1e-6);
  assert.deepEqual(result.perClass.map((c) => c.support), [2, 2, 2]);
  assert.ok(Math.abs(result.perClass[1].precision - 2 / 3) < 1e-9);
  assert.equal(result.perClass[1].recall, 1);
  assert.deepEqual(result.perSample[1], { index: 1, file: 'img1.png', label: 'cat', predicted: 'dog', confidence: outputs[4] });
});

test('binary sigmoid outputs and regression outputs', () => {
  const binary = { dataType: 'tabular', count: 4, y: Float32Array.from([1, 0, 1, 0]), labels: [], files: [] };
  assert.equal(outputKind(binary, 1), 'binary');
  const result = scorePredictions(binary, Float32Array.from([0.9, 0.2, 0.4, 0.6]), 1);
  assert.deepEqual(result.labels, ['0', '1']);
  assert.deepEqual(result.confusion, [[1, 1], [1, 1]]);
  assert.equal(result.accuracy, 0.5);
  assert.ok(Math.abs(result.perSample[0].confidence - 0.9) < 1e-6);
  const regression = { dataType: 'tabular', count: 2, y: Float32Array.from([2, 4]), labels: [], files: [] };
  const mse = scorePredictions(regression, Float32Array.from([3, 4]), 1);
  assert.equal(mse.kind, 'regression');
  assert.equal(mse.accuracy, null);
  assert.equal(mse.loss, 0.5);
});

test('evaluate and predict run a hand-made model in batches without leaking tensors', async () => {
  // Softmax of 10 * x: predicts the largest input coordinate.
  const model = tf.sequential({ layers: [tf.layers.dense({ units: 3, inputShape: [3], activation: 'softmax' })] });
  model.setWeights([tf.mul(tf.eye(3), 10), tf.zeros([3])]);
  const x = Float32Array.from([1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 1, 0, 1, 0, 0]);
  const data = classData([0, 1, 2, 2, 0], x);
  const before = tf.memory().numTensors;
  const result = await evaluate(model, data, { batchSize: 2 });
  assert.equal(tf.memory().numTensors, before);
  assert.deepEqual(result.confusion, [[2, 0, 0], [0, 1, 0], [0, 1, 1]]);
  assert.equal(result.accuracy, 0.8);
  const rows = await predict(model, { ...data, y: null }, { batchSize: 4 });
  assert.deepEqual(rows.map((r) => r.predicted), ['cat', 'dog', 'fox', 'dog', 'cat']);
  assert.equal(rows[4].file, 'img4.png');
  assert.equal(tf.memory().numTensors, before);
  await assert.rejects(evaluate(model, { ...data, y: null }), /no labels: use predict/);
});

test('text models: next-token accuracy over non-padding positions', async () => {
  // Logits that always put the highest probability on id 97 ('a').
  const model = tf.sequential({ layers: [tf.layers.dense({ units: 257, inputShape: [2, 3], activation: 'softmax' })] });
  // Wrap so the model takes the three GPT inputs: only the tokens matter here.
  const tokens = tf.input({ shape: [2], dtype: 'int32' });
  const positions = tf.input({ shape: [2], dtype: 'int32' });
  const mask = tf.input({ shape: [2, 2] });
  const embedded = tf.layers.embedding({ inputDim: 257, outputDim: 3, embeddingsInitializer: 'zeros' }).apply(tokens);
  const out = model.apply(embedded);
  const gpt = tf.model({ inputs: [tokens, positions, mask], outputs: out });
  const bias = new Float32Array(257); bias[97] = 5;
  model.layers[0].setWeights([tf.zeros([3, 257]), tf.tensor1d(bias)]);
  const data = {
    dataType: 'text', count: 2, x: Int32Array.from([256, 97, 97, 98]), xShape: [2],
    y: Float32Array.from([97, 97, 98, 97]), yShape: [2, 1], labels: [], files: ['a.txt', 'b.txt'],
  };
  const result = await evaluate(gpt, data);
  assert.equal(result.kind, 'text');
  // counted positions: sample 0 position 1 (target 97, right); sample 1 positions 0 (98, wrong) and 1 (97, right)
  assert.ok(Math.abs(result.accuracy - 2 / 3) < 1e-9);
  assert.deepEqual(result.perSample.map((r) => r.accuracy), [1, 0.5]);
  const rows = await predict(gpt, data);
  assert.deepEqual(rows.map((r) => r.nextToken), [97, 97]);
});

test('toCsv quotes what needs quoting and keeps every column', () => {
  const csv = toCsv([{ index: 0, file: 'a,b.png', predicted: 'say "hi"', confidence: 0.123456789 }, { index: 1, extra: null }]);
  assert.equal(csv, 'index,file,predicted,confidence,extra\n0,"a,b.png","say ""hi""",0.123457,\n1,,,,\n');
});
