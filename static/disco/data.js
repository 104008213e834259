/**
 * Data loaders: a participant's files -> LoadedData, checked and preprocessed, in the browser.
 * Nothing leaves the device. No DOM code (images decode with createImageBitmap + OffscreenCanvas
 * when available, else a detached canvas) and no TF.js at import time: `globalThis.tf` is read
 * only by textModelInputs / inputTensors, and the CSV parser is `globalThis.Papa` (Papa Parse).
 *
 * The loaders never throw on bad data: each problem is returned as {file, message} and the
 * faulty item is left out. A result with count 0 cannot be trained on.
 *
 * LoadedData = {
 *   dataType, count,
 *   x: Float32Array|Int32Array (flat, count * prod(xShape)), xShape: per-sample shape,
 *   y: Float32Array|Int32Array|null, yShape: per-sample shape,
 *     image / tabular with LABEL_LIST: Int32Array of class indices, yShape [];
 *     tabular without LABEL_LIST: Float32Array of the output columns, yShape [outputColumns.length];
 *     text: Float32Array of next-token ids, yShape [maxSequenceLength, 1];
 *     null when loaded unlabelled (prediction),
 *   labels: string[] (the class names, [] when targets are numbers),
 *   counts: {[label or target value or file]: n}, problems: [{file, message}],
 *   preview: image {images: [{file, label, url}]}, tabular {columns, rows, features},
 *            text {lines: [{file, line}]},
 *   state: fitted preprocessing statistics, keyed by step name (save them with the model),
 *   --- additions to the interface agreed with the trainer ---
 *   files: string[] (the file each sample comes from, for per-sample results),
 *   trainCount: number. The samples are in a seeded random order; the first `trainCount` are the
 *     training split and the rest the validation split (as Keras and TF.js `fit` take the last
 *     `validationSplit` of the data). Fitted statistics (standardize, one_hot) come from the
 *     training split only, so a trainer must use the same split.
 * }
 * @module data
 */

import { applyPreprocessing, fitState, toNumber, unknownSteps } from './preprocessing.js';

const PREVIEW_IMAGES = 8;
const PREVIEW_ROWS = 5;
const PREVIEW_LINES = 5;
const MAX_LISTED = 5;
const IMAGE_EXTENSIONS = /\.(png|jpe?g|gif|bmp|webp)$/i;

/**
 * @typedef {{file: string, message: string}} Problem
 * @typedef {{width: number, height: number, channels: number, data: Uint8Array|Uint8ClampedArray}} DecodedImage
 * @typedef {(file: Blob) => Promise<DecodedImage>} ImageDecoder
 */

// ---------------------------------------------------------------------------------------------
// Shared helpers

/**
 * A seeded pseudo-random generator (mulberry32): the same files give the same split.
 * @param {number} seed
 * @returns {() => number} uniform in [0, 1)
 */
export function seededRandom(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A seeded random permutation of 0..n-1 (Fisher-Yates).
 * @param {number} n
 * @param {number} seed
 * @returns {number[]}
 */
export function permutation(n, seed = 1) {
  const random = seededRandom(seed);
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

/**
 * The order samples are laid out in: shuffled (seeded) for training, the files' own order when
 * `shuffle` is false (test and prediction data, so results line up with the input).
 * @param {number} n
 * @param {{seed?: number, shuffle?: boolean}} options
 * @returns {number[]}
 */
function sampleOrder(n, options) {
  return options.shuffle === false ? Array.from({ length: n }, (_, i) => i) : permutation(n, options.seed ?? 1);
}

/**
 * How many of `count` samples train, the rest validating; at least one of each when count >= 2.
 * @param {number} count
 * @param {number} validationSplit
 */
export function trainingCount(count, validationSplit) {
  const split = Number.isFinite(validationSplit) ? Math.min(Math.max(validationSplit, 0), 0.9) : 0;
  let validation = Math.round(count * split);
  if (split > 0 && count >= 2) validation = Math.min(Math.max(validation, 1), count - 1);
  return count - validation;
}

function info(task) {
  return task?.trainingInformation ?? {};
}

function listed(names) {
  const shown = names.slice(0, MAX_LISTED).join(', ');
  return names.length > MAX_LISTED ? `${shown} and ${names.length - MAX_LISTED} more` : shown;
}

function baseName(path) {
  return String(path).split(/[\\/]/).pop();
}

function emptyData(dataType, problems, extra = {}) {
  return {
    dataType, count: 0, x: new Float32Array(0), xShape: [], y: null, yShape: [], labels: [], counts: {},
    problems, preview: {}, state: {}, files: [], trainCount: 0, ...extra,
  };
}

function stepProblems(dataType, steps, source) {
  const unknown = unknownSteps(dataType, steps);
  return unknown.length
    ? [{ file: source, message: `This task declares preprocessing step(s) ${listed(unknown)} that this page does not know; they are skipped. Ask the task's author.` }]
    : [];
}

function parseCsv(text) {
  const Papa = globalThis.Papa;
  if (!Papa) throw new Error('Papa Parse is not loaded: include vendor/papaparse/papaparse.min.js before data.js is used.');
  return Papa.parse(String(text).replace(/^\ufeff/, ''), {
    header: false, skipEmptyLines: 'greedy', dynamicTyping: false,
  });
}

// ---------------------------------------------------------------------------------------------
// Tabular

/**
 * Load a tabular CSV (header row first) for a task with inputColumns / outputColumns.
 * @param {string} csvText
 * @param {object} task the task JSON (GET /api/tasks/<id>/)
 * @param {{fileName?: string, labelled?: boolean, state?: object, seed?: number, validationSplit?: number, shuffle?: boolean}} [options]
 *   state: statistics saved with a model (testing reuses them instead of fitting);
 *   shuffle false: keep the file's row order (test and prediction data);
 *   labelled false: output columns are not needed (prediction), y is null.
 * @returns {object} LoadedData
 */
export function loadTabular(csvText, task, options = {}) {
  const { fileName = 'CSV file', labelled = true, seed = 1 } = options;
  const ti = info(task);
  const inputs = ti.inputColumns ?? [];
  const outputs = labelled ? (ti.outputColumns ?? []) : [];
  const labels = labelled ? (ti.LABEL_LIST ?? []) : [];
  const steps = ti.preprocessingFunctions ?? [];
  const problems = stepProblems('tabular', steps, fileName);

  if (!String(csvText ?? '').trim()) {
    return emptyData('tabular', [...problems, { file: fileName, message: 'The file is empty: a CSV with a header row and one row per example is needed.' }]);
  }
  const parsed = parseCsv(csvText);
  const [header = [], ...rows] = parsed.data;
  const columns = header.map((h) => String(h).trim());
  const missing = [...inputs, ...outputs].filter((c) => !columns.includes(c));
  if (missing.length) {
    return emptyData('tabular', [...problems, {
      file: fileName,
      message: `Missing column(s) ${listed(missing)}. The header row has: ${listed(columns) || 'nothing'}. `
        + `This task needs ${listed([...inputs, ...outputs])}.`,
    }], { preview: { columns, rows: rows.slice(0, PREVIEW_ROWS) } });
  }
  const inputAt = inputs.map((c) => columns.indexOf(c));
  const outputAt = outputs.map((c) => columns.indexOf(c));

  const shortRows = [];
  const badTargets = [];
  const unknownLabels = new Map();
  /** @type {Array<{sample: object, y: number[]}>} */
  const kept = [];
  rows.forEach((row, i) => {
    const line = i + 2; // 1-based, after the header
    if (row.length < columns.length) { shortRows.push(line); return; }
    let y = [];
    if (labels.length) {
      const label = String(row[outputAt[0]] ?? '').trim();
      const index = labels.indexOf(label);
      if (index < 0) { unknownLabels.set(label, [...(unknownLabels.get(label) ?? []), line]); return; }
      y = [index];
    } else {
      y = outputAt.map((j) => toNumber(row[j]));
      if (y.some(Number.isNaN)) { badTargets.push(line); return; }
    }
    kept.push({ sample: { columns: [...inputs], values: inputAt.map((j) => row[j]) }, y, line });
  });
  if (shortRows.length) {
    problems.push({ file: fileName, message: `Row(s) ${listed(shortRows.map(String))} have fewer cells than the header; they are skipped.` });
  }
  if (badTargets.length) {
    problems.push({ file: fileName, message: `Row(s) ${listed(badTargets.map(String))}: ${listed(outputs)} is empty or not a number; these rows are skipped.` });
  }
  for (const [label, lines] of unknownLabels) {
    problems.push({ file: fileName, message: `Unknown label "${label}" in ${outputs[0]} (row(s) ${listed(lines.map(String))}); expected one of ${listed(labels)}. These rows are skipped.` });
  }

  const order = sampleOrder(kept.length, { seed, shuffle: options.shuffle });
  const shuffled = order.map((i) => kept[i]);
  const trainCount = trainingCount(shuffled.length, options.validationSplit ?? ti.validationSplit ?? 0);
  let state = options.state;
  if (!state) {
    try {
      state = fitState('tabular', steps, shuffled.slice(0, trainCount).map((r) => r.sample), task);
    } catch (error) {
      return emptyData('tabular', [...problems, { file: fileName, message: `Preprocessing failed: ${error.message}` }]);
    }
  }

  const processed = [];
  const notNumbers = [];
  let features = [];
  for (const [index, row] of shuffled.entries()) {
    let out;
    try {
      out = applyPreprocessing('tabular', steps, row.sample, state, task);
    } catch (error) {
      return emptyData('tabular', [...problems, { file: fileName, message: `Preprocessing failed: ${error.message}` }]);
    }
    const values = out.values.map(toNumber);
    if (values.some(Number.isNaN)) {
      const bad = out.columns.filter((_, j) => Number.isNaN(values[j]));
      notNumbers.push(`${row.line} (${listed(bad)})`);
      continue;
    }
    features = out.columns;
    processed.push({ values, y: row.y, line: row.line, trainingRow: index < trainCount });
  }
  if (notNumbers.length) {
    const hint = steps.includes('sanitize') ? '' : " The task does not declare 'sanitize', which would replace them with 0.";
    problems.push({ file: fileName, message: `Row(s) ${listed(notNumbers)} have empty or non-numeric inputs; they are skipped.${hint}` });
  }
  const count = processed.length;
  if (!count) problems.push({ file: fileName, message: 'No usable rows: nothing to train on.' });

  const width = features.length || inputs.length;
  const x = new Float32Array(count * width);
  const y = labels.length ? new Int32Array(count) : outputs.length ? new Float32Array(count * outputs.length) : null;
  processed.forEach((row, i) => {
    x.set(row.values, i * width);
    if (y) y.set(row.y, i * row.y.length);
  });
  return {
    dataType: 'tabular', count, x, xShape: [width], y, yShape: labels.length ? [] : outputs.length ? [outputs.length] : [],
    labels, counts: targetCounts(processed, labels), problems,
    preview: { columns, rows: rows.slice(0, PREVIEW_ROWS), features },
    state, files: processed.map((r) => `${fileName}:${r.line}`),
    trainCount: processed.filter((r) => r.trainingRow).length,
  };
}

/** Counts per label, or per target value when a single numeric output has few distinct values. */
function targetCounts(rows, labels) {
  const counts = {};
  if (labels.length) {
    for (const label of labels) counts[label] = 0;
    for (const row of rows) counts[labels[row.y[0]]] += 1;
    return counts;
  }
  if (rows.length && rows[0].y.length === 1) {
    for (const row of rows) counts[String(row.y[0])] = (counts[String(row.y[0])] ?? 0) + 1;
    if (Object.keys(counts).length <= 20) return counts;
  }
  return { rows: rows.length };
}

// ---------------------------------------------------------------------------------------------
// Images

/**
 * Decode an image file in a browser: RGBA pixels at the image's own size.
 * @type {ImageDecoder}
 */
export async function decodeImageInBrowser(file) {
  const bitmap = await createImageBitmap(file);
  try {
    const { width, height } = bitmap;
    const canvas = typeof OffscreenCanvas !== 'undefined'
      ? new OffscreenCanvas(width, height)
      : Object.assign(globalThis.document.createElement('canvas'), { width, height });
    const context = canvas.getContext('2d', { willReadFrequently: true });
    context.drawImage(bitmap, 0, 0);
    return { width, height, channels: 4, data: context.getImageData(0, 0, width, height).data };
  } finally {
    bitmap.close?.();
  }
}

/**
 * Pixels with `target` channels as float 0-255, or a problem message.
 * 1 and 2 channels (grey, grey + alpha) become RGB by repetition; alpha is dropped for RGB tasks;
 * a colour image for a grayscale task is a problem (grey images stored as RGB are accepted).
 * @param {DecodedImage} image
 * @param {number} target
 * @returns {{data?: Float32Array, message?: string}}
 */
export function toChannels(image, target) {
  const { width, height, channels, data } = image;
  const pixels = width * height;
  if (![1, 2, 3, 4].includes(channels)) {
    return { message: `has ${channels} channels; images need 1 (grey), 3 (RGB) or 4 (RGBA) channels.` };
  }
  if (!data || data.length !== pixels * channels) {
    return { message: `could not be decoded completely (${data?.length ?? 0} values for ${width}x${height}x${channels}).` };
  }
  const colour = channels >= 3;
  if (target === 1 && colour) {
    for (let p = 0; p < pixels; p++) {
      const o = p * channels;
      if (data[o] !== data[o + 1] || data[o] !== data[o + 2]) {
        return { message: 'is a colour image, but this task expects grayscale images (1 channel). Convert it to grayscale.' };
      }
    }
  }
  if (![1, 3, 4].includes(target)) return { message: `cannot be converted to ${target} channels.` };
  const out = new Float32Array(pixels * target);
  for (let p = 0; p < pixels; p++) {
    const o = p * channels;
    const rgb = colour ? [data[o], data[o + 1], data[o + 2]] : [data[o], data[o], data[o]];
    const alpha = channels === 4 ? data[o + 3] : channels === 2 ? data[o + 1] : 255;
    const t = p * target;
    if (target === 1) out[t] = rgb[0];
    else {
      out[t] = rgb[0]; out[t + 1] = rgb[1]; out[t + 2] = rgb[2];
      if (target === 4) out[t + 3] = alpha;
    }
  }
  return { data: out };
}

async function dataUrl(file) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return `data:${file.type || 'image/png'};base64,${btoa(binary)}`;
}

/**
 * Decode, convert and preprocess labelled images. `items` are {file, label} with known labels.
 * @param {Array<{file: File, label: string}>} items
 * @param {object} task
 * @param {ImageDecoder} decode
 * @param {Problem[]} problems (appended to)
 * @param {{seed?: number, validationSplit?: number, labelled?: boolean, shuffle?: boolean}} options
 */
async function buildImageData(items, task, decode, problems, options) {
  const ti = info(task);
  const height = ti.IMAGE_H;
  const width = ti.IMAGE_W;
  const channels = ti.imageChannels ?? 3;
  const labels = ti.LABEL_LIST ?? [];
  const steps = ti.preprocessingFunctions ?? [];
  const labelled = options.labelled !== false;
  const sampleSize = height * width * channels;
  const good = [];
  for (const item of items) {
    const name = item.file.name;
    let decoded;
    try {
      decoded = await decode(item.file);
    } catch {
      problems.push({ file: name, message: 'could not be read as an image (is it a PNG or JPEG file?); skipped.' });
      continue;
    }
    const converted = toChannels(decoded, channels);
    if (converted.message) { problems.push({ file: name, message: `${converted.message} Skipped.` }); continue; }
    let sample = { data: converted.data, height: decoded.height, width: decoded.width, channels };
    try {
      sample = applyPreprocessing('image', steps, sample, {}, task);
    } catch (error) {
      problems.push({ file: name, message: `preprocessing failed: ${error.message}` });
      continue;
    }
    if (sample.height !== height || sample.width !== width || sample.data.length !== sampleSize) {
      problems.push({
        file: name,
        message: `is ${decoded.width}x${decoded.height} pixels; this task needs ${width}x${height} and does not resize images. Resize it first. Skipped.`,
      });
      continue;
    }
    good.push({ file: item.file, label: item.label, data: sample.data });
  }
  const count = good.length;
  if (!count) problems.push({ file: '', message: 'No usable images: nothing to train on.' });
  const order = sampleOrder(count, options);
  const x = new Float32Array(count * sampleSize);
  const y = labelled ? new Int32Array(count) : null;
  const counts = {};
  if (labelled) for (const label of labels) counts[label] = 0;
  order.forEach((from, i) => {
    x.set(good[from].data, i * sampleSize);
    if (y) { y[i] = labels.indexOf(good[from].label); counts[good[from].label] += 1; }
  });
  if (!labelled) counts.images = count;
  const images = [];
  for (const from of order.slice(0, PREVIEW_IMAGES)) {
    const { file, label } = good[from];
    images.push({ file: file.name, label: labelled ? label : null, url: file.size < 2e6 ? await dataUrl(file) : null });
  }
  return {
    dataType: 'image', count, x, xShape: [height, width, channels], y, yShape: [], labels: labelled ? labels : [],
    counts, problems, preview: { images }, state: {}, files: order.map((i) => good[i].file.name),
    trainCount: labelled ? trainingCount(count, options.validationSplit ?? ti.validationSplit ?? 0) : count,
  };
}

/**
 * Load images given per label ("group" mode): {label: File[]}.
 * @param {Record<string, File[]>} groups
 * @param {object} task
 * @param {ImageDecoder} [decode]
 * @param {{seed?: number, validationSplit?: number}} [options]
 * @returns {Promise<object>} LoadedData
 */
export async function loadImagesByGroup(groups, task, decode = decodeImageInBrowser, options = {}) {
  const labels = info(task).LABEL_LIST ?? [];
  const problems = stepProblems('image', info(task).preprocessingFunctions, '');
  const items = [];
  for (const [label, files] of Object.entries(groups ?? {})) {
    for (const file of files ?? []) {
      if (!labels.includes(label)) {
        problems.push({ file: file.name, message: `has the label "${label}", which is not one of this task's labels (${listed(labels)}); skipped.` });
      } else {
        items.push({ file, label });
      }
    }
  }
  return buildImageData(items, task, decode, problems, options);
}

/**
 * Load images labelled by a CSV of "filename,label" lines (a header row is optional).
 * @param {File} csvFile
 * @param {File[]} images
 * @param {object} task
 * @param {ImageDecoder} [decode]
 * @param {{seed?: number, validationSplit?: number}} [options]
 * @returns {Promise<object>} LoadedData
 */
export async function loadImagesWithCsv(csvFile, images, task, decode = decodeImageInBrowser, options = {}) {
  const labels = info(task).LABEL_LIST ?? [];
  const csvName = csvFile?.name ?? 'labels CSV';
  const problems = stepProblems('image', info(task).preprocessingFunctions, csvName);
  const text = csvFile ? await csvFile.text() : '';
  if (!text.trim()) {
    return emptyData('image', [...problems, { file: csvName, message: 'The labels file is empty: it needs one "filename,label" line per image.' }]);
  }
  let rows = parseCsv(text).data.map((row) => row.map((cell) => String(cell).trim()));
  const first = rows[0] ?? [];
  if (['filename', 'file', 'name', 'image', 'path'].includes((first[0] ?? '').toLowerCase()) && !labels.includes(first[1])) {
    rows = rows.slice(1);
  }
  const byName = new Map();
  for (const file of images ?? []) byName.set(baseName(file.name), file);
  const used = new Set();
  const items = [];
  const missing = [];
  rows.forEach((row, i) => {
    const [path, label] = row;
    if (!path) return;
    if (row.length < 2 || !label) {
      problems.push({ file: path, message: `line ${i + 1} of ${csvName} has no label; expected "filename,label". Skipped.` });
      return;
    }
    const name = baseName(path);
    const file = byName.get(name);
    if (!file) { missing.push(name); return; }
    if (used.has(name)) { problems.push({ file: name, message: `is listed more than once in ${csvName}; the first line is used.` }); return; }
    used.add(name);
    if (!labels.includes(label)) {
      problems.push({ file: name, message: `has the label "${label}" in ${csvName}, which is not one of this task's labels (${listed(labels)}); skipped.` });
      return;
    }
    items.push({ file, label });
  });
  for (const name of missing) {
    problems.push({ file: name, message: `is listed in ${csvName} but was not among the selected images. Add it, or remove its line.` });
  }
  for (const [name] of byName) {
    if (!used.has(name) && !missing.includes(name) && IMAGE_EXTENSIONS.test(name)) {
      problems.push({ file: name, message: `is not listed in ${csvName}, so it has no label; skipped.` });
    }
  }
  return buildImageData(items, task, decode, problems, options);
}

/**
 * Load unlabelled images (prediction).
 * @param {File[]} images
 * @param {object} task
 * @param {ImageDecoder} [decode]
 * @param {{shuffle?: boolean}} [options]
 * @returns {Promise<object>} LoadedData with y null
 */
export async function loadUnlabelledImages(images, task, decode = decodeImageInBrowser, options = {}) {
  const problems = stepProblems('image', info(task).preprocessingFunctions, '');
  return buildImageData((images ?? []).map((file) => ({ file, label: null })), task, decode, problems,
    { ...options, labelled: false });
}

// ---------------------------------------------------------------------------------------------
// Text

/**
 * Load text files: tokenized (task's tokenizer) and cut into windows of maxSequenceLength + 1 ids;
 * x holds the tokens [count, L] (Int32Array), y the next-token targets (Float32Array, yShape [L, 1]).
 * @param {File[]} files
 * @param {object} task
 * @param {{seed?: number, validationSplit?: number}} [options]
 * @returns {Promise<object>} LoadedData
 */
export async function loadText(files, task, options = {}) {
  const ti = info(task);
  const length = ti.maxSequenceLength ?? 128;
  const declared = ti.preprocessingFunctions ?? [];
  const problems = stepProblems('text', declared, '');
  // Tokenizing and windowing are what the model needs: they run even if not declared.
  const steps = [...new Set(['tokenize', ...declared, 'pad'])];
  const windows = [];
  const counts = {};
  const lines = [];
  for (const file of files ?? []) {
    const name = file.name;
    let text;
    try {
      text = await file.text();
    } catch {
      problems.push({ file: name, message: 'could not be read; skipped.' });
      continue;
    }
    if (!text.trim()) { problems.push({ file: name, message: 'is empty: a UTF-8 text file with some text is needed. Skipped.' }); continue; }
    if (text.includes('\u0000')) { problems.push({ file: name, message: 'does not look like a text file (it contains binary data); skipped.' }); continue; }
    let out;
    try {
      out = applyPreprocessing('text', steps, { text }, {}, task);
    } catch (error) {
      problems.push({ file: name, message: `preprocessing failed: ${error.message}` });
      continue;
    }
    const mine = out.windows.filter((w) => w.length === length + 1);
    counts[name] = mine.length;
    for (const w of mine) windows.push({ ids: w, file: name });
    for (const line of text.split(/\r?\n/)) {
      if (lines.length >= PREVIEW_LINES) break;
      if (line.trim()) lines.push({ file: name, line: line.length > 200 ? `${line.slice(0, 200)}…` : line });
    }
  }
  const count = windows.length;
  if (!count) problems.push({ file: '', message: 'No usable text: nothing to train on.' });
  const order = sampleOrder(count, options);
  const x = new Int32Array(count * length);
  const y = new Float32Array(count * length);
  order.forEach((from, i) => {
    const ids = windows[from].ids;
    x.set(ids.slice(0, length), i * length);
    y.set(ids.slice(1), i * length);
  });
  return {
    dataType: 'text', count, x, xShape: [length], y, yShape: [length, 1], labels: [], counts, problems,
    preview: { lines }, state: {}, files: order.map((i) => windows[i].file),
    trainCount: trainingCount(count, options.validationSplit ?? ti.validationSplit ?? 0),
  };
}

// ---------------------------------------------------------------------------------------------
// Tensors

/**
 * The three inputs of the GPT model for a batch of tokens (see tasks/default_tasks/wikitext.py):
 * [tokens, positions (int32 [batch, L], 0..L-1), causal mask (float32 [batch, L, L], 0 on and
 * below the diagonal, -1e9 above)]. The caller disposes positions and mask (tokens stays theirs).
 * @param {import('@tensorflow/tfjs').Tensor} tokensTensor int32 [batch, L]
 * @returns {import('@tensorflow/tfjs').Tensor[]}
 */
export function textModelInputs(tokensTensor) {
  const tf = globalThis.tf;
  const [batch, length] = tokensTensor.shape;
  const positions = tf.tidy(() => tf.tile(tf.range(0, length, 1, 'int32').expandDims(0), [batch, 1]));
  const one = new Float32Array(length * length);
  for (let r = 0; r < length; r++) one.fill(-1e9, r * length + r + 1, (r + 1) * length);
  const mask = tf.tidy(() => tf.tile(tf.tensor3d(one, [1, length, length]), [batch, 1, 1]));
  return [tokensTensor, positions, mask];
}

/**
 * The model input(s) for the samples `indices` of `data` (all when omitted): a tensor, or for text
 * the three GPT inputs. The caller disposes what it gets.
 * @param {object} data LoadedData
 * @param {number[]} [indices]
 * @returns {import('@tensorflow/tfjs').Tensor|import('@tensorflow/tfjs').Tensor[]}
 */
export function inputTensors(data, indices = undefined) {
  const tf = globalThis.tf;
  const size = data.xShape.reduce((a, b) => a * b, 1);
  const picked = indices ?? Array.from({ length: data.count }, (_, i) => i);
  const flat = data.dataType === 'text' ? new Int32Array(picked.length * size) : new Float32Array(picked.length * size);
  picked.forEach((index, i) => flat.set(data.x.subarray(index * size, (index + 1) * size), i * size));
  const x = tf.tensor(flat, [picked.length, ...data.xShape], data.dataType === 'text' ? 'int32' : 'float32');
  return data.dataType === 'text' ? textModelInputs(x) : x;
}
