// static/disco/secure_round.js in Node: three peers over an in-memory transport; missing or refused payloads.
import assert from 'node:assert/strict';
import {test} from 'node:test';

import {fixedPointScale, quantizationBound} from '../../static/disco/secure.js';
import {secureRound} from '../../static/disco/secure_round.js';

const UPDATES = [[1, 2, -3, 0.5], [3, -2, 1, 0], [0.25, 0.5, 2, -1]];
const ORDER = ['a', 'b', 'c'];

/** An in-memory network: mailbox per (to, kind, from); `drop` and `refuse` decide what goes missing. */
function network({drop = () => false, refuse = () => null} = {}) {
  const boxes = new Map();
  const waiters = new Map();
  const key = (to, kind, from) => `${to}|${kind}|${from}`;
  return (me) => ({
    send: async (peer, kind, bytes) => {
      if (drop(me, peer, kind)) return;
      const k = key(peer, kind, me);
      if (waiters.has(k)) waiters.get(k)(bytes); else boxes.set(k, bytes);
    },
    take: (peer, kind) => {
      const k = key(me, kind, peer);
      const wrap = (bytes) => {
        if (!bytes) return {payload: null, reason: 'did not arrive in time'};
        const why = refuse(me, peer, kind);
        return why ? {payload: null, reason: `was refused: ${why}`} : {payload: bytes};
      };
      if (boxes.has(k)) return Promise.resolve(wrap(boxes.get(k)));
      return new Promise((resolve) => {
        waiters.set(k, (bytes) => resolve(wrap(bytes)));
        setTimeout(() => resolve(wrap(null)), 200);
      });
    },
  });
}

function run(net) {
  return Promise.all(ORDER.map((me, i) => secureRound({
    round: 4, order: ORDER, me, update: Float32Array.from(UPDATES[i]), local: Float32Array.from(UPDATES[i]),
    maxShareValue: 10, ...net(me),
  })));
}

test('three peers end with the same mean, within the quantization bound', async () => {
  const results = await run(network());
  const bound = quantizationBound(fixedPointScale(10, 3));
  for (const r of results) {
    assert.equal(r.fellBack, null);
    assert.deepEqual(Array.from(r.result), Array.from(results[0].result));
    r.result.forEach((v, i) => {
      const plain = (UPDATES[0][i] + UPDATES[1][i] + UPDATES[2][i]) / 3;
      assert.ok(Math.abs(v - plain) <= bound + 1e-6);
    });
  }
});

test('a missing share keeps the local weights and names the peer', async () => {
  const results = await run(network({drop: (from, to, kind) => from === 'c' && to === 'a' && kind === 'share'}));
  assert.match(results[0].fellBack, /peer c's share did not arrive in time; .* keeps the local weights/);
  assert.deepEqual(Array.from(results[0].result), UPDATES[0]);
});

test('a refused partial sum keeps the local weights and says why', async () => {
  const results = await run(network({refuse: (me, from, kind) => (me === 'b' && from === 'a' && kind === 'partial'
    ? 'The payload failed authentication (AES-GCM)' : null)}));
  assert.match(results[1].fellBack, /peer a's partial sum was refused: The payload failed authentication/);
  assert.deepEqual(Array.from(results[1].result), UPDATES[1]);
});
