/**
 * In-browser training of a TF.js LayersModel on a participant's LoadedData (see data.js).
 *
 * No DOM code here (trainer_ui.js and pages/train.js draw the page). TF.js is the global `tf`,
 * read when a function runs, never at import time, so Node tests can provide it.
 *
 * Training is a loop of `model.trainOnBatch` calls rather than one `model.fit`: the loop owns
 * shuffling, the validation split, rounds of `roundDuration` epochs (the collaborative schemes
 * plug into `onRoundEnd`), a stop that takes effect at the next batch, NaN detection and the
 * disposal of every tensor it creates (the number of live tensors stays flat across epochs).
 * Which backend runs it is backends.js's business.
 * @module trainer
 */

/** @returns {any} the TF.js namespace */
function tfjs() {
  const tf = globalThis.tf;
  if (!tf) throw new Error('TensorFlow.js is not loaded: include vendor/tfjs/tf.min.js before the Disco modules.');
  return tf;
}

/** An error the participant can act on: `message` says what went wrong, `advice` what to do. */
export class TrainingError extends Error {
  /**
   * @param {string} message
   * @param {string} advice
   * @param {unknown} [cause]
   */
  constructor(message, advice, cause) {
    super(message);
    this.name = 'TrainingError';
    this.advice = advice;
    this.cause = cause;
  }
}

/**
 * Turn any error raised while training into a TrainingError with advice.
 * @param {unknown} error
 * @param {string} backend
 * @returns {TrainingError}
 */
export function explainError(error, backend) {
  if (error instanceof TrainingError) return error;
  const text = String(error && error.message ? error.message : error);
  if (/out of memory|OOM|failed to allocate|allocation failed|Array buffer allocation|memory access out of bounds/i
    .test(text)) {
    return new TrainingError(`The browser ran out of memory while training (${text}).`,
      'Use fewer or smaller files, close other tabs, or choose the CPU backend, then start again.', error);
  }
  if (/webgl|texture|context lost|shader|GL_/i.test(text)) {
    return new TrainingError(`The ${backend} backend hit a graphics limit (${text}).`,
      'Choose the CPU backend in "Backend" and start again; it is slower but has no graphics limits.', error);
  }
  if (/not registered|not yet implemented|kernel/i.test(text)) {
    return new TrainingError(`The ${backend} backend cannot run this model (${text}).`,
      'Choose another backend (WebGL or CPU) in "Backend" and start again.', error);
  }
  return new TrainingError(`Training failed: ${text}`, 'Check your data and start again; reload the page if it persists.',
    error);
}

/**
 * A seeded pseudo-random generator (mulberry32), so a split is reproducible.
 * @param {number} seed
 * @returns {() => number} numbers in [0, 1)
 */
export function seededRandom(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Fisher-Yates shuffle in place.
 * @template T
 * @param {T[]|Int32Array} items
 * @param {() => number} random
 * @returns {T[]|Int32Array}
 */
export function shuffle(items, random) {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}

/**
 * Split sample indices into training and validation sets. The validation set is
 * `round(count * validationSplit)` samples, at least 1 when the split is positive and
 * there are at least 2 samples, so a tiny data set still gets validated.
 * @param {number} count
 * @param {number} validationSplit in [0, 1)
 * @param {() => number} random
 * @returns {{train: Int32Array, validation: Int32Array}}
 */
export function splitIndices(count, validationSplit, random) {
  const order = shuffle(Int32Array.from({ length: count }, (_, i) => i), random);
  let nVal = Math.round(count * (validationSplit || 0));
  if (validationSplit > 0 && count >= 2) nVal = Math.min(Math.max(nVal, 1), count - 1);
  return { train: order.slice(0, count - nVal), validation: order.slice(count - nVal) };
}

const product = (shape) => shape.reduce((a, b) => a * b, 1);

/**
 * How the model's targets are encoded, from its loss and output shape.
 * @param {any} model a compiled tf.LayersModel
 * @returns {'sparse'|'onehot'|'raw'}
 */
export function targetEncoding(model) {
  const loss = String(Array.isArray(model.loss) ? model.loss[0] : model.loss || '');
  if (/sparse/i.test(loss)) return 'sparse';
  const units = model.outputs[0].shape[model.outputs[0].shape.length - 1];
  if (/categorical/i.test(loss) && units > 1) return 'onehot';
  return 'raw';
}

const LOSSES = {
  binary_crossentropy: 'binaryCrossentropy', categorical_crossentropy: 'categoricalCrossentropy',
  sparse_categorical_crossentropy: 'sparseCategoricalCrossentropy', mean_squared_error: 'meanSquaredError',
  mse: 'meanSquaredError', mean_absolute_error: 'meanAbsoluteError', mae: 'meanAbsoluteError',
};

/**
 * Compile `model` as its Keras author did, from the `training_config` the converter leaves in
 * model.json's modelTopology (TF.js ignores it when loading): loss, and Adam / SGD (with its momentum)
 * / RMSprop with the learning rate. Returns false when the configuration is missing or not understood.
 * @param {any} model
 * @param {any} trainingConfig modelTopology.training_config
 * @returns {boolean}
 */
export function compileFromTrainingConfig(model, trainingConfig) {
  const tf = tfjs();
  const loss = LOSSES[String(trainingConfig?.loss || '').toLowerCase()];
  if (!loss) return false;
  const optimizer = trainingConfig.optimizer_config || {};
  const config = optimizer.config || {};
  const name = String(optimizer.class_name || config.name || 'Adam').replace(/^Custom>/, '').toLowerCase();
  const rate = Number(config.learning_rate) > 0 ? Number(config.learning_rate) : undefined;
  const momentum = Number(config.momentum) > 0 ? Number(config.momentum) : 0;
  let opt;
  if (name === 'sgd') opt = momentum ? tf.train.momentum(rate ?? 0.01, momentum) : tf.train.sgd(rate ?? 0.01);
  else if (name === 'rmsprop') opt = tf.train.rmsprop(rate ?? 0.001);
  else opt = tf.train.adam(rate ?? 0.001);
  model.compile({ optimizer: opt, loss, metrics: /^mean/.test(loss) ? [] : ['accuracy'] });
  return true;
}

/**
 * Compile `model` for training when its model.json carried no training configuration:
 * sparse cross-entropy for text, binary for one sigmoid output, categorical otherwise.
 * @param {any} model
 * @param {any} task the task JSON (DISCO shape)
 */
export function ensureCompiled(model, task) {
  if (model.optimizer != null && model.loss != null) return;
  const tf = tfjs();
  const units = model.outputs[0].shape[model.outputs[0].shape.length - 1];
  let loss = 'categoricalCrossentropy';
  if (task.trainingInformation.dataType === 'text') loss = 'sparseCategoricalCrossentropy';
  else if (units === 1) loss = 'binaryCrossentropy';
  model.compile({ optimizer: tf.train.adam(1e-3), loss, metrics: ['accuracy'] });
}

/**
 * Tensors of one batch: the model's inputs and its targets.
 * @param {any} model
 * @param {import('./data.js').LoadedData} data
 * @param {Int32Array} indices the samples of this batch
 * @param {'sparse'|'onehot'|'raw'} encoding
 * @param {(tokens: any) => any[]} [textInputs] data.js's textModelInputs, for text models
 * @returns {{xs: any, ys: any, dispose: () => void}}
 */
export function batchTensors(model, data, indices, encoding, textInputs) {
  const tf = tfjs();
  const n = indices.length;
  const xSize = product(data.xShape);
  const xBuf = new data.x.constructor(n * xSize);
  for (let i = 0; i < n; i++) xBuf.set(data.x.subarray(indices[i] * xSize, (indices[i] + 1) * xSize), i * xSize);
  const xDtype = data.x instanceof Int32Array ? 'int32' : 'float32';
  const x = tf.tensor(xBuf, [n, ...data.xShape], xDtype);
  const made = [x];
  let xs = x;
  if (data.dataType === 'text') {
    if (!textInputs) throw new Error('Text models need data.js textModelInputs to build positions and the mask.');
    xs = textInputs(x);
    made.push(...xs.filter((t) => t !== x));
  }
  let ys = null;
  if (data.y) {
    const ySize = product(data.yShape);
    const yBuf = new Float32Array(n * ySize);
    for (let i = 0; i < n; i++) {
      for (let k = 0; k < ySize; k++) yBuf[i * ySize + k] = data.y[indices[i] * ySize + k];
    }
    if (encoding === 'onehot') {
      const units = model.outputs[0].shape[model.outputs[0].shape.length - 1];
      const ids = tf.tensor1d(Int32Array.from(yBuf), 'int32');
      ys = tf.tidy(() => tf.oneHot(ids, units).toFloat());
      made.push(ids);
    } else {
      const shape = data.yShape.length ? [n, ...data.yShape] : [n, 1];
      ys = tf.tensor(yBuf, shape, 'float32');
    }
    made.push(ys);
  }
  return { xs, ys, dispose: () => made.forEach((t) => { if (!t.isDisposed) t.dispose(); }) };
}

/**
 * @typedef {object} EpochLogs
 * @property {number} epoch 1-based
 * @property {number} round 1-based round this epoch belongs to
 * @property {number} loss mean training loss
 * @property {number|null} acc mean training accuracy (null when the model has no accuracy metric)
 * @property {number|null} val_loss
 * @property {number|null} val_acc
 * @property {number} samplesPerSecond training samples per second of this epoch
 * @property {number} numTensors tf.memory().numTensors after the epoch
 * @property {number} seconds wall time of the epoch, validation included
 */

/**
 * @typedef {object} TrainerCallbacks
 * @property {(epoch: number, logs: EpochLogs) => (void|Promise<void>)} [onEpochEnd]
 * @property {(info: {epoch: number, batch: number, batches: number, loss: number, acc: number|null,
 *   samplesPerSecond: number, started: number, ended: number}) => (void|Promise<void>)} [onBatchEnd] `started`,
 *   `ended`: performance.now() of the batch
 * @property {(round: number, model: any) => (void|Promise<void>)} [onRoundEnd] awaited: collaborative
 *   schemes exchange weights here
 * @property {(round: number, scores: {loss: number, acc: number|null, samples: number}) => (void|Promise<void>)}
 *   [onRoundEvaluated] awaited, after `onRoundEnd`: the model it left (the round's global model) scored on the
 *   validation split, for federated evaluation; not called when the split is empty
 * @property {(message: string) => void} [onLog]
 */

/** Trains a model on LoadedData, epoch by epoch, in rounds of `roundDuration` epochs. */
export class Trainer {
  /**
   * @param {any} model a tf.LayersModel (compiled here if its model.json had no training config)
   * @param {any} task the task JSON (DISCO shape)
   * @param {TrainerCallbacks & {seed?: number, textInputs?: (tokens: any) => any[], yieldMs?: number,
   *   nextTick?: () => Promise<void>, shouldStop?: () => boolean}} [options] `yieldMs`: how often the loop
   *   gives the event loop a turn (default 50 ms; 0: after every batch), with `nextTick` (default a
   *   setTimeout); `shouldStop`: read after every batch besides stop() (a worker's shared stop flag)
   */
  constructor(model, task, options = {}) {
    this.model = model;
    this.task = task;
    this.callbacks = options;
    this.seed = options.seed ?? 1;
    this.textInputs = options.textInputs;
    this.stopRequested = false;
    this.running = false;
    /** @type {EpochLogs[]} */
    this.history = [];
  }

  /** Ask training to stop after the current batch; the model keeps the weights trained so far. */
  stop() {
    this.stopRequested = true;
  }

  /** @param {string} message */
  log(message) {
    if (this.callbacks.onLog) this.callbacks.onLog(message);
  }

  /**
   * Train for the task's epochs (or until stop()).
   * @param {import('./data.js').LoadedData} data
   * @returns {Promise<{stopped: boolean, epochs: number, history: EpochLogs[]}>}
   */
  async train(data) {
    if (this.running) throw new TrainingError('Training is already running.', 'Wait for it to end or press Stop.');
    if (!data || !data.count) throw new TrainingError('There is no data to train on.', 'Connect your data first.');
    const tf = tfjs();
    const info = this.task.trainingInformation;
    const epochs = Math.max(1, info.epochs | 0);
    const roundDuration = Math.max(1, info.roundDuration | 0 || 1);
    const batchSize = Math.max(1, info.batchSize | 0 || 32);
    ensureCompiled(this.model, this.task);
    const encoding = targetEncoding(this.model);
    const random = seededRandom(this.seed);
    // data.js orders the samples at random and fits preprocessing statistics on the first
    // `trainCount` (the training split): use that split, so validation data stays unseen.
    const { train, validation } = Number.isInteger(data.trainCount)
      ? { train: Int32Array.from({ length: data.trainCount }, (_, i) => i),
        validation: Int32Array.from({ length: data.count - data.trainCount }, (_, i) => data.trainCount + i) }
      : splitIndices(data.count, info.validationSplit || 0, random);
    if (!train.length) throw new TrainingError('No sample is left for training after the validation split.',
      'Connect more data.');
    const metricNames = this.model.metricsNames || ['loss'];
    const accIndex = metricNames.findIndex((name) => /acc/i.test(name));
    const backend = tf.getBackend();
    this.running = true;
    this.stopRequested = false;
    this.history = [];
    this.log(`Training on ${train.length} samples, validating on ${validation.length}; ${epochs} epochs in rounds of ` +
      `${roundDuration}, batches of ${batchSize}, backend ${backend}.`);
    let stopped = false;
    let lastYield = performance.now();
    const yieldMs = this.callbacks.yieldMs ?? YIELD_MS;
    const tick = this.callbacks.nextTick ?? nextTick;
    const stopNow = () => this.stopRequested || Boolean(this.callbacks.shouldStop && this.callbacks.shouldStop());
    try {
      for (let epoch = 1; epoch <= epochs && !stopped; epoch++) {
        const round = Math.ceil(epoch / roundDuration);
        const started = performance.now();
        const order = shuffle(train.slice(), random);
        const batches = Math.ceil(order.length / batchSize);
        let lossSum = 0; let accSum = 0; let seen = 0;
        let trainMillis = 0;
        for (let b = 0; b < batches; b++) {
          const indices = order.subarray(b * batchSize, Math.min((b + 1) * batchSize, order.length));
          const t0 = performance.now();
          const batch = batchTensors(this.model, data, indices, encoding, this.textInputs);
          let result;
          try {
            result = await this.model.trainOnBatch(batch.xs, batch.ys);
          } finally {
            batch.dispose();
          }
          trainMillis += performance.now() - t0;
          const values = Array.isArray(result) ? result : [result];
          const loss = values[0];
          if (!Number.isFinite(loss)) {
            throw new TrainingError(`The loss became ${loss} at epoch ${epoch}, batch ${b + 1}: training diverged.`,
              'The model\'s weights are no longer usable. Check the data for extreme or missing values (a ' +
              'standardize step helps), reload the page to get a fresh model, and start again.');
          }
          lossSum += loss * indices.length;
          if (accIndex >= 0) accSum += values[accIndex] * indices.length;
          seen += indices.length;
          if (this.callbacks.onBatchEnd) {
            await this.callbacks.onBatchEnd({ epoch, batch: b + 1, batches, loss,
              acc: accIndex >= 0 ? values[accIndex] : null, samplesPerSecond: seen / (trainMillis / 1000),
              started: t0, ended: performance.now() });
          }
          if (stopNow()) { stopped = true; break; }
          if (performance.now() - lastYield >= yieldMs) {
            await tick();
            lastYield = performance.now();
            // Asked again after the yield: a Stop pressed while this thread waited for its turn must not let
            // one more batch begin (under load the yield alone can take longer than a batch).
            if (stopNow()) { stopped = true; break; }
          }
        }
        if (stopped) {
          this.log(`Stopped by the participant during epoch ${epoch}; the model keeps what it learned so far.`);
          break;
        }
        const val = validation.length ? await this.evaluate(data, validation, encoding, batchSize, accIndex) : null;
        /** @type {EpochLogs} */
        const logs = {
          epoch, round, loss: lossSum / seen, acc: accIndex >= 0 ? accSum / seen : null,
          val_loss: val ? val.loss : null, val_acc: val ? val.acc : null,
          samplesPerSecond: seen / (trainMillis / 1000), numTensors: tf.memory().numTensors,
          seconds: (performance.now() - started) / 1000,
        };
        this.history.push(logs);
        this.log(`Epoch ${epoch}/${epochs}: loss ${fmt(logs.loss)}` + (logs.acc != null ? `, accuracy ${fmt(logs.acc)}` : '') +
          (val ? `, validation loss ${fmt(logs.val_loss)}` : '') + (val && logs.val_acc != null ? `, validation accuracy ${fmt(logs.val_acc)}` : '') +
          `; ${Math.round(logs.samplesPerSecond)} samples/s.`);
        if (this.callbacks.onEpochEnd) await this.callbacks.onEpochEnd(epoch, logs);
        if (epoch % roundDuration === 0 || epoch === epochs) {
          if (this.callbacks.onRoundEnd) await this.callbacks.onRoundEnd(round, this.model);
          if (this.callbacks.onRoundEvaluated && validation.length) {
            // The model now holds the round's global result: score it on the same held-out samples.
            const scores = await this.evaluate(data, validation, encoding, batchSize, accIndex);
            await this.callbacks.onRoundEvaluated(round, { ...scores, samples: validation.length });
          }
          this.log(`Round ${round} done.`);
        }
      }
    } catch (error) {
      throw explainError(error, backend);
    } finally {
      this.running = false;
    }
    return { stopped, epochs: this.history.length, history: this.history };
  }

  /**
   * Mean loss and accuracy on some samples, in batches.
   * @param {import('./data.js').LoadedData} data
   * @param {Int32Array} indices
   * @param {'sparse'|'onehot'|'raw'} encoding
   * @param {number} batchSize
   * @param {number} accIndex
   * @returns {Promise<{loss: number, acc: number|null}>}
   */
  async evaluate(data, indices, encoding, batchSize, accIndex) {
    let lossSum = 0; let accSum = 0;
    const size = Math.max(batchSize, 64);
    for (let start = 0; start < indices.length; start += size) {
      const part = indices.subarray(start, Math.min(start + size, indices.length));
      const batch = batchTensors(this.model, data, part, encoding, this.textInputs);
      let scalars;
      try {
        scalars = this.model.evaluate(batch.xs, batch.ys, { batchSize: part.length });
        scalars = Array.isArray(scalars) ? scalars : [scalars];
        const values = await Promise.all(scalars.map((s) => s.data()));
        lossSum += values[0][0] * part.length;
        if (accIndex >= 0) accSum += values[accIndex][0] * part.length;
      } finally {
        if (scalars) scalars.forEach((s) => s.dispose());
        batch.dispose();
      }
    }
    return { loss: lossSum / indices.length, acc: accIndex >= 0 ? accSum / indices.length : null };
  }
}

/** How often (ms) the loop gives the page a chance to repaint and handle clicks such as Stop. */
const YIELD_MS = 50;

/** Let the page repaint and handle clicks (Stop) between batches. */
function nextTick() {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** @param {number|null} v */
function fmt(v) {
  return v == null ? '–' : v.toFixed(4);
}
