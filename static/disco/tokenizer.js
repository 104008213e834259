/**
 * The byte-level tokenizer that ships with Disco ("bytes"): text is encoded as UTF-8 and
 * each byte is one token (ids 0..255); id 256 pads and ends text, so the vocabulary has 257 ids.
 *
 * Mirror of disco_client/tokenizers.py (ByteTokenizer); both are checked against the same vectors in
 * tests/vectors/tokenizer.json. No DOM, no TF.js.
 * @module tokenizer
 */

/** The padding / end-of-text id. */
export const PAD_ID = 256;
/** Number of token ids: 256 bytes + PAD_ID. */
export const VOCAB_SIZE = 257;

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: false });

/**
 * The UTF-8 bytes of `text` as token ids.
 * @param {string} text
 * @returns {number[]}
 */
export function encode(text) {
  return Array.from(encoder.encode(text));
}

/**
 * Text from token ids; pad ids (and anything outside 0..255) are dropped, invalid UTF-8 becomes U+FFFD.
 * @param {Iterable<number>} ids
 * @returns {string}
 */
export function decode(ids) {
  const bytes = [];
  for (const id of ids) if (Number.isInteger(id) && id >= 0 && id < 256) bytes.push(id);
  return decoder.decode(new Uint8Array(bytes));
}

/**
 * Keep the last `length` ids and left-pad with PAD_ID up to `length`.
 * @param {number[]} ids
 * @param {number} length
 * @returns {number[]}
 */
export function leftPad(ids, length) {
  if (!Number.isInteger(length) || length < 0) throw new RangeError(`length must be an integer >= 0, got ${length}.`);
  const kept = length ? ids.slice(-length) : [];
  return new Array(length - kept.length).fill(PAD_ID).concat(kept);
}
