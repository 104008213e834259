/**
 * Preprocessing steps, declared by a task (trainingInformation.preprocessingFunctions) and run in
 * the browser. No DOM, no TF.js: plain arrays, so Node tests run them as they are.
 *
 * Samples, per data type:
 * - image:   {data: Float32Array (height * width * channels, row-major HWC, values 0-255 on input),
 *             height, width, channels}
 * - tabular: {columns: string[], values: Array<string|number|null>} (the task's input columns of one row)
 * - text:    {text: string} -> after "tokenize" {ids: number[]} -> after "pad" {windows: number[][]}
 *
 * A step is `fn(sample, context) -> sample`, context = {task, state, name}. A step that learns from
 * the data (standardize, one_hot) registers an object `{apply, fit, order}` instead: `fit(samples,
 * context)` sees the training split only and returns the statistics that `apply` reads from
 * `context.state[name]`. These statistics are saved with the model (model_library.js stores them in the
 * model's userDefinedMetadata) so testing reuses the training statistics (DISCO issue #649).
 * `order` places a step among the others whatever the declared order (one_hot needs raw strings,
 * so it runs before sanitize; standardize needs numbers, so it runs after); default 0.
 *
 * Adding a step for a custom task, in one place (and declare its name on the server with
 * tasks.preprocessing.register_preprocessing, see README):
 *
 *     import { registerPreprocessing } from '/static/disco/preprocessing.js';
 *     // "Divide each pixel by 2"
 *     registerPreprocessing('image', 'halve', (sample) => ({...sample, data: sample.data.map((v) => v / 2)}));
 *
 * then list 'halve' in the task's preprocessing functions, e.g. ["resize", "halve"].
 * @module preprocessing
 */

import { encode, leftPad } from './tokenizer.js';

/** @typedef {{apply: Function, fit?: Function, order: number, description?: string}} Step */

/** @type {Record<string, Map<string, Step>>} */
const registry = { image: new Map(), tabular: new Map(), text: new Map() };

/**
 * Register (or replace) the step `name` for `dataType`.
 * @param {'image'|'tabular'|'text'} dataType
 * @param {string} name
 * @param {Function|{apply: Function, fit?: Function, order?: number, description?: string}} fn
 */
export function registerPreprocessing(dataType, name, fn) {
  if (!(dataType in registry)) {
    throw new Error(`Unknown data type "${dataType}"; expected one of ${Object.keys(registry).join(', ')}.`);
  }
  const step = typeof fn === 'function' ? { apply: fn } : { ...fn };
  if (typeof step.apply !== 'function') throw new Error(`Preprocessing step "${name}" needs a function.`);
  step.order = step.order ?? 0;
  registry[dataType].set(name, /** @type {Step} */ (step));
}

/**
 * The step `name` of `dataType`, or undefined.
 * @param {string} dataType
 * @param {string} name
 * @returns {Step|undefined}
 */
export function getPreprocessing(dataType, name) {
  return registry[dataType]?.get(name);
}

/**
 * The names of the registered steps of `dataType`.
 * @param {string} dataType
 * @returns {string[]}
 */
export function preprocessingNames(dataType) {
  return [...(registry[dataType]?.keys() ?? [])];
}

/**
 * Names among `steps` that no registered step answers to (the loaders report them as problems).
 * @param {string} dataType
 * @param {string[]} steps
 * @returns {string[]}
 */
export function unknownSteps(dataType, steps) {
  return (steps ?? []).filter((name) => !registry[dataType]?.has(name));
}

/**
 * The steps in the order they run: by `order`, then as declared.
 * @param {string} dataType
 * @param {string[]} steps
 * @returns {Array<[string, Step]>}
 */
function ordered(dataType, steps) {
  const found = (steps ?? []).map((name, i) => [name, registry[dataType]?.get(name), i])
    .filter(([, step]) => step !== undefined);
  found.sort((a, b) => (a[1].order - b[1].order) || (a[2] - b[2]));
  return found.map(([name, step]) => [name, step]);
}

/**
 * Compute the statistics of the fitted steps on the training samples only.
 * Each fitted step sees the samples as the steps before it left them.
 * @param {string} dataType
 * @param {string[]} steps
 * @param {object[]} trainingSamples
 * @param {object} [task] the task JSON (steps may read trainingInformation)
 * @returns {Record<string, object>} state, keyed by step name
 */
export function fitState(dataType, steps, trainingSamples, task = undefined) {
  const state = {};
  let samples = trainingSamples;
  for (const [name, step] of ordered(dataType, steps)) {
    const context = { task, state, name };
    if (step.fit) state[name] = step.fit(samples, context);
    samples = samples.map((s) => step.apply(s, context));
  }
  return state;
}

/**
 * Run the steps on one sample.
 * @param {string} dataType
 * @param {string[]} steps
 * @param {object} sample
 * @param {Record<string, object>} [state] from fitState (or from a saved model)
 * @param {object} [task]
 * @returns {object} the processed sample
 */
export function applyPreprocessing(dataType, steps, sample, state = {}, task = undefined) {
  let out = sample;
  for (const [name, step] of ordered(dataType, steps)) {
    if (step.fit && !(name in state)) {
      throw new Error(`Preprocessing step "${name}" has no fitted statistics: call fitState on the training data first.`);
    }
    out = step.apply(out, { task, state, name });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Image

/**
 * Bilinear resize of an HWC image (half-pixel centres, as tf.image.resizeBilinear with
 * halfPixelCenters). Pure JS: fine for the image sizes tasks use (up to a few hundred pixels).
 * @param {{data: Float32Array, height: number, width: number, channels: number}} image
 * @param {number} height
 * @param {number} width
 */
export function resizeBilinear(image, height, width) {
  const { data, height: h0, width: w0, channels: c } = image;
  if (h0 === height && w0 === width) return image;
  const out = new Float32Array(height * width * c);
  const sy = h0 / height;
  const sx = w0 / width;
  for (let y = 0; y < height; y++) {
    const fy = Math.min(Math.max((y + 0.5) * sy - 0.5, 0), h0 - 1);
    const y0 = Math.floor(fy);
    const y1 = Math.min(y0 + 1, h0 - 1);
    const dy = fy - y0;
    for (let x = 0; x < width; x++) {
      const fx = Math.min(Math.max((x + 0.5) * sx - 0.5, 0), w0 - 1);
      const x0 = Math.floor(fx);
      const x1 = Math.min(x0 + 1, w0 - 1);
      const dx = fx - x0;
      const o = (y * width + x) * c;
      const a = (y0 * w0 + x0) * c;
      const b = (y0 * w0 + x1) * c;
      const d = (y1 * w0 + x0) * c;
      const e = (y1 * w0 + x1) * c;
      for (let k = 0; k < c; k++) {
        const top = data[a + k] + (data[b + k] - data[a + k]) * dx;
        const bottom = data[d + k] + (data[e + k] - data[d + k]) * dx;
        out[o + k] = top + (bottom - top) * dy;
      }
    }
  }
  return { data: out, height, width, channels: c };
}

registerPreprocessing('image', 'resize', {
  description: "Resize each image to the task's IMAGE_H x IMAGE_W.",
  apply(sample, { task }) {
    const info = task?.trainingInformation ?? {};
    return resizeBilinear(sample, info.IMAGE_H ?? sample.height, info.IMAGE_W ?? sample.width);
  },
});

registerPreprocessing('image', 'normalize', {
  description: 'Scale pixel values from 0-255 to 0-1.',
  order: 1,
  apply(sample) {
    const data = new Float32Array(sample.data.length);
    for (let i = 0; i < data.length; i++) data[i] = sample.data[i] / 255;
    return { ...sample, data };
  },
});

// ---------------------------------------------------------------------------------------------
// Tabular

/**
 * A cell as a number, or NaN when it is missing or not a number ("", "NA", "abc").
 * @param {unknown} value
 * @returns {number}
 */
export function toNumber(value) {
  if (typeof value === 'number') return value;
  if (typeof value === 'boolean') return value ? 1 : 0;
  if (value === null || value === undefined) return NaN;
  const text = String(value).trim();
  if (text === '') return NaN;
  const n = Number(text);
  return Number.isFinite(n) ? n : NaN;
}

registerPreprocessing('tabular', 'sanitize', {
  description: 'Replace missing or non-numeric values with 0.',
  apply(sample) {
    return { ...sample, values: sample.values.map((v) => { const n = toNumber(v); return Number.isNaN(n) ? 0 : n; }) };
  },
});

registerPreprocessing('tabular', 'one_hot', {
  description: 'One-hot encode categorical input columns.',
  order: -10,
  /** Categorical columns: those with a non-empty, non-numeric value in the training rows. */
  fit(samples) {
    const columns = samples[0]?.columns ?? [];
    /** @type {Record<string, string[]>} */
    const categories = {};
    columns.forEach((column, j) => {
      const seen = new Set();
      let categorical = false;
      for (const s of samples) {
        const raw = s.values[j];
        const text = raw === null || raw === undefined ? '' : String(raw).trim();
        if (text === '') continue;
        seen.add(text);
        if (Number.isNaN(toNumber(text))) categorical = true;
      }
      if (categorical) categories[column] = [...seen].sort();
    });
    return { categories };
  },
  /** Each categorical column becomes one 0/1 column per category seen in training ("Sex=female"). */
  apply(sample, { state, name }) {
    const { categories } = state[name];
    const columns = [];
    const values = [];
    sample.columns.forEach((column, j) => {
      const cats = categories[column];
      if (!cats) { columns.push(column); values.push(sample.values[j]); return; }
      const raw = sample.values[j];
      const text = raw === null || raw === undefined ? '' : String(raw).trim();
      for (const cat of cats) { columns.push(`${column}=${cat}`); values.push(text === cat ? 1 : 0); }
    });
    return { columns, values };
  },
});

registerPreprocessing('tabular', 'standardize', {
  description: 'Subtract the mean and divide by the standard deviation of each input column.',
  order: 10,
  /** Means and standard deviations per column; missing values are left out, a constant column gets std 1. */
  fit(samples) {
    const columns = samples[0]?.columns ?? [];
    const means = [];
    const stds = [];
    columns.forEach((_, j) => {
      let n = 0; let sum = 0; let sq = 0;
      for (const s of samples) {
        const v = toNumber(s.values[j]);
        if (Number.isNaN(v)) continue;
        n++; sum += v; sq += v * v;
      }
      const mean = n ? sum / n : 0;
      const variance = n ? Math.max(sq / n - mean * mean, 0) : 0;
      const std = Math.sqrt(variance);
      means.push(mean);
      stds.push(std > 1e-12 ? std : 1);
    });
    return { columns, means, stds };
  },
  apply(sample, { state, name }) {
    const { columns, means, stds } = state[name];
    const values = sample.values.map((v, j) => {
      const at = sample.columns[j] === columns[j] ? j : columns.indexOf(sample.columns[j]);
      const n = toNumber(v);
      if (at < 0) return Number.isNaN(n) ? 0 : n;
      // A missing value becomes the mean, i.e. 0 after standardizing.
      return Number.isNaN(n) ? 0 : (n - means[at]) / stds[at];
    });
    return { ...sample, values };
  },
});

// ---------------------------------------------------------------------------------------------
// Text

registerPreprocessing('text', 'tokenize', {
  description: "Split the text into tokens with the task's tokenizer.",
  order: -10,
  apply(sample, { task }) {
    const name = task?.trainingInformation?.tokenizer || 'bytes';
    if (name !== 'bytes') throw new Error(`Unknown tokenizer "${name}": this client knows "bytes".`);
    return { ids: encode(sample.text) };
  },
});

/**
 * Cut token ids into training windows of `length + 1` ids (inputs + the next-token targets),
 * starting every `length` ids so each id is a target once; the last window is left-padded.
 * @param {number[]} ids
 * @param {number} length
 * @returns {number[][]}
 */
export function windows(ids, length) {
  if (ids.length === 0) return [];
  if (ids.length <= length + 1) return [leftPad(ids, length + 1)];
  const out = [];
  let start = 0;
  for (; start + length + 1 <= ids.length; start += length) out.push(ids.slice(start, start + length + 1));
  if (start + 1 < ids.length) out.push(leftPad(ids.slice(start), length + 1));
  return out;
}

registerPreprocessing('text', 'pad', {
  description: 'Left-pad or truncate token sequences to maxSequenceLength.',
  apply(sample, { task }) {
    const length = task?.trainingInformation?.maxSequenceLength ?? 128;
    return { windows: windows(sample.ids, length) };
  },
});
