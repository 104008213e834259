// static/disco/relay.js against the shared vectors of tests/vectors/relay.json (made by disco_client/relay.py).
import assert from 'node:assert/strict';
import {readFileSync} from 'node:fs';
import {test} from 'node:test';

import {
  RELAY_PART_BYTES, RelayError, RelayReassembler, decodeRelayFrame, encodeRelayFrame, splitRelay,
} from '../../static/disco/relay.js';

const vectors = JSON.parse(readFileSync(new URL('../vectors/relay.json', import.meta.url), 'utf8'));
const hex = (u8) => Buffer.from(u8).toString('hex');
const fromHex = (h) => Uint8Array.from(Buffer.from(h, 'hex'));

test('payloads split into the same parts as Python and join again', () => {
  for (const c of vectors.splits) {
    const payload = fromHex(c.payload_hex);
    const frames = splitRelay(c.envelope, payload, c.part_bytes);
    assert.deepEqual(frames.map(hex), c.frames_hex);
    const joiner = new RelayReassembler({maxBytes: 1000, partBytes: c.part_bytes});
    const results = frames.map((frame) => {
      const {envelope, payload: body} = decodeRelayFrame(frame.buffer);
      assert.ok(body.length <= c.part_bytes);
      return joiner.push({...envelope, from: 'a'}, body);
    });
    assert.ok(results.slice(0, -1).every((r) => r === null));
    const last = results.at(-1);
    assert.deepEqual([last.from, last.round, last.kind, hex(last.payload)], ['a', c.envelope.round, c.envelope.kind, c.payload_hex]);
  }
});

test('malformed frames are refused with the reason Python gives', () => {
  for (const c of vectors.bad_frames) {
    assert.throws(() => decodeRelayFrame(fromHex(c.frame_hex)),
      (err) => err instanceof RelayError && err.code === 'bad_relay' && err.message.includes(c.error), c.name);
  }
});

test('parts out of order or over the limit are refused; real parts are 1 MiB', () => {
  const frames = splitRelay({from: 'a', round: 1, kind: 'share'}, new Uint8Array(30), 10).map(decodeRelayFrame);
  const joiner = new RelayReassembler({maxBytes: 100, partBytes: 10});
  assert.throws(() => joiner.push(frames[1].envelope, frames[1].payload), /came out of order/);
  joiner.push(frames[0].envelope, frames[0].payload);
  assert.throws(() => joiner.push(frames[2].envelope, frames[2].payload), /came out of order/);
  const small = new RelayReassembler({maxBytes: 25, partBytes: 10});
  small.push(frames[0].envelope, frames[0].payload);
  small.push(frames[1].envelope, frames[1].payload);
  assert.throws(() => small.push(frames[2].envelope, frames[2].payload), (err) => err.code === 'too_large');
  const big = splitRelay({to: 'b', round: 1, kind: 'update'}, new Uint8Array(RELAY_PART_BYTES * 2 + 5));
  assert.equal(big.length, 3);
  assert.ok(big.every((f) => f.length <= RELAY_PART_BYTES + 200));
  assert.equal(decodeRelayFrame(encodeRelayFrame({from: 'a', round: 1, kind: 'x'}, new Uint8Array([1]))).envelope.kind, 'x');
});
