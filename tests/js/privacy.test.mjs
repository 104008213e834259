// static/disco/privacy.js: clipping bounds the norm, the noise has standard deviation z*C (not (z*C)^2).
import assert from 'node:assert/strict';
import {test} from 'node:test';

import {clipL2, gaussian, privatize, privatizeWeights} from '../../static/disco/privacy.js';

const norm = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
const moments = (v) => {
  const mean = v.reduce((s, x) => s + x, 0) / v.length;
  return {mean, std: Math.sqrt(v.reduce((s, x) => s + (x - mean) ** 2, 0) / v.length)};
};

test('clipping bounds the norm and keeps the direction', () => {
  for (const size of [1, 10, 100000]) {
    // every |coordinate| >= 1, so even one coordinate is over the radius (a plain 5x could fall under it)
    const delta = Float32Array.from(gaussian(size), (x) => 5 * x + Math.sign(x || 1));
    const clipped = clipL2(delta, 0.5);
    const n = norm(clipped);
    assert.ok(n <= 0.5 && n > 0.5 * (1 - 1e-6), `norm ${n}`);
    const cosine = clipped.reduce((s, x, i) => s + x * delta[i], 0) / n / norm(delta);
    assert.ok(Math.abs(cosine - 1) < 1e-6);
  }
});

test('small updates are not scaled up; z = 0 is clipping only', () => {
  const delta = Float32Array.of(0.3, -0.4);
  assert.deepEqual(clipL2(delta, 1), delta);
  assert.deepEqual(privatize(delta, 1, 0), delta);
  assert.deepEqual(clipL2(new Float32Array(3), 1), new Float32Array(3));
});

for (const [clip, z] of [[2, 0.75], [0.1, 1.1]]) {
  test(`noise has standard deviation z*C (C=${clip}, z=${z})`, () => {
    const size = 200000;
    const std = z * clip;
    const {mean, std: got} = moments(privatize(new Float32Array(size), clip, z));
    assert.ok(Math.abs(got / std - 1) < 0.01, `std ${got}, expected ${std}`); // 1% is over 6 standard errors
    assert.ok(Math.abs(mean) < (6 * std) / Math.sqrt(size), `mean ${mean}`);
    assert.ok(Math.abs(got - std ** 2) > 0.1 * std); // not DISCO's squared value
  });
}

test('the Gaussian samples have the normal distribution\'s shape', () => {
  const samples = gaussian(200001); // odd: the last pair is cut in half
  const within = (k) => samples.filter((x) => Math.abs(x) < k).length / samples.length;
  assert.ok(Math.abs(within(1) - 0.682689) < 0.005);
  assert.ok(Math.abs(within(2) - 0.954500) < 0.003);
  assert.ok(Math.abs(within(3) - 0.997300) < 0.001);
  assert.ok(samples.every(Number.isFinite));
});

test('a seeded uniform source makes the noise reproducible; the default one is fresh', () => {
  const seeded = () => { let s = 7; return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32); };
  assert.deepEqual(privatize(new Float32Array(8), 1, 1, seeded()), privatize(new Float32Array(8), 1, 1, seeded()));
  assert.notDeepEqual(privatize(new Float32Array(8), 1, 1), privatize(new Float32Array(8), 1, 1));
});

test('privatizeWeights shares roundStart + the private delta', () => {
  const start = Float32Array.from({length: 1000}, (_, i) => -1 + i / 500);
  const far = start.map((x) => x + 3);
  const shared = privatizeWeights(far, start, 0.2, 0);
  const delta = shared.map((x, i) => x - start[i]);
  assert.ok(Math.abs(norm(delta) - 0.2) < 1e-4 * 0.2);
  const near = start.map((x) => x + 0.01);
  privatizeWeights(near, start, 1, 0).forEach((x, i) => assert.ok(Math.abs(x - near[i]) < 1e-7));
  assert.throws(() => privatizeWeights(new Float32Array(3), new Float32Array(2), 1, 1), /3 values but the round started from 2/);
});

test('bad settings and non-finite updates are refused', () => {
  assert.throws(() => privatize(new Float32Array(2), 0, 1), /clipping radius is a positive number/);
  assert.throws(() => privatize(new Float32Array(2), NaN, 1), /clipping radius/);
  assert.throws(() => privatize(new Float32Array(2), 1, -0.5), /noise scale is zero or a positive number/);
  assert.throws(() => clipL2(Float32Array.of(1, Infinity), 1), /NaN or infinite/);
});
