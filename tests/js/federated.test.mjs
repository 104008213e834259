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
