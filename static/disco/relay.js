/**
 * Relay framing: how peer-to-peer payloads travel through the server, in parts of at most 1 MiB.
 * Twin of disco_client/relay.py (read its docstring); both are tested on tests/vectors/relay.json.
 * No DOM code here.
 *
 * A relay frame is u32 LE n | n bytes of JSON envelope | payload. A peer sends
 * {to, round, kind, part, parts}; the server forwards {from, round, kind, part, parts}.
 * @module relay
 */

export const RELAY_PART_BYTES = 1 << 20;
export const RELAY_SLACK = 64 * 1024;

/** A malformed relay frame or part; `code` is the protocol's error code. */
export class RelayError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'RelayError';
    this.code = code;
  }
}

/**
 * u32 LE n | JSON envelope | payload.
 * @param {object} envelope
 * @param {Uint8Array} payload
 * @returns {Uint8Array}
 */
export function encodeRelayFrame(envelope, payload) {
  const head = new TextEncoder().encode(JSON.stringify(envelope));
  const out = new Uint8Array(4 + head.length + payload.length);
  new DataView(out.buffer).setUint32(0, head.length, true);
  out.set(head, 4);
  out.set(payload, 4 + head.length);
  return out;
}

const whole = (v) => Number.isInteger(v);

/**
 * The envelope and payload (a view, no copy) of a relay frame; RelayError('bad_relay') when malformed.
 * @param {ArrayBuffer|Uint8Array} bytes
 * @returns {{envelope: any, payload: Uint8Array}}
 */
export function decodeRelayFrame(bytes) {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  if (u8.length < 4) throw new RelayError('bad_relay', 'A relayed frame starts with a 4-byte header length.');
  const n = new DataView(u8.buffer, u8.byteOffset, u8.byteLength).getUint32(0, true);
  if (n > u8.length - 4) {
    throw new RelayError('bad_relay', `The relay header claims ${n} bytes but the frame has only ${u8.length - 4} after the length.`);
  }
  let envelope = null;
  try {
    envelope = JSON.parse(new TextDecoder('utf-8', {fatal: true}).decode(u8.subarray(4, 4 + n)));
  } catch { /* refused below */ }
  if (!envelope || typeof envelope !== 'object' || Array.isArray(envelope) || typeof envelope.kind !== 'string') {
    throw new RelayError('bad_relay', 'The relay header is JSON {"to": peer id, "round": n, "kind": "...", "part": i, "parts": n}.');
  }
  const part = envelope.part ?? 0;
  const parts = envelope.parts ?? 1;
  if (!(whole(part) && whole(parts) && part >= 0 && part < parts)) {
    throw new RelayError('bad_relay', `A relayed part has whole numbers 0 <= part < parts (got part ${part} of ${parts}).`);
  }
  return {envelope, payload: u8.subarray(4 + n)};
}

/**
 * The relay frames that carry `payload`: parts of at most `partBytes` bytes, in order.
 * @param {object} envelope {to, round, kind}
 * @param {Uint8Array} payload
 * @param {number} [partBytes]
 * @returns {Uint8Array[]}
 */
export function splitRelay(envelope, payload, partBytes = RELAY_PART_BYTES) {
  if (!(partBytes >= 1)) throw new RangeError(`A relayed part holds at least one byte (got ${partBytes}).`);
  const parts = Math.max(1, Math.ceil(payload.length / partBytes));
  const frames = [];
  for (let part = 0; part < parts; part++) {
    frames.push(encodeRelayFrame({...envelope, part, parts}, payload.subarray(part * partBytes, (part + 1) * partBytes)));
  }
  return frames;
}

/** Relayed parts back into whole payloads, per (from, round, kind); maxBytes bounds one payload. */
export class RelayReassembler {
  constructor({maxBytes = Infinity, partBytes = RELAY_PART_BYTES} = {}) {
    this.maxBytes = maxBytes;
    this.partBytes = partBytes;
    this.pending = new Map();
  }

  /**
   * Take one part; {from, round, kind, payload} when its last part arrives, else null.
   * @param {any} envelope
   * @param {Uint8Array} payload
   */
  push(envelope, payload) {
    const from = String(envelope.from);
    const {round, kind} = envelope;
    const key = `${round}|${kind}|${from}`;
    const part = envelope.part ?? 0;
    const parts = envelope.parts ?? 1;
    if (parts > Math.ceil(this.maxBytes / this.partBytes) + 1 || payload.length > this.partBytes) {
      this.pending.delete(key);
      throw new RelayError('too_large', `The relayed ${kind} from ${from} is over this peer's limit of ${this.maxBytes} bytes `
        + `(${parts} parts, this one ${payload.length} bytes).`);
    }
    let entry = this.pending.get(key);
    if (part === 0) {
      entry = {parts, next: 0, chunks: [], bytes: 0};
      this.pending.set(key, entry);
    }
    if (!entry || entry.parts !== parts || entry.next !== part) {
      this.pending.delete(key);
      throw new RelayError('bad_relay', `Part ${part} of ${parts} of the relayed ${kind} from ${from} came out of order: `
        + 'the payload is dropped.');
    }
    entry.chunks.push(payload.slice());
    entry.bytes += payload.length;
    entry.next += 1;
    if (entry.bytes > this.maxBytes) {
      this.pending.delete(key);
      throw new RelayError('too_large', `The relayed ${kind} from ${from} is over this peer's limit of ${this.maxBytes} bytes.`);
    }
    if (entry.next < parts) return null;
    this.pending.delete(key);
    const whole = new Uint8Array(entry.bytes);
    let offset = 0;
    for (const chunk of entry.chunks) { whole.set(chunk, offset); offset += chunk.length; }
    return {from, round, kind, payload: whole};
  }

  /** Forget half-received payloads of rounds up to `round`. */
  discardRound(round) {
    for (const key of [...this.pending.keys()]) if (Number(key.split('|')[0]) <= round) this.pending.delete(key);
  }
}
