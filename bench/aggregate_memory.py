"""Benchmark: seconds and peak memory of the aggregation worker's rules on N stored frames of P parameters.

For each (P, N) it writes N float32 update frames with the codec into a temporary media folder (a random
base plus a small perturbation each, a tenth of them scaled up as outliers), then, for each rule, runs the
real aggregation (``aggregation.weights.stored_frames`` + ``aggregation.tasks.aggregate_updates``, what
``aggregate_round`` calls) in a child process of its own, which reports its peak RSS (``ru_maxrss``)
before aggregating (the baseline: Python, numpy, Django, the aggregation modules) and after. Printed next
to the 4 N P bytes that stacking the updates into one matrix would take (the rules before issue #15).

``--stacked`` also runs each rule the way it ran before: the N frames memory-mapped and stacked into the
matrix, then the rule on the matrix (one block: the same computation as before).

Run from the project root: ``.venv/bin/python bench/aggregate_memory.py`` (``--quick``: P=200k only).
``tests/aggregation/test_blocks.py`` runs the same child at N=200, P=1.66M.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

RULES = {"mean": {}, "median": {}, "trimmed_mean": {"beta": 0.1}, "krum": {"f": 2}}
SIZES = [(200_000, 50), (200_000, 200), (200_000, 500), (1_660_000, 50), (1_660_000, 200)]


def write_frames(folder: Path, n: int, p: int, seed: int = 0) -> list[str]:
    """N float32 update frames of one P-value tensor in ``folder``; returns their names (relative to it).

    Written one at a time (a few P-vectors in memory): a random base plus 0.01 x a rolled random vector
    each; the first tenth are outliers (1.0 x), so Krum and the median have something to reject.
    """
    from disco_client.codec import encode_header

    rng = np.random.default_rng(seed)
    base = rng.normal(size=p).astype(np.float32)
    noise = rng.normal(size=p).astype(np.float32)
    header = encode_header({"type": "update", "round": 1, "encoding": "float32",
                            "tensors": [{"name": "w", "shape": [p]}]})
    names = []
    for i in range(n):
        scale = np.float32(1.0 if i < n // 10 else 0.01)
        vector = base + scale * np.roll(noise, 7919 * i + 1)
        name = f"u{i:04d}.frame"
        with open(folder / name, "wb") as fh:
            fh.write(header)
            fh.write(vector.astype("<f4", copy=False).tobytes())
        names.append(name)
    return names


def child(folder: str, rule: str, params: str, head: str | None, stacked: bool = False) -> None:
    """In a fresh process: set up Django with ``folder`` as the media folder, aggregate its frames, report."""
    import resource

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "disco_site.settings")
    import django

    django.setup()
    from django.conf import settings

    settings.MEDIA_ROOT = folder
    from aggregation.aggregators import aggregate
    from aggregation.tasks import aggregate_updates
    from aggregation.weights import load_frame, stored_frames

    names = sorted(name for name in os.listdir(folder) if name.endswith(".frame"))
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    weights = np.full(len(names), 1 / len(names))
    if stacked:  # before issue #15: every memory-mapped frame stacked into the N x P matrix
        matrix = np.stack([load_frame(name, allow_non_finite=True).vector for name in names])
        vector = aggregate(rule, matrix, weights, **json.loads(params))
        source = type("Stacked", (), {"count": matrix.shape[0], "size": matrix.shape[1], "block_bytes": None})
        del matrix
    else:
        source = stored_frames(names)
        vector = aggregate_updates(rule, source, weights, json.loads(params))
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if head:
        np.save(head, vector[:2000])
    print(json.dumps({"rule": rule, "n": source.count, "p": source.size, "seconds": round(seconds, 3),
                      "baseline_kib": baseline, "peak_kib": peak,
                      "block_bytes": source.block_bytes}))


def run_child(folder: Path, rule: str, params: dict, stacked: bool = False) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(folder), rule, json.dumps(params), "",
                          "stacked" if stacked else ""], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", nargs="+", metavar="ARG", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="P=200k only")
    parser.add_argument("--stacked", action="store_true", help="also the rules on the stacked matrix (before)")
    args = parser.parse_args()
    if args.child:
        folder, rule, params, *rest = args.child
        child(folder, rule, params, rest[0] if rest and rest[0] else None, len(rest) > 1 and rest[1] == "stacked")
        return
    print(f"{'P':>10} {'N':>4} {'rule':<13} {'seconds':>8} {'baseline MiB':>12} {'peak MiB':>9} "
          f"{'above MiB':>9} {'4NP MiB':>8}" + (f" {'stacked s':>9} {'stacked above MiB':>17}" if args.stacked else ""))
    for p, n in SIZES:
        if args.quick and p > 200_000:
            continue
        folder = Path(tempfile.mkdtemp(prefix="disco-frames-"))
        try:
            write_frames(folder, n, p)
            for rule, params in RULES.items():
                r = run_child(folder, rule, params)
                base, peak = r["baseline_kib"] / 1024, r["peak_kib"] / 1024
                line = (f"{p:>10,} {n:>4} {rule:<13} {r['seconds']:>8.2f} {base:>12.0f} {peak:>9.0f} "
                        f"{peak - base:>9.0f} {4 * n * p / 2**20:>8,.0f}")
                if args.stacked:
                    old = run_child(folder, rule, params, stacked=True)
                    line += f" {old['seconds']:>9.2f} {(old['peak_kib'] - old['baseline_kib']) / 1024:>17,.0f}"
                print(line, flush=True)
        finally:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
