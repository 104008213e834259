// static/disco/decentralized.js in Node: relay frames, the mean, and whole rounds between sessions
// wired to an in-memory signalling hub (the protocol of aggregation/signalling.py) and fake WebRTC
// peer connections whose data channels pass bytes in memory (chunked by chunking.js).
import assert from 'node:assert/strict';
import {test} from 'node:test';

import {
  DecentralizedSession, decodeRelayFrame, encodeRelayFrame, summarizeTransports, weightedMean,
} from '../../static/disco/decentralized.js';
import {encodeWeights} from '../../static/disco/codec.js';
import {fixedPointScale, quantizationBound} from '../../static/disco/secure.js';

// A fake TF.js: writeWeights uses tf.tidy and tf.tensor.
globalThis.tf = {tidy: (f) => f(), tensor: (values, shape) => ({values, shape})};

/** A model with two variables whose values a test sets. */
function fakeModel(values) {
  const split = [values.slice(0, 4), values.slice(4)];
  return {
    weights: split.map((init, i) => {
      let data = Float32Array.from(init);
      return {
        originalName: `w${i}`, shape: [init.length],
        read: () => ({dataSync: () => data}),
        write: (t) => { data = Float32Array.from(t.values); },
      };
    }),
    vector() { return Float32Array.from(this.weights.flatMap((w) => Array.from(w.read().dataSync()))); },
  };
}

// ------------------------------------------------------------------------------------------------
// An in-memory signalling server: welcome, ready -> peers (when all connected peers are ready and at
// least `min`), signal routing, binary relay (envelope rewritten, payload untouched), received -> agreed
// (the intersection, once every remaining peer reported), done -> round_closed, peer_left when a peer of an
// exchanging round disconnects.

class Hub {
  constructor({min = 2, secure = false, relayAllowed = true, maxShareValue = 10} = {}) {
    Object.assign(this, {min, secure, relayAllowed, maxShareValue});
    this.sockets = new Map();
    this.nextId = 1;
    this.round = 1;
    this.ready = new Set();
    this.exchanging = new Map(); // round -> {peers, done: Set}
    this.relayed = 0;
    /** every relayed frame as the server saw it, and the public keys it handed out */
    this.frames = [];
    this.publicKeys = new Map();
    this.tamper = (envelope, payload) => payload;
  }

  socketClass() {
    const hub = this;
    return class FakeWebSocket {
      constructor(url) {
        this.url = url;
        this.readyState = 1;
        this.id = String(hub.nextId++).padStart(3, '0');
        hub.sockets.set(this.id, this);
        setTimeout(() => this.deliver(JSON.stringify({type: 'welcome', participantId: this.id, resumeToken: 't',
          round: hub.round, participants: hub.sockets.size, ready: hub.ready.size, waitingFor: 0,
          minParticipants: hub.min, relayAllowed: hub.relayAllowed, secure: hub.secure,
          maxShareValue: hub.maxShareValue, iceServers: []})));
      }
      deliver(data) { if (this.readyState === 1) setTimeout(() => this.onmessage?.({data})); }
      send(data) { if (this.readyState === 1) hub.receive(this, data); }
      close() {
        if (this.readyState !== 1) return;
        this.readyState = 3;
        hub.leave(this);
        setTimeout(() => this.onclose?.());
      }
    };
  }

  json(socket, message) { socket.deliver(JSON.stringify(message)); }

  receive(socket, data) {
    if (typeof data !== 'string') {
      const {envelope, payload} = decodeRelayFrame(data);
      assert.equal(this.relayAllowed, true, 'a relayed frame was sent although the task forbids relaying');
      const target = this.sockets.get(envelope.to);
      if (!target) { this.json(socket, {type: 'error', code: 'unknown_peer', reason: 'gone'}); return; }
      this.relayed += 1;
      this.frames.push({from: socket.id, ...envelope, payload: payload.slice()});
      const out = encodeRelayFrame({from: socket.id, round: envelope.round, kind: envelope.kind, part: envelope.part ?? 0,
        parts: envelope.parts ?? 1}, this.tamper(envelope, payload.slice()));
      target.deliver(out.buffer);
      return;
    }
    const message = JSON.parse(data);
    if (message.type === 'ready') {
      if (message.round !== this.round) {
        this.json(socket, {type: 'error', code: 'wrong_round', reason: `open round is ${this.round}`});
        return;
      }
      this.ready.add(socket.id);
      if (message.publicKey) this.publicKeys.set(socket.id, message.publicKey);
      this.maybeStart();
    } else if (message.type === 'status') {
      this.json(socket, {type: 'status', round: this.round, participants: this.sockets.size, ready: this.ready.size,
        waitingFor: 0, minParticipants: this.min});
    } else if (message.type === 'signal') {
      const target = this.sockets.get(message.to);
      if (target) this.json(target, {type: 'signal', from: socket.id, data: message.data});
    } else if (message.type === 'received') {
      this.exchanging.get(message.round).received.set(socket.id, new Set(message.peers));
      this.maybeAgree(message.round);
    } else if (message.type === 'done') {
      const rnd = this.exchanging.get(message.round);
      rnd.done.add(socket.id);
      this.maybeClose(message.round);
    } else if (message.type === 'evaluation') {
      // As aggregation/evaluations.py: only a peer that finished the round reports on it, once.
      (this.evaluations ??= []).push({from: socket.id, ...message});
      const rnd = this.exchanging.get(message.round);
      const twice = this.evaluations.filter((e) => e.from === socket.id && e.round === message.round).length > 1;
      if (!rnd?.done.has(socket.id) || twice) {
        this.json(socket, {type: 'error', code: twice ? 'duplicate_evaluation' : 'not_in_round', about: 'evaluation',
          reason: twice ? 'You already reported on this round.' : 'You did not finish this round.'});
      } else {
        this.json(socket, {type: 'evaluation_recorded', round: message.round, samples: message.samples});
      }
    }
  }

  maybeAgree(number) {
    const rnd = this.exchanging.get(number);
    const present = rnd.peers.filter((p) => !rnd.left.has(p));
    if (rnd.agreed || !present.every((p) => rnd.received.has(p))) return;
    rnd.agreed = present.reduce((acc, p) => acc.filter((q) => rnd.received.get(p).has(q)), [...rnd.peers]);
    for (const id of present) this.json(this.sockets.get(id), {type: 'agreed', round: number, peers: rnd.agreed});
  }

  maybeStart() {
    const connected = [...this.sockets.keys()];
    if (this.ready.size < this.min || !connected.every((id) => this.ready.has(id))) return;
    const peers = [...this.ready].sort();
    this.exchanging.set(this.round, {peers, done: new Set(), left: new Set(), received: new Map(), agreed: null});
    for (const id of peers) {
      this.json(this.sockets.get(id), {type: 'peers', round: this.round, peers,
        deadline: new Date(Date.now() + 5000).toISOString(),
        publicKeys: Object.fromEntries(peers.filter((p) => this.publicKeys.has(p)).map((p) => [p, this.publicKeys.get(p)]))});
    }
    this.round += 1;
    this.ready = new Set();
  }

  maybeClose(number) {
    const rnd = this.exchanging.get(number);
    if (rnd.closed || !rnd.peers.every((p) => rnd.done.has(p) || rnd.left.has(p))) return;
    rnd.closed = true;
    for (const id of rnd.peers) {
      const socket = this.sockets.get(id);
      if (socket) this.json(socket, {type: 'round_closed', round: number, nextRound: this.round, peers: [...rnd.done].sort()});
    }
  }

  leave(socket) {
    this.sockets.delete(socket.id);
    this.ready.delete(socket.id);
    for (const [number, rnd] of this.exchanging) {
      if (rnd.closed || !rnd.peers.includes(socket.id) || rnd.done.has(socket.id)) continue;
      rnd.left.add(socket.id);
      for (const id of rnd.peers) {
        const other = this.sockets.get(id);
        if (other) this.json(other, {type: 'peer_left', round: number, peer: socket.id});
      }
      this.maybeAgree(number);
      this.maybeClose(number);
    }
    if (this.ready.size) this.maybeStart();
  }
}

// ------------------------------------------------------------------------------------------------
// Fake WebRTC: an offer names its connection; the answer links the two; data channels then pass
// bytes (as ArrayBuffers, like Chromium) and refuse anything over sctp.maxMessageSize.

function fakeRtc({maxMessageSize = 64, broken = false} = {}) {
  const registry = new Map();
  let serial = 0;
  const stats = {messages: 0, largest: 0, text: ''};

  class FakeChannel {
    constructor(pc) { this.pc = pc; this.readyState = 'connecting'; this.bufferedAmount = 0; this.remote = null; }
    send(bytes) {
      assert.ok(bytes.length <= maxMessageSize, `a ${bytes.length}-byte message exceeds maxMessageSize ${maxMessageSize}`);
      stats.messages += 1;
      stats.largest = Math.max(stats.largest, bytes.length);
      stats.text += Buffer.from(bytes).toString('latin1');
      const copy = Uint8Array.from(bytes).buffer;
      setTimeout(() => this.remote?.onmessage?.({data: copy}));
    }
    close() { this.readyState = 'closed'; }
    open() { this.readyState = 'open'; this.onopen?.(); }
  }

  class FakePeerConnection {
    constructor() {
      this.id = `pc${serial++}`;
      registry.set(this.id, this);
      this.sctp = {maxMessageSize};
      this.connectionState = 'new';
      this.remoteDescription = null;
      this.channel = null;
    }
    createDataChannel() { this.channel = new FakeChannel(this); return this.channel; }
    async createOffer() { return {type: 'offer', sdp: this.id}; }
    async createAnswer() { return {type: 'answer', sdp: this.id}; }
    async setLocalDescription(d) {
      this.localDescription = d;
      setTimeout(() => this.onicecandidate?.({candidate: {candidate: `host ${this.id}`}}));
    }
    async setRemoteDescription(d) {
      this.remoteDescription = d;
      const other = registry.get(d.sdp);
      if (d.type === 'answer' && !broken) {
        // The offerer's channel meets its twin on the answering side.
        const twin = new FakeChannel(other);
        this.channel.remote = twin;
        twin.remote = this.channel;
        other.ondatachannel?.({channel: twin});
        setTimeout(() => { twin.open(); this.channel.open(); });
      }
    }
    async addIceCandidate() {}
    close() { this.connectionState = 'closed'; }
  }
  return {FakePeerConnection, stats};
}

/** n sessions joined to one hub; returns them with their welcome messages. */
async function join(hub, n, options = {}) {
  const sessions = [];
  for (let i = 0; i < n; i++) {
    const session = new DecentralizedSession('t', {origin: 'http://test', WebSocketImpl: hub.socketClass(),
      timeouts: {connect: 300, exchange: 2000, closed: 2000, peers: 5000}, ...options});
    await session.connect();
    sessions.push(session);
  }
  return sessions;
}

const UPDATES = [[1, 2, 3, 4, 5, 6], [3, 2, 1, 0, -1, -2], [0.5, 0.25, -0.5, 2, 2, 2]];

test('relay frames carry their envelope and payload unchanged', () => {
  const payload = Uint8Array.from([0, 1, 2, 255]);
  const frame = encodeRelayFrame({to: 'b', round: 3, kind: 'share'}, payload);
  const {envelope, payload: back} = decodeRelayFrame(frame.buffer);
  assert.deepEqual(envelope, {to: 'b', round: 3, kind: 'share'});
  assert.deepEqual(Array.from(back), [0, 1, 2, 255]);
  assert.throws(() => decodeRelayFrame(new Uint8Array([9, 0, 0, 0, 1])), /claims 9 bytes/);
});

test('the weighted mean is sample-weighted and computed in float64', () => {
  const mean = weightedMean([{samples: 1, vector: Float32Array.from([1, 0.1])}, {samples: 3, vector: Float32Array.from([5, 0.2])}]);
  assert.deepEqual(Array.from(mean), [4, Math.fround(0.175)]);
  assert.equal(summarizeTransports(['webrtc', 'relay']), 'mixed');
  assert.equal(summarizeTransports(['relay', 'relay']), 'relay');
  assert.equal(summarizeTransports([]), 'none');
});

/** Every session exchanges its update of UPDATES; returns the results. */
function exchangeAll(sessions, samples = [10, 20, 30]) {
  return Promise.all(sessions.map((s, i) => s.exchange(fakeModel(UPDATES[i]), samples[i], null)));
}

function expectedMean(samples) {
  return weightedMean(UPDATES.slice(0, samples.length).map((u, i) => ({samples: samples[i], vector: Float32Array.from(u)})));
}

test('three peers average over chunked data channels and end with identical weights', async () => {
  const hub = new Hub({min: 3});
  const {FakePeerConnection, stats} = fakeRtc({maxMessageSize: 48});
  const sessions = await join(hub, 3, {RTCPeerConnectionImpl: FakePeerConnection});
  const results = await exchangeAll(sessions);
  for (const r of results) {
    assert.deepEqual(Array.from(r.weights), Array.from(expectedMean([10, 20, 30])));
    assert.equal(r.used, 'webrtc');
    assert.equal(r.fellBack, null);
    assert.equal(r.peers.length, 3);
  }
  assert.equal(hub.relayed, 0);
  assert.ok(stats.messages > 6 * 3, `frames were chunked (${stats.messages} messages)`);
  // The next round reuses the connections and follows the server's round numbers.
  const again = await exchangeAll(sessions);
  assert.deepEqual(again.map((r) => r.round), [2, 2, 2]);
  assert.ok(again.every((r) => r.used === 'webrtc'));
  sessions.forEach((s) => s.close());
});

test('forceRelay sends the same bytes through the server and gives the same result', async () => {
  const hub = new Hub({min: 3});
  const {FakePeerConnection} = fakeRtc();
  const sessions = await join(hub, 3, {RTCPeerConnectionImpl: FakePeerConnection, forceRelay: true});
  const results = await exchangeAll(sessions);
  assert.ok(results.every((r) => r.used === 'relay'));
  assert.equal(hub.relayed, 6);
  for (const r of results) assert.deepEqual(Array.from(r.weights), Array.from(expectedMean([10, 20, 30])));
  sessions.forEach((s) => s.close());
});

test('a direct connection that never opens falls back to the relay per peer', async () => {
  const hub = new Hub({min: 2});
  const {FakePeerConnection} = fakeRtc({broken: true});
  const events = [];
  const sessions = await join(hub, 2, {RTCPeerConnectionImpl: FakePeerConnection, onEvent: (e) => events.push(e)});
  const results = await exchangeAll(sessions, [1, 1]);
  assert.ok(results.every((r) => r.used === 'relay'));
  assert.ok(events.some((e) => e.type === 'transport' && e.used === 'relay' && /no direct connection/.test(e.reason)));
  assert.deepEqual(Array.from(results[0].weights), Array.from(results[1].weights));
  sessions.forEach((s) => s.close());
});

test('secure aggregation of three peers equals the plain mean within the quantization bound', async () => {
  const hub = new Hub({min: 3, secure: true, maxShareValue: 10});
  const {FakePeerConnection} = fakeRtc({maxMessageSize: 40});
  const sessions = await join(hub, 3, {RTCPeerConnectionImpl: FakePeerConnection});
  const results = await exchangeAll(sessions);
  const plain = expectedMean([1, 1, 1]);
  const bound = quantizationBound(fixedPointScale(10, 3));
  for (const r of results) {
    assert.equal(r.fellBack, null);
    assert.deepEqual(Array.from(r.weights), Array.from(results[0].weights));
    r.weights.forEach((v, i) => assert.ok(Math.abs(v - plain[i]) <= bound + 1e-6, `coordinate ${i}: ${v} vs ${plain[i]}`));
  }
  sessions.forEach((s) => s.close());
});

test('secure aggregation with two peers falls back to the mean and says why', async () => {
  const hub = new Hub({min: 2, secure: true});
  const sessions = await join(hub, 2, {forceRelay: true});
  const results = await exchangeAll(sessions, [1, 3]);
  for (const r of results) {
    assert.match(r.fellBack, /needs at least 3 peers/);
    assert.deepEqual(Array.from(r.weights), Array.from(expectedMean([1, 3])));
  }
  sessions.forEach((s) => s.close());
});

test('a peer that leaves mid-round is averaged out by the others, who do not wait for the deadline', async () => {
  const hub = new Hub({min: 3});
  const sessions = await join(hub, 3, {forceRelay: true});
  // The third peer announces itself ready, then disconnects before sending its update.
  const [a, b, c] = sessions;
  c.send({type: 'ready', round: 1});
  const started = Date.now();
  const pending = [a.exchange(fakeModel(UPDATES[0]), 1, null), b.exchange(fakeModel(UPDATES[1]), 1, null)];
  await new Promise((resolve) => setTimeout(resolve, 50));
  c.close();
  const results = await Promise.all(pending);
  assert.ok(Date.now() - started < 1500, 'the peers stopped waiting when the server said it left');
  for (const r of results) {
    assert.deepEqual(r.peers, [a.participantId, b.participantId]);
    assert.match(r.fellBack, /sent nothing in time: averaged without it/);
    assert.deepEqual(Array.from(r.weights), Array.from(expectedMean([1, 1])));
  }
  sessions.forEach((s) => s.close());
});

test('an update that reached only some peers is left out by all, so their weights stay identical', async () => {
  const hub = new Hub({min: 3});
  const sessions = await join(hub, 3, {forceRelay: true});
  const [a, b, c] = sessions;
  // c sends its update to a only, then leaves: a holds three updates, b two.
  const pending = [a.exchange(fakeModel(UPDATES[0]), 1, null), b.exchange(fakeModel(UPDATES[1]), 1, null)];
  await c.announceReady();
  const frame = encodeWeights({type: 'peer_update', round: 1, samples: 5},
    [{name: 'w0', shape: [4], data: Float32Array.from(UPDATES[2].slice(0, 4))},
      {name: 'w1', shape: [2], data: Float32Array.from(UPDATES[2].slice(4))}]);
  await c.sendTo(a.participantId, 1, 'update', frame, new Map());
  await new Promise((resolve) => setTimeout(resolve, 100));
  c.close();
  const results = await Promise.all(pending);
  assert.deepEqual(Array.from(results[0].weights), Array.from(results[1].weights));
  assert.deepEqual(Array.from(results[0].weights), Array.from(expectedMean([1, 1])));
  assert.match(results[0].fellBack, /did not reach every peer: left out by all/);
  sessions.forEach((s) => s.close());
});

test('secure aggregation keeps the local weights when a peer leaves after the shares were sent', async () => {
  const hub = new Hub({min: 3, secure: true});
  const sessions = await join(hub, 3, {forceRelay: true});
  const [a, b, c] = sessions;
  c.send({type: 'ready', round: 1});
  const pending = [a.exchange(fakeModel(UPDATES[0]), 1, null), b.exchange(fakeModel(UPDATES[1]), 1, null)];
  await new Promise((resolve) => setTimeout(resolve, 50));
  c.close();
  const results = await Promise.all(pending);
  results.forEach((r, i) => {
    assert.match(r.fellBack, /keeps the local weights/);
    assert.deepEqual(Array.from(r.weights), UPDATES[i]);
  });
  sessions.forEach((s) => s.close());
});

test('a peer that announces itself for a round that already started joins the open one', async () => {
  const hub = new Hub({min: 2});
  const sessions = await join(hub, 2, {forceRelay: true});
  sessions[0].round = 7; // stale: the server answers wrong_round, the session asks for the open round
  const results = await exchangeAll(sessions, [1, 1]);
  assert.deepEqual(results.map((r) => r.round), [1, 1]);
  sessions.forEach((s) => s.close());
});

const asText = (u8) => Buffer.from(u8).toString('latin1');

test('secure aggregation over the relay: the server sees only sealed parts, and the mean is unchanged', async () => {
  const hub = new Hub({min: 3, secure: true, maxShareValue: 10});
  const sessions = await join(hub, 3, {forceRelay: true, relayPartBytes: 64});
  const results = await exchangeAll(sessions);
  const plain = expectedMean([1, 1, 1]);
  const bound = quantizationBound(fixedPointScale(10, 3));
  for (const r of results) {
    assert.equal(r.fellBack, null);
    r.weights.forEach((v, i) => assert.ok(Math.abs(v - plain[i]) <= bound + 1e-6));
  }
  // Every share and partial sum went through the hub, in parts of at most 64 bytes, sealed.
  const kinds = new Set(hub.frames.map((f) => f.kind));
  assert.deepEqual([...kinds].sort(), ['partial', 'share']);
  assert.ok(hub.frames.every((f) => f.payload.length <= 64));
  assert.ok(hub.frames.some((f) => f.parts > 1), 'payloads were split into parts');
  const firstParts = hub.frames.filter((f) => f.part === 0);
  assert.equal(firstParts.length, 12);
  assert.ok(firstParts.every((f) => f.payload[0] === 1), 'each payload starts with the sealed-payload version');
  const seen = hub.frames.map((f) => asText(f.payload)).join('');
  assert.ok(!seen.includes('uint32') && !seen.includes('"share"'), 'no plaintext frame header crossed the relay');
  // The hub forwarded the public keys, never anything else about keys.
  assert.equal(hub.publicKeys.size, 3);
  sessions.forEach((s) => s.close());
});

test('mean-mode updates are sealed too, over data channels and the relay', async () => {
  const hub = new Hub({min: 3});
  const {FakePeerConnection, stats} = fakeRtc({maxMessageSize: 48});
  const sessions = await join(hub, 2, {RTCPeerConnectionImpl: FakePeerConnection});
  sessions.push(...await join(hub, 1, {forceRelay: true}));
  const results = await exchangeAll(sessions);
  for (const r of results) assert.deepEqual(Array.from(r.weights), Array.from(expectedMean([10, 20, 30])));
  assert.ok(stats.messages > 0 && hub.frames.length > 0);
  for (const text of [stats.text, hub.frames.map((f) => asText(f.payload)).join('')]) {
    assert.ok(!text.includes('peer_update') && !text.includes('float32'), 'no plaintext update frame was sent');
  }
  sessions.forEach((s) => s.close());
});

test('a share altered on the way fails authentication and the round keeps the local weights', async () => {
  const hub = new Hub({min: 3, secure: true, maxShareValue: 10});
  let victim = null;
  hub.tamper = (envelope, payload) => {
    if (envelope.kind === 'share' && victim === null) {
      victim = envelope.to;
      payload[payload.length - 20] ^= 0x80;
    }
    return payload;
  };
  const events = [];
  const sessions = await join(hub, 3, {forceRelay: true, onEvent: (e) => events.push(e),
    timeouts: {connect: 300, exchange: 1500, closed: 2000, peers: 5000}});
  const results = await exchangeAll(sessions);
  results.forEach((r, i) => {
    assert.match(r.fellBack, /keeps the local weights/);
    assert.deepEqual(Array.from(r.weights), Array.from(Float32Array.from(UPDATES[i])));
  });
  const hurt = results[sessions.findIndex((s) => s.participantId === victim)];
  assert.match(hurt.fellBack, /share was refused: The payload failed authentication/);
  assert.ok(events.some((e) => e.type === 'peer_error' && /failed authentication/.test(e.reason)));
  sessions.forEach((s) => s.close());
});

test('a peer whose signalling connection dropped reconnects with its resume token and exchanges', async () => {
  const hub = new Hub({min: 2});
  const joins = [];
  const Base = hub.socketClass();
  class Recording extends Base {
    constructor(url) { super(url); setTimeout(() => this.onopen?.()); }
    send(data) {
      if (typeof data === 'string' && JSON.parse(data).type === 'join') joins.push(JSON.parse(data));
      super.send(data);
    }
  }
  const events = [];
  const delays = [];
  const [a, b] = await join(hub, 2, {WebSocketImpl: Recording, onEvent: (m) => events.push(m),
    recovery: {initialDelayMs: 5, maxDelayMs: 20, jitter: 0}, wait: async (ms) => { delays.push(ms); }});
  a.ws.close(); // the server went away under `a`
  await new Promise((resolve) => { const poll = () => (a.closed ? resolve() : setTimeout(poll)); poll(); });
  const results = await Promise.all([a, b].map((s, i) => s.exchange(fakeModel(UPDATES[i]), 10 + i)));
  assert.equal(joins.at(-1).resumeToken, 't');
  assert.deepEqual(delays, [5]);
  assert.deepEqual(events.filter((e) => e.type.startsWith('reconnect')).map((e) => e.type), ['reconnecting', 'reconnected']);
  assert.deepEqual(Array.from(results[0].weights), Array.from(results[1].weights));
  for (const s of [a, b]) s.close();
});

test('a signalling server down at the first connection is tried again with backoff until it welcomes', async () => {
  const hub = new Hub({min: 1});
  const Base = hub.socketClass();
  let made = 0;
  class DownTwice extends Base {
    constructor(url) {
      super(url);
      made += 1;
      if (made <= 2) this.close(); // refused before its welcome
    }
  }
  const events = [];
  const delays = [];
  const session = new DecentralizedSession('t', {origin: 'http://test', WebSocketImpl: DownTwice,
    onEvent: (m) => events.push(m), recovery: {initialDelayMs: 5, maxDelayMs: 20, jitter: 0},
    wait: async (ms) => { delays.push(ms); }});
  const welcome = await session.connect();
  assert.equal(made, 3);
  assert.equal(welcome.type, 'welcome');
  assert.deepEqual(delays, [5, 10]);
  assert.deepEqual(events.filter((e) => e.type.startsWith('reconnect')).map((e) => [e.type, e.attempt]),
    [['reconnecting', 1], ['reconnecting', 2], ['reconnected', 2]]);
  session.close();
});

test('after an exchange each peer reports its scores of the aggregate for that round, once', async () => {
  const hub = new Hub({min: 2});
  const sessions = await join(hub, 2, {forceRelay: true});
  const results = await exchangeAll(sessions, [10, 20]);
  assert.deepEqual(results.map((r) => r.round), [1, 1]);
  const reports = await Promise.all(sessions.map((s, i) => s.reportEvaluation({loss: 0.25 * (i + 1),
    accuracy: i ? null : 0.75, samples: 5 + i})));
  assert.deepEqual(reports, [{round: 1, loss: 0.25, accuracy: 0.75, samples: 5, recorded: true},
    {round: 1, loss: 0.5, accuracy: null, samples: 6, recorded: true}]);
  assert.deepEqual(hub.evaluations.map(({from, ...m}) => m), [
    {type: 'evaluation', round: 1, loss: 0.25, accuracy: 0.75, samples: 5},
    {type: 'evaluation', round: 1, loss: 0.5, accuracy: null, samples: 6}]);
  assert.equal(await sessions[0].reportEvaluation({loss: 0.1, accuracy: 0.9, samples: 5}), null); // once per round
  assert.equal(await sessions[0].reportEvaluation({loss: 0.1, accuracy: 0.9, samples: 0}), null);
  // The next round: a refusal is reported as not recorded, and the exchange that follows is not disturbed.
  await exchangeAll(sessions, [10, 20]);
  hub.exchanging.get(2).done.delete(sessions[1].participantId);
  const [refused, next] = await Promise.all([sessions[1].reportEvaluation({loss: 0.3, accuracy: 0.5, samples: 6}),
    exchangeAll(sessions, [10, 20])]);
  assert.equal(refused.recorded, false);
  assert.match(refused.reason, /did not finish/);
  assert.deepEqual(next.map((r) => r.round), [3, 3]);
  sessions.forEach((s) => s.close());
});
