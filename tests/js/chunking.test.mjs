// static/disco/chunking.js: 1-byte, exactly-one-chunk and many-chunk messages, interleaving, and refusals.
import assert from 'node:assert/strict';
import {test} from 'node:test';

import {CHUNK_HEADER_BYTES, ChunkError, Reassembler, chunkMessage} from '../../static/disco/chunking.js';

const message = (n, seed = 1) => Uint8Array.from({length: n}, (_, i) => (i * 31 + seed * 7) & 0xff);
const header = (chunk) => {
  const v = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  return [v.getUint32(0, true), v.getUint32(4, true), v.getUint32(8, true)];
};

function roundTrip(bytes, max, order = (chunks) => chunks) {
  const chunks = chunkMessage(bytes, max, 5);
  for (const c of chunks) assert.ok(c.length <= max, `chunk of ${c.length} over ${max}`);
  const r = new Reassembler();
  const results = order(chunks).map((c) => r.push(c));
  assert.equal(results.filter((x) => x !== null).length, 1);
  assert.ok(results.at(-1) !== null, 'the message is complete only at the last chunk');
  assert.deepEqual(results.at(-1), bytes);
  assert.equal(r.pending.size, 0);
  return chunks;
}

test('a 1-byte message is one chunk of 13 bytes', () => {
  const chunks = roundTrip(Uint8Array.of(42), 262144);
  assert.equal(chunks.length, 1);
  assert.equal(chunks[0].length, CHUNK_HEADER_BYTES + 1);
  assert.deepEqual(header(chunks[0]), [5, 0, 1]);
});

test('an empty message is one header-only chunk', () => {
  const chunks = roundTrip(new Uint8Array(0), 100);
  assert.equal(chunks.length, 1);
  assert.equal(chunks[0].length, CHUNK_HEADER_BYTES);
});

test('a message that exactly fills one chunk stays one chunk; one byte more makes two', () => {
  const max = 1000;
  assert.equal(roundTrip(message(max - CHUNK_HEADER_BYTES), max).length, 1);
  const two = roundTrip(message(max - CHUNK_HEADER_BYTES + 1), max);
  assert.equal(two.length, 2);
  assert.equal(two[0].length, max);
  assert.equal(two[1].length, CHUNK_HEADER_BYTES + 1);
});

test('many chunks: a 6.6 MB model at Chromium\'s 256 KiB limit, in order and shuffled', () => {
  const bytes = message(6_600_000);
  const chunks = roundTrip(bytes, 262144);
  assert.equal(chunks.length, Math.ceil(6_600_000 / (262144 - CHUNK_HEADER_BYTES)));
  chunks.forEach((c, i) => assert.deepEqual(header(c), [5, i, chunks.length]));
  roundTrip(message(5000), 64, (cs) => [...cs].reverse());
  roundTrip(message(5000), 64, (cs) => cs.map((c, i) => [c, (i * 7919) % cs.length]).sort((a, b) => a[1] - b[1])
    .map(([c]) => c));
});

test('an unlimited channel sends one chunk', () => {
  assert.equal(roundTrip(message(70000), Infinity).length, 1);
});

test('interleaved messages are told apart by their id', () => {
  const a = chunkMessage(message(300, 1), 50, 1);
  const b = chunkMessage(message(170, 2), 50, 2);
  const r = new Reassembler();
  const done = [];
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    for (const chunks of [b, a]) {
      if (i < chunks.length) {
        const whole = r.push(chunks[i].slice().buffer); // ArrayBuffers, as data channels deliver them
        if (whole) done.push(whole);
      }
    }
  }
  assert.deepEqual(done, [message(170, 2), message(300, 1)]);
});

test('the reassembler keeps its own copy of chunk data', () => {
  const [first, second] = chunkMessage(message(30), 27, 9);
  const r = new Reassembler();
  r.push(first);
  first.fill(0);
  assert.deepEqual(r.push(second), message(30));
});

test('inconsistent, duplicate, short and oversized chunks are refused', () => {
  const chunks = chunkMessage(message(100), 40, 3);
  const r = new Reassembler();
  r.push(chunks[0]);
  const lying = chunks[1].slice();
  new DataView(lying.buffer).setUint32(8, 7, true);
  assert.throws(() => r.push(lying), (e) => e instanceof ChunkError && /announced with 4 chunks, then a chunk says 7/.test(e.message));
  assert.equal(r.pending.size, 0); // the broken message is dropped, not kept half-assembled
  r.push(chunks[0]);
  assert.throws(() => r.push(chunks[0]), /arrived twice/);
  assert.throws(() => r.push(new Uint8Array(5)), /12-byte header/);
  const badIndex = chunks[0].slice();
  new DataView(badIndex.buffer).setUint32(4, 4, true);
  assert.throws(() => r.push(badIndex), /index must be below the count/);
  const small = new Reassembler({maxBytes: 50});
  assert.equal(small.push(chunks[0]), null);
  assert.throws(() => small.push(chunks[1]), /over the 50-byte limit/);
  assert.throws(() => chunkMessage(message(3), 12, 1), /exceed the 12-byte chunk header/);
  assert.throws(() => chunkMessage(message(3), 100, -1), /messageId must be a u32/);
});

test('discard forgets a half-received message', () => {
  const chunks = chunkMessage(message(100), 40, 8);
  const r = new Reassembler();
  r.push(chunks[0]);
  r.discard(8);
  assert.equal(r.pending.size, 0);
  assert.equal(r.push(chunks[1]), null); // starts over
});
