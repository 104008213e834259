/**
 * End-to-end encryption of peer-to-peer payloads with WebCrypto: ECDH P-256, HKDF-SHA256, AES-256-GCM.
 * Twin of disco_client/peer_crypto.py (read its docstring for the construction); both are tested on
 * the vectors of tests/vectors/peer_crypto.json. No DOM code here.
 *
 *   const mine = await generateKeyPair();          // fresh every round; mine.publicKey goes with "ready"
 *   const keys = new RoundKeys({task, round, me, privateKey: mine.privateKey, publicKeys}); // from "peers"
 *   const sealed = await keys.seal(peer, 'share', bytes);
 *   const plain = await keys.open(peer, 'share', sealed); // throws PeerCryptoError when not authentic
 * @module peer_crypto
 */

export const PROTOCOL = 'disco-p2p-v1';
export const VERSION = 1;
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
export const OVERHEAD = 1 + NONCE_BYTES + TAG_BYTES;
const PUBLIC_KEY_BYTES = 65;

/** A public key or a sealed payload was refused; the message says why. */
export class PeerCryptoError extends Error {
  constructor(message) {
    super(message);
    this.name = 'PeerCryptoError';
  }
}

const subtle = () => {
  const s = globalThis.crypto?.subtle;
  if (!s) throw new PeerCryptoError('WebCrypto is not available (it needs a secure context: https or localhost).');
  return s;
};
const utf8 = (text) => new TextEncoder().encode(text);

/** HKDF's info: protocol, task, round, sender, receiver (one key per round and direction). */
export function keyInfo(task, round, sender, receiver) {
  return utf8(JSON.stringify({p: PROTOCOL, task, round, from: sender, to: receiver}));
}

/** AES-GCM's associated data: binds sender, receiver, round and kind. */
export function associatedData(task, round, kind, sender, receiver) {
  return utf8(JSON.stringify({p: PROTOCOL, task, round, kind, from: sender, to: receiver}));
}

/** The counter-th message's nonce under one key: 96-bit big-endian (counters start at 1). */
export function nonce(counter) {
  if (!(Number.isSafeInteger(counter) && counter > 0)) {
    throw new PeerCryptoError(`A nonce counter is a whole number from 1 (got ${counter}).`);
  }
  const out = new Uint8Array(NONCE_BYTES);
  const view = new DataView(out.buffer);
  view.setUint32(4, Math.floor(counter / 2 ** 32));
  view.setUint32(8, counter >>> 0);
  return out;
}

function toBase64(bytes) {
  let text = '';
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text);
}

function fromBase64(text) {
  const raw = atob(text);
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

const b64url = (bytes) => toBase64(bytes).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');

/** A fresh ECDH P-256 key pair; publicKey is base64 of the 65-byte uncompressed point. */
export async function generateKeyPair() {
  const pair = await subtle().generateKey({name: 'ECDH', namedCurve: 'P-256'}, false, ['deriveBits']);
  const raw = new Uint8Array(await subtle().exportKey('raw', pair.publicKey));
  return {privateKey: pair.privateKey, publicKey: toBase64(raw)};
}

/**
 * A private key from its scalar (hex) and its public key: for the shared test vectors only.
 * @param {string} privateHex 64 hex digits
 * @param {string} publicKey base64 of the uncompressed point
 */
export async function importPrivateKey(privateHex, publicKey) {
  const raw = fromBase64(publicKey);
  const d = Uint8Array.from(privateHex.match(/../g), (h) => parseInt(h, 16));
  const jwk = {kty: 'EC', crv: 'P-256', d: b64url(d), x: b64url(raw.subarray(1, 33)), y: b64url(raw.subarray(33, 65)),
    ext: false};
  return subtle().importKey('jwk', jwk, {name: 'ECDH', namedCurve: 'P-256'}, false, ['deriveBits']);
}

/** The peer's public key; PeerCryptoError unless it is a point of P-256. */
export async function importPublicKey(text) {
  let raw;
  try {
    raw = typeof text === 'string' && text.length <= 128 ? fromBase64(text) : null;
  } catch {
    raw = null;
  }
  if (!raw || raw.length !== PUBLIC_KEY_BYTES || raw[0] !== 4) {
    throw new PeerCryptoError('A public key is the base64 of a 65-byte uncompressed P-256 point starting with 0x04.');
  }
  try {
    return await subtle().importKey('raw', raw, {name: 'ECDH', namedCurve: 'P-256'}, false, []);
  } catch {
    throw new PeerCryptoError('The public key is not a point of the P-256 curve.');
  }
}

/** The ECDH secret: the shared point's x coordinate (32 bytes). */
export async function sharedSecret(privateKey, publicKey) {
  return new Uint8Array(await subtle().deriveBits({name: 'ECDH', public: publicKey}, privateKey, 256));
}

/** The raw AES-256-GCM key bytes for sender -> receiver in one task's round. */
export async function deriveKeyBytes(secret, task, round, sender, receiver) {
  const base = await subtle().importKey('raw', secret, 'HKDF', false, ['deriveBits']);
  const bits = await subtle().deriveBits({name: 'HKDF', hash: 'SHA-256', salt: new Uint8Array(0),
    info: keyInfo(task, round, sender, receiver)}, base, 256);
  return new Uint8Array(bits);
}

/** An AES-GCM CryptoKey from raw bytes. */
export function aesKey(bytes) {
  return subtle().importKey('raw', bytes, {name: 'AES-GCM'}, false, ['encrypt', 'decrypt']);
}

/** 0x01 | nonce | ciphertext || tag. */
export async function seal(key, counter, aad, plaintext) {
  const iv = nonce(counter);
  const body = new Uint8Array(await subtle().encrypt({name: 'AES-GCM', iv, additionalData: aad, tagLength: 128},
    key, plaintext));
  const out = new Uint8Array(1 + NONCE_BYTES + body.length);
  out[0] = VERSION;
  out.set(iv, 1);
  out.set(body, 1 + NONCE_BYTES);
  return out;
}

/** The plaintext of a sealed payload; PeerCryptoError when malformed or not authentic. */
export async function openSealed(key, aad, sealed) {
  const data = sealed instanceof Uint8Array ? sealed : new Uint8Array(sealed);
  if (data.length < OVERHEAD) {
    throw new PeerCryptoError(`A sealed payload has at least ${OVERHEAD} bytes (version, nonce, tag); got ${data.length}.`);
  }
  if (data[0] !== VERSION) throw new PeerCryptoError(`Unknown sealed-payload version ${data[0]} (this peer speaks ${VERSION}).`);
  try {
    return new Uint8Array(await subtle().decrypt({name: 'AES-GCM', iv: data.subarray(1, 1 + NONCE_BYTES),
      additionalData: aad, tagLength: 128}, key, data.subarray(1 + NONCE_BYTES)));
  } catch {
    throw new PeerCryptoError('The payload failed authentication (AES-GCM): it was altered, or not sealed by this '
      + 'peer for this round, kind and receiver.');
  }
}

/** One peer's keys for one round: seal what it sends each other peer, open what they send it. */
export class RoundKeys {
  /**
   * @param {{task: string, round: number, me: string, privateKey: CryptoKey, publicKeys: Object<string, string>}} options
   */
  constructor({task, round, me, privateKey, publicKeys}) {
    Object.assign(this, {task, round, me, privateKey, publicKeys: publicKeys ?? {}});
    /** `${from}>${to}` -> Promise<CryptoKey> */
    this.keys = new Map();
    this.counters = new Map();
  }

  key(sender, receiver) {
    const pair = `${sender}>${receiver}`;
    if (!this.keys.has(pair)) {
      const other = sender === this.me ? receiver : sender;
      const text = this.publicKeys[other];
      const make = async () => {
        if (text == null) {
          throw new PeerCryptoError(`Peer ${other} announced no public key for round ${this.round}: nothing can be `
            + 'exchanged with it securely.');
        }
        const secret = await sharedSecret(this.privateKey, await importPublicKey(text));
        return aesKey(await deriveKeyBytes(secret, this.task, this.round, sender, receiver));
      };
      this.keys.set(pair, make());
    }
    return this.keys.get(pair);
  }

  async seal(to, kind, plaintext) {
    const counter = (this.counters.get(to) ?? 0) + 1;
    this.counters.set(to, counter);
    return seal(await this.key(this.me, to), counter, associatedData(this.task, this.round, kind, this.me, to), plaintext);
  }

  async open(sender, kind, sealed) {
    return openSealed(await this.key(sender, this.me), associatedData(this.task, this.round, kind, sender, this.me), sealed);
  }
}
