/**
 * Gradient kernels that TF.js 4.22's wasm backend lacks, so that convolutional, depthwise and
 * embedding layers train on wasm instead of falling back to WebGL on a software rasteriser.
 *
 * The convolution kernels are composed from kernels the wasm backend already runs fast (forward
 * Conv2D and DepthwiseConv2dNative through XNNPACK, Transpose, Reverse, PadV2, Slice, Sum), called
 * directly through the kernel registry: no engine, no tape; every intermediate is freed with
 * `backend.disposeData` before the kernel returns. Where no composition is fast (a tiny output
 * accumulated from a big input, a scatter), the kernel is one tight JS pass over typed-array views
 * of the wasm heap, O(size of the data).
 *
 * - Conv2DBackpropFilter: a forward convolution with the roles swapped. With x transposed to
 *   [inC, H, W, N] (batch = inC, channels = N) and dy transposed to [outH, outW, N, outC] (the
 *   filter), dilated by the forward stride, the output is [inC, kh, kw, outC]. Measured 2.5-7×
 *   faster than im2col (one strided slice per tap) + BatchMatMul on the MNIST CNN's layers.
 * - DepthwiseConv2dNativeBackpropInput: a depthwise convolution of dy, zero-dilated by the
 *   stride, with the filter rotated by 180°; a channel multiplier > 1 is summed afterwards.
 * - DepthwiseConv2dNativeBackpropFilter: one pass in JS over dy and the input on the wasm heap,
 *   accumulating into the small filter (2-30× faster than a slice, Multiply and Sum per tap).
 * - UnsortedSegmentSum (the gradient of a gather, hence of Embedding): one pass over x in JS,
 *   straight on the wasm heap.
 *
 * AvgPoolGrad is native to the wasm backend, correct and fast enough. Four native kernels are
 * replaced, being slow or wrong in training (see WASM_REPLACED_KERNELS):
 * - Conv2DBackpropInput: a forward XNNPACK convolution of dy, zero-dilated by the stride and
 *   padded, with the filter rotated by 180° and its in and out channels swapped (the native
 *   kernel is a naive loop, 9× slower on the second layer of the MNIST CNN);
 * - BatchMatMul with a transposed operand: transposed first, then XNNPACK's fully connected path;
 * - MaxPoolGrad, wrong natively for windows whose maximum is <= 0: one pass in JS on the heap
 *   (also 3-4× faster than the native loop);
 * - Tile, as block copies: batch norm's gradient tiles a per-channel vector over activations;
 * - Sum and Mean over leading axes (batch norm's moments and gradients, biases' gradients), as one
 *   pass in JS over the heap instead of a transpose then a reduction;
 * - Greater, GreaterEqual, Less, LessEqual, LogicalAnd and LogicalOr on operands of one shape or a
 *   scalar (ReLU6's gradient), as one pass in JS without branches;
 * - Identity, sharing its input's buffer as the cpu backend does, instead of a copy.
 *
 * TF.js is never imported: it is the argument of `registerWasmGradientKernels` or the global `tf`
 * (pages load it as a classic script, Node tests set globalThis.tf). NHWC only.
 * @module wasm_grad_kernels
 */

/** The kernels this module provides for the wasm backend, when the backend lacks them. */
export const WASM_GRADIENT_KERNELS = Object.freeze([
  'Conv2DBackpropFilter',
  'DepthwiseConv2dNativeBackpropInput',
  'DepthwiseConv2dNativeBackpropFilter',
  'UnsortedSegmentSum',
]);

/**
 * Native wasm kernels this module replaces: Conv2DBackpropInput (an XNNPACK convolution instead of
 * a naive loop, measured in bench/wasm_kernels.mjs), BatchMatMul with a transposed operand
 * (through XNNPACK instead of a naive loop), and MaxPoolGrad, whose native version is wrong: it
 * starts its search for the window maximum at FLT_MIN, the smallest positive float, so a window
 * whose values are all <= 0 sends its gradient to the wrong place, and it gives ties to the last
 * maximum where TF.js's other backends give them to the first; Tile (block copies instead of an
 * index computation per element: batch norm's gradient tiles over whole activations); Sum and Mean
 * over leading axes (one pass in JS instead of a transpose and a reduction); and comparisons and logical
 * and/or on operands of one shape or a scalar (one pass in JS without branches: ReLU6's gradient); and
 * Identity (its input's buffer shared, not copied).
 */
export const WASM_REPLACED_KERNELS = Object.freeze(['Conv2DBackpropInput', 'BatchMatMul', 'MaxPoolGrad', 'Tile', 'Sum', 'Mean',
  'Greater', 'GreaterEqual', 'Less', 'LessEqual', 'LogicalAnd', 'LogicalOr', 'Identity']);

/** A kernel of this module cannot compute what it was asked (unsupported layout or dtype). */
export class WasmGradError extends Error {
  constructor(message) {
    super(message);
    this.name = 'WasmGradError';
  }
}

/**
 * Calls wasm kernels by name and remembers every output, so that one `free()` disposes them all.
 * `keep(t)` takes an output out of the list (the kernel's result).
 */
class Scratch {
  constructor(tf, backend) {
    this.tf = tf;
    this.backend = backend;
    this.live = [];
  }

  run(kernelName, inputs, attrs = {}) {
    const kernel = this.tf.getKernel(kernelName, 'wasm');
    if (!kernel) throw new WasmGradError(`The wasm backend has no ${kernelName} kernel.`);
    const out = kernel.kernelFunc({ inputs, backend: this.backend, attrs });
    this.live.push(out);
    return out;
  }

  reshape(x, shape) {
    return this.run('Reshape', { x }, { shape });
  }

  keep(t) {
    const index = this.live.indexOf(t);
    if (index < 0) throw new WasmGradError('A kernel must return a tensor it made, not one of its inputs.');
    this.live.splice(index, 1);
    return t;
  }

  free() {
    for (const t of this.live) this.backend.disposeData(t.dataId);
    this.live = [];
  }
}

/** Runs `body(scratch)` and frees its intermediates, whether it returns or throws. */
function withScratch(tf, backend, body) {
  const scratch = new Scratch(tf, backend);
  try {
    return scratch.keep(body(scratch));
  } finally {
    scratch.free();
  }
}

function isNchw(dataFormat) {
  return dataFormat === 'NCHW' || dataFormat === 'channelsFirst';
}

function assertNhwc(kernelName, dataFormat) {
  if (isNchw(dataFormat)) {
    throw new WasmGradError(`${kernelName} on wasm supports dataFormat 'NHWC' only (got '${dataFormat}').`);
  }
}

function assertFloat(kernelName, ...tensors) {
  for (const t of tensors) {
    if (t.dtype !== 'float32') throw new WasmGradError(`${kernelName} on wasm needs float32 tensors (got ${t.dtype}).`);
  }
}

/**
 * Pads (positive amounts, zeros) or crops (negative amounts) the two spatial axes of an NHWC
 * tensor. Returns `x` itself when nothing changes.
 * @param {Scratch} s
 * @param {{shape: number[]}} x a 4-D TensorInfo
 * @param {[number, number, number, number]} amounts top, bottom, left, right
 */
function padOrCrop(s, x, [top, bottom, left, right]) {
  let out = x;
  if (top < 0 || bottom < 0 || left < 0 || right < 0) {
    const [n, h, w, c] = out.shape;
    const begin = [0, Math.max(0, -top), Math.max(0, -left), 0];
    const size = [n, h - begin[1] - Math.max(0, -bottom), w - begin[2] - Math.max(0, -right), c];
    out = s.run('Slice', { x: out }, { begin, size });
  }
  if (top > 0 || bottom > 0 || left > 0 || right > 0) {
    const paddings = [[0, 0], [Math.max(0, top), Math.max(0, bottom)], [Math.max(0, left), Math.max(0, right)], [0, 0]];
    out = s.run('PadV2', { x: out }, { paddings, constantValue: 0 });
  }
  return out;
}

/**
 * Inserts `sh - 1` zero rows after every row and `sw - 1` zero columns after every column of an
 * NHWC tensor: [N, H, W, C] becomes [N, H * sh, W * sw, C].
 */
function zeroDilate(s, x, sh, sw) {
  const [n, h, w, c] = x.shape;
  let out = x;
  if (sh > 1) {
    out = s.reshape(out, [n * h, 1, w, c]);
    out = s.run('PadV2', { x: out }, { paddings: [[0, 0], [0, sh - 1], [0, 0], [0, 0]], constantValue: 0 });
  }
  if (sw > 1) {
    out = s.reshape(out, [n * h * sh * w, 1, c]);
    out = s.run('PadV2', { x: out }, { paddings: [[0, 0], [0, sw - 1], [0, 0]], constantValue: 0 });
  }
  return out === x ? x : s.reshape(out, [n, h * sh, w * sw, c]);
}

/**
 * The input of the forward convolution that computes a gradient with respect to the input:
 * dy zero-dilated by the stride and padded (or cropped) so that a stride-1 convolution with the
 * rotated filter gives exactly [N, inHeight, inWidth, ·].
 */
function transposedConvInput(s, dy, info) {
  const {
    strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw,
    filterHeight: kh, filterWidth: kw, inHeight, inWidth, outHeight, outWidth, padInfo,
  } = info;
  const z = zeroDilate(s, dy, sh, sw);
  const top = (kh - 1) * dh - padInfo.top;
  const left = (kw - 1) * dw - padInfo.left;
  const bottom = inHeight + (kh - 1) * dh - top - outHeight * sh;
  const right = inWidth + (kw - 1) * dw - left - outWidth * sw;
  return padOrCrop(s, z, [top, bottom, left, right]);
}

/** Rows and columns of padding after the input that the last output pixel reads (negative: unread). */
function trailingPads(info) {
  const {
    strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw,
    filterHeight: kh, filterWidth: kw, inHeight, inWidth, outHeight, outWidth, padInfo,
  } = info;
  return [
    (outHeight - 1) * sh + (kh - 1) * dh + 1 - padInfo.top - inHeight,
    (outWidth - 1) * sw + (kw - 1) * dw + 1 - padInfo.left - inWidth,
  ];
}

function conv2DBackpropFilter(tf, { inputs, backend, attrs }) {
  const { x, dy } = inputs;
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs;
  assertNhwc('Conv2DBackpropFilter', dataFormat);
  assertFloat('Conv2DBackpropFilter', x, dy);
  const info = tf.backend_util.computeConv2DInfo(
    x.shape, filterShape, strides, 1, pad, dimRoundingMode, false, 'channelsLast');
  const [bottom, right] = trailingPads(info);
  return withScratch(tf, backend, (s) => {
    // x as a batch of inC one-channel-per-sample images: [inC, H, W, N]; crop rows never read.
    let xT = s.run('Transpose', { x }, { perm: [3, 1, 2, 0] });
    xT = padOrCrop(s, xT, [0, Math.min(0, bottom), 0, Math.min(0, right)]);
    const dyT = s.run('Transpose', { x: dy }, { perm: [1, 2, 0, 3] });
    const explicit = [[0, 0], [info.padInfo.top, Math.max(0, bottom)], [info.padInfo.left, Math.max(0, right)], [0, 0]];
    const grad = s.run('Conv2D', { x: xT, filter: dyT }, {
      strides: [1, 1], pad: explicit, dataFormat: 'NHWC', dilations: [info.strideHeight, info.strideWidth],
      dimRoundingMode: undefined,
    });
    return s.run('Transpose', { x: grad }, { perm: [1, 2, 0, 3] });
  });
}

function conv2DBackpropInput(tf, { inputs, backend, attrs }) {
  const { dy, filter } = inputs;
  const { strides, pad, dataFormat, dimRoundingMode, inputShape } = attrs;
  assertNhwc('Conv2DBackpropInput', dataFormat);
  assertFloat('Conv2DBackpropInput', dy, filter);
  const info = tf.backend_util.computeConv2DInfo(
    inputShape, filter.shape, strides, 1, pad, dimRoundingMode, false, 'channelsLast');
  return withScratch(tf, backend, (s) => {
    const input = transposedConvInput(s, dy, info);
    // Rotated by 180° with in and out channels swapped: [kh, kw, outC, inC].
    const rotated = s.run('Transpose', { x: s.run('Reverse', { x: filter }, { dims: [0, 1] }) }, { perm: [0, 1, 3, 2] });
    return s.run('Conv2D', { x: input, filter: rotated }, {
      strides: [1, 1], pad: 'valid', dataFormat: 'NHWC', dilations: [1, 1], dimRoundingMode: undefined,
    });
  });
}

function depthwiseBackpropInput(tf, { inputs, backend, attrs }) {
  const { dy, filter } = inputs;
  const { strides, dilations, pad, dimRoundingMode, inputShape } = attrs;
  assertFloat('DepthwiseConv2dNativeBackpropInput', dy, filter);
  const info = tf.backend_util.computeConv2DInfo(
    inputShape, filter.shape, strides, dilations == null ? 1 : dilations, pad, dimRoundingMode, true);
  const [kh, kw, channels, multiplier] = filter.shape;
  return withScratch(tf, backend, (s) => {
    const input = transposedConvInput(s, dy, info);
    const rotated = s.reshape(s.run('Reverse', { x: filter }, { dims: [0, 1] }), [kh, kw, channels * multiplier, 1]);
    const dx = s.run('DepthwiseConv2dNative', { x: input, filter: rotated }, {
      strides: [1, 1], dilations: [info.dilationHeight, info.dilationWidth], pad: 'valid', dimRoundingMode: undefined,
    });
    if (multiplier === 1) return dx;
    const [n, h, w] = dx.shape;
    return s.run('Sum', { x: s.reshape(dx, [n, h, w, channels, multiplier]) }, { axis: [4], keepDims: false });
  });
}

/**
 * The filter gradient of a depthwise convolution, as one pass in JS over dy on the wasm heap: for
 * every output pixel and filter tap, channels innermost, accumulated in float64 as on cpu.
 * Measured 2-30× faster on MobileNet's shapes than the composition it replaced (a strided slice,
 * Multiply and Sum per tap, whose Sum over batch and space transposes): the output is tiny and
 * each input value is read once per tap.
 */
function depthwiseBackpropFilter(tf, { inputs, backend, attrs }) {
  const { x, dy } = inputs;
  const { strides, dilations, pad, dimRoundingMode, filterShape } = attrs;
  assertFloat('DepthwiseConv2dNativeBackpropFilter', x, dy);
  const {
    batchSize, inHeight, inWidth, outHeight, outWidth, strideHeight: sh, strideWidth: sw,
    dilationHeight: dh, dilationWidth: dw, padInfo,
  } = tf.backend_util.computeConv2DInfo(
    x.shape, filterShape, strides, dilations == null ? 1 : dilations, pad, dimRoundingMode, true);
  const [kh, kw, channels, multiplier] = filterShape;
  const depth = channels * multiplier;
  const sums = new Float64Array(kh * kw * depth);
  const out = backend.makeOutput(filterShape, 'float32');
  // Views on the wasm heap, taken after the last allocation (a growing heap detaches them).
  const xs = backend.typedArrayFromHeap(x);
  const g = backend.typedArrayFromHeap(dy);
  let gBase = 0;
  for (let n = 0; n < batchSize; n++) {
    for (let i = 0; i < outHeight; i++) {
      for (let j = 0; j < outWidth; j++, gBase += depth) {
        for (let a = 0; a < kh; a++) {
          const r = i * sh + a * dh - padInfo.top;
          if (r < 0 || r >= inHeight) continue;
          for (let b = 0; b < kw; b++) {
            const c0 = j * sw + b * dw - padInfo.left;
            if (c0 < 0 || c0 >= inWidth) continue;
            const xBase = ((n * inHeight + r) * inWidth + c0) * channels;
            const tap = (a * kw + b) * depth;
            if (multiplier === 1) {
              for (let c = 0; c < channels; c++) sums[tap + c] += xs[xBase + c] * g[gBase + c];
            } else {
              for (let c = 0; c < channels; c++) {
                const v = xs[xBase + c];
                for (let q = 0, k = c * multiplier; q < multiplier; q++, k++) sums[tap + k] += v * g[gBase + k];
              }
            }
          }
        }
      }
    }
  }
  backend.typedArrayFromHeap(out).set(sums);
  return out;
}

function unsortedSegmentSum(tf, { inputs, backend, attrs }) {
  const { x, segmentIds } = inputs;
  const { numSegments } = attrs;
  if (x.dtype !== 'float32' && x.dtype !== 'int32') {
    throw new WasmGradError(`UnsortedSegmentSum on wasm needs float32 or int32 values (got ${x.dtype}).`);
  }
  const idsRank = segmentIds.shape.length;
  const outShape = [numSegments, ...x.shape.slice(idsRank)];
  const rows = tf.util.sizeFromShape(segmentIds.shape);
  const inner = tf.util.sizeFromShape(x.shape.slice(idsRank));
  const out = backend.makeOutput(outShape, x.dtype);
  // Views on the wasm heap, taken after the last allocation (a growing heap detaches them).
  const values = backend.typedArrayFromHeap(x);
  const ids = segmentIds.dtype === 'int32' ? backend.typedArrayFromHeap(segmentIds)
    : Int32Array.from(backend.typedArrayFromHeap(segmentIds));
  const sums = backend.typedArrayFromHeap(out);
  sums.fill(0);
  for (let row = 0; row < rows; row++) {
    const id = ids[row];
    if (id < 0 || id >= numSegments) continue;  // TensorFlow drops ids out of range
    const to = id * inner;
    const from = row * inner;
    for (let k = 0; k < inner; k++) sums[to + k] += values[from + k];
  }
  return out;
}

/**
 * The gradient of a max pool: each output's dy goes to the first maximum of its window, in row
 * then column order, as on TF.js's cpu backend (a window of NaN or -Infinity only gets nothing).
 * One pass over the windows in JS, channels innermost so that reads are contiguous.
 */
function maxPoolGrad(tf, { inputs, backend, attrs }) {
  const { dy, input } = inputs;
  const { filterSize, strides, pad, dimRoundingMode } = attrs;
  assertFloat('MaxPoolGrad', dy, input);
  const {
    batchSize, inHeight, inWidth, inChannels: channels, outHeight, outWidth,
    strideHeight, strideWidth, filterHeight, filterWidth, padInfo,
  } = tf.backend_util.computePool2DInfo(input.shape, filterSize, strides, 1, pad, dimRoundingMode);
  const out = backend.makeOutput(input.shape, 'float32');
  // Views on the wasm heap, taken after the last allocation (a growing heap detaches them).
  const x = backend.typedArrayFromHeap(input);
  const grad = backend.typedArrayFromHeap(dy);
  const dx = backend.typedArrayFromHeap(out);
  dx.fill(0);
  const best = new Float32Array(channels);
  const where = new Int32Array(channels);
  let g = 0;
  for (let b = 0; b < batchSize; b++) {
    for (let i = 0; i < outHeight; i++) {
      const top = i * strideHeight - padInfo.top;
      const rowEnd = Math.min(inHeight, top + filterHeight);
      for (let j = 0; j < outWidth; j++) {
        const left = j * strideWidth - padInfo.left;
        const colEnd = Math.min(inWidth, left + filterWidth);
        best.fill(-Infinity);
        where.fill(-1);
        for (let r = Math.max(0, top); r < rowEnd; r++) {
          for (let c = Math.max(0, left); c < colEnd; c++) {
            const base = ((b * inHeight + r) * inWidth + c) * channels;
            for (let d = 0; d < channels; d++) {
              const v = x[base + d];
              if (v > best[d]) {
                best[d] = v;
                where[d] = base + d;
              }
            }
          }
        }
        for (let d = 0; d < channels; d++, g++) if (where[d] >= 0) dx[where[d]] += grad[g];
      }
    }
  }
  return out;
}

/**
 * Tile as block copies (TypedArray.set, then copyWithin doubling), innermost axis first. The
 * native kernel computes an index per element; batch norm's gradient tiles a [C] vector over the
 * whole [N, H, W, C] activation, and that alone was 30% of a MobileNet v1 training step.
 */
function tile(tf, native, { inputs, backend, attrs }) {
  const { x } = inputs;
  const { reps } = attrs;
  if (x.dtype === 'string' || tf.util.sizeFromShape(x.shape) * reps.reduce((p, r) => p * r, 1) < SMALL) {
    return native.kernelFunc({ inputs, backend, attrs });
  }
  const shape = x.shape.slice();
  const out = backend.makeOutput(shape.map((d, i) => d * reps[i]), x.dtype);
  if (tf.util.sizeFromShape(out.shape) === 0) return out;
  // Views on the wasm heap, taken after the last allocation (a growing heap detaches them).
  let data = backend.typedArrayFromHeap(x);
  for (let axis = shape.length - 1; axis >= 0; axis--) {
    const r = reps[axis];
    if (r === 1) continue;
    const block = tf.util.sizeFromShape(shape.slice(axis));
    const tiled = new data.constructor(data.length * r);
    for (let start = 0, from = 0; from < data.length; start += block * r, from += block) {
      tiled.set(data.subarray(from, from + block), start);
      for (let filled = block; filled < block * r;) {
        const n = Math.min(filled, block * r - filled);
        tiled.copyWithin(start + filled, start, start + n);
        filled += n;
      }
    }
    data = tiled;
    shape[axis] *= r;
  }
  backend.typedArrayFromHeap(out).set(data);
  return out;
}

/**
 * Below this many values the native BatchMatMul and Tile are faster than a transpose or a copy made
 * from JavaScript (a dense model's small products: measured on the titanic MLP, 2,257 samples/s
 * with every product replaced against 3,278 with the native ones).
 */
const SMALL = 1 << 16;

/**
 * BatchMatMul that reaches XNNPACK when it can: the native kernel runs XNNPACK only for a single
 * untransposed product and a naive loop otherwise, which is what every dense layer's gradient asks
 * for (x^T dy, dy W^T). Transposing the operand first is a copy, several times cheaper.
 */
function batchMatMul(tf, native, { inputs, backend, attrs }) {
  const { a, b } = inputs;
  const { transposeA, transposeB } = attrs;
  const single = (t) => tf.util.sizeFromShape(t.shape.slice(0, -2)) === 1;
  if (!(transposeA || transposeB) || !single(a) || !single(b) || a.dtype !== 'float32' || b.dtype !== 'float32'
      || tf.util.sizeFromShape(a.shape) + tf.util.sizeFromShape(b.shape) < SMALL) {
    return native.kernelFunc({ inputs, backend, attrs });
  }
  return withScratch(tf, backend, (s) => {
    const matrix = (t, transposed) => {
      const m = s.reshape(t, t.shape.slice(-2));
      return transposed ? s.run('Transpose', { x: m }, { perm: [1, 0] }) : m;
    };
    const outer = tf.backend_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
    const product = native.kernelFunc({
      inputs: { a: matrix(a, transposeA), b: matrix(b, transposeB) }, backend,
      attrs: { ...attrs, transposeA: false, transposeB: false },
    });
    s.live.push(product);
    return s.reshape(product, [...outer, ...product.shape.slice(-2)]);
  });
}

/**
 * Sum or Mean over leading axes (e.g. [0, 1, 2] of an NHWC activation: batch norm's moments and gradients,
 * a bias's gradient) as one pass in JS over the wasm heap, accumulating rows into a float64 vector. The
 * native kernels transpose the reduced axes to the end first, then reduce: several times slower on
 * MobileNet's activations (see bench/browser_train.py --profile and the README). (A product with a
 * vector of ones through XNNPACK is no faster: it packs the whole operand first.) Anything else (other
 * axes, int32, small tensors) goes to the native kernel.
 */
function reduceLeading(tf, native, mean, { inputs, backend, attrs }) {
  const { x } = inputs;
  const { keepDims } = attrs;
  const rank = x.shape.length;
  const axes = tf.util.parseAxisParam(attrs.axis, x.shape).sort((a, b) => a - b);
  const leading = axes.length > 0 && axes.length < rank && axes.every((axis, i) => axis === i);
  if (!leading || x.dtype !== 'float32' || tf.util.sizeFromShape(x.shape) < SMALL) {
    return native.kernelFunc({ inputs, backend, attrs });
  }
  const k = axes.length;
  const inner = tf.util.sizeFromShape(x.shape.slice(k));
  const rows = tf.util.sizeFromShape(x.shape.slice(0, k));
  const outShape = keepDims ? x.shape.map((d, i) => (i < k ? 1 : d)) : x.shape.slice(k);
  const out = backend.makeOutput(outShape, 'float32');
  // Views on the wasm heap, taken after the last allocation (a growing heap detaches them).
  const values = backend.typedArrayFromHeap(x);
  const sums = new Float64Array(inner);
  // Four rows a step: a quarter of the writes to `sums` (channels are few: 8 to 128 in MobileNets).
  let row = 0;
  for (let base = 0; row + 4 <= rows; row += 4, base += 4 * inner) {
    for (let j = 0, a = base, b = base + inner, c = base + 2 * inner, d = base + 3 * inner; j < inner; j++) {
      sums[j] += (values[a + j] + values[b + j]) + (values[c + j] + values[d + j]);
    }
  }
  for (let base = row * inner; row < rows; row++, base += inner) {
    for (let j = 0; j < inner; j++) sums[j] += values[base + j];
  }
  if (mean) for (let j = 0; j < inner; j++) sums[j] /= rows;
  backend.typedArrayFromHeap(out).set(sums);
  return out;
}

/**
 * Element-wise comparisons and logical operations as one pass in JS over the heap, for operands of one
 * shape or a scalar: the native kernels are 10-20x slower than Multiply on the same tensor (measured
 * in Node on [10, 56, 56, 32]: LessEqual with a scalar 4.0 ms, LogicalAnd 4.5 ms, Multiply 0.2 ms; here
 * 1.4 and 1.9 ms). ReLU6's gradient (MobileNets) runs them on every activation. (Select is no faster
 * in JS: left native.) For each: [same shape, scalar second operand] loops, without branches (a mask of random
 * signs mispredicts a branch per element: 3.8 ms against 1.4); a scalar first operand is swapped.
 */
const ELEMENTWISE = {
  Greater: [(o, a, b, n) => { for (let i = 0; i < n; i++) o[i] = +(a[i] > b[i]); },
    (o, a, s, n) => { for (let i = 0; i < n; i++) o[i] = +(a[i] > s); }],
  GreaterEqual: [(o, a, b, n) => { for (let i = 0; i < n; i++) o[i] = +(a[i] >= b[i]); },
    (o, a, s, n) => { for (let i = 0; i < n; i++) o[i] = +(a[i] >= s); }],
  Less: [(o, a, b, n) => { for (let i = 0; i < n; i++) o[i] = +(a[i] < b[i]); },
    (o, a, s, n) => { for (let i = 0; i < n; i++) o[i] = +(a[i] < s); }],
  LessEqual: [(o, a, b, n) => { for (let i = 0; i < n; i++) o[i] = +(a[i] <= b[i]); },
    (o, a, s, n) => { for (let i = 0; i < n; i++) o[i] = +(a[i] <= s); }],
  LogicalAnd: [(o, a, b, n) => { for (let i = 0; i < n; i++) o[i] = (a[i] !== 0) & (b[i] !== 0); },
    (o, a, s, n) => { for (let i = 0; i < n; i++) o[i] = (a[i] !== 0) & (s !== 0); }],
  LogicalOr: [(o, a, b, n) => { for (let i = 0; i < n; i++) o[i] = (a[i] !== 0) | (b[i] !== 0); },
    (o, a, s, n) => { for (let i = 0; i < n; i++) o[i] = (a[i] !== 0) | (s !== 0); }],
};

/** The operation with its operands swapped (a scalar first operand goes second). */
const MIRRORED = {
  Greater: 'Less', Less: 'Greater', GreaterEqual: 'LessEqual', LessEqual: 'GreaterEqual',
  LogicalAnd: 'LogicalAnd', LogicalOr: 'LogicalOr',
};

function elementwise(tf, native, kernelName, { inputs, backend, attrs }) {
  let { a, b } = inputs;
  let name = kernelName;
  const size = (t) => tf.util.sizeFromShape(t.shape);
  const logical = name.startsWith('Logical');
  const dtypeOk = (t) => t.dtype === (logical ? 'bool' : 'float32');
  if (!dtypeOk(a) || !dtypeOk(b) || Math.max(size(a), size(b)) < SMALL) return native.kernelFunc({ inputs, backend, attrs });
  if (size(a) === 1 && size(b) > 1) {
    [a, b] = [b, a];
    name = MIRRORED[name];
  }
  const scalar = size(b) === 1 && b.shape.length <= a.shape.length;
  if (!scalar && !tf.util.arraysEqual(a.shape, b.shape)) return native.kernelFunc({ inputs, backend, attrs });
  const shape = scalar ? a.shape.slice() : a.shape;
  const out = backend.makeOutput(shape, 'bool');
  // Views on the wasm heap, taken after the last allocation (a growing heap detaches them).
  const o = backend.typedArrayFromHeap(out);
  const av = backend.typedArrayFromHeap(a);
  const bv = backend.typedArrayFromHeap(b);
  if (scalar) ELEMENTWISE[name][1](o, av, bv[0], o.length);
  else ELEMENTWISE[name][0](o, av, bv, o.length);
  return out;
}

/**
 * Identity sharing its input's buffer (one more reference to it), as TF.js's cpu backend and Reshape do:
 * the native kernel copies the whole tensor, and the gradient tape and the optimizers call it on every
 * weight and many activations (1,600 calls, 5% of a MobileNetV2 training batch).
 */
function identity(tf, native, { inputs, backend, attrs }) {
  const { x } = inputs;
  if (x.dtype === 'string') return native.kernelFunc({ inputs, backend, attrs });
  backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

/** Kernels the wasm backend lacks: registered when missing. */
const MISSING = {
  Conv2DBackpropFilter: conv2DBackpropFilter,
  DepthwiseConv2dNativeBackpropInput: depthwiseBackpropInput,
  DepthwiseConv2dNativeBackpropFilter: depthwiseBackpropFilter,
  UnsortedSegmentSum: unsortedSegmentSum,
};

/** Native kernels replaced (slow or wrong in training); the native one is kept as fallback. */
const REPLACED = {
  Conv2DBackpropInput: (tf, native, args) => (isNchw(args.attrs.dataFormat)
    ? native.kernelFunc(args) : conv2DBackpropInput(tf, args)),
  BatchMatMul: batchMatMul,
  MaxPoolGrad: (tf, native, args) => maxPoolGrad(tf, args),
  Tile: tile,
  Sum: (tf, native, args) => reduceLeading(tf, native, false, args),
  Mean: (tf, native, args) => reduceLeading(tf, native, true, args),
  Identity: identity,
  ...Object.fromEntries(Object.keys(ELEMENTWISE).map((name) => [name, (tf, native, args) => elementwise(tf, native, name, args)])),
};

/**
 * Tile's gradient as one Sum: dy reshaped to [rep, size] pairs (axes that are not repeated merged into
 * their neighbours) and summed over the rep axes. TF.js's own gradient adds one Slice of dy per repetition
 * (a loop over every rep of every axis): the GPT's layer normalisations tile a [1, 1, 48] weight over
 * 128 positions and a [1, 128, 1] statistic over 48 channels, so each training batch ran 2,464 Slices
 * and as many Adds, 46% of its time on wasm (bench/browser_train.py --profile). The same sum, so the same
 * values on every backend; registered for all of them (a gradient is not per backend in TF.js).
 */
function tileGradient(tf) {
  return {
    kernelName: 'Tile',
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      const [x] = saved;
      const { reps } = attrs;
      return {
        x: () => {
          const dims = [];
          const axes = [];
          let mergeable = false;  // whether the last of dims is a size that a size-only axis can join
          x.shape.forEach((size, i) => {
            if (reps[i] > 1) {
              axes.push(dims.length);
              dims.push(reps[i], size);
              mergeable = true;
            } else if (mergeable) {
              dims[dims.length - 1] *= size;
            } else {
              dims.push(size);
              mergeable = true;
            }
          });
          const grad = axes.length ? tf.sum(tf.reshape(dy, dims), axes) : dy;
          return tf.reshape(grad, x.shape);
        },
      };
    },
  };
}

/** Marks the kernel functions of this module, so that registering twice changes nothing. */
const MARK = 'discoWasmGradKernel';

/**
 * Registers with TF.js's kernel registry, for the wasm backend, the gradient kernels that it lacks
 * (`WASM_GRADIENT_KERNELS`) and, unless `replaceNative` is false, replacements for native kernels
 * that are slow or wrong in training (`WASM_REPLACED_KERNELS`; the native kernel stays the
 * fallback for what a replacement does not handle, and its setup still runs when the backend
 * starts).
 * With the replacements comes Tile's gradient as one Sum (`tileGradient`; for every backend, as TF.js
 * keeps one gradient per kernel). Idempotent: a kernel already provided by this module, or a missing kernel that a later wasm
 * backend provides itself, is left alone. Call it once the wasm backend's script has run (its
 * kernels must be registered for the replacements to find them), before or after the backend is
 * initialised by `tf.setBackend('wasm')`.
 * @param {any} [tf] the TF.js namespace; `globalThis.tf` when omitted
 * @param {{replaceNative?: boolean}} [options]
 * @returns {string[]} the kernel names registered (or replaced) by this call
 */
export function registerWasmGradientKernels(tf = globalThis.tf, { replaceNative = true } = {}) {
  if (!tf || typeof tf.registerKernel !== 'function') {
    throw new WasmGradError('TensorFlow.js is not loaded: pass it to registerWasmGradientKernels or set globalThis.tf.');
  }
  const registered = [];
  for (const kernelName of WASM_GRADIENT_KERNELS) {
    if (tf.getKernel(kernelName, 'wasm')) continue;
    const compute = MISSING[kernelName];
    const kernelFunc = (args) => compute(tf, args);
    kernelFunc[MARK] = true;
    tf.registerKernel({ kernelName, backendName: 'wasm', kernelFunc });
    registered.push(kernelName);
  }
  if (!replaceNative) return registered;
  const tileGrad = tf.getGradient ? tf.getGradient('Tile') : null;
  if (typeof tf.registerGradient === 'function' && !(tileGrad && tileGrad.gradFunc[MARK])) {
    const config = tileGradient(tf);
    config.gradFunc[MARK] = true;
    tf.registerGradient(config);
  }
  for (const kernelName of WASM_REPLACED_KERNELS) {
    const native = tf.getKernel(kernelName, 'wasm');
    if (!native || native.kernelFunc[MARK]) continue;
    const compute = REPLACED[kernelName];
    const kernelFunc = (args) => compute(tf, native, args);
    kernelFunc[MARK] = true;
    tf.unregisterKernel(kernelName, 'wasm');
    tf.registerKernel({
      kernelName, backendName: 'wasm', kernelFunc, setupFunc: native.setupFunc, disposeFunc: native.disposeFunc,
    });
    registered.push(kernelName);
  }
  return registered;
}
