/**
 * Client-side differential privacy for a round's update, twin of disco_client/privacy.py. No DOM code.
 *
 * Clip the round's change (weights - roundStartWeights) to L2 norm C, add Gaussian noise of standard
 * deviation z * C to each coordinate (DISCO squares it by mistake), and share roundStart + that.
 * Uniforms come from crypto.getRandomValues (Box-Muller), not Math.random.
 */

// Scaling to exactly C could land a hair above it once rounded to float32: aim just under.
const UNDER = 1 - 2 ** -23;

function check(clippingRadius, noiseScale) {
  if (!(Number.isFinite(clippingRadius) && clippingRadius > 0)) {
    throw new RangeError(`The clipping radius is a positive number (got ${clippingRadius}).`);
  }
  if (noiseScale !== undefined && !(Number.isFinite(noiseScale) && noiseScale >= 0)) {
    throw new RangeError(`The noise scale is zero or a positive number (got ${noiseScale}).`);
  }
}

/**
 * A source of uniform numbers in [0, 1) from the CSPRNG, drawn 4,096 at a time.
 * @returns {() => number}
 */
export function cryptoUniform() {
  const buffer = new Uint32Array(4096);
  let next = buffer.length;
  return () => {
    if (next === buffer.length) {
      globalThis.crypto.getRandomValues(buffer);
      next = 0;
    }
    return buffer[next++] / 2 ** 32;
  };
}

/**
 * Standard normal samples (Box-Muller) from a uniform source.
 * @param {number} n
 * @param {() => number} uniform values in [0, 1)
 * @returns {Float64Array}
 */
export function gaussian(n, uniform = cryptoUniform()) {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i += 2) {
    const radius = Math.sqrt(-2 * Math.log(1 - uniform())); // 1 - u is in (0, 1]: no log(0)
    const angle = 2 * Math.PI * uniform();
    out[i] = radius * Math.cos(angle);
    if (i + 1 < n) out[i + 1] = radius * Math.sin(angle);
  }
  return out;
}

/**
 * delta scaled down (never up) so its L2 norm is at most clippingRadius.
 * @param {Float32Array|number[]} delta
 * @param {number} clippingRadius
 * @returns {Float32Array}
 */
export function clipL2(delta, clippingRadius) {
  check(clippingRadius);
  let squares = 0;
  for (let i = 0; i < delta.length; i++) squares += Math.fround(delta[i]) ** 2;
  if (!Number.isFinite(squares)) {
    throw new RangeError('The update holds NaN or infinite values: check the learning rate and the data.');
  }
  const norm = Math.sqrt(squares);
  if (norm <= clippingRadius) return Float32Array.from(delta);
  const factor = (clippingRadius / norm) * UNDER;
  const out = new Float32Array(delta.length);
  for (let i = 0; i < delta.length; i++) out[i] = Math.fround(delta[i]) * factor;
  return out;
}

/**
 * Clip delta to L2 norm C, then add N(0, (z*C)^2) noise to each coordinate.
 * @param {Float32Array|number[]} delta
 * @param {number} clippingRadius C
 * @param {number} noiseScale z (0: clipping only)
 * @param {() => number} [uniform] uniform source in [0, 1); tests only (default: crypto)
 * @returns {Float32Array}
 */
export function privatize(delta, clippingRadius, noiseScale, uniform) {
  check(clippingRadius, noiseScale);
  const clipped = clipL2(delta, clippingRadius);
  if (noiseScale === 0) return clipped;
  const noise = gaussian(clipped.length, uniform);
  const std = noiseScale * clippingRadius;
  for (let i = 0; i < clipped.length; i++) clipped[i] += std * noise[i];
  return clipped;
}

/**
 * The update to share: roundStartWeights + privatize(weights - roundStartWeights).
 * @param {Float32Array} weights after the round's local training (flat, manifest order)
 * @param {Float32Array} roundStartWeights the flat weights the round started from
 * @param {number} clippingRadius
 * @param {number} noiseScale
 * @param {() => number} [uniform]
 * @returns {Float32Array}
 */
export function privatizeWeights(weights, roundStartWeights, clippingRadius, noiseScale, uniform) {
  if (weights.length !== roundStartWeights.length) {
    throw new RangeError(`The weights have ${weights.length} values but the round started from ${roundStartWeights.length}.`);
  }
  const delta = new Float32Array(weights.length);
  for (let i = 0; i < delta.length; i++) delta[i] = weights[i] - roundStartWeights[i];
  const privateDelta = privatize(delta, clippingRadius, noiseScale, uniform);
  const out = new Float32Array(weights.length);
  for (let i = 0; i < out.length; i++) out[i] = roundStartWeights[i] + privateDelta[i];
  return out;
}
