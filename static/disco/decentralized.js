/**
 * The browser's side of a decentralized task (no DOM code): peers find each other through the
 * signalling consumer at /ws/decentralized/<task>/ (aggregation/signalling.py), exchange their
 * updates over RTCDataChannels (chunked with chunking.js) or, where a direct connection cannot
 * be made in time and the task allows it, through the server as an opaque relay, and aggregate
 * locally: the sample-weighted mean, or secure aggregation (additive shares mod 2^32, secure.js).
 * The server never sees a model or an update.
 *
 *   const session = new DecentralizedSession('my_task', {onEvent});
 *   const welcome = await session.connect();
 *   // ... train roundDuration epochs, then:
 *   const result = await session.exchange(model, samples, roundStartWeights);
 *   // result: {round, peers, used: 'webrtc'|'relay'|'mixed'|'none', fellBack: null|reason, sent, weights}
 *   session.close();
 *
 * Every wait has a deadline: a peer that misses it is dropped (mean without it), or, in secure
 * aggregation where its shares cannot be recovered, the round keeps the local weights and says why.
 * @module decentralized
 */

import { encodeWeights, readHeader, decodeWeights } from './codec.js';
import { chunkMessage, Reassembler } from './chunking.js';
import {
  addShares, decodeMean, decodeU32Frame, encodeFixed, encodeU32Frame, fixedPointScale, makeShares,
} from './secure.js';
import { privatizeWeights } from './privacy.js';

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

/** Frames at most this large go over a data channel in one piece (Chromium's pc.sctp.maxMessageSize). */
const DEFAULT_MAX_MESSAGE = 65_536;
/** Stop queueing data-channel chunks above this many buffered bytes until the buffer drains. */
const HIGH_WATER = 1 << 20;

/** A payload header type -> the relay's `kind`. */
const KIND_OF_TYPE = { peer_update: 'update', share: 'share', partial: 'partial' };

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
 * The relay frame the client sends: u32 LE n | n bytes of JSON envelope | payload.
 * @param {object} envelope {to, round, kind} (client -> server) or {from, round, kind}
 * @param {Uint8Array} payload
 * @returns {Uint8Array}
 */
export function encodeRelayFrame(envelope, payload) {
  const head = new TextEncoder().encode(JSON.stringify(envelope));
  const out = new Uint8Array(4 + head.length + payload.length);
  new DataView(out.buffer).setUint32(0, head.length, true);
  out.set(head, 4);
  out.set(payload, 4 + head.length);
  return out;
}

/**
 * Splits a relay frame into its JSON envelope and its payload (a view, no copy).
 * @param {ArrayBuffer|Uint8Array} bytes
 * @returns {{envelope: any, payload: Uint8Array}}
 */
export function decodeRelayFrame(bytes) {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  if (u8.length < 4) throw new DecentralizedError('bad_relay', `A relay frame needs at least 4 bytes; got ${u8.length}.`);
  const n = new DataView(u8.buffer, u8.byteOffset, u8.byteLength).getUint32(0, true);
  if (n > u8.length - 4) throw new DecentralizedError('bad_relay', `The relay envelope claims ${n} bytes; the frame has ${u8.length - 4}.`);
  let envelope;
  try {
    envelope = JSON.parse(new TextDecoder().decode(u8.subarray(4, 4 + n)));
  } catch (error) {
    throw new DecentralizedError('bad_relay', `The relay envelope is not JSON (${error.message}).`);
  }
  return { envelope, payload: u8.subarray(4 + n) };
}

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
// One direct connection to one peer

/**
 * An RTCPeerConnection + one ordered RTCDataChannel to one peer, reused across rounds.
 * The peer earlier in the server's sorted list makes the offer.
 */
class PeerLink {
  /**
   * @param {DecentralizedSession} session
   * @param {string} peer
   * @param {boolean} initiator
   */
  constructor(session, peer, initiator) {
    this.session = session;
    this.peer = peer;
    this.initiator = initiator;
    this.pc = new session.RTCPeerConnectionImpl({ iceServers: session.iceServers });
    this.channel = null;
    this.failed = false;
    this.pendingCandidates = [];
    this.reassembler = new Reassembler();
    this.messageId = 0;
    /** @type {Promise<boolean>} resolves true when the channel is open, false when the link failed */
    this.opened = new Promise((resolve) => { this.resolveOpened = resolve; });
    this.pc.onicecandidate = (event) => {
      if (event.candidate) this.signal({ candidate: event.candidate.toJSON ? event.candidate.toJSON() : event.candidate });
    };
    this.pc.onconnectionstatechange = () => {
      if (['failed', 'closed'].includes(this.pc.connectionState)) this.fail();
    };
    if (initiator) {
      this.attach(this.pc.createDataChannel('disco', { ordered: true }));
      this.offer().catch(() => this.fail());
    } else {
      this.pc.ondatachannel = (event) => this.attach(event.channel);
    }
  }

  signal(data) {
    this.session.send({ type: 'signal', to: this.peer, data });
  }

  async offer() {
    const offer = await this.pc.createOffer();
    await this.pc.setLocalDescription(offer);
    this.signal({ sdp: { type: this.pc.localDescription.type, sdp: this.pc.localDescription.sdp } });
  }

  /** Applies a relayed offer / answer / ICE candidate. */
  async onSignal(data) {
    if (data.sdp) {
      await this.pc.setRemoteDescription(data.sdp);
      for (const candidate of this.pendingCandidates.splice(0)) await this.pc.addIceCandidate(candidate);
      if (data.sdp.type === 'offer') {
        const answer = await this.pc.createAnswer();
        await this.pc.setLocalDescription(answer);
        this.signal({ sdp: { type: this.pc.localDescription.type, sdp: this.pc.localDescription.sdp } });
      }
    } else if (data.candidate) {
      if (this.pc.remoteDescription) await this.pc.addIceCandidate(data.candidate);
      else this.pendingCandidates.push(data.candidate);
    }
  }

  attach(channel) {
    this.channel = channel;
    channel.binaryType = 'arraybuffer';
    channel.bufferedAmountLowThreshold = HIGH_WATER / 4;
    channel.onopen = () => this.resolveOpened(true);
    channel.onclose = () => this.fail();
    channel.onerror = () => this.fail();
    channel.onmessage = (event) => {
      try {
        const whole = this.reassembler.push(new Uint8Array(event.data));
        if (whole) this.session.deliverPayload(this.peer, whole, 'webrtc');
      } catch (error) {
        this.session.emit({ type: 'peer_error', peer: this.peer, reason: `A chunk from peer ${this.peer} was refused: ${error.message}` });
      }
    };
    if (channel.readyState === 'open') this.resolveOpened(true);
  }

  get open() {
    return !this.failed && this.channel?.readyState === 'open';
  }

  /** The largest chunk the channel takes in one message. */
  get maxMessageSize() {
    const size = this.pc.sctp?.maxMessageSize;
    return size && Number.isFinite(size) && size > 16 ? Math.min(size, 262_144) : DEFAULT_MAX_MESSAGE;
  }

  /** Sends one payload in chunks, waiting when the channel's send buffer is full. */
  async sendPayload(bytes) {
    const chunks = chunkMessage(bytes, this.maxMessageSize, (this.messageId = (this.messageId + 1) >>> 0));
    for (const chunk of chunks) {
      while (this.channel.bufferedAmount > HIGH_WATER && this.open) {
        await new Promise((resolve) => {
          this.channel.onbufferedamountlow = resolve;
          setTimeout(resolve, 200);
        });
      }
      if (!this.open) throw new DecentralizedError('channel_closed', `The data channel to peer ${this.peer} closed.`);
      this.channel.send(chunk);
    }
  }

  fail() {
    if (this.failed) return;
    this.failed = true;
    this.resolveOpened(false);
  }

  close() {
    this.fail();
    try { this.channel?.close(); } catch { /* already closed */ }
    try { this.pc.close(); } catch { /* already closed */ }
  }
}

// ------------------------------------------------------------------------------------------
// The session

export class DecentralizedSession {
  /**
   * @param {string} taskId
   * @param {{origin?: string, onEvent?: (message: object) => void, forceRelay?: boolean, iceServers?: any[],
   *   timeouts?: Partial<typeof DEFAULT_TIMEOUTS>, privacy?: {clippingRadius: number, noiseScale: number}|null,
   *   WebSocketImpl?: any, RTCPeerConnectionImpl?: any, rng?: () => number}} [options]
   */
  constructor(taskId, {
    origin = globalThis.location?.origin, onEvent = () => {}, forceRelay = false, iceServers, timeouts = {},
    privacy = null, WebSocketImpl, RTCPeerConnectionImpl, rng,
  } = {}) {
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
  }

  /** @param {object} event */
  emit(event) {
    try { this.onEvent(event); } catch { /* a UI error must not break the protocol */ }
  }

  /** Opens the signalling connection; resolves with the server's welcome. */
  connect() {
    const url = new URL(`/ws/decentralized/${this.taskId}/`, this.origin.replace(/^http/, 'ws'));
    this.ws = new this.WebSocketImpl(url.toString());
    this.ws.binaryType = 'arraybuffer';
    this.ws.onopen = () => this.send({ type: 'join', client: 'browser' }); // participation: the first message joins
    this.ws.onmessage = (event) => this.onServerMessage(event.data);
    this.ws.onclose = () => this.onServerClosed();
    return this.wait((m) => m.type === 'welcome', 30_000, 'The server sent no welcome within 30 s.').then((welcome) => {
      this.welcome = welcome;
      this.participantId = String(welcome.participantId);
      this.round = welcome.round;
      if (this.iceServers === undefined) this.iceServers = welcome.iceServers ?? [];
      return welcome;
    });
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
      let frame;
      try {
        frame = decodeRelayFrame(data);
      } catch (error) {
        this.emit({ type: 'peer_error', reason: error.message });
        return;
      }
      const { envelope, payload } = frame;
      this.deliver(String(envelope.from), envelope.round, envelope.kind, payload.slice(), 'relay');
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
      if (message.type === 'closed' || (message.type === 'error' && waiter.failOnError)) {
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
      link = new PeerLink(this, from, false);
      this.links.set(from, link);
    }
    if (!link) return;
    link.onSignal(data).catch((error) => {
      this.emit({ type: 'peer_error', peer: from, reason: `WebRTC signalling with peer ${from} failed: ${error.message}` });
      link.fail();
    });
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
          if (initiator) {
            link = new PeerLink(this, peer, true);
            this.links.set(peer, link);
          }
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

  /** A payload from a data channel: its kind and round come from its frame header. */
  deliverPayload(from, bytes, via) {
    let header;
    try {
      ({ header } = readHeader(bytes));
    } catch (error) {
      this.emit({ type: 'peer_error', peer: from, reason: `Peer ${from} sent an unreadable frame: ${error.message}` });
      return;
    }
    this.deliver(from, header.round, KIND_OF_TYPE[header.type] ?? header.type, bytes, via);
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

  /** Sends one payload to one peer over its data channel, or the relay. */
  async sendTo(peer, round, kind, bytes, transports) {
    const link = this.links.get(peer);
    if (transports.get(peer) === 'webrtc' && link && link.open) {
      try {
        await link.sendPayload(bytes);
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
    this.send(encodeRelayFrame({ to: peer, round, kind }, bytes));
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
    if (this.closed) throw new DecentralizedError('closed', 'The connection to the server is closed.');
    const { tensors, vector: local } = readWeights(model);
    const update = privateUpdate(local, roundStartWeights, this.privacy, this.rng);
    const announced = await this.announceReady();
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
      ({ result, fellBack } = await this.secureRound(round, order, update, local, transports, deadline));
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
    this.emit({ type: 'exchanged', round, peers: present, used, fellBack });
    return outcome;
  }

  /**
   * Sends "ready" for the open round and resolves with the server's `peers` message. A round that
   * started without this peer (it joined or trained late) makes the server answer wrong_round: then
   * ask for the open round's number and announce again.
   */
  async announceReady() {
    for (let attempt = 0; ; attempt++) {
      const round = this.round;
      if (this.peersByRound.has(round)) return this.peersByRound.get(round);
      this.send({ type: 'ready', round });
      const message = await this.wait(
        (m) => (m.type === 'peers' && m.round === round) || (m.type === 'error' && m.code === 'wrong_round'),
        this.timeouts.peers, `The round's other peers did not get ready within ${Math.round(this.timeouts.peers / 60000)} min.`,
        false);
      if (message.type === 'peers') return message;
      if (attempt >= 3) throw new DecentralizedError('wrong_round', message.reason);
      this.send({ type: 'status' });
      const status = await this.wait((m) => m.type === 'status' || m.type === 'participants', 10_000,
        'The server did not say which round is open.');
      this.round = status.round;
    }
  }

  /** Sample-weighted mean: everyone sends its update to everyone. */
  async meanRound(round, order, update, samples, tensors, transports, deadline) {
    const frame = encodeWeights({ type: 'peer_update', round, samples }, this.shape(tensors, update));
    const others = order.filter((p) => p !== this.participantId);
    await Promise.all(others.map((p) => this.sendTo(p, round, 'update', frame, transports)));
    const received = await Promise.all(others.map((p) => this.take(p, round, 'update', deadline)));
    const byPeer = new Map([[this.participantId, { samples, vector: update }]]);
    const missing = [];
    others.forEach((peer, i) => {
      const parsed = received[i] && this.parseUpdate(peer, received[i], update.length);
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

  /**
   * Secure aggregation: fixed-point encode, split into one additive share per peer (mod 2^32), send
   * share j to peer j, sum the shares held, broadcast that partial sum; the mean is the decoded sum
   * of all partials / n. Any missing share or partial keeps the local weights (it cannot be recovered).
   */
  async secureRound(round, order, update, local, transports, deadline) {
    const n = order.length;
    const me = order.indexOf(this.participantId);
    const others = order.filter((p) => p !== this.participantId);
    const maxShare = this.welcome.maxShareValue;
    const scale = fixedPointScale(maxShare, n);
    const shares = makeShares(encodeFixed(update, maxShare, scale), n);
    await Promise.all(order.map((peer, j) => (j === me ? null
      : this.sendTo(peer, round, 'share', encodeU32Frame({ type: 'share', round }, shares[j]), transports))));
    const held = [shares[me]];
    for (const [i, bytes] of (await Promise.all(others.map((p) => this.take(p, round, 'share', deadline)))).entries()) {
      const vector = bytes && this.parseU32(others[i], bytes, update.length);
      if (!vector) return this.localFallback(local, `peer ${others[i]}'s share did not arrive in time`);
      held.push(vector);
    }
    const partial = addShares(held);
    const partialFrame = encodeU32Frame({ type: 'partial', round }, partial);
    await Promise.all(others.map((p) => this.sendTo(p, round, 'partial', partialFrame, transports)));
    const partials = [partial];
    for (const [i, bytes] of (await Promise.all(others.map((p) => this.take(p, round, 'partial', deadline)))).entries()) {
      const vector = bytes && this.parseU32(others[i], bytes, update.length);
      if (!vector) return this.localFallback(local, `peer ${others[i]}'s partial sum did not arrive in time`);
      partials.push(vector);
    }
    return { result: decodeMean(addShares(partials), scale, n), fellBack: null };
  }

  localFallback(local, why) {
    return { result: local, fellBack: `Secure aggregation failed: ${why}; the shares of a missing peer cannot be `
      + 'recovered, so this round keeps the local weights.' };
  }

  parseU32(peer, bytes, size) {
    try {
      return decodeU32Frame(bytes, { expectedSize: size }).vector.slice();
    } catch (error) {
      this.emit({ type: 'peer_error', peer, reason: `Peer ${peer}'s share was refused: ${error.message}.` });
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

  cleanupRound(round) {
    for (const key of [...this.inbox.keys()]) if (Number(key.split('|')[0]) <= round) this.inbox.delete(key);
    for (const r of [...this.peersByRound.keys()]) if (r <= round) this.peersByRound.delete(r);
    for (const r of [...this.closedByRound.keys()]) if (r < round) this.closedByRound.delete(r);
    for (const r of [...this.agreedByRound.keys()]) if (r <= round) this.agreedByRound.delete(r);
  }

  close() {
    for (const peer of [...this.links.keys()]) this.dropLink(peer);
    if (this.ws) this.ws.close();
    this.closed = true;
  }
}
