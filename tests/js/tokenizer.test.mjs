// static/disco/tokenizer.js against the vectors disco_client/tokenizers.py is tested on (tests/vectors/tokenizer.json).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { PAD_ID, VOCAB_SIZE, decode, encode, leftPad } from '../../static/disco/tokenizer.js';

const vectors = JSON.parse(readFileSync(new URL('../vectors/tokenizer.json', import.meta.url), 'utf8'));

test('constants match the Python tokenizer', () => {
  assert.equal(PAD_ID, vectors.padId);
  assert.equal(VOCAB_SIZE, vectors.vocabSize);
});

test('encode and decode the shared vectors', () => {
  for (const { text, ids } of vectors.encode) {
    assert.deepEqual(encode(text), ids, `encode(${JSON.stringify(text)})`);
    assert.equal(decode(ids), text);
  }
  for (const { ids, text } of vectors.decode) assert.equal(decode(ids), text, `decode(${ids})`);
});

test('leftPad keeps the last tokens and pads on the left', () => {
  for (const { ids, length, padded } of vectors.leftPad) assert.deepEqual(leftPad(ids, length), padded);
  assert.throws(() => leftPad([1], -1), /length must be an integer >= 0/);
});
