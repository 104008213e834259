// static/disco/preprocessing.js: the registry and the built-in steps, on tiny hand-made samples.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  applyPreprocessing, fitState, getPreprocessing, registerPreprocessing, resizeBilinear, unknownSteps, windows,
} from '../../static/disco/preprocessing.js';
import { PAD_ID } from '../../static/disco/tokenizer.js';

const close = (actual, expected, eps = 1e-6) => {
  assert.equal(actual.length, expected.length);
  expected.forEach((e, i) => assert.ok(Math.abs(actual[i] - e) < eps, `[${i}] ${actual[i]} != ${e}`));
};
const image = (height, width, channels, values) => ({ data: Float32Array.from(values), height, width, channels });
const imageTask = (h, w) => ({ trainingInformation: { IMAGE_H: h, IMAGE_W: w } });

test('resize: 2x2 -> 1x1 averages, constant images stay constant, 1x2 -> 1x4 interpolates', () => {
  close(resizeBilinear(image(2, 2, 1, [0, 10, 20, 30]), 1, 1).data, [15]);
  const constant = resizeBilinear(image(3, 5, 3, new Array(45).fill(7)), 4, 2);
  assert.deepEqual([constant.height, constant.width, constant.channels], [4, 2, 3]);
  close(constant.data, new Array(24).fill(7));
  close(resizeBilinear(image(1, 2, 1, [0, 100]), 1, 4).data, [0, 25, 75, 100]);
});

test('resize + normalize on a tiny image, as a task declares them', () => {
  const out = applyPreprocessing('image', ['resize', 'normalize'], image(2, 2, 1, [0, 255, 255, 0]), {}, imageTask(1, 1));
  assert.deepEqual([out.height, out.width], [1, 1]);
  close(out.data, [0.5]);
  // normalize runs after resize whatever the declared order
  const swapped = applyPreprocessing('image', ['normalize', 'resize'], image(1, 2, 1, [0, 255]), {}, imageTask(1, 4));
  close(swapped.data, [0, 0.25, 0.75, 1]);
});

test('sanitize: missing and non-numeric values become 0', () => {
  const out = applyPreprocessing('tabular', ['sanitize'], { columns: ['a', 'b', 'c', 'd', 'e'], values: ['', 'NA', ' 3 ', 2.5, null] });
  assert.deepEqual(out.values, [0, 0, 3, 2.5, 0]);
});

test('standardize is fitted on the training rows only and reused for other rows', () => {
  const row = (a, b) => ({ columns: ['a', 'b'], values: [a, b] });
  const training = [row('1', '10'), row('2', '10'), row('3', '10')];
  const state = fitState('tabular', ['sanitize', 'standardize'], training);
  close(state.standardize.means, [2, 10]);
  close(state.standardize.stds, [Math.sqrt(2 / 3), 1]); // a constant column divides by 1, not 0
  assert.deepEqual(state.standardize.columns, ['a', 'b']);
  // A test row far from the training data keeps the training statistics.
  const test = applyPreprocessing('tabular', ['sanitize', 'standardize'], row('4', '12'), state);
  close(test.values, [2 / Math.sqrt(2 / 3), 2]);
  const again = applyPreprocessing('tabular', ['sanitize', 'standardize'], row('2', '10'), state);
  close(again.values, [0, 0]);
  // Statistics survive a JSON round trip (they are saved in the model's metadata).
  const restored = JSON.parse(JSON.stringify(state));
  close(applyPreprocessing('tabular', ['sanitize', 'standardize'], row('4', '12'), restored).values, test.values);
  assert.throws(() => applyPreprocessing('tabular', ['standardize'], row('1', '1'), {}), /no fitted statistics/);
});

test('one_hot encodes categorical columns with the training categories, before sanitize', () => {
  const row = (sex, port, age) => ({ columns: ['Sex', 'Embarked', 'Age'], values: [sex, port, age] });
  const training = [row('male', 'S', '22'), row('female', 'C', ''), row('male', 'Q', '30')];
  const steps = ['sanitize', 'one_hot']; // declared after sanitize: still sees the raw strings
  const state = fitState('tabular', steps, training);
  assert.deepEqual(state.one_hot.categories, { Sex: ['female', 'male'], Embarked: ['C', 'Q', 'S'] });
  const out = applyPreprocessing('tabular', steps, row('female', 'S', '40'), state);
  assert.deepEqual(out.columns, ['Sex=female', 'Sex=male', 'Embarked=C', 'Embarked=Q', 'Embarked=S', 'Age']);
  assert.deepEqual(out.values, [1, 0, 0, 0, 1, 40]);
  // A category never seen in training: all zeros; a missing age: 0 (sanitize).
  assert.deepEqual(applyPreprocessing('tabular', steps, row('other', 'X', ''), state).values, [0, 0, 0, 0, 0, 0]);
});

test('a custom step registers in one place ("divide each pixel by 2")', () => {
  registerPreprocessing('image', 'halve', (sample) => ({ ...sample, data: sample.data.map((v) => v / 2) }));
  assert.ok(getPreprocessing('image', 'halve'));
  assert.deepEqual(unknownSteps('image', ['resize', 'halve', 'sharpen']), ['sharpen']);
  const out = applyPreprocessing('image', ['halve'], image(1, 2, 1, [10, 4]));
  close(out.data, [5, 2]);
  assert.throws(() => registerPreprocessing('audio', 'x', () => null), /Unknown data type "audio"/);
});

test('text: tokenize then cut into left-padded windows of maxSequenceLength + 1', () => {
  const task = { trainingInformation: { tokenizer: 'bytes', maxSequenceLength: 4 } };
  const out = applyPreprocessing('text', ['tokenize', 'pad'], { text: 'abcdefghij' }, {}, task);
  const ids = [...'abcdefghij'].map((c) => c.charCodeAt(0));
  assert.deepEqual(out.windows, [ids.slice(0, 5), ids.slice(4, 9), [PAD_ID, PAD_ID, PAD_ID, ids[8], ids[9]]]);
  assert.deepEqual(windows([1, 2], 4), [[PAD_ID, PAD_ID, PAD_ID, 1, 2]]);
  assert.deepEqual(windows([], 4), []);
  assert.deepEqual(windows([1, 2, 3, 4, 5], 4), [[1, 2, 3, 4, 5]]);
  assert.throws(() => applyPreprocessing('text', ['tokenize'], { text: 'x' }, {}, { trainingInformation: { tokenizer: 'gpt2' } }),
    /Unknown tokenizer "gpt2"/);
});
