// static/disco/federated.js: how an update goes on the wire, whole or announced and in parts.
import assert from 'node:assert/strict';
import {test} from 'node:test';

import {FederatedSession, PART_BYTES, sendUpdate} from '../../static/disco/federated.js';

function recorder() {
  const sent = [];
  return {sent, send: (data) => sent.push(typeof data === 'string' ? JSON.parse(data) : Uint8Array.from(data))};
}

const frame = (n) => Uint8Array.from({length: n}, (_, i) => (i * 13 + 5) & 0xff);

test('an update up to one part goes whole, as one binary frame', () => {
  const ws = recorder();
  const bytes = frame(100);
  sendUpdate(ws, bytes, 100);
  assert.equal(ws.sent.length, 1);
  assert.deepEqual(ws.sent[0], bytes);
});

test('a larger update is announced with its size, then sent in parts that concatenate to it', () => {
  const ws = recorder();
  const bytes = frame(1000);
  sendUpdate(ws, bytes, 256);
  assert.deepEqual(ws.sent[0], {type: 'update_begin', bytes: 1000});
  const parts = ws.sent.slice(1);
  assert.deepEqual(parts.map((p) => p.length), [256, 256, 256, 232]);
  const joined = new Uint8Array(1000);
  let offset = 0;
  for (const p of parts) {
    joined.set(p, offset);
    offset += p.length;
  }
  assert.deepEqual(joined, bytes);
});

test('parts are 1 MiB by default, as the Python client sends them', () => {
  assert.equal(PART_BYTES, 1048576);
  const ws = recorder();
  sendUpdate(ws, frame(PART_BYTES + 1));
  assert.deepEqual(ws.sent.map((p) => p.length ?? p.type), ['update_begin', PART_BYTES, 1]);
});

test("every message fits daphne's limit (DISCO_WS_MAX_MESSAGE_BYTES, 1 MiB + 64 KiB by default)", () => {
  const limit = 1048576 + 65536;
  for (const n of [10, PART_BYTES, PART_BYTES + 1, 3 * PART_BYTES + 12345]) {
    const ws = recorder();
    sendUpdate(ws, frame(n));
    for (const message of ws.sent) {
      const size = message.length ?? JSON.stringify(message).length;
      assert.ok(size <= limit, `a ${size}-byte message for a ${n}-byte update`);
    }
  }
});

test('joining sends the resume token in the first message, never in the URL', async () => {
  const sockets = [];
  class FakeSocket {
    constructor(url) { this.url = url; this.sent = []; sockets.push(this); setTimeout(() => this.onopen?.()); }
    send(data) {
      this.sent.push(JSON.parse(data));
      setTimeout(() => this.onmessage({data: JSON.stringify({type: 'welcome', participantId: 'p1', resumeToken: 'next',
        round: 3, currentVersion: 2})}));
    }
  }
  const session = new FederatedSession('titanic', {origin: 'http://127.0.0.1:8000', resumeToken: 'secret-token',
    WebSocketImpl: FakeSocket});
  const welcome = await session.connect();
  assert.equal(sockets[0].url, 'ws://127.0.0.1:8000/ws/federated/titanic/');
  assert.deepEqual(sockets[0].sent, [{type: 'join', client: 'browser', resumeToken: 'secret-token'}]);
  assert.equal(welcome.round, 3);
  assert.equal(session.resumeToken, 'next');
});

// ---- Participant sampling (participantsPerRound): a session not invited to a round sends nothing to it.

function samplingServer(script) {
  const sockets = [];
  class FakeSocket {
    constructor(url) { this.url = url; this.sent = []; sockets.push(this); queueMicrotask(() => this.onopen?.()); }
    send(data) {
      const message = typeof data === 'string' ? JSON.parse(data) : {type: 'update', bytes: data.byteLength};
      this.sent.push(message);
      queueMicrotask(() => script(this, message));
    }
    reply(message) { this.onmessage?.({data: JSON.stringify(message)}); }
    close() { this.onclose?.({}); }
  }
  return {sockets, FakeSocket};
}

const tinyModel = {weights: [{originalName: 'w', shape: [2], read: () => ({dataSync: () => Float32Array.of(1, 2)})}]};

function sampledSession(FakeSocket) {
  const events = [];
  const s = new FederatedSession('fed', {origin: 'http://127.0.0.1:8000', WebSocketImpl: FakeSocket,
    onEvent: (m) => events.push(m), tokens: {recall: () => undefined, keep: () => {}}});
  s.manifest = [{paths: [], weights: [{name: 'w', shape: [2]}]}];
  return {s, events};
}

const sampledWelcome = (invited) => ({type: 'welcome', participantId: 'p2', resumeToken: 't', round: 1,
  currentVersion: 1, participants: 3, waitingFor: 0, participantsPerRound: 2, invited});

test('not invited to a round: no update is sent, the session waits for the round to end and carries on', async () => {
  const {sockets, FakeSocket} = samplingServer((socket, message) => {
    if (message.type === 'join') socket.reply(sampledWelcome(false));
    if (message.type === 'update') {
      socket.reply({type: 'accepted', round: 2, samples: 5});
      socket.reply({type: 'round_closed', round: 2, version: 3, nextRound: 3, contributors: 2, invited: false});
    }
  });
  const {s} = sampledSession(FakeSocket);
  const welcome = await s.connect();
  assert.equal(welcome.invited, false);
  assert.equal(s.participantsPerRound, 2);
  assert.equal(s.invitedTo(1), false);
  const waiting = s.contribute(tinyModel, 5);
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.deepEqual(sockets[0].sent.map((m) => m.type), ['join']); // nothing sent for round 1
  // The invited finish round 1; this session is invited to round 2.
  sockets[0].reply({type: 'round_closed', round: 1, version: 2, nextRound: 2, contributors: 2, invited: true});
  const outcome = await waiting;
  assert.equal(outcome.type, 'round_closed');
  assert.equal(outcome.contributed, false);
  assert.equal(outcome.version, 2);
  assert.equal(s.round, 2);
  assert.equal(s.invitedTo(2), true);
  // Round 2: invited, so the update goes and the outcome is the round's own end.
  s.version = 2;
  const second = await s.contribute(tinyModel, 5);
  assert.deepEqual(sockets[0].sent.map((m) => m.type), ['join', 'update']);
  assert.equal(second.round, 2);
  assert.equal(second.contributed, undefined);
  assert.equal(s.invitedTo(3), false);
});

test('invited while waiting (one invited left): the update goes to the open round', async () => {
  const {sockets, FakeSocket} = samplingServer((socket, message) => {
    if (message.type === 'join') socket.reply(sampledWelcome(false));
    if (message.type === 'update') {
      socket.reply({type: 'accepted', round: 1, samples: 5});
      socket.reply({type: 'round_closed', round: 1, version: 2, nextRound: 2, contributors: 2, invited: true});
    }
  });
  const {s} = sampledSession(FakeSocket);
  await s.connect();
  const waiting = s.contribute(tinyModel, 5);
  await new Promise((resolve) => setTimeout(resolve, 10));
  sockets[0].reply({type: 'participants', round: 1, currentVersion: 1, participants: 2, participantsPerRound: 2,
    invited: true});
  const outcome = await waiting;
  assert.deepEqual(sockets[0].sent.map((m) => m.type), ['join', 'update']);
  assert.equal(outcome.type, 'round_closed');
  assert.equal(outcome.contributed, undefined);
});

test('a not_invited refusal is no failure: the session waits for the round to end', async () => {
  const {sockets, FakeSocket} = samplingServer((socket, message) => {
    if (message.type === 'join') socket.reply({...sampledWelcome(true), invited: undefined});
    if (message.type === 'update') {
      socket.reply({type: 'error', code: 'not_invited', reason: 'You are not invited to round 1.'});
      queueMicrotask(() => socket.reply({type: 'round_closed', round: 1, version: 2, nextRound: 2, contributors: 2,
        invited: true}));
    }
  });
  const {s} = sampledSession(FakeSocket);
  await s.connect();
  const outcome = await s.contribute(tinyModel, 5);
  assert.equal(sockets[0].sent.filter((m) => m.type === 'update').length, 1);
  assert.equal(outcome.contributed, false);
  assert.equal(outcome.version, 2);
});

// ---- Federated evaluation: after a round the page reports its scores of the round's result.

function evaluatingServer({refuse = null} = {}) {
  const sockets = [];
  class FakeSocket {
    constructor(url) { this.url = url; this.sent = []; sockets.push(this); queueMicrotask(() => this.onopen?.()); }
    send(data) {
      const message = typeof data === 'string' ? JSON.parse(data) : {type: 'update'};
      this.sent.push(message);
      queueMicrotask(() => {
        if (message.type === 'join') {
          this.reply({type: 'welcome', participantId: 'p1', resumeToken: 't', round: 1, currentVersion: 1});
        } else if (message.type === 'update') {
          this.reply({type: 'accepted', round: this.round ?? 1, samples: 5});
          this.reply(this.end ?? {type: 'round_closed', round: 1, version: 2, resultVersion: 2, nextRound: 2,
            contributors: 2});
        } else if (message.type === 'evaluation' && refuse) {
          this.reply({type: 'error', code: refuse, reason: 'You already reported on round 1.', about: 'evaluation'});
        } else if (message.type === 'evaluation') {
          this.reply({type: 'evaluation_recorded', round: message.round, version: message.version,
            samples: Math.min(message.samples, 25)});
        }
      });
    }
    reply(message) { this.onmessage?.({data: JSON.stringify(message)}); }
    close() {}
  }
  return {sockets, FakeSocket};
}

async function afterOneRound(server, end) {
  const s = new FederatedSession('fed', {origin: 'http://127.0.0.1:8000', WebSocketImpl: server.FakeSocket,
    tokens: {recall: () => '', keep: () => {}}});
  s.manifest = [{paths: [], weights: [{name: 'w', shape: [2]}]}];
  await s.connect();
  if (end) server.sockets[0].end = end;
  const model = {weights: [{originalName: 'w', shape: [2], read: () => ({dataSync: () => Float32Array.of(1, 2)})}]};
  const outcome = await s.contribute(model, 5);
  return {s, outcome};
}

test('after a closed round the session reports the scores of its result, with the round and version', async () => {
  const server = evaluatingServer();
  const {s, outcome} = await afterOneRound(server);
  assert.equal(outcome.type, 'round_closed');
  const report = await s.reportEvaluation({loss: 0.4321, accuracy: 0.875, samples: 40});
  const sent = server.sockets[0].sent.filter((m) => m.type === 'evaluation');
  assert.deepEqual(sent, [{type: 'evaluation', round: 1, version: 2, loss: 0.4321, accuracy: 0.875, samples: 40}]);
  assert.deepEqual(report, {round: 1, version: 2, loss: 0.4321, accuracy: 0.875, samples: 25, recorded: true});
  assert.equal(await s.reportEvaluation({loss: 0.1, accuracy: 0.9, samples: 40}), null); // once per round
  assert.equal(server.sockets[0].sent.filter((m) => m.type === 'evaluation').length, 1);
});

test('a model without accuracy reports null; an empty split or a NaN loss reports nothing', async () => {
  const server = evaluatingServer();
  const {s} = await afterOneRound(server);
  assert.equal(await s.reportEvaluation({loss: 0.5, accuracy: null, samples: 0}), null);
  const {s: again} = await afterOneRound(evaluatingServer());
  assert.equal(await again.reportEvaluation({loss: NaN, accuracy: 0.5, samples: 10}), null);
  const third = evaluatingServer();
  const {s: other} = await afterOneRound(third);
  const report = await other.reportEvaluation({loss: 0.5, accuracy: null, samples: 3});
  assert.equal(report.recorded, true);
  assert.equal(third.sockets[0].sent.at(-1).accuracy, null);
});

test('a failed or superseded round has no result the page continues from: nothing is reported', async () => {
  for (const end of [{type: 'round_failed', round: 1, reason: 'crashed', nextRound: 2, version: 1},
    {type: 'round_closed', round: 1, version: 3, resultVersion: 2, superseded: true, reason: 'rollback', nextRound: 2,
      contributors: 2}]) {
    const server = evaluatingServer();
    const {s} = await afterOneRound(server, end);
    assert.equal(await s.reportEvaluation({loss: 0.5, accuracy: 0.5, samples: 10}), null);
    assert.equal(server.sockets[0].sent.filter((m) => m.type === 'evaluation').length, 0);
  }
});

test('a refused evaluation is reported as not recorded and does not disturb the next round', async () => {
  const server = evaluatingServer({refuse: 'duplicate_evaluation'});
  const {s} = await afterOneRound(server);
  const socket = server.sockets[0];
  socket.round = 2;
  socket.end = {type: 'round_closed', round: 2, version: 3, resultVersion: 3, nextRound: 3, contributors: 2};
  const model = {weights: [{originalName: 'w', shape: [2], read: () => ({dataSync: () => Float32Array.of(1, 2)})}]};
  // The refusal arrives while the next round's update waits for 'accepted': only the report's wait hears it.
  const [report, outcome] = await Promise.all([s.reportEvaluation({loss: 0.5, accuracy: 0.5, samples: 10}),
    s.contribute(model, 5)]);
  assert.equal(report.recorded, false);
  assert.match(report.reason, /already reported/);
  assert.equal(outcome.type, 'round_closed');
  assert.equal(outcome.round, 2);
});

// ---- Upload slots (aggregation/upload_slots.py): a large update waits for the server's `update_go`.

test("with the welcome's announceFrom, a large update is announced and its bytes wait for update_go", async () => {
  const ws = recorder();
  let grant;
  const granted = () => new Promise((resolve) => { grant = resolve; });
  const sending = sendUpdate(ws, frame(1000), 256, {announceFrom: 500, granted});
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.deepEqual(ws.sent, [{type: 'update_begin', bytes: 1000}]); // nothing more until the grant
  grant();
  await sending;
  assert.deepEqual(ws.sent.slice(1).map((p) => p.length), [256, 256, 256, 232]);
});

test('announceFrom also announces an update smaller than one part; a smaller one still goes whole at once', async () => {
  const ws = recorder();
  await sendUpdate(ws, frame(600), PART_BYTES, {announceFrom: 500, granted: async () => {}});
  assert.deepEqual(ws.sent.map((p) => p.length ?? p.type), ['update_begin', 600]);
  const small = recorder();
  let asked = false;
  await sendUpdate(small, frame(100), PART_BYTES, {announceFrom: 500, granted: async () => { asked = true; }});
  assert.deepEqual(small.sent.map((p) => p.length), [100]);
  assert.equal(asked, false);
});

test('a session waits for update_go before sending a large update, and a refused announcement is thrown', async () => {
  const script = {refuse: false};
  const {sockets, FakeSocket} = samplingServer((socket, message) => {
    if (message.type === 'join') socket.reply({...sampledWelcome(true), participantsPerRound: null, announceFrom: 8});
    if (message.type === 'update_begin') {
      if (script.refuse) socket.reply({type: 'error', code: 'spool_full', reason: 'full: announce again'});
      else setTimeout(() => socket.reply({type: 'update_go', bytes: message.bytes}), 10);
    }
    if (message.type === 'update') {
      socket.reply({type: 'accepted', round: 1, samples: 5});
      socket.reply({type: 'round_closed', round: 1, version: 2, nextRound: 2, contributors: 2});
    }
  });
  const {s} = sampledSession(FakeSocket);
  await s.connect();
  assert.equal(s.announceFrom, 8);
  const outcome = await s.contribute(tinyModel, 5);
  assert.equal(outcome.type, 'round_closed');
  assert.deepEqual(sockets[0].sent.map((m) => m.type), ['join', 'update_begin', 'update']);
  script.refuse = true;
  s.version = 2;
  await assert.rejects(s.contribute(tinyModel, 5), (error) => error.code === 'spool_full');
  assert.deepEqual(sockets[0].sent.map((m) => m.type), ['join', 'update_begin', 'update', 'update_begin']);
});
