/**
 * Where the training page's model trains: in a dedicated worker (`WorkerEngine`, the normal case, so
 * the page's thread only draws) or, where no worker can start, in the page itself (`PageEngine`).
 * Both have one interface, so pages/train.js does not care which runs.
 *
 * The page always keeps its own copy of the model (the "mirror"): the collaborative sessions
 * (federated.js, decentralized.js), evaluation and the model library read and write that copy, as
 * before. The worker's model and the mirror meet at three points: before training (the mirror's
 * weights go to the worker, a session may have changed them), at the end of every round (the
 * worker's weights come to the mirror, the session runs, the mirror's go back) and at the end of
 * training (the worker's weights come to the mirror).
 *
 * No DOM code.
 * @module training_engine
 */

import { chooseBackend, describeFigures, probeBackends, setBackend, startWasm, wasmThreadsInfo } from './backends.js';
import { textModelInputs } from './data.js';
import { Trainer } from './trainer.js';
import {
  TrainWorkerClient, applyWeightEntries, dataForWorker, errorMessage, weightBuffers, weightEntries,
} from './train_worker_protocol.js';

/** The training worker's script (a classic worker; see train_worker.js for why). */
export const WORKER_URL = '/static/disco/train_worker.js';

/**
 * @typedef {object} BackendFacts
 * @property {string} backend the backend in use
 * @property {number|null} threads the wasm backend's threads (null for the others)
 * @property {string|null} threadsText the same in words
 */

/**
 * @typedef {object} EngineCallbacks
 * @property {(info: any) => void} [onBatchEnd]
 * @property {(epoch: number, logs: any) => void} [onEpochEnd]
 * @property {(text: string) => void} [onLog]
 * @property {(round: number, model: any) => Promise<void>} [onRoundEnd] runs on the page with the mirror model
 * @property {(round: number, scores: {loss: number, acc: number|null, samples: number}) => Promise<void>}
 *   [onRoundEvaluated] the round's global model scored on the validation split (in the worker, or the page)
 */

/** Trains in a dedicated worker; the page's thread only receives progress. */
export class WorkerEngine {
  /**
   * @param {any} mirror the page's copy of the model
   * @param {any} task the task JSON
   * @param {Worker} [worker] (default: a new worker of WORKER_URL)
   */
  constructor(mirror, task, worker = new Worker(WORKER_URL)) {
    this.kind = 'worker';
    this.mirror = mirror;
    this.task = task;
    /** @type {EngineCallbacks} */
    this.callbacks = {};
    this.fatal = null;
    /** @type {Promise<void>[]} evaluations being reported: train() settles them before it returns */
    this.reports = [];
    this.client = new TrainWorkerClient(worker, (event) => this.onEvent(event));
  }

  /**
   * Load the model into the worker, probe the backends there and start the fastest.
   * @param {any} artifacts the model's artifacts (model.json + weights), as tf.io.http(...).load() gives them
   * @param {any} trainingConfig modelTopology.training_config
   * @param {{probeBudgetMs?: number, wasm?: {parameters?: number, forced?: number|null}}} [options] the probe's time
   *   (default: backends.js's PROBE_BUDGET_MS); wasm: the model's size and a forced thread count (startWasm)
   * @returns {Promise<BackendFacts & {probe: any, probeText: string}>}
   */
  async load(artifacts, trainingConfig, options = {}) {
    // Copied by postMessage (weightData may be one ArrayBuffer or a list of them): the page keeps its own.
    return this.client.request('load', {
      artifacts, trainingConfig, task: this.task, probeBudgetMs: options.probeBudgetMs, wasm: options.wasm,
    });
  }

  /**
   * @param {string} name 'auto' (the probe's choice), 'webgpu', 'wasm', 'webgl' or 'cpu'
   * @returns {Promise<BackendFacts>}
   */
  setBackend(name) {
    return this.client.request('setBackend', { name });
  }

  /**
   * Train on `data` for the task's epochs; the mirror holds the trained weights afterwards.
   * @param {import('./data.js').LoadedData} data
   * @param {EngineCallbacks} callbacks
   * @returns {Promise<{stopped: boolean, epochs: number, history: any[]}>}
   */
  async train(data, callbacks) {
    this.callbacks = callbacks;
    const start = weightEntries(this.mirror);
    await this.client.request('setWeights', { weights: start }, weightBuffers(start));
    if (this.client.stopFlag) Atomics.store(this.client.stopFlag, 0, 0);
    const { data: payload, transfer } = dataForWorker(data);
    try {
      return await this.client.request('train', { data: payload, task: this.task, stopFlag: this.client.stopFlag,
        collaborative: Boolean(callbacks.onRoundEnd) }, transfer);
    } finally {
      // The last round's evaluation is sent before the page closes its session.
      await Promise.allSettled(this.reports.splice(0));
      this.callbacks = {};
      // The model keeps what it learned, stopped or failed; a worker that died has nothing to give.
      if (!this.client.broken) applyWeightEntries(this.mirror, await this.client.request('getWeights'));
    }
  }

  /** Stop after the batch running (a shared flag the worker reads after every batch, and a message). */
  stop() {
    this.client.stop().catch(() => {});
  }

  /** @param {any} event a message of the worker's without id */
  onEvent(event) {
    const cb = this.callbacks;
    if (event.event === 'batch' && cb.onBatchEnd) cb.onBatchEnd(event);
    else if (event.event === 'epoch' && cb.onEpochEnd) cb.onEpochEnd(event.epoch, event.logs);
    else if (event.event === 'log' && cb.onLog) cb.onLog(event.text);
    else if (event.event === 'round') this.roundEnd(event);
    else if (event.event === 'evaluated' && cb.onRoundEvaluated) {
      const { round, loss, acc, samples } = event;
      this.reports.push(Promise.resolve(cb.onRoundEvaluated(round, { loss, acc, samples })).catch(() => {}));
    }
    else if (event.event === 'fatal') {
      this.fatal = event.message;
      this.client.failAll(new Error(event.message));
    }
  }

  /** A round ended in the worker: run the page's session on the mirror, then send the weights back. */
  async roundEnd({ round, weights }) {
    try {
      applyWeightEntries(this.mirror, weights);
      if (this.callbacks.onRoundEnd) await this.callbacks.onRoundEnd(round, this.mirror);
      const back = weightEntries(this.mirror);
      await this.client.request('roundDone', { round, weights: back }, weightBuffers(back));
    } catch (error) {
      await this.client.request('roundDone', { round, weights: null, error: errorMessage(error) });
    }
  }
}

/** Trains in the page's own thread: the fallback where a worker cannot start. */
export class PageEngine {
  /**
   * @param {any} mirror the page's model (trained in place)
   * @param {any} task the task JSON
   */
  constructor(mirror, task) {
    this.kind = 'page';
    this.mirror = mirror;
    this.task = task;
    /** @type {Trainer|null} */
    this.trainer = null;
    this.probe = null;
  }

  /**
   * Probe the backends here and start the fastest.
   * @param {any} artifacts
   * @param {(model: any) => void} compile compiles a fresh copy as the page compiles its model
   * @param {{probeBudgetMs?: number, wasm?: {parameters?: number, forced?: number|null}}} [options] the probe's time
   *   (default: backends.js's PROBE_BUDGET_MS); wasm: the model's size and a forced thread count (startWasm)
   * @returns {Promise<BackendFacts & {probe: any, probeText: string}>}
   */
  async load(artifacts, compile, options = {}) {
    const tf = globalThis.tf;
    try { await startWasm(globalThis, options.wasm); } catch { /* the probe and the rule do without it */ }
    const fresh = async () => {
      const copy = await tf.loadLayersModel(tf.io.fromMemory(artifacts));
      compile(copy);
      return copy;
    };
    try {
      this.probe = await probeBackends(fresh, this.task.trainingInformation.batchSize || 32, { budgetMs: options.probeBudgetMs });
    } catch (error) {
      this.probe = { backend: chooseBackend(this.mirror), measured: false, figures: [], error: String(error.message || error) };
    }
    return { probe: this.probe, probeText: describeFigures(this.probe.figures), ...await this.setBackend('auto') };
  }

  /** @param {string} name @returns {Promise<BackendFacts>} */
  async setBackend(name) {
    const active = await setBackend(name === 'auto' ? this.probe.backend : name);
    const threads = active === 'wasm' ? wasmThreadsInfo() : null;
    return { backend: active, threads: threads ? threads.threads : null, threadsText: threads ? threads.text : null };
  }

  /** @param {import('./data.js').LoadedData} data @param {EngineCallbacks} callbacks */
  async train(data, callbacks) {
    const origin = performance.timeOrigin;
    this.trainer = new Trainer(this.mirror, this.task, { textInputs: textModelInputs, ...callbacks,
      onBatchEnd: callbacks.onBatchEnd
        ? (info) => callbacks.onBatchEnd({ ...info, started: origin + info.started, ended: origin + info.ended }) : undefined });
    try {
      return { ...await this.trainer.train(data), backend: globalThis.tf.getBackend() };
    } finally {
      this.trainer = null;
    }
  }

  stop() {
    if (this.trainer) this.trainer.stop();
  }
}
