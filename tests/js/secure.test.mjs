// static/disco/secure.js against the shared vectors of tests/vectors/secure.json (made by disco_client/secure.py).
import assert from 'node:assert/strict';
import {readFileSync} from 'node:fs';
import {test} from 'node:test';

import {CodecError, encodeWeights} from '../../static/disco/codec.js';
import {
  INT32_MAX, addShares, decodeFixed, decodeMean, decodeU32Frame, encodeFixed, encodeU32Frame, fixedPointScale,
  makeShares, quantizationBound,
} from '../../static/disco/secure.js';

const vectors = JSON.parse(readFileSync(new URL('../vectors/secure.json', import.meta.url), 'utf8'));
const hex = (u8) => Buffer.from(u8).toString('hex');
const fromHex = (h) => Uint8Array.from(Buffer.from(h, 'hex'));
const u32 = (values) => Uint32Array.from(values);
const f32 = (values) => Array.from(values, (x) => Math.fround(x));
/** A fill function that replays recorded shares, in order. */
const replay = (recorded) => (array) => array.set(recorded.shift());

for (const c of vectors.scales) {
  test(`scale for R=${c.max_share_value}, n=${c.peers} is ${c.scale}`, () => {
    assert.equal(fixedPointScale(c.max_share_value, c.peers), c.scale);
    assert.ok(c.peers * c.max_share_value * c.scale <= INT32_MAX);
  });
}

test('impossible scales are refused with a reason', () => {
  for (const c of vectors.bad_scales) {
    assert.throws(() => fixedPointScale(c.max_share_value, c.peers), (err) => err.message.includes(c.error));
  }
});

for (const c of vectors.encodings) {
  test(`encoding R=${c.max_share_value} clips and rounds half to even like Python`, () => {
    assert.deepEqual(Array.from(encodeFixed(Float32Array.from(c.x), c.max_share_value, c.scale)), c.q);
  });
}

for (const c of vectors.rounds) {
  test(`${c.name}: a whole round reconstructs exactly, like Python`, () => {
    const {peers, scale} = c;
    const encoded = c.updates.map((u) => encodeFixed(Float32Array.from(u), c.max_share_value, scale));
    assert.deepEqual(encoded.map((q) => Array.from(q)), c.encoded);
    encoded.forEach((q, i) => {
      const row = c.shares[i];
      const made = makeShares(q, peers, replay(row.slice(0, -1).map(u32)));
      assert.deepEqual(made.map((s) => Array.from(s)), row);
      assert.deepEqual(Array.from(addShares(made)), Array.from(q));
    });
    const partials = c.shares[0].map((_, j) => addShares(c.shares.map((row) => u32(row[j]))));
    assert.deepEqual(partials.map((p) => Array.from(p)), c.partials);
    const total = addShares(partials);
    assert.deepEqual(Array.from(total), c.total);
    assert.deepEqual(Array.from(decodeFixed(total, scale)), f32(c.sum));
    assert.deepEqual(Array.from(decodeMean(total, scale, peers)), f32(c.mean));
  });
}

/** Gaussian-ish values from a seeded generator (the data need not be secret, only varied). */
function randomUpdates(peers, size, seed) {
  let s = seed >>> 0;
  const next = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  return Array.from({length: peers}, () => Float32Array.from({length: size}, () => (next() + next() + next() - 1.5) * 8));
}

for (const peers of [3, 5, 10]) {
  test(`secure mean of ${peers} peers equals the plain mean within the quantization bound`, () => {
    const limit = 10;
    const size = 20000;
    const updates = randomUpdates(peers, size, peers);
    updates.forEach((u, i) => { u[0] = i % 2 ? 25 : -25; }); // beyond the range: clipped
    const scale = fixedPointScale(limit, peers);
    const shares = updates.map((u) => makeShares(encodeFixed(u, limit, scale), peers)); // crypto.getRandomValues
    const partials = shares.map((_, j) => addShares(shares.map((row) => row[j])));
    const mean = decodeMean(addShares(partials), scale, peers);
    let worst = 0;
    for (let k = 0; k < size; k++) {
      let sum = 0;
      for (const u of updates) sum += Math.min(Math.max(u[k], -limit), limit);
      const trueMean = sum / peers;
      const error = Math.abs(mean[k] - trueMean);
      assert.ok(error <= quantizationBound(scale) + Math.abs(trueMean) * 2 ** -24, `coordinate ${k}: ${error}`);
      worst = Math.max(worst, error);
    }
    assert.ok(worst > 0);
  });
}

test('real shares look uniform and differ each time', () => {
  const q = new Uint32Array(100000); // > 65,536 bytes: crypto.getRandomValues is called in pieces
  const [first] = makeShares(q, 3);
  let sum = 0;
  for (const v of first) sum += v;
  assert.ok(Math.abs(sum / first.length / 2 ** 32 - 0.5) < 0.01);
  assert.ok(first.subarray(90000).some((v) => v !== 0)); // the tail was filled too
  assert.notDeepEqual(Array.from(makeShares(q, 3)[0].subarray(0, 8)), Array.from(first.subarray(0, 8)));
});

for (const f of vectors.frames) {
  test(`uint32 frame ${f.fields.type} with ${f.vector.length} values matches Python's bytes`, () => {
    const frame = encodeU32Frame(f.fields, u32(f.vector));
    assert.equal(hex(frame), f.frame_hex);
    const {header, vector} = decodeU32Frame(fromHex(f.frame_hex));
    assert.deepEqual(Array.from(vector), f.vector);
    for (const [key, value] of Object.entries(f.fields)) assert.deepEqual(header[key], value);
  });
}

for (const b of vectors.bad_frames) {
  test(`refuses the uint32 frame ${b.name} with a reason`, () => {
    assert.throws(() => decodeU32Frame(fromHex(b.frame_hex)), (err) => err instanceof CodecError && err.message.includes(b.error));
  });
}

test('frames at an unaligned offset decode by copy; limits and wrong inputs are refused', () => {
  const frame = encodeU32Frame({type: 'share', round: 1}, u32([1, 2, 3]));
  const shifted = new Uint8Array(frame.length + 1);
  shifted.set(frame, 1);
  assert.deepEqual(Array.from(decodeU32Frame(shifted.subarray(1)).vector), [1, 2, 3]);
  assert.throws(() => decodeU32Frame(frame, {maxBytes: 10}), /over this task's limit of 10/);
  assert.throws(() => decodeU32Frame(frame, {expectedSize: 4}), /holds 3 values but the model has 4/);
  const floats = encodeWeights({type: 'peer_update'}, [{name: 'w', shape: [1], data: Float32Array.of(1)}]);
  assert.throws(() => decodeU32Frame(floats), /Expected a uint32 frame/);
  assert.throws(() => encodeU32Frame({encoding: 'x'}, u32([])), /set by the codec/);
  assert.throws(() => encodeFixed(Float32Array.of(0, NaN), 1, 4), /first at index 1/);
  assert.throws(() => addShares([u32([1]), u32([1, 2])]), /Uint32Array of 1 values/);
});
