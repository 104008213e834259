/**
 * Test a model on labelled LoadedData (accuracy, loss, confusion matrix, per-class precision and
 * recall, per-sample results) or predict on unlabelled LoadedData; CSV export of the rows.
 * No DOM code; TF.js is read from `globalThis.tf` (through data.js) only when a model runs.
 *
 * Result of evaluate():
 *   {kind: 'classes'|'binary'|'regression'|'text', accuracy, loss, confusion: number[][] (rows: true
 *    label, columns: predicted), labels, perClass: [{label, precision, recall, f1, support}],
 *    perSample: [{index, file, label, predicted, confidence}], count}
 * For text (next-token prediction) accuracy and loss are over the positions whose input is not
 * padding; confusion is [] and perSample rows are {index, file, accuracy, loss}.
 * For regression, accuracy is null and loss is the mean squared error.
 * @module evaluate
 */

import { inputTensors } from './data.js';
import { PAD_ID } from './tokenizer.js';

const EPSILON = 1e-7;

/**
 * What the outputs mean for this data.
 * @param {object} data LoadedData
 * @param {number} outputSize values per sample in the model's output
 * @returns {'classes'|'binary'|'regression'|'text'}
 */
export function outputKind(data, outputSize) {
  if (data.dataType === 'text') return 'text';
  if (data.labels?.length) return 'classes';
  if (outputSize === 1 && (!data.y || data.y.every((v) => v === 0 || v === 1))) return 'binary';
  return 'regression';
}

/**
 * Run `model` over `data` in batches; `visit(outputs, outputSize, start, count)` sees each batch's
 * outputs as a Float32Array. Tensors are disposed batch by batch.
 */
async function forEachBatch(model, data, batchSize, visit) {
  for (let start = 0; start < data.count; start += batchSize) {
    const indices = Array.from({ length: Math.min(batchSize, data.count - start) }, (_, i) => start + i);
    const inputs = inputTensors(data, indices);
    const output = model.predict(inputs);
    try {
      const values = /** @type {Float32Array} */ (await output.data());
      visit(values, values.length / indices.length, start, indices.length);
    } finally {
      output.dispose();
      for (const t of Array.isArray(inputs) ? inputs : [inputs]) t.dispose();
    }
  }
}

function argmax(values, offset, size) {
  let best = 0;
  for (let k = 1; k < size; k++) if (values[offset + k] > values[offset + best]) best = k;
  return best;
}

/**
 * Score fixed model outputs (no TF.js needed): the pure part of evaluate() for classes, binary and
 * regression outputs.
 * @param {object} data labelled LoadedData
 * @param {Float32Array|number[]} outputs count * outputSize values (probabilities for classes)
 * @param {number} outputSize
 * @returns {object} the evaluation result (see the module comment)
 */
export function scorePredictions(data, outputs, outputSize) {
  const kind = outputKind(data, outputSize);
  const files = data.files ?? [];
  const perSample = [];
  if (kind === 'regression') {
    let squared = 0;
    for (let i = 0; i < data.count; i++) {
      const predicted = Array.from(outputs.slice(i * outputSize, (i + 1) * outputSize));
      const target = Array.from(data.y.slice(i * outputSize, (i + 1) * outputSize));
      predicted.forEach((p, k) => { squared += (p - target[k]) ** 2; });
      perSample.push({ index: i, file: files[i], label: target.join(' '), predicted: predicted.join(' '), confidence: null });
    }
    const loss = data.count ? squared / (data.count * outputSize) : null;
    return { kind, accuracy: null, loss, confusion: [], labels: [], perClass: [], perSample, count: data.count };
  }
  const labels = kind === 'classes' ? data.labels : ['0', '1'];
  const k = labels.length;
  const confusion = Array.from({ length: k }, () => new Array(k).fill(0));
  let correct = 0;
  let lossSum = 0;
  for (let i = 0; i < data.count; i++) {
    const truth = kind === 'classes' ? data.y[i] : Math.round(data.y[i]);
    let predicted;
    let confidence;
    let pTruth;
    if (outputSize === 1) {
      // One sigmoid output: the probability of the second class.
      const p = outputs[i];
      predicted = p >= 0.5 ? 1 : 0;
      confidence = predicted ? p : 1 - p;
      pTruth = truth ? p : 1 - p;
    } else {
      predicted = argmax(outputs, i * outputSize, outputSize);
      confidence = outputs[i * outputSize + predicted];
      pTruth = outputs[i * outputSize + truth];
    }
    lossSum += -Math.log(Math.min(Math.max(pTruth, EPSILON), 1));
    if (predicted === truth) correct += 1;
    if (truth < k && predicted < k) confusion[truth][predicted] += 1;
    perSample.push({ index: i, file: files[i], label: labels[truth], predicted: labels[predicted] ?? String(predicted), confidence });
  }
  const perClass = labels.map((label, c) => {
    const tp = confusion[c][c];
    const support = confusion[c].reduce((a, b) => a + b, 0);
    const predictedAs = confusion.reduce((a, row) => a + row[c], 0);
    const precision = predictedAs ? tp / predictedAs : 0;
    const recall = support ? tp / support : 0;
    const f1 = precision + recall ? (2 * precision * recall) / (precision + recall) : 0;
    return { label, precision, recall, f1, support };
  });
  return {
    kind, accuracy: data.count ? correct / data.count : null, loss: data.count ? lossSum / data.count : null,
    confusion, labels, perClass, perSample, count: data.count,
  };
}

/**
 * Evaluate `model` on labelled `data`.
 * @param {import('@tensorflow/tfjs').LayersModel} model
 * @param {object} data LoadedData with y
 * @param {{batchSize?: number}} [options]
 * @returns {Promise<object>}
 */
export async function evaluate(model, data, options = {}) {
  if (!data?.y) throw new Error('These data have no labels: use predict() for unlabelled data.');
  if (data.dataType === 'text') return evaluateText(model, data, options.batchSize ?? 8);
  const chunks = [];
  let size = 1;
  await forEachBatch(model, data, options.batchSize ?? 64, (values, outputSize) => { chunks.push(values); size = outputSize; });
  const outputs = new Float32Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const c of chunks) { outputs.set(c, offset); offset += c.length; }
  return scorePredictions(data, outputs, size);
}

async function evaluateText(model, data, batchSize) {
  const length = data.xShape[0];
  const perSample = [];
  let correct = 0;
  let counted = 0;
  let lossSum = 0;
  await forEachBatch(model, data, batchSize, (values, outputSize, start, n) => {
    const vocab = outputSize / length;
    for (let s = 0; s < n; s++) {
      const i = start + s;
      let right = 0; let total = 0; let loss = 0;
      for (let t = 0; t < length; t++) {
        if (data.x[i * length + t] === PAD_ID) continue;
        const target = data.y[i * length + t];
        const offset = (s * length + t) * vocab;
        if (argmax(values, offset, vocab) === target) right += 1;
        loss += -Math.log(Math.max(values[offset + target], EPSILON));
        total += 1;
      }
      correct += right; counted += total; lossSum += loss;
      perSample.push({ index: i, file: data.files?.[i], accuracy: total ? right / total : null, loss: total ? loss / total : null });
    }
  });
  return {
    kind: 'text', accuracy: counted ? correct / counted : null, loss: counted ? lossSum / counted : null,
    confusion: [], labels: [], perClass: [], perSample, count: data.count,
  };
}

/**
 * Predict on `data` (labels, if any, are ignored).
 * Rows: classes {index, file, predicted, confidence}; one output {index, file, predicted (0/1 when the
 * task has no labels and the output is a probability), probability}; several outputs
 * {index, file, predicted: "v1 v2 ..."}; text {index, file, nextToken: the most likely next byte id}.
 * @param {import('@tensorflow/tfjs').LayersModel} model
 * @param {object} data LoadedData
 * @param {{batchSize?: number}} [options]
 * @returns {Promise<object[]>}
 */
export async function predict(model, data, options = {}) {
  const rows = [];
  const files = data.files ?? [];
  const labels = data.labels ?? [];
  const batchSize = options.batchSize ?? (data.dataType === 'text' ? 8 : 64);
  await forEachBatch(model, data, batchSize, (values, outputSize, start, n) => {
    for (let s = 0; s < n; s++) {
      const i = start + s;
      const base = { index: i, file: files[i] };
      if (data.dataType === 'text') {
        const length = data.xShape[0];
        const vocab = outputSize / length;
        rows.push({ ...base, nextToken: argmax(values, s * outputSize + (length - 1) * vocab, vocab) });
      } else if (labels.length && outputSize > 1) {
        const best = argmax(values, s * outputSize, outputSize);
        rows.push({ ...base, predicted: labels[best] ?? String(best), confidence: values[s * outputSize + best] });
      } else if (outputSize === 1) {
        const p = values[s];
        rows.push({ ...base, predicted: labels.length ? labels[p >= 0.5 ? 1 : 0] : (p >= 0.5 ? 1 : 0), probability: p });
      } else {
        rows.push({ ...base, predicted: Array.from(values.slice(s * outputSize, (s + 1) * outputSize)).join(' ') });
      }
    }
  });
  return rows;
}

function csvCell(value) {
  if (value === null || value === undefined) return '';
  const text = typeof value === 'number' && !Number.isInteger(value) ? String(Number(value.toPrecision(6))) : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/**
 * Rows of objects as CSV text: a header of every key (in first-seen order), one line per row.
 * @param {object[]} rows
 * @returns {string}
 */
export function toCsv(rows) {
  const columns = [];
  for (const row of rows) for (const key of Object.keys(row)) if (!columns.includes(key)) columns.push(key);
  const lines = [columns.map(csvCell).join(',')];
  for (const row of rows) lines.push(columns.map((c) => csvCell(row[c])).join(','));
  return `${lines.join('\n')}\n`;
}
