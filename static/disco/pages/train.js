/**
 * The training page (/tasks/<id>/train/): connect data -> train -> evaluate -> keep the model.
 * Wires data.js (loaders), training_engine.js (training, in a worker: this thread only draws),
 * evaluate.js and model_library.js to the DOM. Backend choice is backends.js's, the worker's
 * messages train_worker_protocol.js's.
 *
 * For tests and the curious, `window.discoTrain` exposes the page's state: {state, engine ('worker' or
 * 'page'), backend, trainedOn (the backend the last training ran on, as TF.js said at its end), probe (the
 * backend probe's figures), threads (wasm's), batches (each batch's
 * {epoch, batch, started, ended} times), stopAt (when Stop was pressed),
 * history (epoch logs), memory (tf.memory().numTensors after each epoch), data (a summary),
 * error, evaluation, savedKey} and `window.discoCharts.series` the plotted numbers; in
 * collaborative training `window.discoFederated` holds {events, rounds, participantId}.
 * @module pages/train
 */

import { evaluate, predict, toCsv } from '../evaluate.js';
import { deleteModel, downloadModel, listModels, loadModel, modelMetadata, saveModel } from '../model_library.js';
import { TrainingCharts } from '../charts.js';
import { compileFromTrainingConfig, ensureCompiled, explainError } from '../trainer.js';
import {
  backendReason, describeFigures, forcedWasmThreads, parameterCount, startWasm, webgpuSelectable,
} from '../backends.js';
import { PageEngine, WorkerEngine } from '../training_engine.js';
import {
  DataConnector, describeData, downloadText, el, loadConnected, renderPreview, renderProblems,
} from '../trainer_ui.js';
import { renderEvaluation, renderPredictions } from '../evaluate_ui.js';
import { renderLibrary } from '../library_ui.js';
import { collaboration } from './train_collab.js';

const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const app = $('train-app');
const task = JSON.parse($('task-json').textContent);
const taskId = task.id;
const modelUrl = app.dataset.modelUrl;
const tf = globalThis.tf;

const page = {
  state: 'loading', engine: null, backend: null, trainedOn: null, probe: null, threads: null, batches: [], stopAt: null, history: [], memory: [], data: null, error: null, evaluation: null,
  predictions: null, savedKey: null, library: [],
};
globalThis.discoTrain = page;
/** The model's weights as plain arrays (for tests comparing participants). */
page.weights = () => (model ? model.weights.map((w) => ({ name: w.originalName ?? w.name, values: Array.from(w.read().dataSync()) })) : []);

/** @type {any} */ let model = null;
/** @type {any} */ let trainingConfig = null;
/** @type {any} */ let trainData = null;
/** @type {WorkerEngine|PageEngine|null} */ let engine = null;
let training = false;
let trained = false;
const charts = new TrainingCharts(/** @type {any} */ ($('loss-chart')), /** @type {any} */ ($('acc-chart')));

// ------------------------------------------------------------------------------------------
// Status helpers

function log(message) {
  const line = `${new Date().toLocaleTimeString()}  ${message}\n`;
  $('train-log').textContent += line;
}

function setStatus(id, text, kind = '') {
  const node = $(id);
  node.textContent = text;
  node.dataset.kind = kind;
}

function showError(error) {
  const box = $('train-error');
  if (!error) { box.hidden = true; box.replaceChildren(); page.error = null; return; }
  page.error = { message: error.message, advice: error.advice || '' };
  box.replaceChildren(el('strong', { text: error.message }), el('br'), document.createTextNode(error.advice || ''));
  box.hidden = false;
}

function blocking(data) {
  return !data || !data.count || !data.y || (data.problems || []).length > 0;
}

function updateButtons() {
  const running = page.state === 'training';
  const canTrain = !!model && !blocking(trainData) && !running && !readingTrain;
  /** @type {HTMLButtonElement} */ ($('start-btn')).disabled = !canTrain;
  /** @type {HTMLButtonElement} */ ($('stop-btn')).disabled = !running;
  /** @type {HTMLButtonElement} */ ($('backend-select')).disabled = running || !model;
  /** @type {HTMLButtonElement} */ ($('save-btn')).disabled = !trained || running;
  /** @type {HTMLButtonElement} */ ($('use-sample')).disabled = running;
  $('start-btn').textContent = trained ? 'Train again' : 'Start training';
  updateEvalButtons();
  for (const item of document.querySelectorAll('.flow-nav li')) {
    const step = item.getAttribute('data-step');
    const done = (step === 'connect' && trainData && !blocking(trainData)) || (step === 'train' && trained)
      || (step === 'evaluate' && page.evaluation) || (step === 'library' && page.library.length);
    item.classList.toggle('done', !!done);
  }
}

// ------------------------------------------------------------------------------------------
// 0. The model

async function loadTaskModel() {
  if (!modelUrl) {
    page.state = 'no-model';
    setStatus('backend-info', 'This task has no model yet.');
    return;
  }
  try {
    const query = new URLSearchParams(globalThis.location.search);
    const inPage = query.get('worker') === 'off' || typeof Worker !== 'function';
    const probeOptions = { probeBudgetMs: probeBudget(query.get('probe_ms')) };
    // This thread's copy of the model is read and written (sessions, library) and runs evaluation and
    // predictions: on wasm (XNNPACK's fast inference, no WebGL context), else on the cpu backend.
    // One request: the artifacts hold modelTopology.training_config, which TF.js does not apply. Loaded
    // before wasm starts: a small model gets one wasm thread (backends.js, wasmThreadsChoice).
    const artifacts = await tf.io.http(modelUrl).load();
    const size = { parameters: parameterCount(artifacts.weightSpecs), forced: forcedWasmThreads() };
    probeOptions.wasm = size;
    if (!inPage && !(await startWasm(globalThis, size).catch(() => 0))) await tf.setBackend('cpu');
    trainingConfig = artifacts.modelTopology?.training_config ?? null;
    model = await tf.loadLayersModel(tf.io.fromMemory(artifacts));
    compileModel(model);
    setStatus('backend-info', 'Measuring which backend trains this model fastest…');
    let facts = null;
    if (!inPage) {
      try {
        engine = new WorkerEngine(model, task);
        facts = await engine.load(artifacts, trainingConfig, probeOptions);
      } catch (error) {
        log(`The training worker could not start (${error.message || error}); training in this page instead.`);
        if (engine) engine.client.terminate();
        engine = null;
      }
    }
    if (!engine) {
      engine = new PageEngine(model, task);
      facts = await engine.load(artifacts, compileModel, probeOptions);
    }
    page.engine = engine.kind;
    page.probe = facts.probe;
    // WebGPU is offered only where the probe found an adapter and the backend started.
    const webgpuOption = /** @type {HTMLOptionElement} */ (document.querySelector('#backend-select option[value=webgpu]'));
    webgpuOption.hidden = webgpuOption.disabled = !webgpuSelectable(page.probe.figures);
    log(`Backend probe (${Math.round(page.probe.ms ?? 0)} ms): ${page.probe.error ? `failed (${page.probe.error})` : facts.probeText}.`);
    showBackend(facts, true);
    page.state = 'ready';
    log(`Model loaded: ${model.countParams().toLocaleString()} parameters.`);
  } catch (error) {
    page.state = 'error';
    showError(explainError(error, tf.getBackend()));
    setStatus('backend-info', 'The model could not be loaded.');
  }
  updateButtons();
}

/**
 * The probe's time from `?probe_ms=` (e.g. to measure a GPU backend whose shader compilation takes longer
 * than the default second): a number of milliseconds up to a minute, else undefined (the default).
 * @param {string|null} value
 * @returns {number|undefined}
 */
function probeBudget(value) {
  const ms = Number(value);
  return value && Number.isFinite(ms) && ms > 0 ? Math.min(ms, 60_000) : undefined;
}

function compileModel(m) {
  if (!(trainingConfig && compileFromTrainingConfig(m, trainingConfig))) ensureCompiled(m, task);
}

/** Why the automatic choice is what it is, with the probe's figures. */
function autoReason(active) {
  const probe = page.probe;
  if (probe && probe.measured && probe.backend === active) {
    return `the fastest measured here (one training batch: ${describeFigures(probe.figures)}).`;
  }
  const figures = probe && probe.figures.length ? ` Measured: ${describeFigures(probe.figures)}.` : '';
  return `${backendReason(model, active)}${figures}`;
}

/** Show the backend in use (facts from the engine: backend, threads, threadsText). */
function showBackend(facts, automatic) {
  const active = facts.backend;
  page.backend = active;
  page.threads = facts.threads;
  const reason = automatic ? autoReason(active) : `${active}: chosen by you.`;
  const where = engine && engine.kind === 'page' ? ' Training runs in this page (no worker).' : '';
  setStatus('backend-info', `Backend: ${active} — ${reason}${facts.threadsText ? ` (${facts.threadsText}.)` : ''}${where}`);
  /** @type {HTMLSelectElement} */ ($('backend-select')).value = automatic ? 'auto' : active;
  log(`Backend ${active}${automatic ? ' (automatic)' : ''}${facts.threads ? `, ${facts.threads} thread(s)` : ''}.`);
}

async function useBackend(name, automatic) {
  showBackend(await engine.setBackend(automatic ? 'auto' : name), automatic);
}

$('backend-select').addEventListener('change', async (event) => {
  const value = /** @type {HTMLSelectElement} */ (event.target).value;
  try {
    showError(null);
    await useBackend(value, value === 'auto');
  } catch (error) {
    showError(explainError(error, value));
    await useBackend('auto', true);
  }
});

// ------------------------------------------------------------------------------------------
// 1. Connect data

let loadSerial = 0;
/** True while files just connected are being read: training must not start on the previous selection. */
let readingTrain = false;
const connector = new DataConnector($('train-connector'), task, { id: 'train', onChange: onTrainData });

async function onTrainData(connection) {
  const serial = ++loadSerial;
  if (!Object.values(connection.slots).some((files) => files.length)) {
    trainData = null; page.data = null; readingTrain = false;
    setStatus('data-status', 'No data connected yet.');
    renderProblems(/** @type {any} */ ($('data-problems')), []);
    renderPreview($('data-preview'), null);
    updateButtons();
    return;
  }
  setStatus('data-status', 'Reading your files (in this browser)…', 'busy');
  readingTrain = true;
  updateButtons();
  let data;
  try {
    data = await loadConnected(connection, task);
  } catch (error) {
    data = { count: 0, problems: [{ file: 'Data', message: String(error.message || error) }] };
  }
  if (serial !== loadSerial) return; // a newer change is being read
  readingTrain = false;
  trainData = data;
  page.data = { count: data.count, trainCount: data.trainCount, counts: data.counts, problems: data.problems,
    labels: data.labels };
  renderProblems(/** @type {any} */ ($('data-problems')), data.problems || []);
  renderPreview($('data-preview'), data);
  if (data.problems && data.problems.length) {
    setStatus('data-status', `${describeData(data)} ${data.problems.length} problem${data.problems.length === 1 ? '' : 's'} `
      + 'must be fixed first: correct or remove the files listed below, then connect them again.', 'error');
  } else if (!data.count) {
    setStatus('data-status', 'No usable data yet.', 'error');
  } else {
    setStatus('data-status', `${describeData(data)} Ready to train.`, 'ok');
    setStatus('train-status', 'Ready: press “Start training”.');
  }
  updateButtons();
}

$('use-sample').addEventListener('click', async () => {
  const button = /** @type {HTMLButtonElement} */ ($('use-sample'));
  button.disabled = true;
  setStatus('data-status', 'Fetching the sample data…', 'busy');
  try {
    const response = await fetch(app.dataset.sampleUrl);
    const manifest = await response.json();
    if (!response.ok) throw new Error(manifest.detail || `HTTP ${response.status}`);
    const files = await Promise.all(manifest.files.map(async (entry) => {
      const blob = await (await fetch(entry.url)).blob();
      return { entry, file: new File([blob], entry.name, { type: blob.type }) };
    }));
    const slots = {};
    const put = (slot, file) => { (slots[slot] = slots[slot] || []).push(file); };
    for (const { entry, file } of files) {
      if (manifest.mode === 'group') put(`group:${entry.label}`, file);
      else if (manifest.mode === 'csv') put(/\.csv$/i.test(entry.name) ? 'csv' : 'images', file);
      else if (manifest.mode === 'tabular') put('csv', file);
      else put('text', file);
    }
    connector.set({ mode: manifest.mode === 'group' || manifest.mode === 'csv' ? manifest.mode
      : task.trainingInformation.dataType, slots });
    log(`Sample data: ${files.length} file(s).`);
  } catch (error) {
    setStatus('data-status', `The sample data could not be loaded: ${error.message || error}`, 'error');
  } finally {
    button.disabled = false;
  }
});

// ------------------------------------------------------------------------------------------
// 2. Train (alone, or with others: pages/train_collab.js)

const collab = collaboration({ task, getModel: () => model, samples: () => trainData.trainCount ?? trainData.count,
  log, setStatus });


$('start-btn').addEventListener('click', async () => {
  if (blocking(trainData) || !model) return;
  showError(null);
  charts.reset();
  page.history = []; page.memory = [];
  page.state = 'training';
  const info = task.trainingInformation;
  const epochs = info.epochs;
  const rounds = Math.ceil(epochs / Math.max(1, info.roundDuration || 1));
  const progress = /** @type {HTMLProgressElement} */ ($('train-progress'));
  progress.max = epochs; progress.value = 0;
  setStatus('train-status', 'Training…', 'busy');
  updateButtons();
  let federation = null;
  if (collab.active()) {
    try {
      federation = await collab.join();
    } catch (error) {
      page.state = 'error';
      showError(error);
      setStatus('train-status', `Could not join the collaborative training: ${error.message}`, 'error');
      updateButtons();
      return;
    }
  }
  page.batches = []; page.stopAt = null;
  training = true;
  const callbacks = {
    onRoundEnd: federation ? federation.onRoundEnd : undefined,
    onRoundEvaluated: federation ? federation.onRoundEvaluated : undefined,
    onLog: log,
    onBatchEnd: ({ epoch, batch, batches, samplesPerSecond, started, ended }) => {
      page.batches.push({ epoch, batch, started, ended });
      $('fact-epoch').textContent = `${epoch} / ${epochs}`;
      $('fact-round').textContent = `${Math.ceil(epoch / Math.max(1, info.roundDuration || 1))} / ${rounds}`;
      $('fact-batch').textContent = `${batch} / ${batches}`;
      $('fact-speed').textContent = Math.round(samplesPerSecond).toLocaleString();
      progress.value = epoch - 1 + batch / batches;
    },
    onEpochEnd: (epoch, logs) => {
      page.history.push(logs);
      page.memory.push(logs.numTensors);
      charts.addEpoch(logs);
    },
  };
  try {
    const result = await engine.train(trainData, callbacks);
    trained = true;
    page.trainedOn = result.backend;
    log(`Trained on the ${result.backend} backend.`);
    page.state = result.stopped ? 'stopped' : 'done';
    const last = result.history[result.history.length - 1];
    const summary = last ? ` Last epoch: loss ${last.loss.toFixed(4)}${last.val_acc != null ? `, validation accuracy ${(last.val_acc * 100).toFixed(1)} %` : ''}.` : '';
    setStatus('train-status', (result.stopped ? `Stopped after ${result.epochs} full epoch(s); the model keeps what it learned.`
      : `Training done: ${result.epochs} epochs.`) + summary + ' Evaluate it or save it below.', 'ok');
    addEvalOption('current', 'The model trained in this tab', true);
  } catch (error) {
    page.state = 'error';
    const explained = explainError(error, page.backend);
    showError(explained);
    setStatus('train-status', 'Training stopped on an error (see above).', 'error');
    log(`Error: ${explained.message}`);
  }
  if (federation) federation.session.close();
  training = false;
  updateButtons();
});

$('stop-btn').addEventListener('click', () => {
  if (training && engine) {
    page.stopAt = performance.timeOrigin + performance.now();
    engine.stop();
    setStatus('train-status', 'Stopping after the current batch…', 'busy');
  }
});

// ------------------------------------------------------------------------------------------
// 3. Evaluate and predict

let evalData = null;
let evalSerial = 0;
/** True while test files just connected are being read (Evaluate would otherwise use the previous selection). */
let readingEval = false;
const evalConnector = new DataConnector($('eval-connector'), task, { id: 'eval', allowUnlabelled: true, onChange: onEvalData });

function addEvalOption(value, text, select = false) {
  const list = /** @type {HTMLSelectElement} */ ($('eval-model'));
  for (const option of [...list.options]) if (option.value === value || option.value === '') option.remove();
  const option = el('option', { value, text });
  if (value === 'current') list.prepend(option); else list.append(option);
  if (select) list.value = value;
  updateEvalButtons();
}

function updateEvalButtons() {
  const chosen = /** @type {HTMLSelectElement} */ ($('eval-model')).value;
  const running = page.state === 'training';
  const usable = !readingEval && evalData && evalData.count > 0 && !(evalData.problems || []).length;
  /** @type {HTMLButtonElement} */ ($('evaluate-btn')).disabled = !chosen || running || !usable || !evalData.y;
  /** @type {HTMLButtonElement} */ ($('predict-btn')).disabled = !chosen || running || readingEval
    || !(evalData && evalData.count > 0);
}
$('eval-model').addEventListener('change', updateEvalButtons);

async function onEvalData(connection) {
  const serial = ++evalSerial;
  if (!Object.values(connection.slots).some((files) => files.length)) {
    evalData = null; readingEval = false;
    setStatus('eval-data-status', 'No test data connected yet.');
    renderProblems(/** @type {any} */ ($('eval-problems')), []);
    updateEvalButtons();
    return;
  }
  setStatus('eval-data-status', 'Reading your files (in this browser)…', 'busy');
  readingEval = true;
  updateEvalButtons();
  let data;
  try {
    data = await loadConnected(connection, task, { state: trainData?.state, shuffle: false });
    // A table without the output column is prediction data.
    if (connection.mode === 'tabular' && !data.count) {
      const unlabelled = await loadConnected(connection, task, { labelled: false, state: trainData?.state, shuffle: false });
      if (unlabelled.count) data = unlabelled;
    }
  } catch (error) {
    data = { count: 0, problems: [{ file: 'Data', message: String(error.message || error) }] };
  }
  if (serial !== evalSerial) return;
  readingEval = false;
  evalData = data;
  renderProblems(/** @type {any} */ ($('eval-problems')), data.problems || []);
  const labelled = data.y ? 'labelled: Evaluate or Predict' : 'without labels: Predict';
  setStatus('eval-data-status', data.count ? `${data.count} samples ${labelled}.` : 'No usable test data yet.',
    data.count && !(data.problems || []).length ? 'ok' : 'error');
  updateEvalButtons();
}

/**
 * The chosen model and the preprocessing state to test it with; `release` frees a library model.
 * @returns {Promise<{model: any, state: object, name: string, release: () => void}>}
 */
async function chosenModel() {
  const key = /** @type {HTMLSelectElement} */ ($('eval-model')).value;
  if (key === 'current') return { model, state: trainData?.state || {}, name: 'trained-model', release: () => {} };
  const saved = await loadModel(key);
  const meta = modelMetadata(saved) || {};
  return { model: saved, state: meta.state || {}, name: meta.name || 'saved-model', release: () => saved.dispose() };
}

/** Reload the test files with the chosen model's preprocessing statistics (tabular standardize etc.). */
async function dataFor(state, labelled) {
  const connection = evalConnector.connection;
  if (connection.mode !== 'tabular') return evalData;
  return loadConnected(connection, task, { state, labelled, shuffle: false });
}

$('evaluate-btn').addEventListener('click', async () => {
  setStatus('eval-status', 'Evaluating…', 'busy');
  let chosen;
  try {
    chosen = await chosenModel();
    const data = await dataFor(chosen.state, true);
    const result = await evaluate(chosen.model, data);
    page.evaluation = { accuracy: result.accuracy, loss: result.loss, confusion: result.confusion, labels: result.labels,
      count: result.count, kind: result.kind };
    renderEvaluation($('eval-results'), result, () => downloadText(`${taskId}-evaluation.csv`, toCsv(result.perSample)));
    setStatus('eval-status', `Evaluated ${result.count} samples${result.accuracy != null ? `: accuracy ${(result.accuracy * 100).toFixed(1)} %` : ''}.`, 'ok');
  } catch (error) {
    setStatus('eval-status', `Evaluation failed: ${error.message || error}`, 'error');
  } finally {
    if (chosen) chosen.release();
    updateButtons();
  }
});

$('predict-btn').addEventListener('click', async () => {
  setStatus('eval-status', 'Predicting…', 'busy');
  let chosen;
  try {
    chosen = await chosenModel();
    const data = await dataFor(chosen.state, false);
    const rows = await predict(chosen.model, data);
    page.predictions = rows.length;
    renderPredictions($('eval-results'), rows, () => downloadText(`${taskId}-predictions.csv`, toCsv(rows)));
    setStatus('eval-status', `Predicted ${rows.length} samples.`, 'ok');
  } catch (error) {
    setStatus('eval-status', `Prediction failed: ${error.message || error}`, 'error');
  } finally {
    if (chosen) chosen.release();
  }
});

// ------------------------------------------------------------------------------------------
// 4. Model library

async function refreshLibrary() {
  try {
    page.library = await listModels(taskId);
  } catch (error) {
    setStatus('library-status', `The saved models could not be listed: ${error.message || error}`, 'error');
    page.library = [];
  }
  renderLibrary(/** @type {any} */ ($('library-table').querySelector('tbody')), page.library, {
    onUse: (m) => { addEvalOption(m.key, `Saved: ${m.name}`, true); $('evaluate').scrollIntoView({ behavior: 'smooth' }); },
    onDownload: async (m) => {
      setStatus('library-status', `Downloading “${m.name}” (model.json + weights.bin)…`, 'busy');
      try {
        await downloadModel(m.key, m.name);
        setStatus('library-status', `Downloaded “${m.name}”.`, 'ok');
      } catch (error) {
        setStatus('library-status', `The download failed: ${error.message || error}`, 'error');
      }
    },
    onDelete: async (m) => {
      if (!globalThis.confirm(`Delete the saved model “${m.name}” from this browser?`)) return;
      await deleteModel(m.key);
      const list = /** @type {HTMLSelectElement} */ ($('eval-model'));
      for (const option of [...list.options]) if (option.value === m.key) option.remove();
      setStatus('library-status', `Deleted “${m.name}”.`, 'ok');
      await refreshLibrary();
    },
  });
  const list = /** @type {HTMLSelectElement} */ ($('eval-model'));
  for (const m of page.library) {
    if (![...list.options].some((o) => o.value === m.key)) addEvalOption(m.key, `Saved: ${m.name}`);
  }
  updateButtons();
}

$('save-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  if (!trained) return;
  const name = /** @type {HTMLInputElement} */ ($('save-name')).value.trim();
  const last = page.history[page.history.length - 1] || {};
  setStatus('library-status', 'Saving…', 'busy');
  try {
    page.savedKey = await saveModel(model, {
      taskId, name, state: trainData?.state || {},
      metrics: { loss: last.loss, acc: last.acc, val_loss: last.val_loss, val_acc: last.val_acc, epochs: page.history.length,
        backend: page.backend },
    });
    setStatus('library-status', 'Saved in this browser. It stays here after a reload; download it to keep a copy.', 'ok');
    /** @type {HTMLInputElement} */ ($('save-name')).value = '';
    await refreshLibrary();
  } catch (error) {
    setStatus('library-status', `Saving failed: ${error.message || error}. The browser may be out of storage space.`, 'error');
  }
});

// ------------------------------------------------------------------------------------------

updateButtons();
refreshLibrary();
loadTaskModel();
