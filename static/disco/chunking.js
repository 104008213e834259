/**
 * Chunking of binary messages for RTCDataChannel, whose messages are capped (pc.sctp.maxMessageSize,
 * 262,144 bytes in Chromium). No DOM code here.
 *
 * A chunk is a 12-byte header, three little-endian u32 (messageId, index, count), then its data.
 * Every chunk is at most maxMessageSize bytes; an empty message is one header-only chunk.
 */

export const CHUNK_HEADER_BYTES = 12;

/** A chunk that cannot belong to a well-formed message; the message says what is wrong. */
export class ChunkError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ChunkError';
  }
}

/**
 * Split a message into chunks of at most maxMessageSize bytes (header included).
 * @param {Uint8Array} bytes the whole message
 * @param {number} maxMessageSize the channel's limit (Infinity: one chunk)
 * @param {number} messageId a u32 that tells interleaved messages apart (e.g. a counter per channel)
 * @returns {Uint8Array[]}
 */
export function chunkMessage(bytes, maxMessageSize, messageId) {
  if (!(bytes instanceof Uint8Array)) throw new TypeError('chunkMessage takes a Uint8Array.');
  if (!(maxMessageSize > CHUNK_HEADER_BYTES)) {
    throw new RangeError(`maxMessageSize must exceed the ${CHUNK_HEADER_BYTES}-byte chunk header (got ${maxMessageSize}).`);
  }
  if (!(Number.isInteger(messageId) && messageId >= 0 && messageId <= 0xffffffff)) {
    throw new RangeError(`messageId must be a u32 (got ${messageId}).`);
  }
  const room = Number.isFinite(maxMessageSize) ? Math.floor(maxMessageSize) - CHUNK_HEADER_BYTES : Infinity;
  const count = Math.max(1, Math.ceil(bytes.length / room));
  if (count > 0xffffffff) throw new RangeError('The message needs more than 2**32 chunks.');
  const chunks = [];
  for (let index = 0; index < count; index++) {
    const data = bytes.subarray(index * room, Math.min(bytes.length, (index + 1) * room));
    const chunk = new Uint8Array(CHUNK_HEADER_BYTES + data.length);
    const view = new DataView(chunk.buffer);
    view.setUint32(0, messageId, true);
    view.setUint32(4, index, true);
    view.setUint32(8, count, true);
    chunk.set(data, CHUNK_HEADER_BYTES);
    chunks.push(chunk);
  }
  return chunks;
}

/** Chunks of several messages (interleaved in any order) back into whole messages. */
export class Reassembler {
  /**
   * @param {{maxBytes?: number}} [options] maxBytes: refuse messages larger than this (memory guard)
   */
  constructor({maxBytes = Infinity} = {}) {
    this.maxBytes = maxBytes;
    /** @type {Map<number, {count: number, parts: (Uint8Array|undefined)[], received: number, bytes: number}>} */
    this.pending = new Map();
  }

  /**
   * Take one chunk; returns the whole message when its last missing chunk arrives, else null.
   * @param {ArrayBuffer|Uint8Array} chunk
   * @returns {Uint8Array|null}
   */
  push(chunk) {
    const u8 = chunk instanceof Uint8Array ? chunk : new Uint8Array(chunk);
    if (u8.length < CHUNK_HEADER_BYTES) {
      throw new ChunkError(`A chunk starts with a ${CHUNK_HEADER_BYTES}-byte header; got only ${u8.length} bytes.`);
    }
    const view = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
    const id = view.getUint32(0, true);
    const index = view.getUint32(4, true);
    const count = view.getUint32(8, true);
    if (count < 1 || index >= count) {
      throw new ChunkError(`Chunk ${index} of message ${id} claims ${count} chunks: the index must be below the count.`);
    }
    let entry = this.pending.get(id);
    if (entry === undefined) {
      entry = {count, parts: new Array(count), received: 0, bytes: 0};
      this.pending.set(id, entry);
    } else if (entry.count !== count) {
      this.pending.delete(id);
      throw new ChunkError(`Message ${id} was announced with ${entry.count} chunks, then a chunk says ${count}.`);
    }
    if (entry.parts[index] !== undefined) {
      this.pending.delete(id);
      throw new ChunkError(`Chunk ${index} of message ${id} arrived twice.`);
    }
    const data = u8.slice(CHUNK_HEADER_BYTES); // a copy: the caller may reuse its buffer
    entry.bytes += data.length;
    if (entry.bytes > this.maxBytes) {
      this.pending.delete(id);
      throw new ChunkError(`Message ${id} is over the ${this.maxBytes}-byte limit.`);
    }
    entry.parts[index] = data;
    entry.received += 1;
    if (entry.received < count) return null;
    this.pending.delete(id);
    if (count === 1) return entry.parts[0];
    const whole = new Uint8Array(entry.bytes);
    let pos = 0;
    for (const part of entry.parts) {
      whole.set(part, pos);
      pos += part.length;
    }
    return whole;
  }

  /** Forget a half-received message (e.g. when its round was abandoned). */
  discard(messageId) {
    this.pending.delete(messageId);
  }
}
