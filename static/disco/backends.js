/**
 * TF.js backends: which are usable here, which one trains a model fastest, and starting them.
 *
 * No DOM code. TF.js is the global `tf`, read when a function runs, never at import time, so Node
 * tests can provide it.
 * @module backends
 */

import { registerWasmGradientKernels } from './wasm_grad_kernels.js';

/** @returns {any} the TF.js namespace */
function tfjs() {
  const tf = globalThis.tf;
  if (!tf) throw new Error('TensorFlow.js is not loaded: include vendor/tfjs/tf.min.js before the Disco modules.');
  return tf;
}

/** Where the wasm backend's .wasm files are served. */
export const WASM_PATH = '/static/vendor/tfjs-backend-wasm/';

/**
 * Layers whose training needs a kernel the wasm backend of TF.js 4.22 lacks: convolutions need
 * Conv2DBackpropFilter, embeddings the gradient of a gather (UnsortedSegmentSum). wasm_grad_kernels.js
 * registers both (below); the check against the kernel registry stays for a page that runs without it.
 * @type {Array<[RegExp, string]>}
 */
const WASM_TRAINING_KERNELS = [[/conv/i, 'Conv2DBackpropFilter'], [/^Embedding$/, 'UnsortedSegmentSum']];

/**
 * Class names of every layer of `model`, nested models included.
 * @param {any} model a tf.LayersModel
 * @returns {string[]}
 */
export function layerClassNames(model) {
  const names = [];
  const visit = (layer) => {
    names.push(layer.getClassName());
    if (Array.isArray(layer.layers)) layer.layers.forEach(visit);
  };
  (model.layers || []).forEach(visit);
  return names;
}

/**
 * The backends TF.js has registered here: the wasm one only when its script is loaded, the webgpu one
 * when its script is loaded and the browser has `navigator.gpu` (the script registers it only then;
 * whether an adapter exists is known only by asking, see `webgpuUnavailable`).
 * @returns {string[]}
 */
export function availableBackends() {
  const tf = tfjs();
  return ['webgpu', 'wasm', 'webgl', 'cpu'].filter((name) => tf.findBackendFactory(name) != null);
}

/**
 * Keep TF.js from starting webgpu on its own. Its script registers it at priority 3, above webgl and
 * wasm (2), and TF.js starts the highest-priority backend at the first tensor made before any
 * `setBackend`; webgpu starts asynchronously, so that first tensor would throw ("The highest priority
 * backend 'webgpu' has not yet been initialized"), and where it did start it would hold a GPU device
 * nobody chose. Re-registered at priority 0, webgpu starts only when `setBackend('webgpu')` asks
 * (the probe, the selector). Runs when this module is imported; idempotent, a no-op without webgpu.
 * @param {any} [tf] (default: the global)
 * @returns {boolean} whether the priority was lowered now
 */
export function keepWebgpuExplicit(tf = globalThis.tf) {
  const registered = tf?.engine?.().registryFactory?.webgpu;
  if (!registered || registered.priority <= 0 || tf.engine().registry?.webgpu) return false;
  tf.removeBackend('webgpu');
  tf.registerBackend('webgpu', registered.factory, 0);
  return true;
}

if (globalThis.tf) keepWebgpuExplicit(globalThis.tf);

/** How long `navigator.gpu.requestAdapter()` may take before WebGPU counts as unavailable. */
export const WEBGPU_ADAPTER_TIMEOUT_MS = 2000;

/**
 * Why WebGPU cannot be used here, or null when it can: the browser must have `navigator.gpu` and
 * `navigator.gpu.requestAdapter()` must give an adapter (Chromium has `navigator.gpu` in workers too,
 * and answers null where it has no usable GPU, e.g. headless without `--enable-unsafe-webgpu`).
 * Never throws.
 * @param {any} [scope] (default: globalThis)
 * @param {number} [timeoutMs]
 * @returns {Promise<string|null>}
 */
export async function webgpuUnavailable(scope = globalThis, timeoutMs = WEBGPU_ADAPTER_TIMEOUT_MS) {
  const gpu = scope.navigator?.gpu;
  if (!gpu || typeof gpu.requestAdapter !== 'function') return 'this browser offers no WebGPU (no navigator.gpu)';
  try {
    const adapter = await withTimeout(Promise.resolve().then(() => gpu.requestAdapter()), timeoutMs, 'navigator.gpu.requestAdapter()').result;
    return adapter ? null : 'no WebGPU adapter here (navigator.gpu.requestAdapter() returned null)';
  } catch (error) {
    return `no WebGPU adapter here (navigator.gpu.requestAdapter() failed: ${error.message || error})`;
  }
}

/**
 * The backend the static rule gives when nothing could be measured: `wasm` when it can train
 * `model` (with wasm_grad_kernels.js, every predefined model), else `webgl`, `cpu` last.
 * @param {any} model a tf.LayersModel
 * @param {string[]} [available] registered backends (default: asks TF.js)
 * @returns {'wasm'|'webgl'|'cpu'}
 */
export function chooseBackend(model, available = availableBackends()) {
  const order = wasmMissingKernels(model).length ? ['webgl', 'cpu'] : ['wasm', 'webgl', 'cpu'];
  return /** @type {'wasm'|'webgl'|'cpu'} */ (order.find((name) => available.includes(name)) || 'cpu');
}

/**
 * The kernels the wasm backend would need to train `model` and does not have.
 * @param {any} model
 * @returns {string[]}
 */
export function wasmMissingKernels(model) {
  const tf = globalThis.tf;
  const names = layerClassNames(model);
  const needed = WASM_TRAINING_KERNELS.filter(([pattern]) => names.some((name) => pattern.test(name))).map(([, k]) => k);
  return needed.filter((kernel) => !(tf && tf.getKernel && tf.getKernel(kernel, 'wasm')));
}

/**
 * Why a backend choice was made, in words for the participant.
 * @param {any} model
 * @param {string} backend
 * @returns {string}
 */
export function backendReason(model, backend) {
  const missing = wasmMissingKernels(model);
  if (backend === 'wasm') return 'WebAssembly: the fastest backend for this model.';
  if (backend === 'webgpu') return 'WebGPU: the GPU through the WebGPU API.';
  if (backend === 'webgl') {
    return missing.length ? `WebGL: the WebAssembly backend cannot train this model's layers (it lacks ${missing.join(', ')}).`
      : 'WebGL (the WebAssembly backend is not available here).';
  }
  return 'CPU: the slowest backend, used because no faster one is available.';
}

/**
 * Below this many parameters the wasm backend gets one thread: a small model's operations are so short
 * that waking a second thread costs more than it saves (bench/browser_train.py, 2 cores: the titanic MLP
 * trained at 6,380 samples/s on one thread against 1,506 on two; mnist's and lus_covid's CNNs, also under
 * this size, at 2-5 times their two-thread rates). See the README.
 */
export const WASM_ONE_THREAD_BELOW = 100_000;

/**
 * On this many logical cores or fewer the wasm backend gets one thread whatever the model: the training
 * worker's second thread competes with the page, the browser and the wasm thread itself for the other
 * core. Measured on 2 cores (shared with other work): every predefined model trained faster on one
 * thread, MobileNet v1 at 5.7 samples/s against 2.7, the GPT at 6.2 against 2.3.
 */
export const WASM_ONE_THREAD_UP_TO_CORES = 2;

/**
 * The number of parameters of a model from its weight specs (model.json's `weightsManifest[].weights`,
 * or `artifacts.weightSpecs`), without loading it: the sum of the products of their shapes.
 * @param {Array<{shape: number[]}>|Array<{weights: Array<{shape: number[]}>}>} specs
 * @returns {number}
 */
export function parameterCount(specs) {
  const flat = (specs || []).flatMap((s) => (Array.isArray(s.weights) ? s.weights : [s]));
  return flat.reduce((sum, w) => sum + (w.shape || []).reduce((p, d) => p * d, 1), 0);
}

/**
 * The thread count forced by the page's address (`?wasm_threads=N`, 1 to 64), or null.
 * @param {any} [scope] (default: globalThis)
 * @returns {number|null}
 */
export function forcedWasmThreads(scope = globalThis) {
  let value = null;
  try { value = new URLSearchParams(scope.location?.search || '').get('wasm_threads'); } catch { value = null; }
  const n = Number(value);
  return value && Number.isInteger(n) && n >= 1 && n <= 64 ? n : null;
}

/**
 * How many threads the wasm backend should use, and why: 1 when the page is not cross-origin isolated
 * (the threaded SIMD build needs SharedArrayBuffer); else `forced` (or `?wasm_threads=N`) when given; else
 * 1 for a model of fewer than `WASM_ONE_THREAD_BELOW` parameters; else 1 on a machine of at most
 * `WASM_ONE_THREAD_UP_TO_CORES` logical cores; else one per logical core.
 * @param {{crossOriginIsolated?: boolean, navigator?: {hardwareConcurrency?: number}, location?: {search?: string}}} [scope]
 *   (default: globalThis)
 * @param {{parameters?: number|null, forced?: number|null}} [model] the model's parameter count, when known
 * @returns {{threads: number, reason: 'not-isolated'|'forced'|'small-model'|'few-cores'|'cores'}}
 */
export function wasmThreadsChoice(scope = globalThis, { parameters = null, forced = null } = {}) {
  if (!scope.crossOriginIsolated) return { threads: 1, reason: 'not-isolated' };
  const wanted = forced ?? forcedWasmThreads(scope);
  if (wanted) return { threads: wanted, reason: 'forced' };
  if (parameters != null && parameters < WASM_ONE_THREAD_BELOW) return { threads: 1, reason: 'small-model' };
  const cores = Math.max(1, Number(scope.navigator?.hardwareConcurrency) || 1);
  if (cores <= WASM_ONE_THREAD_UP_TO_CORES) return { threads: 1, reason: 'few-cores' };
  return { threads: cores, reason: 'cores' };
}

/**
 * How many threads the wasm backend should use (`wasmThreadsChoice`'s count).
 * @param {any} [scope] (default: globalThis)
 * @param {{parameters?: number|null, forced?: number|null}} [model]
 * @returns {number}
 */
export function wasmThreadsWanted(scope = globalThis, model = {}) {
  return wasmThreadsChoice(scope, model).threads;
}

/** Why the wasm backend got the threads it has (set by `configureWasm`). */
let wasmThreadsReason = null;

/**
 * The wasm backend's threads, in words for the participant (call once the backend is initialised).
 * @param {{crossOriginIsolated?: boolean}} [scope] (default: globalThis)
 * @returns {{threads: number, text: string}}
 */
export function wasmThreadsInfo(scope = globalThis) {
  const tf = tfjs();
  let threads = 1;
  try { threads = tf.wasm.getThreadsCount(); } catch { threads = 1; }
  const count = `${threads} thread${threads === 1 ? '' : 's'}`;
  let text = count;
  if (!scope.crossOriginIsolated) text = '1 thread: this page is not cross-origin isolated, so WebAssembly cannot use more';
  else if (wasmThreadsReason === 'small-model' && threads === 1) {
    text = `${count}: this model is small, and its operations run faster without waking a second thread`;
  } else if (wasmThreadsReason === 'few-cores' && threads === 1) {
    text = `${count}: this device has ${WASM_ONE_THREAD_UP_TO_CORES} cores or fewer, and a second thread would compete with the page for them`;
  } else if (wasmThreadsReason === 'forced') text = `${count}, as the address asks (wasm_threads)`;
  return { threads, text };
}

/**
 * Switch TF.js to `name` (webgpu, wasm, webgl or cpu) and wait until it is ready.
 * Tensors made on the previous backend move over when they are next used.
 * @param {string} name
 * @returns {Promise<string>} the backend in use afterwards
 */
export async function setBackend(name) {
  const tf = tfjs();
  if (name === 'wasm') configureWasm();
  const ok = await tf.setBackend(name);
  if (!ok) throw new Error(`The ${name} backend could not start in this browser; choose another one.`);
  await tf.ready();
  return tf.getBackend();
}

/**
 * Start the wasm backend (when its script is loaded) with `wasmThreadsWanted()` threads, and leave
 * TF.js on it. Call it before TF.js runs anything else.
 *
 * TF.js 4.22 caps the threads at `navigator.hardwareConcurrency / 2` (its C++ assumes two logical
 * cores per physical one, `emscripten_num_logical_cores() / 2`), read once as the module starts: a
 * 2-core machine would get 1 thread whatever `setThreadsCount` says. So while the module starts, and
 * only then, `navigator.hardwareConcurrency` reads twice the threads wanted; the real value is back
 * (the own property removed) as soon as the backend is up.
 * @param {any} [scope] (default: globalThis)
 * @param {{parameters?: number|null, forced?: number|null}} [model] the model's parameter count (see
 *   `parameterCount`) and a forced thread count: a small model gets one thread (`wasmThreadsChoice`)
 * @returns {Promise<number>} the wasm backend's threads (0 when it is not loaded or did not start)
 */
export async function startWasm(scope = globalThis, model = {}) {
  const tf = tfjs();
  if (!tf.wasm || tf.findBackendFactory('wasm') == null) return 0;
  configureWasm(scope, model);
  const wanted = wasmThreadsWanted(scope, model);
  const nav = scope.navigator;
  const doubled = wanted > 1 && nav && !Object.prototype.hasOwnProperty.call(nav, 'hardwareConcurrency');
  if (doubled) Object.defineProperty(nav, 'hardwareConcurrency', { value: wanted * 2, configurable: true });
  for (const register of wasmStartHooks.splice(0)) register(tf);
  try {
    if (!await tf.setBackend('wasm')) return 0;
    await tf.ready();
  } finally {
    if (doubled) delete nav.hardwareConcurrency;
  }
  return tf.wasm.getThreadsCount();
}

let wasmConfigured = false;

/**
 * Tell the wasm backend where its .wasm files are and how many threads to start. Call it before
 * TF.js runs anything: the first operation initialises the best registered backend, possibly wasm,
 * and its thread count is fixed then. Idempotent; a no-op when the wasm backend is not loaded.
 * @param {any} [scope] (default: globalThis)
 * @param {{parameters?: number|null, forced?: number|null}} [model] see `wasmThreadsChoice`
 */
export function configureWasm(scope = globalThis, model = {}) {
  const tf = tfjs();
  if (wasmConfigured || !tf.wasm) return;
  tf.wasm.setWasmPaths(WASM_PATH);
  const { threads, reason } = wasmThreadsChoice(scope, model);
  tf.wasm.setThreadsCount(threads);
  wasmThreadsReason = reason;
  wasmConfigured = true;
}

// ------------------------------------------------------------------------------------------
// Optional kernels: modules that add kernels to the wasm backend (e.g. gradients it lacks) register
// here with one call, `onWasmStart(registerWasmGradientKernels)`, and run before it is first used.

/** @type {Array<(tf: any) => void>} */
const wasmStartHooks = [];

/**
 * Run `register(tf)` before the wasm backend is first used (at once if it already started), so
 * kernels it registers for 'wasm' count in `wasmMissingKernels` and in the probe.
 * @param {(tf: any) => void} register e.g. wasm_grad_kernels.js's registerWasmGradientKernels
 */
export function onWasmStart(register) {
  if (globalThis.tf) register(globalThis.tf);
  else wasmStartHooks.push(register);
}

// The gradients TF.js 4.22's wasm backend lacks (convolutions, depthwise convolutions, pooling,
// embeddings) and faster replacements of a few of its own: with them wasm trains every predefined model.
onWasmStart(registerWasmGradientKernels);

// ------------------------------------------------------------------------------------------
// Choosing by measurement: time one training batch of the task's model on each usable backend.

/**
 * @typedef {object} ProbeFigure
 * @property {string} backend
 * @property {number|null} ms milliseconds of one training batch after a warm-up, null when not measured
 * @property {number|null} warmupMs the first batch (kernels compiled, memory allocated)
 * @property {'ok'|'timeout'|'skipped'|'unable'|'error'} status why `ms` is what it is
 * @property {string} [reason] words for a status other than ok
 */

/**
 * The backend with the smallest measured time, or `fallback` when none was measured.
 * Ties go to the earlier figure.
 * @param {ProbeFigure[]} figures
 * @param {string} fallback the static rule's choice (chooseBackend)
 * @returns {{backend: string, measured: boolean}}
 */
export function fastestBackend(figures, fallback) {
  let best = null;
  for (const figure of figures) {
    if (figure.status === 'ok' && Number.isFinite(figure.ms) && (best == null || figure.ms < best.ms)) best = figure;
  }
  return best ? { backend: best.backend, measured: true } : { backend: fallback, measured: false };
}

/** Raised by `withTimeout` when time runs out. */
export class TimeoutError extends Error {
  /** @param {string} what @param {number} ms */
  constructor(what, ms) {
    super(`${what} took longer than ${Math.round(ms)} ms`);
    this.name = 'TimeoutError';
  }
}

/**
 * `promise`, or a TimeoutError after `ms` milliseconds. The work behind `promise` is not stopped (TF.js
 * cannot cancel a batch): await `settled` before starting anything that must not overlap it.
 * @template T
 * @param {Promise<T>} promise
 * @param {number} ms
 * @param {string} what named in the error
 * @param {{setTimeout: Function, clearTimeout: Function}} [timers] (default: globalThis; tests pass fakes)
 * @returns {{result: Promise<T>, settled: Promise<void>}}
 */
export function withTimeout(promise, ms, what, timers = globalThis) {
  let timer;
  const expired = new Promise((_, reject) => {
    timer = timers.setTimeout(() => reject(new TimeoutError(what, ms)), Math.max(0, ms));
  });
  const result = Promise.race([promise, expired]).finally(() => timers.clearTimeout(timer));
  const settled = promise.then(() => undefined, () => undefined);
  return { result, settled };
}

/**
 * Milliseconds the whole probe may take (all backends, warm-ups included) before it stops measuring.
 * Each backend gets what is left of it for its warm-up and timed batches; a batch running when it runs
 * out is waited for (TF.js cannot cancel it), so the probe can last longer, and that backend is reported
 * as a timeout. webgl's and webgpu's first batch compiles every shader the model needs (WGSL pipelines
 * for webgpu), hence their long warm-ups.
 */
export const PROBE_BUDGET_MS = 1000;

/**
 * Random inputs and targets of one batch for `model`: int inputs (tokens, masks) are zeros, float
 * inputs uniform in [0, 1); targets fit the loss (class 0 for sparse losses).
 * @param {any} model a compiled tf.LayersModel
 * @param {number} batchSize
 * @returns {{xs: any, ys: any, dispose: () => void}}
 */
export function randomBatch(model, batchSize) {
  const tf = tfjs();
  const made = [];
  const xs = model.inputs.map((input) => {
    const shape = [batchSize, ...input.shape.slice(1).map((d) => d ?? 1)];
    const t = input.dtype === 'int32' ? tf.zeros(shape, 'int32') : tf.randomUniform(shape);
    made.push(t);
    return t;
  });
  const out = model.outputs[0].shape.slice(1).map((d) => d ?? 1);
  const loss = String(Array.isArray(model.loss) ? model.loss[0] : model.loss || '');
  const units = out[out.length - 1];
  const ys = /sparse/i.test(loss) || units === 1 ? tf.zeros([batchSize, ...out.slice(0, -1), 1])
    : tf.tidy(() => tf.oneHot(tf.zeros([batchSize * out.slice(0, -1).reduce((a, b) => a * b, 1)], 'int32'),
      units).reshape([batchSize, ...out]).toFloat());
  made.push(ys);
  return { xs: xs.length === 1 ? xs[0] : xs, ys, dispose: () => made.forEach((t) => t.dispose()) };
}

/**
 * Time one training batch of a fresh copy of the task's model on each backend (after one warm-up
 * batch) and pick the fastest. Backends are tried in the order `probeOrder` gives (the static rule's
 * choice first, so the likely winner is measured first, then webgl, webgpu, wasm, cpu); once
 * `budgetMs` is spent the rest are skipped (a batch in flight is waited for, as TF.js cannot cancel
 * it, so nothing overlaps). wasm is skipped when it lacks a kernel the model's training needs; webgpu
 * when there is no adapter (asked even once the time is up: it takes milliseconds and says whether
 * webgpu can be chosen at all). Whatever fails, the choice falls back to `chooseBackend`, which never
 * picks webgpu.
 * @param {() => Promise<any>} makeModel a fresh, compiled copy of the model (the probe trains it)
 * @param {number} batchSize the task's
 * @param {{backends?: string[], budgetMs?: number, now?: () => number, scope?: any}} [options] scope:
 *   where `navigator.gpu` is looked up (default: globalThis)
 * @returns {Promise<{backend: string, measured: boolean, figures: ProbeFigure[], ms: number}>}
 */
export async function probeBackends(makeModel, batchSize, options = {}) {
  const tf = tfjs();
  const now = options.now ?? (() => performance.now());
  const started = now();
  const budget = options.budgetMs ?? PROBE_BUDGET_MS;
  const reference = await makeModel();
  const fallback = chooseBackend(reference, options.backends ?? availableBackends());
  const missing = wasmMissingKernels(reference);
  reference.dispose();
  const available = options.backends ?? availableBackends();
  const order = probeOrder(fallback, available);
  const previous = tf.getBackend();
  /** @type {ProbeFigure[]} */
  const figures = [];
  for (const backend of order) {
    const left = budget - (now() - started);
    if (backend === 'wasm' && missing.length) {
      figures.push({ backend, ms: null, warmupMs: null, status: 'unable', reason: `cannot train this model (lacks ${missing.join(', ')})` });
      continue;
    }
    if (backend === 'webgpu') {
      const reason = await webgpuUnavailable(options.scope ?? globalThis, Math.max(left, 200));
      if (reason) {
        figures.push({ backend, ms: null, warmupMs: null, status: 'unable', reason });
        continue;
      }
    }
    if (left <= 0) {
      figures.push({ backend, ms: null, warmupMs: null, status: 'skipped', reason: 'not measured: the probe\'s time was up' });
      continue;
    }
    figures.push(await timeOneBatch(backend, makeModel, batchSize, left, now));
  }
  try { await setBackend(previous); } catch { /* the caller sets the chosen backend anyway */ }
  return { ...fastestBackend(figures, fallback), figures, ms: now() - started };
}

/**
 * The order the probe tries backends in: `fallback` (the static rule's choice), then webgl, webgpu,
 * wasm, cpu, of those `available`. webgpu comes after webgl: its first batch compiles a WGSL pipeline
 * per kernel, so on most machines it would spend much of the budget before the proven backends.
 * @param {string} fallback
 * @param {string[]} available
 * @returns {string[]}
 */
export function probeOrder(fallback, available) {
  return [fallback, ...['webgl', 'webgpu', 'wasm', 'cpu'].filter((b) => b !== fallback)].filter((b) => available.includes(b));
}

/**
 * One backend's figure: warm-up batch, then one timed batch, within `limitMs` in all.
 * @param {string} backend
 * @param {() => Promise<any>} makeModel
 * @param {number} batchSize
 * @param {number} limitMs
 * @param {() => number} now
 * @returns {Promise<ProbeFigure>}
 */
async function timeOneBatch(backend, makeModel, batchSize, limitMs, now) {
  const t0 = now();
  let model = null; let batch = null;
  const run = (async () => {
    await setBackend(backend);
    model = await makeModel();
    batch = randomBatch(model, batchSize);
    const w0 = now();
    await model.trainOnBatch(batch.xs, batch.ys);
    const warmupMs = now() - w0;
    const b0 = now();
    await model.trainOnBatch(batch.xs, batch.ys);
    return { warmupMs, ms: now() - b0 };
  })();
  const { result, settled } = withTimeout(run, limitMs, `${backend}: one training batch`);
  try {
    const { warmupMs, ms } = await result;
    return { backend, ms, warmupMs, status: 'ok' };
  } catch (error) {
    await settled;
    const timeout = error instanceof TimeoutError;
    return { backend, ms: null, warmupMs: null, status: timeout ? 'timeout' : 'error',
      reason: timeout ? `over ${Math.round(now() - t0)} ms, more than the probe's time${/^web(gl|gpu)$/.test(backend) ? ' (its first batch compiles the shaders)' : ''}`
        : `failed (${error.message || error})` };
  } finally {
    if (batch) batch.dispose();
    if (model) model.dispose();
  }
}

/**
 * Whether the backend selector should offer webgpu: the probe found an adapter and the backend did
 * not fail to start (it was measured, or its time ran out, or the probe's time was up before it).
 * @param {ProbeFigure[]} figures
 * @returns {boolean}
 */
export function webgpuSelectable(figures) {
  const figure = (figures || []).find((f) => f.backend === 'webgpu');
  return Boolean(figure) && !['unable', 'error'].includes(figure.status);
}

/**
 * The probe's figures in words, e.g. "webgl 12 ms, cpu 40 ms, wasm cannot train this model (…)".
 * @param {ProbeFigure[]} figures
 * @returns {string}
 */
export function describeFigures(figures) {
  return figures.map((f) => (f.status === 'ok' ? `${f.backend} ${f.ms.toFixed(1)} ms` : `${f.backend} ${f.reason}`)).join(', ');
}
