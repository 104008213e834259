/**
 * The wire codec for weight messages, twin of disco_client/codec.py (read its docstring for
 * the format). Both are tested on the same vectors in tests/vectors/codec.json.
 *
 * Frame: u32 LE header length | canonical JSON header, space-padded so the payload starts
 * on an 8-byte boundary | tensors back to back (float32, float16 or int8 + float32 scale).
 */

export const ENCODINGS = ['float32', 'float16', 'int8'];
const ALIGN = 8;

/** A frame that cannot be decoded; the message says what is wrong. */
export class CodecError extends Error {
  constructor(message) {
    super(message);
    this.name = 'CodecError';
  }
}

/** JSON with sorted keys and no spaces: the same bytes Python's json.dumps(sort_keys=True) gives. */
export function canonicalJson(value) {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`).join(',')}}`;
  }
  if (typeof value === 'number' && !Number.isInteger(value)) {
    throw new CodecError(`Header values must be integers or strings (got ${value}): put numbers in the payload.`);
  }
  return JSON.stringify(value);
}

const pad4 = (n) => (4 - (n % 4)) % 4;
const product = (shape) => shape.reduce((a, b) => a * b, 1);

function tensorBytes(encoding, size) {
  if (encoding === 'float32') return 4 * size;
  if (encoding === 'float16') return 2 * size + pad4(2 * size);
  return 4 + size + pad4(size);
}

const scratch = new DataView(new ArrayBuffer(4));

/** IEEE half-precision bits of a float32 value, rounding to nearest even (as numpy does). */
export function toHalf(value) {
  scratch.setFloat32(0, value, true);
  const x = scratch.getUint32(0, true);
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && (half & 1))) half += 1;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1))) half += 1;
  return sign | half;
}

/** The value of IEEE half-precision bits. */
export function fromHalf(bits) {
  const sign = bits & 0x8000 ? -1 : 1;
  const e = (bits >>> 10) & 0x1f;
  const m = bits & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 0x1f) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/** Round half to even, like numpy.rint. */
function rint(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * `u32 LE n | n bytes of canonical JSON`, space-padded so the payload starts on an 8-byte boundary.
 * Shared by every binary frame (weights here, uint32 share vectors in secure.js).
 * @param {object} header
 * @returns {Uint8Array}
 */
export function encodeHeader(header) {
  const raw = new TextEncoder().encode(canonicalJson(header));
  const headerLength = raw.length + ((ALIGN - ((4 + raw.length) % ALIGN)) % ALIGN);
  const out = new Uint8Array(4 + headerLength);
  new DataView(out.buffer).setUint32(0, headerLength, true);
  out.set(raw, 4);
  out.fill(0x20, 4 + raw.length);
  return out;
}

/**
 * Encode named tensors (in manifest order) with the header `fields` into one frame.
 * @param {object} fields header fields (strings and integers), e.g. {type, task, round}
 * @param {{name: string, shape: number[], data: Float32Array}[]} tensors
 * @param {'float32'|'float16'|'int8'} encoding
 * @returns {Uint8Array}
 */
export function encodeWeights(fields, tensors, encoding = 'float32') {
  if (!ENCODINGS.includes(encoding)) throw new CodecError(`Unknown encoding '${encoding}'.`);
  if ('encoding' in fields || 'tensors' in fields) throw new CodecError('encoding and tensors are set by the codec.');
  const header = {...fields, encoding, tensors: tensors.map((t) => ({name: t.name, shape: t.shape}))};
  const head = encodeHeader(header);
  const total = head.length + tensors.reduce((n, t) => n + tensorBytes(encoding, product(t.shape)), 0);
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  out.set(head, 0);
  let pos = head.length;
  for (const t of tensors) {
    const size = product(t.shape);
    if (t.data.length !== size) {
      throw new CodecError(`Tensor '${t.name}' has ${t.data.length} values but its shape ${JSON.stringify(t.shape)} needs ${size}.`);
    }
    if (encoding === 'float32') {
      for (let i = 0; i < size; i++) view.setFloat32(pos + 4 * i, t.data[i], true);
    } else if (encoding === 'float16') {
      for (let i = 0; i < size; i++) view.setUint16(pos + 2 * i, toHalf(t.data[i]), true);
    } else {
      let peak = 0;
      for (let i = 0; i < size; i++) peak = Math.max(peak, Math.abs(t.data[i]));
      const scale = Math.fround(peak / 127);
      view.setFloat32(pos, scale, true);
      for (let i = 0; i < size; i++) {
        const q = scale === 0 ? 0 : Math.max(-127, Math.min(127, rint(t.data[i] / scale)));
        view.setInt8(pos + 4 + i, q);
      }
    }
    pos += tensorBytes(encoding, size);
  }
  return out;
}

/** The header of a frame and the offset of its payload. */
export function readHeader(bytes) {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  if (u8.length < 4) throw new CodecError(`A weight frame starts with a 4-byte header length; got only ${u8.length} bytes.`);
  const view = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  const length = view.getUint32(0, true);
  if (length > u8.length - 4) {
    throw new CodecError(`The header claims ${length} bytes but the frame has only ${u8.length - 4} after the length.`);
  }
  let header;
  try {
    header = JSON.parse(new TextDecoder('utf-8', {fatal: true}).decode(u8.subarray(4, 4 + length)));
  } catch (err) {
    throw new CodecError(`The frame header is not UTF-8 JSON (${err.message}).`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) {
    throw new CodecError('The frame header must be a JSON object.');
  }
  return {header, offset: 4 + length};
}

/**
 * Decode a frame into its header, its tensors and one flat Float32Array.
 * @param {ArrayBuffer|Uint8Array} bytes
 * @param {{maxBytes?: number}} [options]
 */
export function decodeWeights(bytes, {maxBytes} = {}) {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  if (maxBytes !== undefined && u8.length > maxBytes) {
    throw new CodecError(`The frame has ${u8.length} bytes, over this task's limit of ${maxBytes}.`);
  }
  const {header, offset} = readHeader(u8);
  const {encoding, tensors: specs} = header;
  if (!ENCODINGS.includes(encoding)) throw new CodecError(`Unknown encoding '${encoding}'.`);
  if (!Array.isArray(specs)) throw new CodecError("The header has no 'tensors' list.");
  specs.forEach((s, i) => {
    if (typeof s?.name !== 'string' || !Array.isArray(s.shape) || !s.shape.every((d) => Number.isInteger(d) && d >= 0)) {
      throw new CodecError(`Tensor ${i} of the header needs a name and a shape of non-negative integers.`);
    }
  });
  const needed = specs.reduce((n, s) => n + tensorBytes(encoding, product(s.shape)), 0);
  if (u8.length - offset !== needed) {
    throw new CodecError(`The payload has ${u8.length - offset} bytes but the header's tensors need ${needed} as ${encoding}.`);
  }
  const total = specs.reduce((n, s) => n + product(s.shape), 0);
  const view = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  let vector;
  if (encoding === 'float32' && (u8.byteOffset + offset) % 4 === 0) {
    vector = new Float32Array(u8.buffer, u8.byteOffset + offset, total); // a view, no copy
  } else {
    vector = new Float32Array(total);
    let start = 0;
    let pos = offset;
    for (const s of specs) {
      const size = product(s.shape);
      if (encoding === 'float32') {
        for (let i = 0; i < size; i++) vector[start + i] = view.getFloat32(pos + 4 * i, true);
      } else if (encoding === 'float16') {
        for (let i = 0; i < size; i++) vector[start + i] = fromHalf(view.getUint16(pos + 2 * i, true));
      } else {
        const scale = view.getFloat32(pos, true);
        for (let i = 0; i < size; i++) vector[start + i] = view.getInt8(pos + 4 + i) * scale;
      }
      start += size;
      pos += tensorBytes(encoding, size);
    }
  }
  const tensors = [];
  let start = 0;
  for (const s of specs) {
    const size = product(s.shape);
    tensors.push({name: s.name, shape: s.shape, data: vector.subarray(start, start + size)});
    start += size;
  }
  return {header, tensors, vector};
}
