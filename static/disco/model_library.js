/**
 * The model library: trained models kept in the browser (IndexedDB, through TF.js's
 * `indexeddb://` handler), listed per task, loaded, deleted and downloaded as TF.js files.
 *
 * Keys are TF.js URLs `indexeddb://disco/<taskId>/<timestamp>`. What the model is for travels
 * inside it, in `model.getUserDefinedMetadata().disco = {taskId, name, metrics, state, savedAt}`:
 * `state` is the fitted preprocessing statistics (e.g. standardize's means and stds), so testing
 * a saved or downloaded model reuses the statistics of its training data (DISCO issue #649).
 * A small copy of that metadata is cached in localStorage so listing does not read every model's
 * weights; the IndexedDB entry is the truth. No DOM code; `globalThis.tf` is read when called.
 * @module model_library
 */

const PREFIX = 'indexeddb://disco/';
const CACHE_PREFIX = 'disco:model:';
let lastStamp = 0;

function tf() {
  const lib = globalThis.tf;
  if (!lib) throw new Error('TF.js is not loaded: include vendor/tfjs/tf.min.js before using the model library.');
  return lib;
}

function toUrl(key) {
  return String(key).startsWith('indexeddb://') ? String(key) : `indexeddb://${key}`;
}

function storage() {
  try {
    return globalThis.localStorage ?? null;
  } catch {
    return null; // localStorage can be disabled; the cache is only a shortcut.
  }
}

/**
 * The Disco metadata of a model (or null when it has none).
 * @param {import('@tensorflow/tfjs').LayersModel} model
 * @returns {{taskId: string, name: string, metrics: object, state: object, savedAt: string}|null}
 */
export function modelMetadata(model) {
  return model.getUserDefinedMetadata?.()?.disco ?? null;
}

/**
 * Save `model` in the browser.
 * @param {import('@tensorflow/tfjs').LayersModel} model
 * @param {{taskId: string, name?: string, metrics?: object, state?: object}} info
 * @returns {Promise<string>} the key
 */
export async function saveModel(model, { taskId, name = '', metrics = {}, state = {} }) {
  if (!taskId || /[/\s]/.test(taskId)) throw new Error(`A task id without slashes or spaces is needed, got "${taskId}".`);
  let stamp = Date.now();
  if (stamp <= lastStamp) stamp = lastStamp + 1;
  lastStamp = stamp;
  const key = `${PREFIX}${taskId}/${stamp}`;
  const savedAt = new Date(stamp).toISOString();
  const disco = { taskId, name: name || `${taskId} ${savedAt.slice(0, 16).replace('T', ' ')}`, metrics, state, savedAt };
  model.setUserDefinedMetadata({ ...(model.getUserDefinedMetadata?.() ?? {}), disco });
  await model.save(key);
  storage()?.setItem(CACHE_PREFIX + key, JSON.stringify(disco));
  return key;
}

/**
 * Saved models, newest first, optionally of one task only.
 * @param {string} [taskId]
 * @returns {Promise<Array<{key: string, taskId: string, name: string, metrics: object, savedAt: string, bytes: number}>>}
 */
export async function listModels(taskId = undefined) {
  const prefix = taskId ? `${PREFIX}${taskId}/` : PREFIX;
  const all = await tf().io.listModels();
  const rows = [];
  for (const [key, info] of Object.entries(all)) {
    if (!key.startsWith(prefix)) continue;
    let disco = null;
    const cached = storage()?.getItem(CACHE_PREFIX + key);
    if (cached) {
      try { disco = JSON.parse(cached); } catch { disco = null; }
    }
    if (!disco) {
      const artifacts = await tf().io.getLoadHandlers(key)[0].load();
      disco = artifacts.userDefinedMetadata?.disco ?? { taskId: key.slice(PREFIX.length).split('/')[0], name: key };
      storage()?.setItem(CACHE_PREFIX + key, JSON.stringify(disco));
    }
    const bytes = (info.modelTopologyBytes ?? 0) + (info.weightSpecsBytes ?? 0) + (info.weightDataBytes ?? 0);
    rows.push({ key, taskId: disco.taskId, name: disco.name, metrics: disco.metrics ?? {},
      savedAt: disco.savedAt ?? new Date(info.dateSaved).toISOString(), bytes });
  }
  rows.sort((a, b) => (a.savedAt < b.savedAt ? 1 : a.savedAt > b.savedAt ? -1 : 0));
  return rows;
}

/**
 * Load a saved model; its metadata (modelMetadata(model)) holds the preprocessing state.
 * @param {string} key
 * @returns {Promise<import('@tensorflow/tfjs').LayersModel>}
 */
export async function loadModel(key) {
  return tf().loadLayersModel(toUrl(key));
}

/**
 * Delete a saved model.
 * @param {string} key
 */
export async function deleteModel(key) {
  const url = toUrl(key);
  storage()?.removeItem(CACHE_PREFIX + url);
  await tf().io.removeModel(url);
}

/**
 * Download a saved model as TF.js files: `<fileName>.json` (the model.json, metadata included)
 * and `<fileName>.weights.bin`; `tf.loadLayersModel` reads them back (both files side by side).
 * @param {string} key
 * @param {string} [fileName]
 */
export async function downloadModel(key, fileName = 'model') {
  const model = await loadModel(key);
  try {
    const safe = String(fileName).replace(/[^\w.-]+/g, '_') || 'model';
    await model.save(`downloads://${safe}`);
  } finally {
    model.dispose();
  }
}
