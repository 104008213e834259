// static/disco/data.js: the loaders, their problem reports, previews, counts, splits and text tensors.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';

import {
  inputTensors, loadImagesByGroup, loadImagesWithCsv, loadTabular, loadText, permutation, textModelInputs,
  toChannels, trainingCount,
} from '../../static/disco/data.js';
import { PAD_ID } from '../../static/disco/tokenizer.js';

const require = createRequire(import.meta.url);
globalThis.Papa = require('papaparse');

const messages = (data) => data.problems.map((p) => `${p.file}: ${p.message}`).join('\n');

// ------------------------------------------------------------------ tabular
const tabularTask = (extra = {}) => ({
  id: 'tiny',
  trainingInformation: {
    dataType: 'tabular', inputColumns: ['a', 'b'], outputColumns: ['y'], LABEL_LIST: [],
    preprocessingFunctions: ['sanitize'], validationSplit: 0.25, ...extra,
  },
});

test('tabular: rows become features and targets, split, counted and previewed', () => {
  const csv = 'name,a,b,y\n' + Array.from({ length: 8 }, (_, i) => `p${i},${i},${i * 10},${i % 2}`).join('\n');
  const data = loadTabular(csv, tabularTask(), { fileName: 'train.csv' });
  assert.equal(data.problems.length, 0, messages(data));
  assert.equal(data.count, 8);
  assert.deepEqual(data.xShape, [2]);
  assert.deepEqual(data.yShape, [1]);
  assert.ok(data.x instanceof Float32Array && data.y instanceof Float32Array);
  assert.equal(data.trainCount, 6);
  assert.deepEqual(data.counts, { 0: 4, 1: 4 });
  assert.deepEqual(data.preview.columns, ['name', 'a', 'b', 'y']);
  assert.equal(data.preview.rows.length, 5);
  // each sample still pairs its own inputs and target
  for (let i = 0; i < data.count; i++) {
    const a = data.x[i * 2];
    assert.equal(data.x[i * 2 + 1], a * 10);
    assert.equal(data.y[i], a % 2);
    assert.equal(data.files[i], `train.csv:${a + 2}`);
  }
  // the order is shuffled, deterministically
  assert.notDeepEqual(Array.from(data.x.filter((_, j) => j % 2 === 0)), [0, 1, 2, 3, 4, 5, 6, 7]);
  assert.deepEqual(loadTabular(csv, tabularTask()).x, loadTabular(csv, tabularTask()).x);
  // test and prediction data keep the file's order, so results line up with the rows
  const inOrder = loadTabular(csv, tabularTask(), {fileName: 'train.csv', shuffle: false});
  assert.deepEqual(Array.from(inOrder.x.filter((_, j) => j % 2 === 0)), [0, 1, 2, 3, 4, 5, 6, 7]);
  assert.deepEqual(inOrder.files, [2, 3, 4, 5, 6, 7, 8, 9].map((line) => `train.csv:${line}`));
});

test('tabular: a CSV missing columns names them and loads nothing', () => {
  const data = loadTabular('a,z\n1,2\n', tabularTask(), { fileName: 'bad.csv' });
  assert.equal(data.count, 0);
  assert.equal(data.problems.length, 1);
  assert.equal(data.problems[0].file, 'bad.csv');
  assert.match(data.problems[0].message, /Missing column\(s\) b, y\. The header row has: a, z/);
});

test('tabular: empty files, missing targets, short rows and non-numbers are reported', () => {
  assert.match(loadTabular('  \n', tabularTask()).problems[0].message, /The file is empty/);
  const csv = 'a,b,y\n1,2,1\n3,4,\n5,6\n7,x,0\n';
  const sanitized = loadTabular(csv, tabularTask());
  assert.equal(sanitized.count, 2); // 7,x,0 kept: sanitize turns x into 0
  assert.match(messages(sanitized), /Row\(s\) 3: y is empty or not a number/);
  assert.match(messages(sanitized), /Row\(s\) 4 have fewer cells than the header/);
  const strict = loadTabular(csv, tabularTask({ preprocessingFunctions: [] }));
  assert.equal(strict.count, 1);
  assert.match(messages(strict), /Row\(s\) 5 \(b\) have empty or non-numeric inputs.*does not declare 'sanitize'/);
  const unknown = loadTabular(csv, tabularTask({ preprocessingFunctions: ['sanitize', 'magic'] }));
  assert.match(messages(unknown), /preprocessing step\(s\) magic that this page does not know/);
});

test('tabular: standardize is fitted on the training split only, saved in state, and reused', () => {
  const rows = Array.from({ length: 10 }, (_, i) => `${i * i},${i},${i % 2}`);
  const csv = `a,b,y\n${rows.join('\n')}\n`;
  const task = tabularTask({ preprocessingFunctions: ['sanitize', 'standardize'], validationSplit: 0.3 });
  const data = loadTabular(csv, task, { fileName: 'f.csv' });
  assert.equal(data.trainCount, 7);
  const trainB = data.files.slice(0, 7).map((f) => Number(f.split(':')[1]) - 2); // b = i, from the row number
  const mean = trainB.reduce((s, v) => s + v, 0) / trainB.length;
  const allMean = 4.5;
  assert.ok(Math.abs(data.state.standardize.means[1] - mean) < 1e-9);
  assert.notEqual(mean, allMean); // validation rows were left out of the statistics
  const trainFeatures = Array.from({ length: 7 }, (_, i) => data.x[i * 2 + 1]);
  assert.ok(Math.abs(trainFeatures.reduce((s, v) => s + v, 0)) < 1e-4); // training features centred
  // testing reuses the saved statistics instead of fitting new ones
  const test = loadTabular('a,b,y\n0,100,1\n', task, { state: JSON.parse(JSON.stringify(data.state)) });
  assert.equal(test.count, 1);
  const expected = (100 - data.state.standardize.means[1]) / data.state.standardize.stds[1];
  assert.ok(Math.abs(test.x[1] - expected) < 1e-3);
});

test('tabular: labelled classes and unlabelled prediction data', () => {
  const task = tabularTask({ outputColumns: ['kind'], LABEL_LIST: ['cat', 'dog'] });
  const data = loadTabular('a,b,kind\n1,2,cat\n3,4,dog\n5,6,cow\n7,8,dog\n', task, { fileName: 'pets.csv' });
  assert.equal(data.count, 3);
  assert.ok(data.y instanceof Int32Array);
  assert.deepEqual(data.yShape, []);
  assert.deepEqual(data.counts, { cat: 1, dog: 2 });
  assert.match(messages(data), /pets\.csv: Unknown label "cow" in kind \(row\(s\) 4\); expected one of cat, dog/);
  const unlabelled = loadTabular('a,b\n1,2\n', task, { labelled: false });
  assert.equal(unlabelled.count, 1);
  assert.equal(unlabelled.y, null);
});

// ------------------------------------------------------------------ images
/** A fake image file: the test decoder reads {width, height, channels, data} from its JSON. */
const img = (name, width, height, channels, value = 100) => new File(
  [JSON.stringify({ width, height, channels, data: new Array(width * height * channels).fill(value) })], name);
const decode = async (file) => {
  const o = JSON.parse(await file.text()); // throws on undecodable files, as createImageBitmap does
  return { ...o, data: Uint8Array.from(o.data) };
};
const broken = (name) => new File(['not an image'], name);
const imageTask = (extra = {}) => ({
  id: 'shapes',
  trainingInformation: {
    dataType: 'image', IMAGE_H: 4, IMAGE_W: 4, imageChannels: 3, LABEL_LIST: ['circle', 'square'],
    preprocessingFunctions: ['resize', 'normalize'], validationSplit: 0.2, ...extra,
  },
});

test('images by group: decoded, resized, normalized, counted and previewed', async () => {
  const groups = {
    circle: [img('c1.png', 8, 8, 4, 255), img('c2.png', 4, 4, 1, 255), img('c3.png', 2, 2, 3, 255)],
    square: [img('s1.png', 4, 4, 3, 0), img('s2.png', 6, 3, 2, 0)],
  };
  const data = await loadImagesByGroup(groups, imageTask(), decode);
  assert.equal(data.problems.length, 0, messages(data));
  assert.equal(data.count, 5);
  assert.deepEqual(data.xShape, [4, 4, 3]);
  assert.equal(data.x.length, 5 * 48);
  assert.deepEqual(data.counts, { circle: 3, square: 2 });
  assert.equal(data.trainCount, 4);
  for (let i = 0; i < data.count; i++) {
    const pixels = data.x.subarray(i * 48, (i + 1) * 48);
    const expected = data.labels[data.y[i]] === 'circle' ? 1 : 0;
    assert.ok(pixels.every((v) => Math.abs(v - expected) < 1e-6), `sample ${i} (${data.files[i]})`);
    assert.equal(data.files[i][0], data.labels[data.y[i]][0]);
  }
  assert.equal(data.preview.images.length, 5);
  assert.match(data.preview.images[0].url, /^data:image\/png;base64,/);
  assert.ok(['circle', 'square'].includes(data.preview.images[0].label));
});

test('images: unknown labels, undecodable files, wrong channels and sizes are reported by file', async () => {
  const groups = {
    circle: [img('ok.png', 4, 4, 3), broken('broken.png'), img('five.png', 4, 4, 5)],
    triangle: [img('tri.png', 4, 4, 3)],
  };
  const data = await loadImagesByGroup(groups, imageTask(), decode);
  assert.equal(data.count, 1);
  const byFile = Object.fromEntries(data.problems.map((p) => [p.file, p.message]));
  assert.match(byFile['tri.png'], /label "triangle", which is not one of this task's labels \(circle, square\)/);
  assert.match(byFile['broken.png'], /could not be read as an image/);
  assert.match(byFile['five.png'], /has 5 channels/);

  const grey = await loadImagesByGroup({ circle: [img('colour.png', 4, 4, 3), img('grey.png', 4, 4, 1)] },
    imageTask({ imageChannels: 1 }), decode);
  assert.equal(grey.count, 2); // a colour file whose pixels are all grey is fine
  const red = new File([JSON.stringify({ width: 1, height: 1, channels: 3, data: [255, 0, 0] })], 'red.png');
  const colour = await loadImagesByGroup({ circle: [red] }, imageTask({ imageChannels: 1, IMAGE_H: 1, IMAGE_W: 1 }), decode);
  assert.match(messages(colour), /red\.png: is a colour image, but this task expects grayscale/);

  const noResize = await loadImagesByGroup({ circle: [img('big.png', 8, 6, 3), img('fit.png', 4, 4, 3)] },
    imageTask({ preprocessingFunctions: ['normalize'] }), decode);
  assert.equal(noResize.count, 1);
  assert.match(messages(noResize), /big\.png: is 8x6 pixels; this task needs 4x4 and does not resize images/);

  const none = await loadImagesByGroup({ circle: [broken('x.png')] }, imageTask(), decode);
  assert.equal(none.count, 0);
  assert.match(messages(none), /No usable images/);
});

test('images with a CSV: labels, header, missing and unlisted files, unknown labels', async () => {
  const csv = new File(['filename,label\nphotos/a.png,circle\nb.png,square\nc.png,circle\nd.png,hexagon\n'], 'labels.csv');
  const images = [img('a.png', 4, 4, 3), img('b.png', 4, 4, 3), img('d.png', 4, 4, 3), img('e.png', 4, 4, 3)];
  const data = await loadImagesWithCsv(csv, images, imageTask(), decode);
  assert.equal(data.count, 2);
  assert.deepEqual(data.counts, { circle: 1, square: 1 });
  const byFile = Object.fromEntries(data.problems.map((p) => [p.file, p.message]));
  assert.deepEqual(Object.keys(byFile).sort(), ['c.png', 'd.png', 'e.png']);
  assert.match(byFile['c.png'], /is listed in labels\.csv but was not among the selected images/);
  assert.match(byFile['d.png'], /label "hexagon" in labels\.csv, which is not one of this task's labels/);
  assert.match(byFile['e.png'], /is not listed in labels\.csv/);
  const empty = await loadImagesWithCsv(new File([''], 'labels.csv'), images, imageTask(), decode);
  assert.match(messages(empty), /labels file is empty/);
});

test('toChannels converts grey to RGB and drops alpha', () => {
  assert.deepEqual(Array.from(toChannels({ width: 1, height: 1, channels: 1, data: [7] }, 3).data), [7, 7, 7]);
  assert.deepEqual(Array.from(toChannels({ width: 1, height: 1, channels: 4, data: [1, 2, 3, 4] }, 3).data), [1, 2, 3]);
  assert.deepEqual(Array.from(toChannels({ width: 1, height: 1, channels: 2, data: [9, 0] }, 4).data), [9, 9, 9, 0]);
  assert.match(toChannels({ width: 2, height: 1, channels: 3, data: [1, 2, 3] }, 3).message, /could not be decoded completely/);
});

// ------------------------------------------------------------------ text
const textTask = { id: 'lm', trainingInformation: { dataType: 'text', tokenizer: 'bytes', maxSequenceLength: 8, preprocessingFunctions: ['tokenize', 'pad'], validationSplit: 0.25 } };

test('text: windows of tokens with next-token targets; empty files are reported', async () => {
  const text = 'The quick brown fox jumps over the lazy dog.\nSecond line.';
  const files = [new File([text], 'fox.txt'), new File(['  \n'], 'empty.txt'), new File(['hi'], 'short.txt')];
  const data = await loadText(files, textTask);
  assert.match(messages(data), /empty\.txt: is empty/);
  const ids = [...new TextEncoder().encode(text)];
  const expectedWindows = Math.ceil((ids.length - 1) / 8);
  assert.deepEqual(data.counts, { 'fox.txt': expectedWindows, 'short.txt': 1 });
  assert.equal(data.count, expectedWindows + 1);
  assert.deepEqual(data.xShape, [8]);
  assert.deepEqual(data.yShape, [8, 1]);
  assert.ok(data.x instanceof Int32Array && data.y instanceof Float32Array);
  assert.equal(data.trainCount, data.count - Math.round(data.count * 0.25));
  for (let i = 0; i < data.count; i++) {
    const x = Array.from(data.x.subarray(i * 8, i * 8 + 8));
    const y = Array.from(data.y.subarray(i * 8, i * 8 + 8));
    assert.deepEqual(x.slice(1), y.slice(0, 7), 'targets are the tokens shifted by one');
  }
  const short = data.files.indexOf('short.txt');
  assert.deepEqual(Array.from(data.x.subarray(short * 8, short * 8 + 8)), [PAD_ID, PAD_ID, PAD_ID, PAD_ID, PAD_ID, PAD_ID, PAD_ID, 104]);
  assert.deepEqual(data.preview.lines.map((l) => l.line), ['The quick brown fox jumps over the lazy dog.', 'Second line.', 'hi']);
  const nothing = await loadText([new File([''], 'empty.txt')], textTask);
  assert.equal(nothing.count, 0);
  assert.match(messages(nothing), /No usable text/);
});

test('textModelInputs builds positions and the causal mask; inputTensors picks samples', async () => {
  globalThis.tf = require('@tensorflow/tfjs');
  const tf = globalThis.tf;
  const before = tf.memory().numTensors;
  const tokens = tf.tensor2d([[1, 2, 3], [4, 5, 6]], [2, 3], 'int32');
  const [same, positions, mask] = textModelInputs(tokens);
  assert.equal(same, tokens);
  assert.deepEqual(positions.dtype, 'int32');
  assert.deepEqual(await positions.array(), [[0, 1, 2], [0, 1, 2]]);
  assert.deepEqual(mask.shape, [2, 3, 3]);
  assert.deepEqual((await mask.array())[1], [[0, -1e9, -1e9], [0, 0, -1e9], [0, 0, 0]]);
  tf.dispose([tokens, positions, mask]);

  const data = loadTabular('a,b,y\n1,2,0\n3,4,1\n5,6,0\n', tabularTask({ validationSplit: 0 }));
  const x = inputTensors(data, [2, 0]);
  assert.deepEqual(x.shape, [2, 2]);
  assert.deepEqual(Array.from(await x.data()), [...data.x.subarray(4, 6), ...data.x.subarray(0, 2)]);
  x.dispose();
  assert.equal(tf.memory().numTensors, before);
});

test('split helpers: deterministic permutations, at least one sample on each side', () => {
  assert.deepEqual(permutation(10, 3), permutation(10, 3));
  assert.deepEqual([...permutation(10, 3)].sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.equal(trainingCount(10, 0.2), 8);
  assert.equal(trainingCount(3, 0.1), 2);
  assert.equal(trainingCount(1, 0.2), 1);
  assert.equal(trainingCount(5, 0), 5);
});
