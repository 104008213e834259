// Training speed of McMahan's MNIST CNN with trainOnBatch on TF.js's wasm backend (with the
// gradient kernels of static/disco/wasm_grad_kernels.js) against its cpu backend, in Node.
//
//   node bench/wasm_kernels.mjs [--steps 20] [--cpu-steps 1] [--batch 32] [--warmup 3]
//
// Prints samples/s per backend after a warm-up (the cpu backend takes minutes per step at batch
// 32, so it gets one untimed warm-up step and --cpu-steps timed ones), then the kernels that take
// the most time in one wasm training step (tf.profile), and the load average of the machine.
// Both wall-clock and CPU-time rates are printed: on a loaded machine the wall clock counts time
// spent waiting for a core, the process's CPU time (1 thread on both backends here) does not.
import { createRequire } from 'node:module';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';

import { registerWasmGradientKernels } from '../static/disco/wasm_grad_kernels.js';

const require = createRequire(import.meta.url);
globalThis.tf = require('@tensorflow/tfjs');
const wasmBackend = require('@tensorflow/tfjs-backend-wasm');
const tf = globalThis.tf;
registerWasmGradientKernels(tf);

const { values: options } = parseArgs({ options: {
  steps: { type: 'string', default: '20' }, 'cpu-steps': { type: 'string', default: '1' },
  batch: { type: 'string', default: '32' }, warmup: { type: 'string', default: '3' },
} });
const STEPS = Number(options.steps);
const BATCH = Number(options.batch);
const WARMUP = Number(options.warmup);
const CPU_STEPS = Number(options['cpu-steps']);

/** McMahan et al. (2017), "Communication-Efficient Learning of Deep Networks from Decentralized Data": the CNN. */
function mnistCnn() {
  const L = tf.layers;
  const model = tf.sequential({ layers: [
    L.conv2d({ inputShape: [28, 28, 1], filters: 32, kernelSize: 5, padding: 'same', activation: 'relu' }),
    L.maxPooling2d({ poolSize: 2 }),
    L.conv2d({ filters: 64, kernelSize: 5, padding: 'same', activation: 'relu' }),
    L.maxPooling2d({ poolSize: 2 }),
    L.flatten(),
    L.dense({ units: 512, activation: 'relu' }),
    L.dense({ units: 10, activation: 'softmax' }),
  ] });
  model.compile({ optimizer: tf.train.sgd(0.01), loss: 'categoricalCrossentropy' });
  return model;
}

async function measure(backend, steps, warmup) {
  await tf.setBackend(backend);
  await tf.ready();
  const model = mnistCnn();
  const x = tf.randomUniform([BATCH, 28, 28, 1], 0, 1, 'float32', 1);
  const y = tf.oneHot(tf.randomUniform([BATCH], 0, 10, 'int32', 2), 10);
  for (let i = 0; i < warmup; i++) await model.trainOnBatch(x, y);
  const start = performance.now();
  const cpuStart = process.cpuUsage();
  for (let i = 0; i < steps; i++) await model.trainOnBatch(x, y);
  const seconds = (performance.now() - start) / 1000;
  const { user, system } = process.cpuUsage(cpuStart);
  const cpuSeconds = (user + system) / 1e6;
  let profile = null;
  if (backend === 'wasm') profile = await tf.profile(() => model.trainOnBatch(x, y));
  const parameters = model.countParams();
  tf.dispose([x, y]);
  model.dispose();
  return {
    samplesPerSecond: (steps * BATCH) / seconds, msPerStep: (1000 * seconds) / steps,
    samplesPerCpuSecond: (steps * BATCH) / cpuSeconds, cpuMsPerStep: (1000 * cpuSeconds) / steps, parameters, profile,
  };
}

const wasm = await measure('wasm', STEPS, WARMUP);
console.log(`McMahan MNIST CNN, ${wasm.parameters} parameters, batch ${BATCH}`);
const rates = (r) => `${r.samplesPerSecond.toFixed(2)} samples/s (${r.msPerStep.toFixed(0)} ms/step), `
  + `${r.samplesPerCpuSecond.toFixed(2)} samples per CPU second (${r.cpuMsPerStep.toFixed(0)} CPU ms/step)`;
console.log(`wasm (${wasmBackend.getThreadsCount()} thread): ${rates(wasm)}, ${STEPS} steps after ${WARMUP} warm-up`);
const cpu = await measure('cpu', CPU_STEPS, 1);
console.log(`cpu: ${rates(cpu)}, ${CPU_STEPS} step(s) after 1 warm-up`);
console.log(`wasm / cpu: ${(wasm.samplesPerSecond / cpu.samplesPerSecond).toFixed(0)}x (wall clock), `
  + `${(wasm.samplesPerCpuSecond / cpu.samplesPerCpuSecond).toFixed(0)}x (CPU time)`);

const byKernel = new Map();
for (const k of wasm.profile.kernels) {
  const entry = byKernel.get(k.name) || { ms: 0, calls: 0 };
  entry.ms += k.kernelTimeMs;
  entry.calls += 1;
  byKernel.set(k.name, entry);
}
const total = [...byKernel.values()].reduce((sum, e) => sum + e.ms, 0);
console.log(`\nOne wasm training step, by kernel (total ${total.toFixed(1)} ms):`);
for (const [name, { ms, calls }] of [...byKernel].sort((a, b) => b[1].ms - a[1].ms).slice(0, 10)) {
  const share = `${(100 * ms / total).toFixed(0).padStart(3)}%`;
  console.log(`  ${name.padEnd(28)} ${ms.toFixed(1).padStart(7)} ms  ${share}  (${calls} call(s))`);
}
console.log(`\nLoad average (1, 5, 15 min): ${loadavg().map((l) => l.toFixed(1)).join(', ')}`);
