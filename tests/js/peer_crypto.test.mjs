// static/disco/peer_crypto.js (WebCrypto) against the shared vectors of tests/vectors/peer_crypto.json
// (made by disco_client/peer_crypto.py): the same secrets, keys and sealed bytes in both languages.
import assert from 'node:assert/strict';
import {readFileSync} from 'node:fs';
import {test} from 'node:test';

import {
  PeerCryptoError, RoundKeys, aesKey, associatedData, deriveKeyBytes, generateKeyPair, importPrivateKey,
  importPublicKey, keyInfo, nonce, openSealed, sharedSecret,
} from '../../static/disco/peer_crypto.js';

const vectors = JSON.parse(readFileSync(new URL('../vectors/peer_crypto.json', import.meta.url), 'utf8'));
const hex = (u8) => Buffer.from(u8).toString('hex');
const fromHex = (h) => Uint8Array.from(Buffer.from(h, 'hex'));
const publicKeys = Object.fromEntries(vectors.peers.map((p) => [p.id, p.public_key]));
const privateKeys = async () => Object.fromEntries(await Promise.all(vectors.peers.map(async (p) => [
  p.id, await importPrivateKey(p.private_hex, p.public_key)])));
const {task, round} = vectors;

test('both ends agree on the secret and derive the same per-direction keys as Python', async () => {
  const priv = await privateKeys();
  for (const pair of vectors.pairs) {
    const secret = await sharedSecret(priv[pair.from], await importPublicKey(publicKeys[pair.to]));
    assert.equal(hex(secret), pair.secret_hex);
    assert.equal(hex(await sharedSecret(priv[pair.to], await importPublicKey(publicKeys[pair.from]))), pair.secret_hex);
    assert.equal(new TextDecoder().decode(keyInfo(task, round, pair.from, pair.to)), pair.info);
    assert.equal(hex(await deriveKeyBytes(secret, task, round, pair.from, pair.to)), pair.key_hex);
  }
});

test('sealed payloads are byte for byte the vectors, and open at the receiver', async () => {
  const priv = await privateKeys();
  for (const c of vectors.sealed) {
    const sender = new RoundKeys({task, round, me: c.from, privateKey: priv[c.from], publicKeys});
    sender.counters.set(c.to, c.counter - 1);
    assert.equal(new TextDecoder().decode(associatedData(task, round, c.kind, c.from, c.to)), c.aad);
    const sealed = await sender.seal(c.to, c.kind, fromHex(c.plaintext_hex));
    assert.equal(hex(sealed), c.sealed_hex);
    const receiver = new RoundKeys({task, round, me: c.to, privateKey: priv[c.to], publicKeys});
    assert.equal(hex(await receiver.open(c.from, c.kind, fromHex(c.sealed_hex))), c.plaintext_hex);
  }
});

test('a payload opens only for its receiver, kind, round and sender', async () => {
  const priv = await privateKeys();
  const [a, b, c] = Object.keys(publicKeys);
  const sealed = await new RoundKeys({task, round, me: a, privateKey: priv[a], publicKeys}).seal(b, 'share', fromHex('0102'));
  const attempts = [
    () => new RoundKeys({task, round, me: b, privateKey: priv[b], publicKeys}).open(a, 'partial', sealed),
    () => new RoundKeys({task, round: round + 1, me: b, privateKey: priv[b], publicKeys}).open(a, 'share', sealed),
    () => new RoundKeys({task, round, me: c, privateKey: priv[c], publicKeys}).open(a, 'share', sealed),
    () => new RoundKeys({task, round, me: b, privateKey: priv[b], publicKeys}).open(c, 'share', sealed),
  ];
  for (const attempt of attempts) await assert.rejects(attempt, /failed authentication/);
  await assert.rejects(new RoundKeys({task, round, me: a, privateKey: priv[a], publicKeys: {}}).seal(b, 'share', sealed),
    (err) => err instanceof PeerCryptoError && err.message.includes(`Peer ${b} announced no public key`));
});

test('malformed or altered payloads are refused with the reason Python gives', async () => {
  const pair = vectors.pairs[0];
  const key = await aesKey(fromHex(pair.key_hex));
  const aad = associatedData(task, round, 'share', pair.from, pair.to);
  for (const c of vectors.refused) {
    await assert.rejects(openSealed(key, aad, fromHex(c.sealed_hex)), (err) => err.message.includes(c.error), c.name);
  }
});

test('bad public keys are refused; fresh key pairs differ; nonces count up big-endian', async () => {
  for (const bad of [42, 'not base64!', 'BAAA', `BA${'A'.repeat(85)}=`]) {
    await assert.rejects(importPublicKey(bad), PeerCryptoError);
  }
  const [x, y] = await Promise.all([generateKeyPair(), generateKeyPair()]);
  assert.notEqual(x.publicKey, y.publicKey);
  assert.equal(atob(x.publicKey).length, 65);
  assert.equal(hex(nonce(1)), '000000000000000000000001');
  assert.equal(hex(nonce(2 ** 40)), '000000000000010000000000');
  assert.throws(() => nonce(0), PeerCryptoError);
});
