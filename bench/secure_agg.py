"""Benchmark: secure aggregation among N peers next to the plain mean, for one peer's side of a round.

For N = 3, 5, 10 peers and P = 200k parameters (``--peers``, ``--params``) it prints bytes
sent per peer and the time one peer spends to share and to reconstruct, in Python (numpy,
``disco_client/secure.py``) and in JavaScript (Node running ``static/disco/secure.js``, the
code browsers run). Transport time is not included (see FACTS.md for data channel speeds).

- mean: share = encode its float32 update frame; reconstruct = decode the N-1 frames it
  receives and take the sample-weighted mean (float64, then float32).
  Bytes sent = (N-1) x update frame.
- secure: share = fixed-point encode, split into N shares, encode N-1 share frames;
  reconstruct = decode N-1 share frames, add N shares, encode the partial frame, decode
  N-1 partial frames, add N partials, decode the mean.
  Bytes sent = (N-1) x share frame + (N-1) x partial frame.

Run from the project root: ``.venv/bin/python bench/secure_agg.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from disco_client.codec import decode_weights, encode_weights  # noqa: E402
from disco_client.secure import (  # noqa: E402
    add_shares,
    decode_mean,
    decode_u32_frame,
    encode_fixed,
    encode_u32_frame,
    fixed_point_scale,
    make_shares,
)

MAX_SHARE_VALUE = 100.0
SAMPLES = 100


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def python_side(peers: int, params: int, repeats: int) -> dict[str, float]:
    """Timings (ms) and bytes for one peer, in numpy."""
    rng = np.random.default_rng(peers)
    updates = rng.normal(0, 1, size=(peers, params)).astype(np.float32)
    fields = {"type": "peer_update", "round": 1, "samples": SAMPLES}
    frames = [encode_weights(fields, [("vector", u)]) for u in updates]

    def mean_reconstruct() -> np.ndarray:
        vectors = [updates[0]] + [decode_weights(f).vector for f in frames[1:]]
        weights = np.full(peers, SAMPLES, dtype=np.float64)
        acc = np.zeros(params, dtype=np.float64)
        for w, v in zip(weights, vectors, strict=True):
            acc += w * v
        return (acc / weights.sum()).astype(np.float32)

    scale = fixed_point_scale(MAX_SHARE_VALUE, peers)

    def secure_share() -> list[bytes]:
        shares = make_shares(encode_fixed(updates[0], MAX_SHARE_VALUE, scale), peers)
        return [encode_u32_frame({"type": "share", "round": 1}, s) for s in shares[1:]]

    share_frames = secure_share()
    partial_frame = encode_u32_frame({"type": "partial", "round": 1}, add_shares(
        [make_shares(encode_fixed(u, MAX_SHARE_VALUE, scale), peers)[0] for u in updates]))

    def secure_reconstruct() -> np.ndarray:
        own = np.zeros(params, np.uint32)
        received = [decode_u32_frame(f)[1] for f in share_frames]
        partial = add_shares([own, *received])
        encode_u32_frame({"type": "partial", "round": 1}, partial)
        partials = [partial] + [decode_u32_frame(partial_frame)[1] for _ in range(peers - 1)]
        return decode_mean(add_shares(partials), scale, peers)

    return {
        "mean_bytes": (peers - 1) * len(frames[0]),
        "secure_bytes": (peers - 1) * (len(share_frames[0]) + len(partial_frame)),
        "mean_share_ms": _median_ms(lambda: encode_weights(fields, [("vector", updates[0])]), repeats),
        "mean_reconstruct_ms": _median_ms(mean_reconstruct, repeats),
        "secure_share_ms": _median_ms(secure_share, repeats),
        "secure_reconstruct_ms": _median_ms(secure_reconstruct, repeats),
    }


JS = r"""
import {decodeWeights, encodeWeights} from '__CODEC__';
import {addShares, decodeMean, decodeU32Frame, encodeFixed, encodeU32Frame, fixedPointScale, makeShares}
  from '__SECURE__';
const [peersList, P, repeats, R, SAMPLES] = __ARGS__;
const median = (fn) => {
  const t = [];
  for (let i = 0; i < repeats; i++) { const s = performance.now(); fn(); t.push(performance.now() - s); }
  t.sort((a, b) => a - b);
  return t[Math.floor(t.length / 2)];
};
const out = {};
for (const N of peersList) {
  const updates = Array.from({length: N}, () => Float32Array.from({length: P}, () => Math.random() * 2 - 1));
  const fields = {type: 'peer_update', round: 1, samples: SAMPLES};
  const frame = (u) => encodeWeights(fields, [{name: 'vector', shape: [P], data: u}]);
  const frames = updates.map(frame);
  const meanReconstruct = () => {
    const vectors = [updates[0], ...frames.slice(1).map((f) => decodeWeights(f).vector)];
    const acc = new Float64Array(P);
    for (const v of vectors) for (let i = 0; i < P; i++) acc[i] += SAMPLES * v[i];
    const mean = new Float32Array(P);
    for (let i = 0; i < P; i++) mean[i] = acc[i] / (SAMPLES * N);
    return mean;
  };
  const S = fixedPointScale(R, N);
  const secureShare = () => makeShares(encodeFixed(updates[0], R, S), N).slice(1)
    .map((s) => encodeU32Frame({type: 'share', round: 1}, s));
  const shareFrames = secureShare();
  const partialFrame = encodeU32Frame({type: 'partial', round: 1}, makeShares(encodeFixed(updates[1], R, S), N)[0]);
  const secureReconstruct = () => {
    const partial = addShares([new Uint32Array(P), ...shareFrames.map((f) => decodeU32Frame(f).vector)]);
    encodeU32Frame({type: 'partial', round: 1}, partial);
    const partials = [partial, ...Array.from({length: N - 1}, () => decodeU32Frame(partialFrame).vector)];
    return decodeMean(addShares(partials), S, N);
  };
  out[N] = {mean_share_ms: median(() => frame(updates[0])), mean_reconstruct_ms: median(meanReconstruct),
            secure_share_ms: median(secureShare), secure_reconstruct_ms: median(secureReconstruct)};
}
console.log(JSON.stringify(out));
"""


def js_side(peers: list[int], params: int, repeats: int) -> dict[int, dict[str, float]]:
    """The same operations in Node, on static/disco/secure.js and codec.js."""
    script = (JS.replace("__CODEC__", (ROOT / "static/disco/codec.js").as_uri())
              .replace("__SECURE__", (ROOT / "static/disco/secure.js").as_uri())
              .replace("__ARGS__", json.dumps([peers, params, repeats, MAX_SHARE_VALUE, SAMPLES])))
    result = subprocess.run(["node", "--input-type=module", "-e", script], capture_output=True, text=True,
                            check=True, timeout=600)
    return {int(k): v for k, v in json.loads(result.stdout).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, nargs="+", default=[3, 5, 10])
    parser.add_argument("--params", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    js = js_side(args.peers, args.params, args.repeats)
    print(f"One peer's side of a round, P = {args.params:,} parameters, maxShareValue = {MAX_SHARE_VALUE:g}; "
          f"median of {args.repeats} runs (transport not included)\n")
    head = (f"{'N':>3}  {'scheme':<7} {'bytes sent/peer':>16}  {'py share ms':>11} {'py reconstr ms':>14}  "
            f"{'js share ms':>11} {'js reconstr ms':>14}")
    print(head)
    print("-" * len(head))
    for n in args.peers:
        py = python_side(n, args.params, args.repeats)
        for scheme in ("mean", "secure"):
            print(f"{n:>3}  {scheme:<7} {py[f'{scheme}_bytes']:>16,}  {py[f'{scheme}_share_ms']:>11.2f} "
                  f"{py[f'{scheme}_reconstruct_ms']:>14.2f}  {js[n][f'{scheme}_share_ms']:>11.2f} "
                  f"{js[n][f'{scheme}_reconstruct_ms']:>14.2f}")
    print("\nmean: (N-1) x float32 update frame; secure: (N-1) x uint32 share frame + (N-1) x uint32 partial frame.")


if __name__ == "__main__":
    main()
