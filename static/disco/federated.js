/**
 * The browser's side of a federated task (no DOM code): the WebSocket protocol of
 * aggregation/consumers.py, with weight updates encoded by codec.js.
 *
 *   const session = new FederatedSession('titanic', {onEvent});
 *   const welcome = await session.connect();          // round, currentVersion, participants, waitingFor
 *   await session.syncModel(model);                     // start from the current global version
 *   // ... train roundDuration epochs ...
 *   const closed = await session.contribute(model, n);  // send, wait for the round to close
 *   await session.applyVersion(model, closed.version);  // continue from the new global model
 */

import { encodeWeights } from './codec.js';

/** Updates larger than this go as an `update_begin` announcement plus parts of this size (aggregation/incoming.py). */
export const PART_BYTES = 1 << 20;

/**
 * Sends the weight message `frame` (a Uint8Array from encodeWeights): whole when it is small, else
 * announced and in parts, so the server can spool it to disk instead of holding it in memory.
 */
export function sendUpdate(ws, frame, partBytes = PART_BYTES) {
  if (frame.byteLength <= partBytes) {
    ws.send(frame);
    return;
  }
  ws.send(JSON.stringify({ type: 'update_begin', bytes: frame.byteLength }));
  for (let start = 0; start < frame.byteLength; start += partBytes) {
    ws.send(frame.subarray(start, Math.min(start + partBytes, frame.byteLength)));
  }
}

/** An error the server sent, with its machine-readable code. */
export class FederatedError extends Error {
  constructor(code, reason) {
    super(reason);
    this.name = 'FederatedError';
    this.code = code;
  }
}

/** The model's variables by the names the weight manifest uses (TF.js may suffix `name`, not `originalName`). */
export function variablesByName(model) {
  const byName = new Map();
  for (const variable of model.weights) byName.set(variable.originalName ?? variable.name, variable);
  return byName;
}

export class FederatedSession {
  /**
   * @param {string} taskId
   * @param {{origin?: string, onEvent?: (message: object) => void, resumeToken?: string, WebSocketImpl?: any}} [options]
   */
  constructor(taskId, { origin = globalThis.location?.origin, onEvent = () => {}, resumeToken = '', WebSocketImpl } = {}) {
    this.taskId = taskId;
    this.origin = origin;
    this.onEvent = onEvent;
    this.resumeToken = resumeToken;
    this.WebSocketImpl = WebSocketImpl ?? globalThis.WebSocket;
    this.round = null;
    this.version = null;
    this.manifest = null;
    this.waiters = [];
    this.ws = null;
  }

  /** Opens the connection; resolves with the server's welcome. */
  connect() {
    const url = new URL(`/ws/federated/${this.taskId}/`, this.origin.replace(/^http/, 'ws'));
    this.ws = new this.WebSocketImpl(url.toString());
    this.ws.binaryType = 'arraybuffer';
    // The first message joins; the resume token travels in it, never in the URL (access logs).
    const join = { type: 'join', client: 'browser', ...(this.resumeToken ? { resumeToken: this.resumeToken } : {}) };
    this.ws.onopen = () => this.ws.send(JSON.stringify(join));
    this.ws.onmessage = (event) => this.dispatch(JSON.parse(event.data));
    this.ws.onclose = () => this.dispatch({ type: 'closed' });
    return this.next('welcome').then((welcome) => {
      this.resumeToken = welcome.resumeToken;
      this.round = welcome.round;
      this.version = welcome.currentVersion;
      return welcome;
    });
  }

  dispatch(message) {
    this.onEvent(message);
    const waiting = this.waiters;
    this.waiters = [];
    for (const waiter of waiting) {
      if (message.type === 'error' || message.type === 'closed') {
        waiter.reject(new FederatedError(message.code ?? 'closed', message.reason ?? 'The server closed the connection.'));
      } else if (waiter.types.includes(message.type)) {
        waiter.resolve(message);
      } else {
        this.waiters.push(waiter);
      }
    }
  }

  /** The next message of one of `types` (an error message rejects). */
  next(...types) {
    return new Promise((resolve, reject) => this.waiters.push({ types, resolve, reject }));
  }

  async fetchManifest(version) {
    const response = await fetch(`${this.origin}/tasks/${this.taskId}/versions/${version}/model.json`);
    if (!response.ok) throw new FederatedError('http', `Version ${version} could not be fetched (${response.status}).`);
    const modelJson = await response.json();
    return modelJson.weightsManifest;
  }

  /** Sets `model`'s weights to version `version`'s, matched by name. */
  async applyVersion(model, version) {
    const manifest = await this.fetchManifest(version);
    const byName = variablesByName(model);
    const base = `${this.origin}/tasks/${this.taskId}/versions/${version}/`;
    for (const group of manifest) {
      const buffers = await Promise.all(group.paths.map(async (p) => new Uint8Array(await (await fetch(base + p)).arrayBuffer())));
      const total = buffers.reduce((n, b) => n + b.length, 0);
      const joined = new Uint8Array(total);
      let offset = 0;
      for (const b of buffers) { joined.set(b, offset); offset += b.length; }
      offset = 0;
      for (const spec of group.weights) {
        const size = spec.shape.reduce((a, b) => a * b, 1);
        const values = new Float32Array(joined.buffer.slice(offset, offset + 4 * size));
        offset += 4 * size;
        const variable = byName.get(spec.name);
        if (!variable) throw new FederatedError('model_mismatch', `The page's model has no weight named ${spec.name}.`);
        tf.tidy(() => variable.write(tf.tensor(values, spec.shape)));
      }
    }
    this.manifest = manifest;
    this.version = version;
  }

  /** Brings `model` to the server's current version (a late joiner starts from the newest global model). */
  async syncModel(model) {
    await this.applyVersion(model, this.version);
  }

  /** Sends the model's weights as this round's update and resolves when the round has closed. */
  async contribute(model, samples) {
    const byName = variablesByName(model);
    const names = this.manifest.flatMap((group) => group.weights.map((w) => w.name));
    const tensors = names.map((name) => {
      const variable = byName.get(name);
      return { name, shape: variable.shape, data: variable.read().dataSync() };
    });
    const frame = encodeWeights({ type: 'update', task: this.taskId, round: this.round, baseVersion: this.version,
      samples }, tensors);
    const accepted = this.next('accepted');
    sendUpdate(this.ws, frame);
    await accepted;
    const closed = await this.next('round_closed');
    this.round = closed.nextRound;
    return closed;
  }

  status() {
    this.ws.send(JSON.stringify({ type: 'status' }));
  }

  close() {
    if (this.ws) this.ws.close();
  }
}
