// static/disco/codec.js against the shared vectors of tests/vectors/codec.json (made by disco_client/codec.py).
import assert from 'node:assert/strict';
import {readFileSync} from 'node:fs';
import {test} from 'node:test';

import {CodecError, decodeWeights, encodeWeights, fromHalf, toHalf} from '../../static/disco/codec.js';

const vectors = JSON.parse(readFileSync(new URL('../vectors/codec.json', import.meta.url), 'utf8'));
const hex = (u8) => Buffer.from(u8).toString('hex');

for (const v of vectors.good) {
  test(`encodes ${v.name} to the same bytes as Python`, () => {
    const tensors = v.tensors.map((t) => ({name: t.name, shape: t.shape, data: Float32Array.from(t.values)}));
    assert.equal(hex(encodeWeights(v.fields, tensors, v.encoding)), v.frame_hex);
  });

  test(`decodes ${v.name} to the same values as Python`, () => {
    const frame = Uint8Array.from(Buffer.from(v.frame_hex, 'hex'));
    const {header, tensors, vector} = decodeWeights(frame);
    assert.deepEqual(Array.from(vector), v.decoded.map((x) => Math.fround(x)));
    assert.equal(header.encoding, v.encoding);
    for (const [key, value] of Object.entries(v.fields)) assert.deepEqual(header[key], value);
    assert.deepEqual(tensors.map((t) => [t.name, t.shape]), v.tensors.map((t) => [t.name, t.shape]));
  });
}

for (const v of vectors.bad) {
  test(`refuses ${v.name} with a reason`, () => {
    const frame = Uint8Array.from(Buffer.from(v.frame_hex, 'hex'));
    assert.throws(() => decodeWeights(frame), (err) => err instanceof CodecError && err.message.includes(v.error));
  });
}

test('float32 payloads decode as a view, without a copy', () => {
  const frame = encodeWeights({type: 'update'}, [{name: 'w', shape: [3], data: Float32Array.of(1, 2, 3)}]);
  const {vector} = decodeWeights(frame);
  assert.equal(vector.buffer, frame.buffer);
});

test('half-precision conversion round-trips every finite half value', () => {
  for (let bits = 0; bits < 0x10000; bits++) {
    if (((bits >>> 10) & 0x1f) === 0x1f) continue; // inf and NaN
    assert.equal(toHalf(fromHalf(bits)), bits, `bits ${bits.toString(16)}`);
  }
});

test('oversized frames and non-integer header numbers are refused', () => {
  const frame = encodeWeights({type: 'update'}, [{name: 'w', shape: [4], data: new Float32Array(4)}]);
  assert.throws(() => decodeWeights(frame, {maxBytes: 10}), /over this task's limit/);
  assert.throws(() => encodeWeights({lr: 0.1}, []), /integers or strings/);
});
