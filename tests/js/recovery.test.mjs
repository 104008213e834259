// static/disco/recovery.js and FederatedSession's recovery: reconnection with backoff and the resume
// token, stale_round and round_failed, and waits that end. Fake sockets play the server; no fixed sleeps.
import assert from 'node:assert/strict';
import {test} from 'node:test';

import {FederatedSession} from '../../static/disco/federated.js';
import {TokenMemory, backoffDelay, retryWithBackoff, waitLimits, within} from '../../static/disco/recovery.js';

test('backoff delays grow by the factor and are bounded by maxDelayMs', () => {
  const settings = {initialDelayMs: 100, maxDelayMs: 1000, factor: 2, jitter: 0};
  assert.deepEqual([1, 2, 3, 4, 5, 6].map((k) => backoffDelay(k, settings)), [100, 200, 400, 800, 1000, 1000]);
});

test('jitter shortens a delay by at most its fraction', () => {
  const settings = {initialDelayMs: 1000, maxDelayMs: 1000, factor: 2, jitter: 0.5};
  assert.equal(backoffDelay(1, settings, () => 0), 1000);
  assert.equal(backoffDelay(1, settings, () => 1), 500);
  assert.equal(backoffDelay(1, settings, () => 0.5), 750);
});

test('retryWithBackoff makes a bounded number of attempts, then says why it gave up', async () => {
  const delays = [];
  const attempts = [];
  await assert.rejects(retryWithBackoff(async (k) => { attempts.push(k); throw new Error('refused'); }, {
    settings: {attempts: 4, initialDelayMs: 10, maxDelayMs: 25, factor: 2, jitter: 0},
    wait: async (ms) => { delays.push(ms); }, random: () => 0,
  }), (error) => error.code === 'reconnect_failed' && /4 attempts: refused/.test(error.message));
  assert.deepEqual(attempts, [1, 2, 3, 4]);
  assert.deepEqual(delays, [10, 20, 25, 25]);
});

test('within rejects with a timeout when the promise does not settle in time', async () => {
  await assert.rejects(within(new Promise(() => {}), 5, 'answer'), (error) => error.code === 'timeout');
  assert.equal(await within(Promise.resolve(7), 1000), 7);
});

test('wait limits derive from the round deadline', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  const limits = waitLimits(60, '2026-01-01T00:00:30Z', {}, now);
  assert.deepEqual(limits, {openMs: 15000, acceptedMs: 60000, roundMs: 90000, statusMs: 15000});
  assert.equal(waitLimits(60, null, {roundMs: 5}, now).roundMs, 5);
});

// ---- A fake server: each socket runs `script(socket, message)` for every message the client sends.

function fakeServer(script) {
  const sockets = [];
  class FakeSocket {
    constructor(url) {
      this.url = url;
      this.sent = [];
      this.closed = false;
      sockets.push(this);
      queueMicrotask(() => (script.refuse?.(sockets.length) ? this.hangUp() : this.onopen?.()));
    }
    send(data) {
      if (this.closed) throw new Error('send on a closed socket');
      const message = typeof data === 'string' ? JSON.parse(data) : {type: 'update', bytes: data.byteLength};
      if (typeof data !== 'string') (this.frames ??= []).push(new Uint8Array(data));
      this.sent.push(message);
      queueMicrotask(() => script(this, message, sockets.indexOf(this)));
    }
    reply(message) { if (!this.closed) this.onmessage?.({data: JSON.stringify(message)}); }
    hangUp() { if (!this.closed) { this.closed = true; this.onclose?.({}); } }
    close() { this.hangUp(); }
  }
  return {sockets, FakeSocket};
}

const welcome = (round, version, token = 'tok') => ({type: 'welcome', participantId: 'p1', resumeToken: token, round,
  currentVersion: version, participants: 1, waitingFor: 0});

function session(FakeSocket, extra = {}) {
  const events = [];
  const delays = [];
  const s = new FederatedSession('fed', {origin: 'http://127.0.0.1:8000', WebSocketImpl: FakeSocket,
    onEvent: (m) => events.push(m), wait: async (ms) => { delays.push(ms); }, random: () => 0,
    recovery: {attempts: 5, initialDelayMs: 10, maxDelayMs: 40, factor: 2}, ...extra});
  s.manifest = [{paths: [], weights: [{name: 'w', shape: [2]}]}];
  return {s, events, delays};
}

const model = {weights: [{originalName: 'w', shape: [2], read: () => ({dataSync: () => Float32Array.of(1, 2)})}]};

test('a socket closing while waiting for the round reconnects with the same resume token and syncs', async () => {
  const {sockets, FakeSocket} = fakeServer((socket, message, index) => {
    if (message.type === 'join') socket.reply(index === 0 ? welcome(1, 1, 'first') : welcome(2, 2, 'second'));
    if (message.type === 'update') { socket.reply({type: 'accepted', round: 1, samples: 5}); socket.hangUp(); }
  });
  const {s, events, delays} = session(FakeSocket);
  await s.connect();
  const outcome = await s.contribute(model, 5);
  assert.equal(sockets.length, 2);
  assert.deepEqual(sockets[1].sent[0], {type: 'join', client: 'browser', resumeToken: 'first'});
  assert.deepEqual(outcome, {type: 'sync', reason: 'reconnected', round: 1, version: 2, nextRound: 2});
  assert.equal(s.round, 2);
  assert.equal(s.resumeToken, 'second');
  assert.deepEqual(delays, [10]);
  assert.deepEqual(events.filter((e) => e.type.startsWith('reconnect')).map((e) => [e.type, e.attempt]),
    [['reconnecting', 1], ['reconnected', 1]]);
});

test('reconnection backs off between refused attempts and sends the update again if its round is open', async () => {
  const script = (socket, message) => {
    if (message.type === 'join') socket.reply(welcome(1, 1));
    if (message.type === 'update') {
      if (socket === first) { socket.hangUp(); return; }
      socket.reply({type: 'accepted', round: 1, samples: 5});
      socket.reply({type: 'round_closed', round: 1, version: 2, nextRound: 2, contributors: 2});
    }
  };
  script.refuse = (n) => n >= 2 && n <= 4; // the server is down for three attempts
  const {sockets, FakeSocket} = fakeServer(script);
  let first;
  const {s, delays} = session(FakeSocket);
  await s.connect();
  first = sockets[0];
  const outcome = await s.contribute(model, 5);
  assert.deepEqual(delays, [10, 20, 40, 40]);
  assert.equal(sockets.length, 5);
  for (const socket of sockets.slice(1)) assert.equal(socket.sent[0]?.resumeToken ?? 'tok', 'tok');
  assert.equal(outcome.type, 'round_closed');
  assert.equal(outcome.version, 2);
});

test('reconnection gives up after the configured attempts', async () => {
  const script = (socket, message) => {
    if (message.type === 'join') socket.reply(welcome(1, 1));
    if (message.type === 'update') socket.hangUp();
  };
  script.refuse = (n) => n >= 2;
  const {sockets, FakeSocket} = fakeServer(script);
  const {s, delays} = session(FakeSocket, {recovery: {attempts: 3, initialDelayMs: 10, maxDelayMs: 40}});
  await s.connect();
  await assert.rejects(s.contribute(model, 5), (error) => error.code === 'reconnect_failed');
  assert.equal(sockets.length, 4);
  assert.deepEqual(delays, [10, 20, 40]);
});

test('stale_round means sync and continue: the outcome is the server\'s current round and version', async () => {
  const {FakeSocket} = fakeServer((socket, message) => {
    if (message.type === 'join') socket.reply(welcome(1, 1));
    if (message.type === 'update') socket.reply({type: 'error', code: 'stale_round', reason: 'Round 1 is not open.'});
    if (message.type === 'status') socket.reply({type: 'status', round: 3, currentVersion: 3, participants: 2});
  });
  const {s, events} = session(FakeSocket);
  await s.connect();
  const outcome = await s.contribute(model, 5);
  assert.deepEqual(outcome, {type: 'sync', reason: 'stale_round', round: 1, version: 3, nextRound: 3});
  assert.equal(s.round, 3);
  assert.ok(events.some((e) => e.type === 'sync'));
});

test('round_failed: the outcome continues from the last good version the server names', async () => {
  const {FakeSocket} = fakeServer((socket, message) => {
    if (message.type === 'join') socket.reply(welcome(4, 7));
    if (message.type === 'update') {
      socket.reply({type: 'accepted', round: 4, samples: 5});
      socket.reply({type: 'round_failed', round: 4, reason: 'aggregation crashed', nextRound: 5, version: 7});
    }
  });
  const {s} = session(FakeSocket);
  await s.connect();
  const outcome = await s.contribute(model, 5);
  assert.deepEqual(outcome, {type: 'round_failed', round: 4, reason: 'aggregation crashed', nextRound: 5, version: 7});
  assert.equal(s.round, 5);
});

test('no accepted in time: the session asks the status and syncs when the round moved on', async () => {
  const {FakeSocket} = fakeServer((socket, message) => {
    if (message.type === 'join') socket.reply(welcome(1, 1));
    if (message.type === 'status') socket.reply({type: 'status', round: 2, currentVersion: 2});
  });
  const {s} = session(FakeSocket, {waits: {acceptedMs: 10, roundMs: 10, statusMs: 10}});
  await s.connect();
  const outcome = await s.contribute(model, 5);
  assert.deepEqual(outcome, {type: 'sync', reason: 'timeout', round: 1, version: 2, nextRound: 2});
});

test('a round that stays open past its limit is probed, and after the configured probes the page trains on', async () => {
  const {sockets, FakeSocket} = fakeServer((socket, message) => {
    if (message.type === 'join') socket.reply(welcome(1, 1));
    if (message.type === 'update') socket.reply({type: 'accepted', round: 1, samples: 5});
    if (message.type === 'status') socket.reply({type: 'status', round: 1, currentVersion: 1});
  });
  const {s} = session(FakeSocket, {waits: {roundMs: 5, statusMs: 50}, recovery: {probes: 2}});
  await s.connect();
  const outcome = await s.contribute(model, 5);
  assert.deepEqual(outcome, {type: 'sync', reason: 'timeout', round: 1, version: 1, nextRound: 1});
  assert.equal(sockets[0].sent.filter((m) => m.type === 'status').length, 2);
  assert.equal(sockets[0].sent.filter((m) => m.type === 'update').length, 1);
});

test('a server that answers nothing is dropped and reconnected; a duplicate after that counts as accepted', async () => {
  const {sockets, FakeSocket} = fakeServer((socket, message, index) => {
    if (index === 0) { if (message.type === 'join') socket.reply(welcome(1, 1)); return; } // then silent
    if (message.type === 'join') socket.reply(welcome(1, 1));
    if (message.type === 'update') {
      socket.reply({type: 'error', code: 'duplicate', reason: 'You already sent an update for round 1.'});
      socket.reply({type: 'round_closed', round: 1, version: 2, nextRound: 2, contributors: 3});
    }
  });
  const {s} = session(FakeSocket, {waits: {acceptedMs: 10, statusMs: 10}});
  await s.connect();
  const outcome = await s.contribute(model, 5);
  assert.equal(sockets.length, 2);
  assert.ok(sockets[0].closed);
  assert.equal(outcome.type, 'round_closed');
  assert.equal(outcome.version, 2);
});

test('a socket that never welcomes is given up after openMs, tried again with backoff, then given up', async () => {
  const {sockets, FakeSocket} = fakeServer(() => {});
  const {s, delays} = session(FakeSocket, {waits: {openMs: 10}, recovery: {attempts: 2, initialDelayMs: 10}});
  await assert.rejects(s.connect(), (error) => error.code === 'reconnect_failed' && /No welcome/.test(error.message));
  assert.equal(sockets.length, 3); // the first connection and two attempts
  assert.deepEqual(delays, [10, 20]);
});

test('a server down when the page first connects is tried again with backoff until it answers', async () => {
  const script = (socket, message) => { if (message.type === 'join') socket.reply(welcome(4, 3, 'fresh')); };
  script.refuse = (n) => n <= 2; // down for the first connection and the first retry
  const {sockets, FakeSocket} = fakeServer(script);
  const {s, events, delays} = session(FakeSocket);
  const answer = await s.connect();
  assert.equal(answer.round, 4);
  assert.equal(sockets.length, 3);
  assert.deepEqual(delays, [10, 20]);
  assert.deepEqual(events.filter((e) => e.type.startsWith('reconnect')).map((e) => [e.type, e.attempt]),
    [['reconnecting', 1], ['reconnecting', 2], ['reconnected', 2]]);
});

test('a refusal at the first connection (unknown task) is final: no retry', async () => {
  const {sockets, FakeSocket} = fakeServer((socket, message) => {
    if (message.type === 'join') socket.reply({type: 'error', code: 'unknown_task', reason: 'No task fed.'});
  });
  const {s, delays} = session(FakeSocket);
  await assert.rejects(s.connect(), (error) => error.code === 'unknown_task');
  assert.equal(sockets.length, 1);
  assert.deepEqual(delays, []);
});

test('a reloaded page resumes with the token its tab kept; another tab is another participant', async () => {
  const {sockets, FakeSocket} = fakeServer((socket, message) => {
    if (message.type === 'join') socket.reply(welcome(1, 1, message.resumeToken ?? `new-${sockets.length}`));
  });
  const tab = new Map();
  const storage = {getItem: (k) => tab.get(k) ?? null, setItem: (k, v) => tab.set(k, v)};
  const first = session(FakeSocket, {tokens: new TokenMemory('federated', 'fed', storage)}).s;
  await first.connect();
  assert.deepEqual(sockets[0].sent[0], {type: 'join', client: 'browser'});
  assert.deepEqual([...tab], [['disco:resume:federated:fed', 'new-1']]);
  const reloaded = session(FakeSocket, {tokens: new TokenMemory('federated', 'fed', storage)}).s;
  await reloaded.connect();
  assert.deepEqual(sockets[1].sent[0], {type: 'join', client: 'browser', resumeToken: 'new-1'});
  const otherTab = session(FakeSocket, {tokens: new TokenMemory('federated', 'fed', new Map())}).s; // no getItem
  await otherTab.connect();
  assert.deepEqual(sockets[2].sent[0], {type: 'join', client: 'browser'});
  assert.equal(new TokenMemory('federated', 'other', storage).recall(), '');
});

test('fetching a version is tried again while the server restarts', async () => {
  const answers = [() => { throw new TypeError('fetch failed'); }, () => ({status: 503}),
    () => ({status: 200, ok: true, json: async () => ({weightsManifest: [{paths: [], weights: []}]})})];
  const urls = [];
  const {FakeSocket} = fakeServer(() => {});
  const {s, delays} = session(FakeSocket, {fetchImpl: async (url) => { urls.push(url); return answers.shift()(); }});
  const manifest = await s.fetchManifest(3);
  assert.deepEqual(manifest, [{paths: [], weights: []}]);
  assert.equal(urls.length, 3);
  assert.deepEqual(delays, [10, 20]);
});

test('updates go encoded as the welcome says (the task\'s compression), float32 when it says nothing', async () => {
  for (const [compression, bytes] of [['int8', 4 + 2 + 2], ['float16', 4], [undefined, 8]]) {
    const {sockets, FakeSocket} = fakeServer((socket, message) => {
      if (message.type === 'join') socket.reply({...welcome(1, 1), compression});
      if (message.type === 'update') {
        socket.reply({type: 'accepted', round: 1, samples: 5});
        socket.reply({type: 'round_closed', round: 1, version: 2, nextRound: 2, contributors: 1});
      }
    });
    const {s} = session(FakeSocket);
    await s.connect();
    await s.contribute(model, 5);
    const frame = sockets[0].frames[0];
    const header = JSON.parse(new TextDecoder().decode(frame.subarray(4, 4 + new DataView(frame.buffer,
      frame.byteOffset).getUint32(0, true))));
    assert.equal(header.encoding, compression ?? 'float32');
    assert.equal(s.encoding, compression ?? 'float32');
    assert.ok(frame.byteLength >= bytes); // payload of two values: 8 bytes exact, 4 half, 4 + 2 (+2 pad) int8
  }
});
