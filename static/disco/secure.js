/**
 * Exact secure aggregation: fixed-point encoding and additive secret sharing modulo 2**32.
 * Twin of disco_client/secure.py (read its docstring for the protocol); both are tested on the
 * vectors of tests/vectors/secure.json. No DOM code here.
 *
 * All arithmetic is on Uint32Array with `>>> 0`, so reconstruction is exact; the only error is
 * the fixed-point quantization, at most 1 / (2 * scale) a coordinate on the mean.
 */

import {CodecError, encodeHeader, readHeader} from './codec.js';

export const INT32_MAX = 2 ** 31 - 1;
export const U32_ENCODING = 'uint32';
const U32_TENSOR = 'vector';
/** crypto.getRandomValues fills at most 65,536 bytes a call. */
const RANDOM_CHUNK = 16384;

/**
 * S = 2**floor(log2((2**31 - 1) / (peers * maxShareValue))): the sum of `peers` encoded values fits in int32.
 * @param {number} maxShareValue the task's range R of shared values
 * @param {number} peers
 * @returns {number}
 */
export function fixedPointScale(maxShareValue, peers) {
  if (!(Number.isFinite(maxShareValue) && maxShareValue > 0)) {
    throw new RangeError(`The largest shared value must be a positive number (got ${maxShareValue}).`);
  }
  if (!(Number.isInteger(peers) && peers >= 1)) {
    throw new RangeError(`Secure aggregation needs a whole number of peers >= 1 (got ${peers}).`);
  }
  const ratio = INT32_MAX / (peers * maxShareValue);
  if (ratio < 1) {
    throw new RangeError(`${peers} peers x largest value ${maxShareValue} overflows 32-bit integers: lower the `
      + "task's maxShareValue (the range of the shared values).");
  }
  let exponent = Math.floor(Math.log2(ratio));
  while (2 ** exponent > ratio) exponent -= 1; // log2 may round up just below a power of two
  while (2 ** (exponent + 1) <= ratio) exponent += 1;
  return 2 ** exponent;
}

/** Round half to even, like numpy.rint. */
function rint(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Clip to [-R, R], round x * scale half to even, and store it as uint32 (two's complement).
 * @param {Float32Array|number[]} x
 * @param {number} maxShareValue
 * @param {number} scale from fixedPointScale
 * @returns {Uint32Array}
 */
export function encodeFixed(x, maxShareValue, scale) {
  const out = new Uint32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const v = Math.fround(x[i]);
    if (!Number.isFinite(v)) {
      throw new RangeError(`The update holds NaN or infinite values (first at index ${i}): it cannot be shared.`);
    }
    out[i] = rint(Math.min(Math.max(v, -maxShareValue), maxShareValue) * scale) >>> 0;
  }
  return out;
}

/** Fill a Uint32Array from the browser's (or Node's) CSPRNG. */
function cryptoFill(array) {
  for (let start = 0; start < array.length; start += RANDOM_CHUNK) {
    globalThis.crypto.getRandomValues(array.subarray(start, start + RANDOM_CHUNK));
  }
  return array;
}

/**
 * `peers` uint32 vectors summing to q mod 2**32: the first peers - 1 uniformly random, the last makes the sum.
 * @param {Uint32Array} q from encodeFixed
 * @param {number} peers
 * @param {(array: Uint32Array) => void} [fill] fills a vector with random values; tests only (default: crypto)
 * @returns {Uint32Array[]}
 */
export function makeShares(q, peers, fill = cryptoFill) {
  if (!(Number.isInteger(peers) && peers >= 1)) {
    throw new RangeError(`Shares are made for a whole number of peers >= 1 (got ${peers}).`);
  }
  if (!(q instanceof Uint32Array)) throw new TypeError("Shares are made from a Uint32Array (encodeFixed's output).");
  const shares = [];
  const last = Uint32Array.from(q);
  for (let p = 0; p < peers - 1; p++) {
    const share = new Uint32Array(q.length);
    fill(share);
    for (let i = 0; i < last.length; i++) last[i] = (last[i] - share[i]) >>> 0;
    shares.push(share);
  }
  shares.push(last);
  return shares;
}

/**
 * The sum of uint32 vectors mod 2**32.
 * @param {Uint32Array[]} vectors
 * @returns {Uint32Array}
 */
export function addShares(vectors) {
  if (!vectors.length) throw new RangeError('There are no shares to add.');
  const total = Uint32Array.from(vectors[0]);
  for (const v of vectors.slice(1)) {
    if (!(v instanceof Uint32Array) || v.length !== total.length) {
      throw new RangeError(`Every share must be a Uint32Array of ${total.length} values (got ${v?.length}).`);
    }
    for (let i = 0; i < total.length; i++) total[i] = (total[i] + v[i]) >>> 0;
  }
  return total;
}

/**
 * The float32 values of a uint32 fixed-point vector (read as int32, divided by scale).
 * @param {Uint32Array} total
 * @param {number} scale
 * @returns {Float32Array}
 */
export function decodeFixed(total, scale) {
  const out = new Float32Array(total.length);
  for (let i = 0; i < total.length; i++) out[i] = (total[i] | 0) / scale;
  return out;
}

/**
 * The mean of `peers` encoded updates from the sum of all their shares (one rounding, in float64).
 * @param {Uint32Array} total
 * @param {number} scale
 * @param {number} peers
 * @returns {Float32Array}
 */
export function decodeMean(total, scale, peers) {
  const out = new Float32Array(total.length);
  const divisor = scale * peers;
  for (let i = 0; i < total.length; i++) out[i] = (total[i] | 0) / divisor;
  return out;
}

/** The largest error a coordinate of the decoded mean can have, before the final float32 rounding. */
export function quantizationBound(scale) {
  return 1 / (2 * scale);
}

/**
 * A binary frame like the codec's: its header (encoding "uint32") then the raw little-endian uint32 values.
 * @param {object} fields header fields (strings and integers), e.g. {type: 'share', round: 3}
 * @param {Uint32Array} vector
 * @returns {Uint8Array}
 */
export function encodeU32Frame(fields, vector) {
  if ('encoding' in fields || 'tensors' in fields) throw new CodecError('encoding and tensors are set by the codec.');
  if (!(vector instanceof Uint32Array)) throw new CodecError('A uint32 frame carries a Uint32Array.');
  const head = encodeHeader({...fields, encoding: U32_ENCODING, tensors: [{name: U32_TENSOR, shape: [vector.length]}]});
  const out = new Uint8Array(head.length + 4 * vector.length);
  out.set(head, 0);
  // The header is padded to 8 bytes, so the payload is aligned; typed arrays are little-endian on every browser.
  new Uint32Array(out.buffer, head.length, vector.length).set(vector);
  return out;
}

/**
 * The header and uint32 vector of a frame made by encodeU32Frame (a view when aligned, else a copy).
 * @param {ArrayBuffer|Uint8Array} bytes
 * @param {{maxBytes?: number, expectedSize?: number}} [options]
 * @returns {{header: object, vector: Uint32Array}}
 */
export function decodeU32Frame(bytes, {maxBytes, expectedSize} = {}) {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  if (maxBytes !== undefined && u8.length > maxBytes) {
    throw new CodecError(`The frame has ${u8.length} bytes, over this task's limit of ${maxBytes}.`);
  }
  const {header, offset} = readHeader(u8);
  if (header.encoding !== U32_ENCODING) {
    throw new CodecError(`Expected a uint32 frame but its encoding is '${header.encoding}'.`);
  }
  const shape = Array.isArray(header.tensors) && header.tensors.length === 1 ? header.tensors[0]?.shape : null;
  if (!(Array.isArray(shape) && shape.length === 1 && Number.isInteger(shape[0]) && shape[0] >= 0)) {
    throw new CodecError("A uint32 frame's header has one tensor with a one-dimensional shape.");
  }
  const size = shape[0];
  if (expectedSize !== undefined && size !== expectedSize) {
    throw new CodecError(`The frame holds ${size} values but the model has ${expectedSize} parameters.`);
  }
  if (u8.length - offset !== 4 * size) {
    throw new CodecError(`The payload has ${u8.length - offset} bytes but ${size} uint32 values need ${4 * size}.`);
  }
  const start = u8.byteOffset + offset;
  const vector = start % 4 === 0
    ? new Uint32Array(u8.buffer, start, size)
    : new Uint32Array(u8.slice(offset).buffer);
  return {header, vector};
}
