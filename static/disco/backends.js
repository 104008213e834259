/**
 * TF.js backends: which are usable here, which one trains a model fastest, and starting them.
 *
 * No DOM code. TF.js is the global `tf`, read when a function runs, never at import time, so Node
 * tests can provide it.
 * @module backends
 */

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
 * Conv2DBackpropFilter, embeddings the gradient of a gather (UnsortedSegmentSum). Checked against
 * the kernel registry, so a later wasm backend that has them is used.
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
 * The backends TF.js has registered here (the wasm one only when its script is loaded).
 * @returns {string[]}
 */
export function availableBackends() {
  const tf = tfjs();
  return ['wasm', 'webgl', 'cpu'].filter((name) => tf.findBackendFactory(name) != null);
}

/**
 * The fastest backend that can train `model` (measured, see FACTS.md): `wasm` for models
 * without convolutions, `webgl` for convolutions (wasm cannot train them), `cpu` last.
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
  if (backend === 'webgl') {
    return missing.length ? `WebGL: the WebAssembly backend cannot train this model's layers (it lacks ${missing.join(', ')}).`
      : 'WebGL (the WebAssembly backend is not available here).';
  }
  return 'CPU: the slowest backend, used because no faster one is available.';
}

/**
 * How many threads the wasm backend should use: one per logical core when the page is
 * cross-origin isolated (the threaded SIMD build needs SharedArrayBuffer), else 1.
 * @param {{crossOriginIsolated?: boolean, navigator?: {hardwareConcurrency?: number}}} [scope] (default: globalThis)
 * @returns {number}
 */
export function wasmThreadsWanted(scope = globalThis) {
  if (!scope.crossOriginIsolated) return 1;
  return Math.max(1, Number(scope.navigator?.hardwareConcurrency) || 1);
}

/**
 * The wasm backend's threads, in words for the participant (call once the backend is initialised).
 * @param {{crossOriginIsolated?: boolean}} [scope] (default: globalThis)
 * @returns {{threads: number, text: string}}
 */
export function wasmThreadsInfo(scope = globalThis) {
  const tf = tfjs();
  let threads = 1;
  try { threads = tf.wasm.getThreadsCount(); } catch { threads = 1; }
  const text = scope.crossOriginIsolated
    ? `${threads} thread${threads === 1 ? '' : 's'}`
    : '1 thread: this page is not cross-origin isolated, so WebAssembly cannot use more';
  return { threads, text };
}

/**
 * Switch TF.js to `name` (wasm, webgl or cpu) and wait until it is ready.
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
 * @returns {Promise<number>} the wasm backend's threads (0 when it is not loaded or did not start)
 */
export async function startWasm(scope = globalThis) {
  const tf = tfjs();
  if (!tf.wasm || tf.findBackendFactory('wasm') == null) return 0;
  configureWasm(scope);
  const wanted = wasmThreadsWanted(scope);
  const nav = scope.navigator;
  const doubled = wanted > 1 && nav && !Object.prototype.hasOwnProperty.call(nav, 'hardwareConcurrency');
  if (doubled) Object.defineProperty(nav, 'hardwareConcurrency', { value: wanted * 2, configurable: true });
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
 */
export function configureWasm(scope = globalThis) {
  const tf = tfjs();
  if (wasmConfigured || !tf.wasm) return;
  tf.wasm.setWasmPaths(WASM_PATH);
  tf.wasm.setThreadsCount(wasmThreadsWanted(scope));
  wasmConfigured = true;
}
