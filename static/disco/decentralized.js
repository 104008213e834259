/**
 * The browser's side of a decentralized task, the round protocol (no DOM code): peers find each
 * other through the signalling consumer at /ws/decentralized/<task>/ (aggregation/signalling.py),
 * exchange their updates over RTCDataChannels (peer_link.js) or, where a direct connection cannot
 * be made in time and the task allows it, through the server as an opaque relay in parts of at
 * most 1 MiB (relay.js), and aggregate locally: the sample-weighted mean, or secure aggregation
 * (secure_round.js). Every payload is sealed end to end (peer_crypto.js: a fresh ECDH P-256 key
 * pair each round, its public half sent with "ready"; AES-GCM under a per-pair, per-direction key),
 * so the server never sees a model, an update, a share or a partial sum, even when it relays them.
 *
 *   const session = new DecentralizedSession('my_task', {onEvent});
 *   const welcome = await session.connect();
 *   // ... train roundDuration epochs, then:
 *   const result = await session.exchange(model, samples, roundStartWeights);
 *   // result: {round, peers, used: 'webrtc'|'relay'|'mixed'|'none', fellBack: null|reason, sent, weights}
 *   await session.reportEvaluation({loss, accuracy, samples}); // the aggregate scored on the validation split
 *   session.close();
 *
 * Every wait has a deadline: a peer that misses it is dropped (mean without it), or, in secure
 * aggregation where its shares cannot be recovered, the round keeps the local weights and says why.
 * @module decentralized
 */

import { encodeWeights, decodeWeights } from './codec.js';
import { PeerLink } from './peer_link.js';
import { RoundKeys, generateKeyPair } from './peer_crypto.js';
import { privatizeWeights } from './privacy.js';
import {
  RELAY_PART_BYTES, RELAY_SLACK, RelayReassembler, decodeRelayFrame, encodeRelayFrame, splitRelay,
} from './relay.js';
import { secureRound } from './secure_round.js';

import { RECOVERY_DEFAULTS, retryWithBackoff, sleep as backoffSleep, waitLimits } from './recovery.js';

export { decodeRelayFrame, encodeRelayFrame } from './relay.js';

/** Default timeouts in milliseconds. */
export const DEFAULT_TIMEOUTS = Object.freeze({
  /** from "ready" to the server's list of the round's peers (others may still be training) */
  peers: 15 * 60_000,
  /** for a direct WebRTC connection to open before using the relay */
  connect: 10_000,
  /** for the peers' messages of one round when the server gives no deadline */
  exchange: 60_000,
  /** from "done" to the server's round_closed */
  closed: 30_000,
  /** past the exchange deadline, for the server's agreement (it agrees at the deadline at the latest) */
  agreement: 5_000,
});

/** An error of the decentralized protocol (server refusal, lost connection, bad peer data). */
export class DecentralizedError extends Error {
  constructor(code, reason) {
    super(reason);
    this.name = 'DecentralizedError';
    this.code = code;
  }
}

// ------------------------------------------------------------------------------------------
// Pure helpers (tested in Node)

/**
 * The sample-weighted mean of the peers' updates, summed in float64 in the given (sorted-peer)
 * order and then rounded to float32, so that every peer computes bit-identical weights.
 * @param {{samples: number, vector: Float32Array}[]} updates in sorted-peer-id order
 * @returns {Float32Array}
 */
export function weightedMean(updates) {
  if (!updates.length) throw new DecentralizedError('no_updates', 'There is no update to average.');
  const size = updates[0].vector.length;
  const total = updates.reduce((n, u) => n + u.samples, 0);
  const acc = new Float64Array(size);
  for (const { samples, vector } of updates) {
    const w = total > 0 ? samples : 1;
    for (let i = 0; i < size; i++) acc[i] += w * vector[i];
  }
  const divisor = total > 0 ? total : updates.length;
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) out[i] = acc[i] / divisor;
  return out;
}

/**
 * Which transport a round used, given each other peer's.
 * @param {string[]} transports 'webrtc' or 'relay' per other peer
 * @returns {'webrtc'|'relay'|'mixed'|'none'}
 */
export function summarizeTransports(transports) {
  const kinds = new Set(transports);
  if (!kinds.size) return 'none';
  if (kinds.size > 1) return 'mixed';
  return /** @type {any} */ ([...kinds][0]);
}

/**
 * The update a peer shares: roundStart + the round's delta, clipped and noised when the task
 * has differential-privacy settings (privacy.js), otherwise the weights themselves.
 * @param {Float32Array} weights the locally trained weights
 * @param {Float32Array|null} roundStart the weights the round started from
 * @param {{clippingRadius: number, noiseScale: number}|null} privacy
 * @param {() => number} [rng] uniform source for the noise (tests only; default: crypto)
 * @returns {Float32Array}
 */
export function privateUpdate(weights, roundStart, privacy, rng) {
  if (!privacy || privacy.clippingRadius == null || !roundStart) return weights;
  return privatizeWeights(weights, roundStart, privacy.clippingRadius, privacy.noiseScale ?? 0, rng);
}

/**
 * The model's weights as named tensors (in model.weights order, the same on every peer) and one vector.
 * @param {any} model a tf.LayersModel
 * @returns {{tensors: {name: string, shape: number[], data: Float32Array}[], vector: Float32Array}}
 */
export function readWeights(model) {
  const tensors = model.weights.map((w) => ({
    name: w.originalName ?? w.name, shape: w.shape, data: Float32Array.from(w.read().dataSync()),
  }));
  const vector = new Float32Array(tensors.reduce((n, t) => n + t.data.length, 0));
  let offset = 0;
  for (const t of tensors) { vector.set(t.data, offset); offset += t.data.length; }
  return { tensors, vector };
}

/**
 * Writes one vector (in readWeights order) into the model's variables.
 * @param {any} model
 * @param {Float32Array} vector
 */
export function writeWeights(model, vector) {
  const tf = globalThis.tf;
  let offset = 0;
  for (const variable of model.weights) {
    const size = variable.shape.reduce((a, b) => a * b, 1);
    const values = vector.slice(offset, offset + size);
    offset += size;
    tf.tidy(() => variable.write(tf.tensor(values, variable.shape)));
  }
  if (offset !== vector.length) {
    throw new DecentralizedError('model_mismatch', `${vector.length} values were written into a model of ${offset} weights.`);
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ------------------------------------------------------------------------------------------
// The session

export class DecentralizedSession {
  /**
   * @param {string} taskId
   * @param {{origin?: string, onEvent?: (message: object) => void, forceRelay?: boolean, iceServers?: any[],
   *   timeouts?: Partial<typeof DEFAULT_TIMEOUTS>, privacy?: {clippingRadius: number, noiseScale: number}|null,
   *   WebSocketImpl?: any, RTCPeerConnectionImpl?: any, rng?: () => number, relayPartBytes?: number,
   *   resumeToken?: string, recovery?: object, wait?: (ms: number) => Promise<void>, random?: () => number}} [options]
   *   `recovery` overrides recovery.js RECOVERY_DEFAULTS: a lost signalling connection is reopened with
   *   backoff and the resume token before the next exchange (or while waiting for peers).
   */
  constructor(taskId, {
    origin = globalThis.location?.origin, onEvent = () => {}, forceRelay = false, iceServers, timeouts = {},
    privacy = null, WebSocketImpl, RTCPeerConnectionImpl, rng, relayPartBytes = RELAY_PART_BYTES,
    resumeToken = '', recovery = {}, wait = backoffSleep, random = Math.random,
  } = {}) {
    this.resumeToken = resumeToken;
    this.recovery = { ...RECOVERY_DEFAULTS, ...recovery };
    this.backoffWait = wait;
    this.random = random;
    /** true once close() was called: the session then never reconnects */
    this.ended = false;
    this.taskId = taskId;
    this.origin = origin;
    this.onEvent = onEvent;
    this.forceRelay = forceRelay;
    this.iceServers = iceServers;
    this.timeouts = { ...DEFAULT_TIMEOUTS, ...timeouts };
    this.privacy = privacy;
    this.rng = rng;
    this.WebSocketImpl = WebSocketImpl ?? globalThis.WebSocket;
    this.RTCPeerConnectionImpl = RTCPeerConnectionImpl ?? globalThis.RTCPeerConnection;
    this.ws = null;
    this.welcome = null;
    this.participantId = null;
    this.round = null;
    this.closed = false;
    /** @type {Map<string, PeerLink>} */
    this.links = new Map();
    /** peers whose direct connection failed: the relay is used for them from then on */
    this.relayOnly = new Set();
    /** `${round}|${kind}|${from}` -> payload */
    this.inbox = new Map();
    /** round -> peers that left during it */
    this.left = new Map();
    /** control messages not yet consumed, by type */
    this.peersByRound = new Map();
    this.closedByRound = new Map();
    /** round -> the peers whose updates every remaining peer holds (the server's `agreed`) */
    this.agreedByRound = new Map();
    this.waiters = [];
    this.relayPartBytes = relayPartBytes;
    /** relayed parts not yet joined into whole payloads */
    this.relayParts = new RelayReassembler({ maxBytes: 256 * 1024 * 1024, partBytes: relayPartBytes });
    /** round -> this peer's ECDH key pair for it (the private half never leaves the browser) */
    this.keyPairs = new Map();
    /** round -> RoundKeys (the round's pairwise keys, from the server's `peers` message) */
    this.roundKeys = new Map();
    /** the round whose aggregate the model holds, not yet scored (federated evaluation) */
    this.evaluable = null;
  }

  /** @param {object} event */
  emit(event) {
    try { this.onEvent(event); } catch { /* a UI error must not break the protocol */ }
  }

  /** Opens the signalling connection; resolves with the server's welcome. */
  async connect() {
    let welcome;
    try {
      welcome = await this.open();
    } catch (error) { // a server that cannot be reached yet is tried again with backoff; a refusal is final
      if (!(error instanceof DecentralizedError && ['closed', 'timeout'].includes(error.code))) throw error;
      welcome = await this.reconnect();
    }
    if (this.iceServers === undefined) this.iceServers = welcome.iceServers ?? [];
    return welcome;
  }

  /** The time limits derived from the task's round deadline (the welcome's deadlineSeconds). */
  limits() {
    return waitLimits(this.welcome?.deadlineSeconds ?? this.recovery.deadlineSeconds, null, {});
  }

  /** One attempt: a new socket, the join message (with the resume token), the welcome within openMs. */
  async open() {
    const old = this.ws;
    this.ws = null;
    if (old) { try { old.close(); } catch { /* already closed */ } }
    const url = new URL(`/ws/decentralized/${this.taskId}/`, this.origin.replace(/^http/, 'ws'));
    const ws = new this.WebSocketImpl(url.toString());
    this.ws = ws;
    ws.binaryType = 'arraybuffer';
    // Participation: the first message joins; the resume token travels in it, never in the URL.
    const join = { type: 'join', client: 'browser', ...(this.resumeToken ? { resumeToken: this.resumeToken } : {}) };
    ws.onopen = () => this.send(join);
    ws.onmessage = (event) => { if (this.ws === ws) this.onServerMessage(event.data); };
    ws.onclose = () => { if (this.ws === ws) this.onServerClosed(); };
    const openMs = this.limits().openMs;
    try {
      const welcome = await this.wait((m) => m.type === 'welcome', openMs,
        `The server sent no welcome within ${Math.round(openMs / 1000)} s.`);
      this.welcome = welcome;
      this.participantId = String(welcome.participantId);
      this.round = welcome.round;
      if (welcome.resumeToken) this.resumeToken = welcome.resumeToken;
      this.closed = false;
      return welcome;
    } catch (error) {
      if (this.ws === ws) { this.ws = null; try { ws.close(); } catch { /* already closed */ } }
      throw error;
    }
  }

  /**
   * Reopens the signalling connection with backoff and jitter and the resume token (recovery.js);
   * links to peers are dropped (they are made again for the next round). Tells onEvent
   * `reconnecting` {attempt, attempts, delayMs} and `reconnected` {attempt, round}.
   */
  async reconnect() {
    for (const peer of [...this.links.keys()]) this.dropLink(peer);
    let tried = 0;
    const welcome = await retryWithBackoff(() => this.open(), {
      settings: this.recovery, wait: this.backoffWait, random: this.random,
      onAttempt: (attempt) => { tried = attempt.attempt; this.emit({ type: 'reconnecting', ...attempt }); },
      isFatal: (error) => error instanceof DecentralizedError && !['closed', 'timeout'].includes(error.code),
    });
    this.emit({ type: 'reconnected', attempt: tried, round: welcome.round, currentVersion: welcome.currentVersion });
    return welcome;
  }

  send(message) {
    if (this.ws && this.ws.readyState === 1) this.ws.send(typeof message === 'string' || message instanceof Uint8Array ? message : JSON.stringify(message));
  }

  /** Asks the server for a `participants` message. */
  status() {
    this.send({ type: 'status' });
  }

  onServerClosed() {
    this.closed = true;
    this.emit({ type: 'closed' });
    this.notify({ type: 'closed' });
    for (const w of this.payloadWaiters()) w.resolve(null);
  }

  onServerMessage(data) {
    if (typeof data !== 'string') {
      let whole;
      try {
        const { envelope, payload } = decodeRelayFrame(data);
        whole = this.relayParts.push(envelope, payload);
      } catch (error) {
        this.emit({ type: 'peer_error', reason: `A relayed frame was refused: ${error.message}` });
        return;
      }
      if (whole) this.deliver(whole.from, whole.round, whole.kind, whole.payload, 'relay');
      return;
    }
    const message = JSON.parse(data);
    this.emit(message);
    if (message.type === 'signal') {
      this.onSignal(String(message.from), message.data);
    } else if (message.type === 'peers') {
      this.peersByRound.set(message.round, message);
    } else if (message.type === 'agreed') {
      this.agreedByRound.set(message.round, message.peers.map(String));
    } else if (message.type === 'round_closed') {
      this.closedByRound.set(message.round, message);
      // The server closed the round (exchange deadline): stop waiting for its payloads.
      for (const w of this.payloadWaiters()) if (w.round === message.round) w.resolve(null);
    } else if (message.type === 'peer_left') {
      const peer = String(message.peer);
      if (!this.left.has(message.round)) this.left.set(message.round, new Set());
      this.left.get(message.round).add(peer);
      this.dropLink(peer);
      for (const w of this.payloadWaiters()) if (w.peer === peer) w.resolve(null);
    }
    this.notify(message);
  }

  /** Resolves waiters of control messages; an error or a closed connection rejects them all. */
  notify(message) {
    const waiting = this.waiters;
    this.waiters = [];
    for (const waiter of waiting) {
      if (waiter.payload) { this.waiters.push(waiter); continue; }
      // A refused evaluation concerns only the wait for its reply, not the round's waits.
      const roundError = message.type === 'error' && message.about !== 'evaluation';
      if (message.type === 'closed' || (roundError && waiter.failOnError)) {
        clearTimeout(waiter.timer);
        waiter.reject(new DecentralizedError(message.code ?? 'closed', message.reason ?? 'The server closed the connection.'));
      } else if (waiter.predicate(message)) {
        clearTimeout(waiter.timer);
        waiter.resolve(message);
      } else {
        this.waiters.push(waiter);
      }
    }
  }

  payloadWaiters() {
    return this.waiters.filter((w) => w.payload);
  }

  /** The next control message matching `predicate` (rejects on timeout, server error or disconnection). */
  wait(predicate, timeoutMs, timeoutReason, failOnError = true) {
    return new Promise((resolve, reject) => {
      const waiter = { predicate, resolve, reject, failOnError, timer: null };
      waiter.timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new DecentralizedError('timeout', timeoutReason));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  // ---------------------------------------------------------------- WebRTC signalling

  onSignal(from, data) {
    if (this.forceRelay || !this.RTCPeerConnectionImpl || this.relayOnly.has(from)) return;
    let link = this.links.get(from);
    if (!link && data && data.sdp && data.sdp.type === 'offer') {
      link = this.makeLink(from, false);
    }
    if (!link) return;
    link.onSignal(data).catch((error) => {
      this.emit({ type: 'peer_error', peer: from, reason: `WebRTC signalling with peer ${from} failed: ${error.message}` });
      link.fail();
    });
  }

  /** A new direct link to `peer`, remembered in this.links. */
  makeLink(peer, initiator) {
    const link = new PeerLink({
      peer, initiator, RTCPeerConnectionImpl: this.RTCPeerConnectionImpl, iceServers: this.iceServers,
      signal: (data) => this.send({ type: 'signal', to: peer, data }),
      onMessage: (bytes) => this.deliverPayload(peer, bytes, 'webrtc'),
      onError: (reason) => this.emit({ type: 'peer_error', peer, reason }),
    });
    this.links.set(peer, link);
    return link;
  }

  dropLink(peer) {
    const link = this.links.get(peer);
    if (link) link.close();
    this.links.delete(peer);
  }

  /**
   * Opens (or reuses) a direct connection to each other peer; a peer whose connection does not open
   * within the connect timeout (or every peer when forceRelay) uses the relay.
   * @param {string[]} others
   * @param {string[]} order the round's sorted peer list
   * @returns {Promise<Map<string, 'webrtc'|'relay'>>}
   */
  async connectPeers(others, order) {
    const transports = new Map();
    const direct = !this.forceRelay && !!this.RTCPeerConnectionImpl;
    await Promise.all(others.map(async (peer) => {
      if (direct && !this.relayOnly.has(peer)) {
        let link = this.links.get(peer);
        if (link && link.failed) { this.dropLink(peer); link = undefined; }
        if (!link) {
          const initiator = order.indexOf(this.participantId) < order.indexOf(peer);
          if (initiator) link = this.makeLink(peer, true);
        }
        const opened = await Promise.race([
          link ? link.opened : this.linkOpened(peer),
          sleep(this.timeouts.connect).then(() => false),
        ]);
        if (opened && this.links.get(peer)?.open) { transports.set(peer, 'webrtc'); return; }
        this.relayOnly.add(peer);
        this.dropLink(peer);
        this.emit({ type: 'transport', peer, used: 'relay', reason: 'no direct connection within '
          + `${Math.round(this.timeouts.connect / 1000)} s` });
      }
      transports.set(peer, 'relay');
    }));
    return transports;
  }

  /** Resolves true once the (answering) link to `peer` is open. */
  async linkOpened(peer) {
    for (;;) {
      const link = this.links.get(peer);
      if (link) return link.opened;
      if (this.closed) return false;
      await sleep(50);
    }
  }

  // ---------------------------------------------------------------- payloads

  /** A payload from a data channel: u32 LE n | JSON {round, kind} | sealed payload (relay.js's framing). */
  deliverPayload(from, bytes, via) {
    let frame;
    try {
      frame = decodeRelayFrame(bytes);
    } catch (error) {
      this.emit({ type: 'peer_error', peer: from, reason: `Peer ${from} sent an unreadable frame: ${error.message}` });
      return;
    }
    this.deliver(from, frame.envelope.round, frame.envelope.kind, frame.payload.slice(), via);
  }

  deliver(from, round, kind, payload, via) {
    const key = `${round}|${kind}|${from}`;
    const waiter = this.waiters.find((w) => w.payload && w.key === key);
    if (waiter) {
      this.waiters = this.waiters.filter((w) => w !== waiter);
      clearTimeout(waiter.timer);
      waiter.resolve(payload);
    } else {
      this.inbox.set(key, payload);
    }
    this.emit({ type: 'payload', from, round, kind, via, bytes: payload.length });
  }

  /** The payload `kind` of `peer` for `round`, or null when the peer left, the round closed or the deadline passed. */
  take(peer, round, kind, deadline) {
    const key = `${round}|${kind}|${peer}`;
    if (this.inbox.has(key)) {
      const payload = this.inbox.get(key);
      this.inbox.delete(key);
      return Promise.resolve(payload);
    }
    if (this.left.get(round)?.has(peer) || this.closedByRound.has(round) || this.closed) return Promise.resolve(null);
    return new Promise((resolve) => {
      const waiter = { payload: true, key, peer, round, resolve, timer: null };
      waiter.timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        resolve(null);
      }, Math.max(0, deadline - Date.now()));
      this.waiters.push(waiter);
    });
  }

  /**
   * The payload `kind` of `peer` for `round`, opened: {payload} or {payload: null, reason} when it did
   * not arrive in time or failed authentication (the reason says which).
   */
  async receive(peer, round, kind, deadline) {
    const sealed = await this.take(peer, round, kind, deadline);
    if (!sealed) return { payload: null, reason: 'did not arrive in time' };
    try {
      return { payload: await this.keysFor(round).open(peer, kind, sealed) };
    } catch (error) {
      this.emit({ type: 'peer_error', peer, reason: `Peer ${peer}'s ${kind} was refused: ${error.message}` });
      return { payload: null, reason: `was refused: ${error.message}` };
    }
  }

  /** Seals one payload for one peer and sends it over its data channel, or the relay in parts. */
  async sendTo(peer, round, kind, plaintext, transports) {
    let sealed;
    try {
      sealed = await this.keysFor(round).seal(peer, kind, plaintext);
    } catch (error) {
      this.emit({ type: 'peer_error', peer, reason: `Nothing was sent to peer ${peer}: ${error.message}` });
      return;
    }
    const link = this.links.get(peer);
    if (transports.get(peer) === 'webrtc' && link && link.open) {
      try {
        await link.sendPayload(encodeRelayFrame({ round, kind }, sealed));
        return;
      } catch (error) {
        this.emit({ type: 'transport', peer, used: 'relay', reason: error.message });
      }
    }
    if (this.welcome && this.welcome.relayAllowed === false) {
      this.emit({ type: 'peer_error', peer, reason: `No direct connection to peer ${peer} and this task forbids relaying through the server.` });
      return;
    }
    transports.set(peer, 'relay');
    for (const frame of splitRelay({ to: peer, round, kind }, sealed, this.relayPartBytes)) this.send(frame);
  }

  // ---------------------------------------------------------------- one round

  /**
   * Announces readiness, waits for the round's peers, exchanges updates with them, aggregates, writes
   * the result into `model` and tells the server it is done.
   * @param {any} model a tf.LayersModel trained this round
   * @param {number} samples this peer's number of training samples (weights the mean)
   * @param {Float32Array|null} [roundStartWeights] the weights the round started from (for differential privacy)
   * @returns {Promise<{round: number, peers: string[], used: string, fellBack: string|null, sent: Float32Array,
   *   weights: Float32Array, samples: number}>}
   */
  async exchange(model, samples, roundStartWeights = null) {
    if (this.ended) throw new DecentralizedError('closed', 'The session was closed.');
    const { tensors, vector: local } = readWeights(model);
    const update = privateUpdate(local, roundStartWeights, this.privacy, this.rng);
    this.relayParts.maxBytes = 8 * update.length + RELAY_SLACK;
    const announced = await this.announceRecovering();
    const round = announced.round;
    const order = announced.peers.map(String);
    const others = order.filter((p) => p !== this.participantId);
    const serverDeadline = announced.deadline ? Date.parse(announced.deadline) : NaN;
    const deadline = Number.isFinite(serverDeadline)
      ? Math.min(Math.max(serverDeadline, Date.now() + 3000), Date.now() + this.timeouts.exchange + this.timeouts.connect)
      : Date.now() + this.timeouts.exchange + this.timeouts.connect;

    let result;
    let fellBack = null;
    let present = order;
    const transports = others.length ? await this.connectPeers(others, order) : new Map();
    if (!others.length) {
      result = local;
      fellBack = 'No other peer took part in this round: keeping the local weights.';
    } else if (this.welcome?.secure && order.length >= 3) {
      ({ result, fellBack } = await secureRound({
        round, order, me: this.participantId, update, local, maxShareValue: this.welcome.maxShareValue,
        send: (peer, kind, bytes) => this.sendTo(peer, round, kind, bytes, transports),
        take: (peer, kind) => this.receive(peer, round, kind, deadline),
      }));
    } else {
      if (this.welcome?.secure) fellBack = `Secure aggregation needs at least 3 peers; this round had ${order.length}, so it used the plain mean.`;
      const mean = await this.meanRound(round, order, update, samples, tensors, transports, deadline);
      result = mean.result;
      present = mean.present;
      const notes = [fellBack];
      if (mean.missing.length) {
        notes.push(`Peer${mean.missing.length > 1 ? 's' : ''} ${mean.missing.join(', ')} sent nothing in time: averaged without ${mean.missing.length > 1 ? 'them' : 'it'}.`);
      }
      if (mean.leftOut.length) {
        notes.push(`The update${mean.leftOut.length > 1 ? 's' : ''} of ${mean.leftOut.join(', ')} did not reach every peer: left out by all.`);
      }
      if (!mean.agreed) notes.push('The server announced no agreement in time: averaged the updates this peer holds.');
      if (!present.length) notes.push('No update reached every peer: kept the local weights.');
      fellBack = notes.filter(Boolean).join(' ') || null;
    }
    writeWeights(model, result);
    this.send({ type: 'done', round });
    let closed = this.closedByRound.get(round);
    if (!closed) {
      closed = await this.wait((m) => m.type === 'round_closed' && m.round === round, this.timeouts.closed,
        'no round_closed', false).catch(() => null);
    }
    this.round = closed ? closed.nextRound : round + 1;
    this.cleanupRound(round);
    const used = summarizeTransports(others.filter((p) => present.includes(p)).map((p) => transports.get(p)));
    const outcome = { round, peers: present, used, fellBack, sent: update, weights: result, samples };
    this.evaluable = { round };
    this.emit({ type: 'exchanged', round, peers: present, used, fellBack });
    return outcome;
  }

  /**
   * announceReady, reconnecting first when the signalling connection was lost (before or while
   * waiting for the peers): the exchange then goes on in the server's open round.
   */
  async announceRecovering() {
    let probes = 0;
    for (;;) {
      if (this.closed) await this.reconnect();
      try {
        return await this.announceReady();
      } catch (error) {
        if (this.ended || !['closed', 'timeout'].includes(error.code)) throw error;
        if (error.code === 'timeout') {
          // No peers in time: ask the open round (or find the socket dead and reconnect), a bounded number of times.
          probes += 1;
          if (probes > this.recovery.probes) throw error;
          this.send({ type: 'status' });
          const status = await this.wait((m) => m.type === 'status' || m.type === 'participants',
            this.limits().statusMs, 'The server did not answer a status request.').catch(() => null);
          if (status) this.round = status.round;
          else if (this.ws) { const ws = this.ws; this.ws = null; this.closed = true; try { ws.close(); } catch { /* closed */ } }
        }
      }
    }
  }

  /**
   * Sends "ready" for the open round and resolves with the server's `peers` message. A round that
   * started without this peer (it joined or trained late) makes the server answer wrong_round: then
   * ask for the open round's number and announce again.
   */
  async announceReady() {
    for (let attempt = 0; ; attempt++) {
      const round = this.round;
      if (this.peersByRound.has(round)) return this.withKeys(this.peersByRound.get(round));
      if (!this.keyPairs.has(round)) this.keyPairs.set(round, await generateKeyPair());
      this.send({ type: 'ready', round, publicKey: this.keyPairs.get(round).publicKey });
      const message = await this.wait(
        (m) => (m.type === 'peers' && m.round === round) || (m.type === 'error' && m.code === 'wrong_round'),
        this.timeouts.peers, `The round's other peers did not get ready within ${Math.round(this.timeouts.peers / 60000)} min.`,
        false);
      if (message.type === 'peers') return this.withKeys(message);
      if (attempt >= 3) throw new DecentralizedError('wrong_round', message.reason);
      this.send({ type: 'status' });
      const status = await this.wait((m) => m.type === 'status' || m.type === 'participants', 10_000,
        'The server did not say which round is open.');
      this.round = status.round;
    }
  }

  /** The round's keys; a DecentralizedError when this peer did not announce itself for the round. */
  keysFor(round) {
    const keys = this.roundKeys.get(round);
    if (!keys) throw new DecentralizedError('no_keys', `This peer has no keys for round ${round}: it did not announce itself for it.`);
    return keys;
  }

  /** Makes the round's pairwise keys from the `peers` message's public keys and this peer's key pair. */
  withKeys(message) {
    const pair = this.keyPairs.get(message.round);
    if (pair && !this.roundKeys.has(message.round)) {
      this.roundKeys.set(message.round, new RoundKeys({ task: this.taskId, round: message.round, me: this.participantId,
        privateKey: pair.privateKey, publicKeys: message.publicKeys ?? {} }));
    }
    return message;
  }

  /** Sample-weighted mean: everyone sends its (sealed) update to everyone. */
  async meanRound(round, order, update, samples, tensors, transports, deadline) {
    const frame = encodeWeights({ type: 'peer_update', round, samples }, this.shape(tensors, update));
    const others = order.filter((p) => p !== this.participantId);
    await Promise.all(others.map((p) => this.sendTo(p, round, 'update', frame, transports)));
    const received = await Promise.all(others.map((p) => this.receive(p, round, 'update', deadline)));
    const byPeer = new Map([[this.participantId, { samples, vector: update }]]);
    const missing = [];
    others.forEach((peer, i) => {
      const parsed = received[i].payload && this.parseUpdate(peer, received[i].payload, update.length);
      if (parsed) byPeer.set(peer, parsed);
      else missing.push(peer);
    });
    // Average exactly the updates every remaining peer holds, so a peer that left halfway through
    // sending (its update reached some peers, not others) cannot make the peers' weights differ.
    const held = order.filter((p) => byPeer.has(p));
    const agreed = await this.agree(round, held, deadline);
    const present = (agreed ?? held).filter((p) => byPeer.has(p));
    const leftOut = held.filter((p) => !present.includes(p));
    const result = present.length ? weightedMean(present.map((p) => byPeer.get(p))) : update;
    return { result, present, missing, leftOut, agreed: agreed !== null };
  }

  /**
   * Tells the server whose updates this peer holds; resolves with the peers whose updates every
   * remaining peer holds (the server's `agreed`), or null when none came in time.
   */
  async agree(round, held, deadline) {
    this.send({ type: 'received', round, peers: held });
    if (!this.agreedByRound.has(round) && !this.closedByRound.has(round)) {
      const wait = Math.max(1000, deadline - Date.now()) + this.timeouts.agreement;
      await this.wait((m) => (m.type === 'agreed' || m.type === 'round_closed') && m.round === round, wait,
        'no agreement', false).catch(() => null);
    }
    return this.agreedByRound.get(round) ?? null;
  }

  parseUpdate(peer, bytes, size) {
    try {
      const { header, vector } = decodeWeights(bytes);
      if (vector.length !== size) throw new Error(`${vector.length} values instead of ${size}`);
      if (!vector.every(Number.isFinite)) throw new Error('NaN or infinite values');
      const samples = Number(header.samples);
      if (!Number.isInteger(samples) || samples < 0) throw new Error('no valid sample count');
      return { samples, vector: Float32Array.from(vector) };
    } catch (error) {
      this.emit({ type: 'peer_error', peer, reason: `Peer ${peer}'s update was refused: ${error.message}.` });
      return null;
    }
  }

  /** The model's tensor list with values taken from `vector`. */
  shape(tensors, vector) {
    let offset = 0;
    return tensors.map((t) => {
      const data = vector.subarray(offset, offset + t.data.length);
      offset += t.data.length;
      return { name: t.name, shape: t.shape, data };
    });
  }

  /**
   * Federated evaluation: reports the scores of the last exchange's aggregate on the page's validation
   * split (numbers only, never data) as `{type: 'evaluation', round, loss, accuracy, samples}`, once per
   * round. Resolves null when there is nothing to report, else `{round, loss, accuracy, samples, recorded,
   * reason?}` (`samples` as the server counted it). Never throws: a missed report must not stop training.
   * @param {{loss: number, accuracy: number|null, samples: number}} scores
   */
  async reportEvaluation({ loss, accuracy, samples }) {
    const target = this.evaluable;
    this.evaluable = null;
    if (!target || !(samples >= 1) || !Number.isFinite(loss)) return null;
    const { round } = target;
    const report = { round, loss, accuracy: Number.isFinite(accuracy) ? accuracy : null, samples };
    if (this.closed || !this.ws) return { ...report, recorded: false, reason: 'The signalling connection is closed.' };
    const reply = this.wait((m) => (m.type === 'evaluation_recorded' && m.round === round)
      || (m.type === 'error' && m.about === 'evaluation'), this.limits().statusMs, 'No reply to the evaluation in time.',
    false);
    this.send({ type: 'evaluation', ...report });
    try {
      const answer = await reply;
      if (answer.type === 'error') return { ...report, recorded: false, reason: answer.reason };
      return { ...report, samples: answer.samples ?? samples, recorded: true };
    } catch (error) {
      return { ...report, recorded: false, reason: error.message };
    }
  }

  cleanupRound(round) {
    for (const key of [...this.inbox.keys()]) if (Number(key.split('|')[0]) <= round) this.inbox.delete(key);
    for (const r of [...this.peersByRound.keys()]) if (r <= round) this.peersByRound.delete(r);
    for (const r of [...this.closedByRound.keys()]) if (r < round) this.closedByRound.delete(r);
    for (const r of [...this.agreedByRound.keys()]) if (r <= round) this.agreedByRound.delete(r);
    for (const r of [...this.keyPairs.keys()]) if (r <= round) this.keyPairs.delete(r); // keys live for one round
    for (const r of [...this.roundKeys.keys()]) if (r <= round) this.roundKeys.delete(r);
    this.relayParts.discardRound(round);
  }

  close() {
    this.ended = true;
    for (const peer of [...this.links.keys()]) this.dropLink(peer);
    if (this.ws) this.ws.close();
    this.closed = true;
  }
}
