/*
 * The training worker's loader: a classic worker script (`new Worker(url)`), not a module worker,
 * because TF.js and its wasm backend are UMD scripts that only `importScripts` can load into a worker
 * (a module worker has no importScripts). Once they are in, the worker's code proper, an ES module,
 * comes in with a dynamic import(), which classic workers have.
 *
 * Served with the training page's CSP and COEP (disco_site/security_headers.py, ISOLATED_STATIC): a
 * worker's policies are its own response's, and its wasm threads start from blob: URLs.
 *
 * Messages that arrive while the module loads are kept and handed over, in order, once it is ready.
 */
const early = [];
const keep = (event) => early.push(event);
self.addEventListener('message', keep);
importScripts('/static/disco/tfjs_csp_shim.js', '/static/vendor/tfjs/tf.min.js',
  '/static/vendor/tfjs-backend-wasm/tf-backend-wasm.min.js');
// WebGPU is optional: it registers itself only where navigator.gpu exists, and if its script cannot
// load the worker trains on the other backends (backends.js probes webgpu only when it is registered).
try {
  importScripts('/static/vendor/tfjs-backend-webgpu/tf-backend-webgpu.min.js');
} catch (error) {
  console.warn(`The WebGPU backend could not be loaded: ${error.message || error}`);
}
import('/static/disco/train_worker_main.js').then((main) => {
  self.removeEventListener('message', keep);
  main.serve(self, early);
}).catch((error) => {
  self.postMessage({ event: 'fatal', message: `The training worker could not start: ${error.message || error}` });
});
