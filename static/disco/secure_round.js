/**
 * One round of secure aggregation between peers, over any transport (no DOM code, no WebRTC,
 * no server here): fixed-point encode the update, split it into one additive share per peer
 * (mod 2^32, secure.js), send share j to peer j, add the shares received, send that partial sum
 * to every peer, and decode the sum of all partial sums: the plain mean within the quantization
 * bound. The caller's `send` and `take` seal and open each payload end to end (peer_crypto.js),
 * so whoever relays them sees only ciphertext.
 *
 * A share or partial sum that is missing or refused (e.g. it fails authentication) cannot be
 * recovered: the round then keeps the local weights and says why.
 * @module secure_round
 */

import {
  addShares, decodeMean, decodeU32Frame, encodeFixed, encodeU32Frame, fixedPointScale, makeShares,
} from './secure.js';

/**
 * @param {{round: number, order: string[], me: string, update: Float32Array, local: Float32Array,
 *   maxShareValue: number,
 *   send: (peer: string, kind: 'share'|'partial', bytes: Uint8Array) => Promise<void>,
 *   take: (peer: string, kind: 'share'|'partial') => Promise<{payload: Uint8Array|null, reason?: string}>,
 *   fill?: (array: Uint32Array) => void}} options `take` resolves with the peer's plaintext, or null and why not
 * @returns {Promise<{result: Float32Array, fellBack: string|null}>}
 */
export async function secureRound({round, order, me, update, local, maxShareValue, send, take, fill}) {
  const n = order.length;
  const mine = order.indexOf(me);
  const others = order.filter((p) => p !== me);
  const scale = fixedPointScale(maxShareValue, n);
  const shares = fill ? makeShares(encodeFixed(update, maxShareValue, scale), n, fill)
    : makeShares(encodeFixed(update, maxShareValue, scale), n);
  await Promise.all(order.map((peer, j) => (j === mine ? null
    : send(peer, 'share', encodeU32Frame({ type: 'share', round }, shares[j])))));
  const held = [shares[mine]];
  const shareResults = await Promise.all(others.map((p) => take(p, 'share')));
  for (const [i, got] of shareResults.entries()) {
    const vector = readU32(got, update.length);
    if (!vector.values) return localFallback(local, `peer ${others[i]}'s share ${vector.reason}`);
    held.push(vector.values);
  }
  const partial = addShares(held);
  const partialFrame = encodeU32Frame({ type: 'partial', round }, partial);
  await Promise.all(others.map((p) => send(p, 'partial', partialFrame)));
  const partials = [partial];
  const partialResults = await Promise.all(others.map((p) => take(p, 'partial')));
  for (const [i, got] of partialResults.entries()) {
    const vector = readU32(got, update.length);
    if (!vector.values) return localFallback(local, `peer ${others[i]}'s partial sum ${vector.reason}`);
    partials.push(vector.values);
  }
  return { result: decodeMean(addShares(partials), scale, n), fellBack: null };
}

function readU32(got, size) {
  if (!got?.payload) return { values: null, reason: got?.reason ?? 'did not arrive in time' };
  try {
    return { values: decodeU32Frame(got.payload, { expectedSize: size }).vector.slice() };
  } catch (error) {
    return { values: null, reason: `was refused: ${error.message}` };
  }
}

/** The local weights, and why the round could not be aggregated. */
export function localFallback(local, why) {
  return { result: local, fellBack: `Secure aggregation failed: ${why}; the shares of a missing peer cannot be `
    + 'recovered, so this round keeps the local weights.' };
}
