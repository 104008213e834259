// static/disco/wasm_grad_kernels.js: every kernel against TF.js's cpu backend on shared cases,
// whole gradients and a training step of small models on wasm against cpu, and no leaks.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';

import { chooseBackend, wasmMissingKernels } from '../../static/disco/backends.js';
import {
  WASM_REPLACED_KERNELS, WASM_GRADIENT_KERNELS, WasmGradError, registerWasmGradientKernels,
} from '../../static/disco/wasm_grad_kernels.js';

const require = createRequire(import.meta.url);
globalThis.tf = require('@tensorflow/tfjs');
require('@tensorflow/tfjs-backend-wasm');
const tf = globalThis.tf;

// TF.js's own gradient of Tile (a Slice and an Add per repetition), before this module replaces it.
const originalTileGrad = tf.getGradient('Tile');

// Registered before the wasm backend starts, as on the training page: the native setup of the
// replaced kernels must still run when it does.
const firstRegistration = registerWasmGradientKernels(tf);
await tf.setBackend('wasm');

const RTOL = 1e-4;

/** Deterministic values in [-1, 1) (a small LCG), the same on both backends. */
function values(size, seed) {
  let state = seed >>> 0;
  return Float32Array.from({ length: size }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 31 - 1;
  });
}

const sizeOf = (shape) => shape.reduce((a, b) => a * b, 1);
const tensor = (shape, seed) => tf.tensor(values(sizeOf(shape), seed), shape);

/** Runs `f` under `backend` and returns its result(s) as nested arrays; leaves wasm selected. */
async function on(backend, f) {
  await tf.setBackend(backend);
  try {
    const out = tf.tidy(f);
    const list = Array.isArray(out) ? out : [out];
    const result = list.map((t) => ({ shape: t.shape, data: Array.from(t.dataSync()) }));
    tf.dispose(out);
    return result;
  } finally {
    await tf.setBackend('wasm');
  }
}

/**
 * Same shapes, and every value within RTOL of the largest magnitude of the expected tensor (of 0.01
 * at least: a gradient that is zero in exact arithmetic, like a key bias's, is float32 noise).
 */
function assertClose(actual, expected, label) {
  assert.equal(actual.length, expected.length, label);
  actual.forEach((a, i) => {
    const e = expected[i];
    assert.deepEqual(a.shape, e.shape, `${label}: shape of output ${i}`);
    const scale = Math.max(1e-2, ...e.data.map(Math.abs));
    const worst = Math.max(0, ...a.data.map((v, j) => Math.abs(v - e.data[j])));
    assert.ok(worst <= RTOL * scale, `${label}: output ${i} differs by ${worst} (scale ${scale})`);
  });
}

async function compare(label, f) {
  assertClose(await on('wasm', f), await on('cpu', f), label);
}

/** Live tensors on the engine and buffers on the wasm heap after `f`, twice: they must not grow. */
function assertNoLeak(f, label) {
  f();
  const before = [tf.memory().numTensors, tf.memory().numBytes, tf.engine().backend.numDataIds()];
  for (let i = 0; i < 3; i++) f();
  const after = [tf.memory().numTensors, tf.memory().numBytes, tf.engine().backend.numDataIds()];
  assert.deepEqual(after, before, `${label}: [tensors, bytes, wasm buffers] grew`);
}

// [batch, height, width, inChannels, outChannels or multiplier, kernel, stride, padding]
const CONV_CASES = [
  [1, 5, 5, 1, 1, 3, 1, 'valid'],
  [2, 7, 6, 3, 4, 3, 2, 'same'],
  [3, 8, 8, 2, 5, 5, 2, 'valid'],
  [2, 9, 9, 4, 3, 2, 2, 'same'],
  [1, 6, 7, 3, 2, 1, 1, 'same'],
  [4, 7, 7, 3, 2, 3, 3, 'valid'],
  [2, 11, 10, 8, 16, 5, 1, 'same'],
  [2, 6, 6, 2, 2, 3, 1, [[0, 0], [1, 2], [0, 1], [0, 0]]],
];

const caseName = ([n, h, w, c, o, k, s, pad]) => (
  `${n}x${h}x${w}x${c} -> ${o}, ${k}x${k}, stride ${s}, pad ${JSON.stringify(pad)}`);

test('registers the kernels wasm lacks and the replacements, once', () => {
  assert.deepEqual(firstRegistration, [...WASM_GRADIENT_KERNELS, ...WASM_REPLACED_KERNELS]);
  assert.deepEqual(WASM_GRADIENT_KERNELS, [
    'Conv2DBackpropFilter', 'DepthwiseConv2dNativeBackpropInput', 'DepthwiseConv2dNativeBackpropFilter',
    'UnsortedSegmentSum']);
  for (const name of [...WASM_GRADIENT_KERNELS, ...WASM_REPLACED_KERNELS]) assert.ok(tf.getKernel(name, 'wasm'), name);
  assert.deepEqual(registerWasmGradientKernels(tf), []);
  assert.deepEqual(registerWasmGradientKernels(), [], 'reads globalThis.tf');
  assert.throws(() => registerWasmGradientKernels(null), WasmGradError);
});

test('once registered, the trainer chooses wasm for conv, depthwise and embedding models', () => {
  for (const build of [convModel, embeddingModel, mobileNetBlock]) {
    const model = build();
    assert.deepEqual(wasmMissingKernels(model), [], build.name);
    assert.equal(chooseBackend(model, ['wasm', 'webgl', 'cpu']), 'wasm', build.name);
    model.dispose();
  }
});

test('Conv2DBackpropFilter matches cpu', async () => {
  for (const c of CONV_CASES) {
    const [n, h, w, ci, co, k, s, pad] = c;
    await compare(`filter ${caseName(c)}`, () => {
      const x = tensor([n, h, w, ci], 1);
      const dy = tensor(tf.conv2d(x, tf.zeros([k, k, ci, co]), s, pad).shape, 2);
      return tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, {
        strides: [s, s], pad, dataFormat: 'NHWC', dimRoundingMode: undefined, filterShape: [k, k, ci, co] });
    });
  }
});

test('Conv2DBackpropInput matches cpu', async () => {
  for (const c of CONV_CASES) {
    const [n, h, w, ci, co, k, s, pad] = c;
    await compare(`input ${caseName(c)}`, () => {
      const filter = tensor([k, k, ci, co], 3);
      const dy = tensor(tf.conv2d(tf.zeros([n, h, w, ci]), filter, s, pad).shape, 4);
      return tf.engine().runKernel('Conv2DBackpropInput', { dy, filter }, {
        strides: [s, s], pad, dataFormat: 'NHWC', dimRoundingMode: undefined, inputShape: [n, h, w, ci] });
    });
  }
});

test('depthwise backprop kernels match cpu, channel multiplier 1 and 2', async () => {
  for (const [n, h, w, c, , k, s, pad] of CONV_CASES) {
    for (const m of [1, 2]) {
      const label = `depthwise ${caseName([n, h, w, c, m, k, s, pad])}`;
      await compare(label, () => {
        const x = tensor([n, h, w, c], 5);
        const filter = tensor([k, k, c, m], 6);
        const dy = tensor(tf.depthwiseConv2d(x, filter, s, pad).shape, 7);
        const attrs = { strides: [s, s], dilations: [1, 1], pad, dimRoundingMode: undefined };
        return [
          tf.engine().runKernel('DepthwiseConv2dNativeBackpropInput', { dy, filter }, { ...attrs, inputShape: x.shape }),
          tf.engine().runKernel('DepthwiseConv2dNativeBackpropFilter', { x, dy }, { ...attrs, filterShape: filter.shape }),
        ];
      });
    }
  }
});

test('dilated depthwise backprop kernels are the adjoints of the dilated convolution', async () => {
  // TF.js's cpu gradients refuse dilation, so the reference is the forward convolution itself:
  // d/dθ sum(conv(x, f) * dy) for θ one entry of f (or x), one one-hot forward pass per entry.
  const [n, h, w, c, m, k, d] = [2, 7, 8, 2, 2, 3, 2];
  const attrs = { strides: [1, 1], dilations: [d, d], pad: 'same', dimRoundingMode: undefined };
  const x = values(n * h * w * c, 8);
  const f = values(k * k * c * m, 9);
  const dyShape = [n, h, w, c * m];
  const dy = values(sizeOf(dyShape), 10);
  const probe = (xs, fs) => tf.tidy(() => tf.depthwiseConv2d(tf.tensor(xs, [n, h, w, c]), tf.tensor(fs, [k, k, c, m]),
    1, 'same', 'NHWC', d).mul(tf.tensor(dy, dyShape)).sum().dataSync()[0]);
  const oneHot = (size, i) => Float32Array.from({ length: size }, (_, j) => (j === i ? 1 : 0));
  await tf.setBackend('cpu');
  const dfReference = Array.from(f, (_, i) => probe(x, oneHot(f.length, i)));
  const dxReference = Array.from(x, (_, i) => probe(oneHot(x.length, i), f));
  await tf.setBackend('wasm');
  const [df, dx] = tf.tidy(() => [
    tf.engine().runKernel('DepthwiseConv2dNativeBackpropFilter', { x: tf.tensor(x, [n, h, w, c]), dy: tf.tensor(dy, dyShape) },
      { ...attrs, filterShape: [k, k, c, m] }),
    tf.engine().runKernel('DepthwiseConv2dNativeBackpropInput', { dy: tf.tensor(dy, dyShape), filter: tf.tensor(f, [k, k, c, m]) },
      { ...attrs, inputShape: [n, h, w, c] }),
  ].map((t) => ({ shape: t.shape, data: Array.from(t.dataSync()) })));
  assertClose([df, dx], [{ shape: [k, k, c, m], data: dfReference }, { shape: [n, h, w, c], data: dxReference }], 'dilation 2');
});

test('MaxPoolGrad and AvgPoolGrad on wasm match cpu: negative maxima, ties to the first maximum', async () => {
  // [batch, height, width, channels, pool, stride, padding]
  const cases = [[1, 4, 4, 1, 2, 2, 'valid'], [2, 7, 7, 3, 2, 2, 'same'], [3, 9, 8, 2, 3, 2, 'valid'],
    [2, 6, 6, 4, 3, 1, 'same'], [1, 5, 5, 2, 3, 3, 'same']];
  for (const [n, h, w, c, p, s, pad] of cases) {
    for (const ties of [false, true]) {
      await compare(`pool ${n}x${h}x${w}x${c}, ${p}x${p}, stride ${s}, ${pad}, ties ${ties}`, () => {
        const raw = tensor([n, h, w, c], 11);
        const x = ties ? raw.mul(2).round() : raw;  // only -2..2: many equal maxima in a window
        const dy = tensor(tf.maxPool(x, p, s, pad).shape, 12);
        return [
          tf.grad((v) => tf.maxPool(v, p, s, pad).mul(dy).sum())(x),
          tf.grad((v) => tf.avgPool(v, p, s, pad).mul(dy).sum())(x),
        ];
      });
    }
  }
});

test('UnsortedSegmentSum matches cpu, out-of-range ids dropped', async () => {
  await compare('segment sum', () => [
    tf.unsortedSegmentSum(tensor([6, 3], 13), tf.tensor1d([1, 3, 3, 0, 1, 5], 'int32'), 6),
    tf.unsortedSegmentSum(tf.tensor2d([[1, 2], [3, 4], [5, 6]], [3, 2], 'int32'), tf.tensor1d([2, 0, 2], 'int32'), 3),
    tf.unsortedSegmentSum(tensor([5, 2, 2], 14), tf.tensor1d([0, -1, 1, 7, 1], 'int32'), 2),
  ]);
});

test('BatchMatMul with transposed operands matches cpu', async () => {
  for (const [ta, tb, a, b] of [[true, false, [7, 5], [7, 3]], [false, true, [4, 5], [3, 5]], [true, true, [5, 4], [3, 5]],
    [true, false, [1, 7, 5], [7, 3]], [true, false, [2, 7, 5], [2, 7, 3]], [false, false, [4, 5], [5, 3]]]) {
    await compare(`matMul ${a} ${b} ${ta} ${tb}`, () => tf.matMul(tensor(a, 15), tensor(b, 16), ta, tb));
  }
});

test('Tile matches cpu for float32, int32 and bool, any axes', async () => {
  await compare('tile', () => [
    tf.tile(tensor([1, 1, 1, 5], 17), [2, 3, 4, 1]),
    tf.tile(tensor([2, 3], 18), [3, 2]),
    tf.tile(tensor([3, 1, 2], 19), [1, 7, 1]),
    tf.tile(tf.tensor2d([[1, 2], [3, 4]], [2, 2], 'int32'), [1, 5]),
    tf.tile(tf.tensor1d([true, false, true], 'bool'), [4]),
    tf.tile(tensor([2, 2], 20), [1, 1]),
    tf.tile(tf.zeros([0, 3]), [2, 2]),
  ]);
});

test('Sum and Mean over leading axes (one pass in JS) match cpu; other reductions stay native', async () => {
  // At least 65,536 values, so that the replacement (not the native kernel) runs.
  await compare('sum and mean', () => [
    tf.sum(tensor([4, 32, 32, 16], 41), [0, 1, 2]),
    tf.mean(tensor([4, 32, 32, 16], 42), [0, 1, 2]),
    tf.sum(tensor([4, 32, 32, 16], 43), [2, 0, 1], true),
    tf.mean(tensor([3, 128, 200], 44), [0, 1], true),
    tf.sum(tensor([70000, 3], 45), 0),
    tf.mean(tensor([70000, 3], 46), [-2]),
    tf.sum(tensor([2, 40, 40, 24], 47), [1, 2]),
    tf.mean(tensor([2, 40, 40, 24], 48), [3]),
    tf.sum(tensor([2, 40, 40, 24], 49)),
    tf.sum(tf.ones([300, 300], 'int32'), 0),
  ]);
  await tf.setBackend('wasm');
  const batch = tf.tidy(() => tf.sum(tensor([16, 64, 64, 8], 50), [0, 1, 2]));
  assert.deepEqual(batch.shape, [8]);
  batch.dispose();
});

test('comparisons and logical and/or (one pass in JS) match cpu: same shapes, scalars either side, ties', async () => {
  // At least 65,536 values, so that the replacements (not the native kernels) run; values rounded to
  // quarters so that ties are many, and a NaN compares false.
  const q = (shape, seed) => tf.round(tensor(shape, seed).mul(8)).div(4);
  const withNan = () => tf.concat([q([65535], 53), tf.tensor1d([Number.NaN])]);
  const cases = () => {
    const a = q([4, 32, 32, 16], 51);
    const b = q([4, 32, 32, 16], 52);
    const s = tf.scalar(0.5);
    const out = [];
    for (const op of ['greater', 'greaterEqual', 'less', 'lessEqual']) {
      out.push(tf[op](a, b), tf[op](a, s), tf[op](s, a), tf[op](withNan(), tf.scalar(0)));
    }
    const x = tf.greater(a, 0);
    const y = tf.lessEqual(b, 0.25);
    out.push(tf.logicalAnd(x, y), tf.logicalOr(x, y), tf.logicalAnd(x, tf.scalar(true, 'bool')),
      tf.logicalOr(tf.scalar(false, 'bool'), y), tf.logicalAnd(tf.scalar(false, 'bool'), x));
    out.push(tf.greater(q([3, 4], 54), q([3, 4], 55)), tf.less(q([300, 300], 56), q([300, 1], 57)));  // native
    return out.map((t) => t.cast('int32'));
  };
  await compare('comparisons', cases);
  await tf.setBackend('wasm');
  const relu6 = tf.tidy(() => tf.grad((x) => tf.relu6(x).sum())(q([4, 32, 32, 16], 58).mul(4)));
  const expected = tf.tidy(() => q([4, 32, 32, 16], 58).mul(4).greater(0).logicalAnd(q([4, 32, 32, 16], 58).mul(4).lessEqual(6)));
  assert.deepEqual(Array.from(relu6.dataSync()), Array.from(expected.dataSync()));
  tf.dispose([relu6, expected]);
});

test('Identity shares its input\'s buffer; clones and variables stay independent and are freed', async () => {
  await tf.setBackend('wasm');
  const backend = tf.backend();
  const before = backend.numDataIds();
  const x = tensor([3, 4], 60);
  const y = tf.clone(x);
  assert.equal(backend.numDataIds(), before + 1, 'one buffer for x and its clone');
  x.dispose();
  assert.deepEqual(Array.from(y.dataSync()), Array.from(values(12, 60)), 'the clone outlives x');
  const v = tf.variable(y);
  y.dispose();
  const zeros = tf.zeros([3, 4]);
  v.assign(zeros);
  zeros.dispose();
  assert.deepEqual(Array.from(v.dataSync()), new Array(12).fill(0));
  v.dispose();
  assert.equal(backend.numDataIds(), before);
  await compare('identity of strings and bools', () => [tf.clone(tf.tensor1d([true, false], 'bool')).cast('int32')]);
});

test('Tile\'s gradient (one Sum) equals TF.js\'s own (a Slice per repetition) on cpu and wasm', async () => {
  assert.notEqual(tf.getGradient('Tile'), originalTileGrad);
  const cases = [[[5], [3]], [[2, 3], [1, 4]], [[2, 3], [3, 1]], [[1, 1, 48], [1, 128, 1]], [[1, 128, 1], [1, 1, 48]],
    [[2, 3, 4], [2, 1, 3]], [[2, 1, 3, 2], [1, 4, 2, 3]], [[3, 4], [1, 1]], [[1, 1, 1, 8], [4, 5, 5, 1]]];
  for (const backend of ['cpu', 'wasm']) {
    await tf.setBackend(backend);
    for (const [shape, reps] of cases) {
      tf.tidy(() => {
        const x = tensor(shape, 61);
        const dy = tensor(shape.map((d, i) => d * reps[i]), 62);
        const ours = tf.getGradient('Tile').gradFunc(dy, [x], { reps }).x();
        const theirs = originalTileGrad.gradFunc(dy, [x], { reps }).x();
        assertClose([{ shape: ours.shape, data: Array.from(ours.dataSync()) }],
          [{ shape: theirs.shape, data: Array.from(theirs.dataSync()) }], `${backend} tile ${shape} x ${reps}`);
      });
    }
  }
  await tf.setBackend('wasm');
});

test('NCHW is refused with a message that names the layout', () => {
  tf.tidy(() => {
    const x = tf.zeros([1, 2, 5, 5]);
    assert.throws(() => tf.engine().runKernel('Conv2DBackpropFilter', { x, dy: tf.zeros([1, 3, 3, 3]) }, {
      strides: [1, 1], pad: 'valid', dataFormat: 'NCHW', filterShape: [3, 3, 2, 3] }), /NHWC/);
  });
});

/** A conv + pool + dense model and an embedding model, with the same initial weights on both backends. */
function convModel() {
  const L = tf.layers;
  return tf.sequential({ layers: [
    L.conv2d({ inputShape: [9, 9, 2], filters: 4, kernelSize: 3, padding: 'same', activation: 'relu' }),
    L.maxPooling2d({ poolSize: 2 }),
    L.conv2d({ filters: 3, kernelSize: 3, strides: 2, activation: 'relu', biasInitializer: 'ones' }),
    L.depthwiseConv2d({ kernelSize: 1, depthMultiplier: 2, biasInitializer: 'ones' }),
    L.flatten(),
    L.dense({ units: 3, activation: 'softmax' }),
  ] });
}

function embeddingModel() {
  const L = tf.layers;
  return tf.sequential({ layers: [
    L.embedding({ inputDim: 11, outputDim: 4, inputLength: 5 }), L.flatten(), L.dense({ units: 2, activation: 'softmax' })] });
}

/** MobileNet v2's pieces: stride-2 convolution, batch norm, ReLU6, depthwise, residual add, global pooling. */
function mobileNetBlock() {
  const L = tf.layers;
  const input = tf.input({ shape: [12, 12, 3] });
  let x = L.conv2d({ filters: 8, kernelSize: 3, strides: 2, padding: 'same', useBias: false }).apply(input);
  x = L.reLU({ maxValue: 6 }).apply(L.batchNormalization().apply(x));
  let y = L.conv2d({ filters: 16, kernelSize: 1, useBias: false }).apply(x);
  y = L.reLU({ maxValue: 6 }).apply(L.batchNormalization().apply(y));
  y = L.depthwiseConv2d({ kernelSize: 3, padding: 'same', useBias: false }).apply(y);
  y = L.reLU({ maxValue: 6 }).apply(y);
  y = L.zeroPadding2d({ padding: [[0, 1], [0, 1]] }).apply(y);
  y = L.depthwiseConv2d({ kernelSize: 3, strides: 2, useBias: false }).apply(y);
  y = L.conv2d({ filters: 8, kernelSize: 1, useBias: false }).apply(y);
  x = L.conv2d({ filters: 8, kernelSize: 1, strides: 2 }).apply(x);
  x = L.add().apply([x, y]);
  x = L.globalAveragePooling2d({}).apply(x);
  return tf.model({ inputs: input, outputs: L.dense({ units: 2, activation: 'softmax' }).apply(x) });
}

/** The wikitext task's GPT in miniature: token and position embeddings, one causal attention block. */
function tinyGpt() {
  const L = tf.layers;
  const [T, D, V] = [6, 8, 13];
  const tokens = tf.input({ shape: [T], dtype: 'int32' });
  const positions = tf.input({ shape: [T], dtype: 'int32' });
  const mask = tf.input({ shape: [T, T] });
  let x = L.add().apply([L.embedding({ inputDim: V, outputDim: D }).apply(tokens),
    L.embedding({ inputDim: T, outputDim: D }).apply(positions)]);
  const h = L.layerNormalization({ epsilon: 1e-5 }).apply(x);
  const [q, k, v] = [0, 1, 2].map(() => L.dense({ units: D }).apply(h));
  let scores = L.rescaling({ scale: 1 / Math.sqrt(D) }).apply(L.dot({ axes: [2, 2] }).apply([q, k]));
  scores = L.activation({ activation: 'softmax' }).apply(L.add().apply([scores, mask]));
  x = L.add().apply([x, L.dense({ units: D }).apply(L.dot({ axes: [2, 1] }).apply([scores, v]))]);
  x = L.add().apply([x, L.dense({ units: D }).apply(L.dense({ units: 2 * D, activation: 'gelu' }).apply(x))]);
  const out = L.dense({ units: V, activation: 'softmax' }).apply(L.layerNormalization({ epsilon: 1e-5 }).apply(x));
  return tf.model({ inputs: [tokens, positions, mask], outputs: out });
}

function gptBatch() {
  const [B, T, V] = [2, 6, 13];
  const ids = Array.from({ length: B * (T + 1) }, (_, i) => (i * 7 + 3) % V);
  const window = (offset) => tf.tensor2d(Array.from({ length: B * T }, (_, i) => ids[Math.floor(i / T) * (T + 1) + (i % T) + offset]),
    [B, T], 'int32');
  const causal = tf.tensor2d(Array.from({ length: T * T }, (_, i) => ((i % T) > Math.floor(i / T) ? -1e9 : 0)), [T, T]);
  return [[window(0), tf.tile(tf.range(0, T, 1, 'int32').expandDims(0), [B, 1]), tf.tile(causal.expandDims(0), [B, 1, 1])],
    tf.oneHot(window(1), V)];
}

const INITIAL = new Map();

/** The model built by `build`, with weights drawn once and reused on every backend. */
function withSharedWeights(build) {
  const model = build();
  if (!INITIAL.has(build)) {
    INITIAL.set(build, model.getWeights().map((w, i) => ({ shape: w.shape, data: values(w.size, 100 + i) })));
  }
  model.setWeights(INITIAL.get(build).map(({ shape, data }) => tf.tensor(data, shape)));
  return model;
}

const MODELS = [
  ['conv + pool + depthwise + dense', convModel, () => [tensor([3, 9, 9, 2], 20), tf.oneHot(tf.tensor1d([0, 2, 1], 'int32'), 3)]],
  ['embedding', embeddingModel, () => [tf.tensor2d([[1, 2, 3, 2, 10], [0, 0, 7, 1, 1], [5, 4, 3, 2, 1]], [3, 5], 'int32'),
    tf.oneHot(tf.tensor1d([1, 0, 1], 'int32'), 2)]],
  ['MobileNet v2 block', mobileNetBlock, () => [tensor([2, 12, 12, 3], 21), tf.oneHot(tf.tensor1d([1, 0], 'int32'), 2)]],
  ['tiny GPT', tinyGpt, gptBatch],
];

test('whole gradients of conv, embedding, MobileNet and GPT models match cpu', async () => {
  for (const [label, build, data] of MODELS) {
    await compare(`gradients of ${label}`, () => {
      const model = withSharedWeights(build);
      const [x, y] = data();
      const { grads } = tf.variableGrads(() => tf.losses.softmaxCrossEntropy(y, model.apply(x, { training: true })));
      const out = model.trainableWeights.map((w) => grads[w.originalName]);
      model.dispose();
      return out;
    });
  }
});

async function trainedWeights(backend, build, data) {
  await tf.setBackend(backend);
  try {
    const model = withSharedWeights(build);
    model.compile({ optimizer: tf.train.sgd(0.1), loss: 'categoricalCrossentropy' });
    const [x, y] = data();
    const loss = await model.trainOnBatch(x, y);
    const weights = model.getWeights().map((w) => ({ shape: w.shape, data: Array.from(w.dataSync()) }));
    tf.dispose([x, y]);
    model.dispose();
    return { loss, weights };
  } finally {
    await tf.setBackend('wasm');
  }
}

test('one trainOnBatch step on wasm gives the weights cpu gives', async () => {
  for (const [label, build, data] of MODELS) {
    const wasm = await trainedWeights('wasm', build, data);
    const cpu = await trainedWeights('cpu', build, data);
    assert.ok(Math.abs(wasm.loss - cpu.loss) <= RTOL * Math.abs(cpu.loss), `${label}: loss ${wasm.loss} vs ${cpu.loss}`);
    assertClose(wasm.weights, cpu.weights, `weights of ${label} after one step`);
    const initial = INITIAL.get(build);
    assert.ok(cpu.weights.some((w, i) => w.data.some((v, j) => v !== initial[i].data[j])), `${label}: the step changed nothing`);
  }
});

test('no tensor or wasm buffer leaks over repeated calls', async () => {
  await tf.setBackend('wasm');
  const x = tensor([2, 9, 9, 3], 30);
  const filter = tensor([3, 3, 3, 4], 31);
  const dw = tensor([3, 3, 3, 2], 32);
  const dy = tensor([2, 5, 5, 4], 33);
  const dyDw = tensor([2, 5, 5, 6], 34);
  const attrs = { strides: [2, 2], pad: 'same', dataFormat: 'NHWC', dimRoundingMode: undefined };
  const dwAttrs = { strides: [2, 2], dilations: [1, 1], pad: 'same', dimRoundingMode: undefined };
  const kernels = [
    () => tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, { ...attrs, filterShape: filter.shape }),
    () => tf.engine().runKernel('Conv2DBackpropInput', { dy, filter }, { ...attrs, inputShape: x.shape }),
    () => tf.engine().runKernel('DepthwiseConv2dNativeBackpropInput', { dy: dyDw, filter: dw }, { ...dwAttrs, inputShape: x.shape }),
    () => tf.engine().runKernel('DepthwiseConv2dNativeBackpropFilter', { x, dy: dyDw }, { ...dwAttrs, filterShape: dw.shape }),
    () => tf.unsortedSegmentSum(tensor([4, 3], 35), tf.tensor1d([0, 2, 2, 1], 'int32'), 3),
    () => tf.matMul(tensor([6, 4], 36), tensor([6, 5], 37), true, false),
    () => tf.tile(tensor([1, 3], 38), [4, 2]),
    () => [tf.sum(tensor([4, 32, 32, 16], 41), [0, 1, 2]), tf.mean(tensor([70000, 3], 46), 0)],
    () => tf.clone(tensor([4, 5], 44)),
    () => tf.logicalAnd(tf.lessEqual(tensor([4, 32, 32, 16], 42), 0.5), tf.greater(tensor([4, 32, 32, 16], 43), 0)),
    () => tf.engine().runKernel('MaxPoolGrad', { dy: tensor([2, 5, 5, 3], 39), input: x, output: tensor([2, 5, 5, 3], 40) },
      { filterSize: 2, strides: 2, pad: 'same' }),
  ];
  for (const [i, kernel] of kernels.entries()) assertNoLeak(() => tf.tidy(() => { kernel(); }), `kernel ${i}`);
  const model = withSharedWeights(convModel);
  model.compile({ optimizer: 'adam', loss: 'categoricalCrossentropy' });
  const [xs, ys] = MODELS[0][2]();
  await model.trainOnBatch(xs, ys);
  const before = [tf.memory().numTensors, tf.engine().backend.numDataIds()];
  for (let i = 0; i < 3; i++) await model.trainOnBatch(xs, ys);
  assert.deepEqual([tf.memory().numTensors, tf.engine().backend.numDataIds()], before, 'trainOnBatch');
  tf.dispose([x, filter, dw, dy, dyDw, xs, ys]);
  model.dispose();
});
