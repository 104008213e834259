/**
 * The messages between the training page and its training worker (train_worker.js), and the page's
 * side of them (`TrainWorkerClient`).
 *
 * Requests carry an `id`; the worker answers each with `{id, ok: true, result}` or
 * `{id, ok: false, error: {message, advice}}`. Events carry no id: `{event: 'batch'|'epoch'|'log'|'round'|'evaluated',
 * ...}`.
 *
 * | request      | payload                                   | result                                  |
 * | ------------ | ----------------------------------------- | --------------------------------------- |
 * | `load`       | `{artifacts, trainingConfig, task, probeBudgetMs?, wasm?}` | `{params, probe, backend, threads}` |
 * | `setBackend` | `{name}` ('auto' = the probe's choice)    | `{backend, threads, threadsText}`       |
 * | `train`      | `{data, task, stopFlag?}`                 | `{stopped, epochs, history, batches}`   |
 * | `stop`       | `{}`                                      | `{}` (takes effect after the batch running) |
 * | `getWeights` | `{}`                                      | `WeightEntry[]` (buffers transferred)   |
 * | `setWeights` | `{weights: WeightEntry[]}`                | `{}`                                    |
 * | `evaluate`   | `{data}`                                  | `{loss, acc}`                           |
 * | `roundDone`  | `{round, weights: WeightEntry[]|null}`    | answers a `round` event: training goes on with these weights |
 *
 * During `train`, a `round` event `{event: 'round', round, weights}` hands the page the model's weights at
 * the end of a round; the worker waits for `roundDone` (the collaborative sessions of the main thread
 * read and write the weights in between, on the page's copy of the model). Once the worker has the weights
 * back it scores them on its validation split and posts `{event: 'evaluated', round, loss, acc, samples}` (none
 * when the split is empty), which the page reports to the server. Stop is a message, and,
 * where the page is cross-origin isolated, also a flag in a SharedArrayBuffer the worker reads after
 * every batch, so it never waits for the worker's event loop.
 *
 * Typed arrays cross as transferred ArrayBuffers (copies of the page's, which keeps its own).
 * @module train_worker_protocol
 */

/** Request names. */
export const REQUESTS = Object.freeze(['load', 'setBackend', 'train', 'stop', 'getWeights', 'setWeights', 'evaluate',
  'roundDone']);

/**
 * @typedef {object} WeightEntry
 * @property {string} name the weight's original name
 * @property {number[]} shape
 * @property {string} dtype
 * @property {ArrayBuffer} buffer its values
 */

/**
 * The weights of `model` as entries whose buffers can be transferred (each a fresh copy).
 * Reverse: `applyWeightEntries`.
 * @param {any} model a tf.LayersModel
 * @returns {WeightEntry[]}
 */
export function weightEntries(model) {
  return model.weights.map((w) => {
    const values = w.read().dataSync();
    return { name: w.originalName ?? w.name, shape: w.shape.slice(), dtype: w.dtype, buffer: values.slice().buffer };
  });
}

/**
 * Write entries made by `weightEntries` into `model`, in order; the shapes must match.
 * @param {any} model a tf.LayersModel
 * @param {WeightEntry[]} entries
 */
export function applyWeightEntries(model, entries) {
  const tf = globalThis.tf;
  if (entries.length !== model.weights.length) {
    throw new Error(`Expected ${model.weights.length} weights, got ${entries.length}.`);
  }
  const tensors = entries.map((entry, i) => {
    const expected = model.weights[i].shape;
    if (expected.join('x') !== entry.shape.join('x')) {
      throw new Error(`Weight ${entry.name}: shape ${entry.shape.join('x')} where the model has ${expected.join('x')}.`);
    }
    const Typed = entry.dtype === 'int32' ? Int32Array : Float32Array;
    return tf.tensor(new Typed(entry.buffer), entry.shape, entry.dtype);
  });
  model.setWeights(tensors);
  tensors.forEach((t) => t.dispose());
}

/**
 * The buffers of `entries`, to pass as postMessage's transfer list.
 * @param {WeightEntry[]|null} entries
 * @returns {ArrayBuffer[]}
 */
export function weightBuffers(entries) {
  return entries ? entries.map((e) => e.buffer) : [];
}

/**
 * LoadedData (data.js) made ready to post: typed arrays copied (the page keeps its own), the
 * copies' buffers listed for transfer, functions and DOM-only fields left out.
 * @param {import('./data.js').LoadedData} data
 * @returns {{data: object, transfer: ArrayBuffer[]}}
 */
export function dataForWorker(data) {
  const copy = {};
  const transfer = [];
  for (const [key, value] of Object.entries(data)) {
    if (ArrayBuffer.isView(value)) {
      const own = value.slice();
      copy[key] = own;
      transfer.push(own.buffer);
    } else if (typeof value !== 'function' && key !== 'preview' && key !== 'previews') {
      copy[key] = value;
    }
  }
  return { data: copy, transfer };
}

/** An error raised in the worker, rebuilt on the page with its advice. */
export class WorkerError extends Error {
  /** @param {{message: string, advice?: string, name?: string}} error */
  constructor(error) {
    super(error.message);
    this.name = error.name || 'TrainingError';
    this.advice = error.advice || '';
  }
}

/**
 * An error as the worker sends it.
 * @param {any} error
 * @returns {{message: string, advice: string, name: string}}
 */
export function errorMessage(error) {
  return { message: String(error && error.message ? error.message : error), advice: (error && error.advice) || '',
    name: (error && error.name) || 'Error' };
}

/** The page's side: requests that return promises, events to callbacks. */
export class TrainWorkerClient {
  /**
   * @param {Worker} worker a worker running train_worker.js
   * @param {(event: any) => void} [onEvent] called with every event message
   */
  constructor(worker, onEvent = () => {}) {
    this.worker = worker;
    this.onEvent = onEvent;
    this.nextId = 1;
    /** @type {Map<number, {resolve: Function, reject: Function}>} */
    this.pending = new Map();
    /** Set to 1 by stop(): the worker reads it after every batch (null when SharedArrayBuffer is missing). */
    this.stopFlag = typeof SharedArrayBuffer === 'function' && globalThis.crossOriginIsolated
      ? new Int32Array(new SharedArrayBuffer(4)) : null;
    worker.addEventListener('message', (message) => this.receive(message.data));
    /** @type {Error|null} set when the worker failed: later requests are refused at once */
    this.broken = null;
    worker.addEventListener('error', (event) => this.failAll(new Error(event.message || 'The training worker failed.')));
  }

  /** @param {any} message */
  receive(message) {
    if (message && message.event) {
      this.onEvent(message);
      return;
    }
    const waiting = this.pending.get(message.id);
    if (!waiting) return;
    this.pending.delete(message.id);
    if (message.ok) waiting.resolve(message.result);
    else waiting.reject(new WorkerError(message.error));
  }

  /** Refuse every pending and later request with `error` (the worker failed or was ended). @param {Error} error */
  failAll(error) {
    this.broken = error;
    for (const waiting of this.pending.values()) waiting.reject(error);
    this.pending.clear();
  }

  /**
   * Send a request; resolves with the worker's result.
   * @param {string} type one of REQUESTS
   * @param {object} [payload]
   * @param {Transferable[]} [transfer]
   * @returns {Promise<any>}
   */
  request(type, payload = {}, transfer = []) {
    if (!REQUESTS.includes(type)) throw new Error(`Unknown request ${type}.`);
    if (this.broken) return Promise.reject(this.broken);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, type, ...payload }, transfer);
    });
  }

  /** Ask training to stop after the batch that is running. */
  stop() {
    if (this.stopFlag) Atomics.store(this.stopFlag, 0, 1);
    return this.request('stop');
  }

  /** End the worker. */
  terminate() {
    this.worker.terminate();
    this.failAll(new Error('The training worker was ended.'));
  }
}
