/**
 * The training worker proper (loaded by train_worker.js once TF.js is in): holds the model being
 * trained, chooses and starts its backend, trains it with trainer.js and answers the page in the
 * protocol of train_worker_protocol.js. No DOM here; the page only draws.
 * @module train_worker_main
 */

import { textModelInputs } from './data.js';
import {
  chooseBackend, describeFigures, parameterCount, probeBackends, setBackend, startWasm, wasmThreadsInfo,
} from './backends.js';
import { Trainer, compileFromTrainingConfig, ensureCompiled, explainError, targetEncoding } from './trainer.js';
import { applyWeightEntries, errorMessage, weightBuffers, weightEntries } from './train_worker_protocol.js';

const tf = globalThis.tf;

/** The worker's state: one model, trained by one Trainer at a time. */
const state = {
  /** @type {any} */ model: null,
  /** @type {any} */ artifacts: null,
  /** @type {any} */ trainingConfig: null,
  /** @type {any} */ task: null,
  /** @type {any} */ probe: null,
  /** @type {Trainer|null} */ trainer: null,
  /** @type {{resolve: (weights: any) => void, reject: (error: Error) => void}|null} */ roundWaiter: null,
};

/** A turn of the event loop without setTimeout's 4 ms clamp: lets `stop` and `roundDone` in. */
const channel = new MessageChannel();
const ticks = [];
channel.port1.onmessage = () => { const resolve = ticks.shift(); if (resolve) resolve(); };
function nextTick() {
  return new Promise((resolve) => { ticks.push(resolve); channel.port2.postMessage(0); });
}

function compile(model) {
  if (!(state.trainingConfig && compileFromTrainingConfig(model, state.trainingConfig))) ensureCompiled(model, state.task);
}

async function freshModel() {
  const copy = await tf.loadLayersModel(tf.io.fromMemory(state.artifacts));
  compile(copy);
  return copy;
}

/** What the page shows about the backend in use. */
function backendFacts(active) {
  const threads = active === 'wasm' ? wasmThreadsInfo() : null;
  return { backend: active, threads: threads ? threads.threads : null, threadsText: threads ? threads.text : null };
}

/** @type {Record<string, (message: any, post: (message: any, transfer?: Transferable[]) => void) => Promise<any>>} */
const handlers = {
  async load({ artifacts, trainingConfig, task, probeBudgetMs, wasm }) {
    state.artifacts = artifacts;
    state.trainingConfig = trainingConfig;
    state.task = task;
    let wasmError = null;
    // A small model gets one wasm thread (backends.js, wasmThreadsChoice): its size from the weight specs.
    const size = { parameters: parameterCount(artifacts.weightSpecs), forced: wasm?.forced ?? null };
    try { await startWasm(globalThis, size); } catch (error) { wasmError = String(error.message || error); }
    if (state.model) state.model.dispose();
    state.model = await freshModel();
    try {
      state.probe = await probeBackends(freshModel, task.trainingInformation.batchSize || 32, { budgetMs: probeBudgetMs });
    } catch (error) {
      state.probe = { backend: chooseBackend(state.model), measured: false, figures: [], error: String(error.message || error) };
    }
    const active = await setBackend(state.probe.backend);
    return { params: state.model.countParams(), probe: state.probe, probeText: describeFigures(state.probe.figures),
      wasmError, ...backendFacts(active) };
  },

  async setBackend({ name }) {
    const active = await setBackend(name === 'auto' ? state.probe.backend : name);
    return backendFacts(active);
  },

  async train({ data, task, stopFlag, collaborative }, post) {
    const origin = performance.timeOrigin;
    const trainer = new Trainer(state.model, task, {
      textInputs: textModelInputs,
      yieldMs: 0,
      nextTick,
      shouldStop: stopFlag ? () => Atomics.load(stopFlag, 0) === 1 : undefined,
      onLog: (text) => post({ event: 'log', text }),
      onBatchEnd: (info) => post({ event: 'batch', ...info, started: origin + info.started, ended: origin + info.ended }),
      onEpochEnd: (epoch, logs) => post({ event: 'epoch', epoch, logs }),
      onRoundEnd: collaborative ? async (round, model) => {
        const weights = weightEntries(model);
        const back = new Promise((resolve, reject) => { state.roundWaiter = { resolve, reject }; });
        post({ event: 'round', round, weights }, weightBuffers(weights));
        const entries = await back;
        if (entries) applyWeightEntries(model, entries);
      } : undefined,
      // Federated evaluation: the round's global model scored here, on the worker's validation split.
      onRoundEvaluated: collaborative ? (round, scores) => post({ event: 'evaluated', round, ...scores }) : undefined,
    });
    state.trainer = trainer;
    try {
      // backend: the one TF.js trained on, as it says at the end (the page shows and exposes it).
      return { ...await trainer.train(data), backend: tf.getBackend() };
    } finally {
      state.trainer = null;
    }
  },

  async stop() {
    if (state.trainer) state.trainer.stop();
    return {};
  },

  async roundDone({ weights, error }) {
    const waiter = state.roundWaiter;
    state.roundWaiter = null;
    if (waiter && error) waiter.reject(Object.assign(new Error(error.message), { advice: error.advice, name: error.name }));
    else if (waiter) waiter.resolve(weights);
    return {};
  },

  async getWeights() {
    return weightEntries(state.model);
  },

  async setWeights({ weights }) {
    applyWeightEntries(state.model, weights);
    return {};
  },

  async evaluate({ data }) {
    const model = state.model;
    const trainer = new Trainer(model, state.task, { textInputs: textModelInputs });
    const indices = Int32Array.from({ length: data.count }, (_, i) => i);
    const accIndex = (model.metricsNames || []).findIndex((name) => /acc/i.test(name));
    return trainer.evaluate(data, indices, targetEncoding(model), state.task.trainingInformation.batchSize || 32, accIndex);
  },
};

/**
 * Answer the page's requests on `scope` (the worker's global), starting with those that came early.
 * @param {any} scope
 * @param {MessageEvent[]} early
 */
export function serve(scope, early = []) {
  const post = (message, transfer = []) => scope.postMessage(message, transfer);
  const handle = async ({ data: message }) => {
    const handler = handlers[message.type];
    try {
      if (!handler) throw new Error(`Unknown request ${message.type}.`);
      const result = await handler(message, post);
      const transfer = message.type === 'getWeights' ? weightBuffers(result) : [];
      post({ id: message.id, ok: true, result }, transfer);
    } catch (error) {
      const explained = message.type === 'train' ? explainError(error, tf.getBackend()) : error;
      post({ id: message.id, ok: false, error: errorMessage(explained) });
    }
  };
  scope.addEventListener('message', handle);
  early.forEach(handle);
}
