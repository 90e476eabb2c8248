"""Nearest-neighbour search speed: scikit-learn NearestNeighbors (brute) vs matmul + top-k in numpy and torch.

Both are exact; the table shows build and query time and how often the two agree on the neighbours.
    python benchmarks/bench_retrieval.py [--sizes 2000 20000] [--dim 256] [--queries 500] [--k 5] [--metric cosine]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from sonokit.retrieval import EmbeddingIndex


def _best_of(fn, repeats: int) -> tuple[float, object]:  # noqa: ANN001
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000], help="index sizes (items)")
    ap.add_argument("--dim", type=int, default=256, help="embedding dimension")
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--metric", choices=["cosine", "euclidean"], default="cosine")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    header = f"{'items':>8} {'backend':>8} {'build ms':>9} {'query ms':>9} {'us/query':>9} {'agree':>6} {'speed-up':>8}"
    print(f"metric={args.metric} dim={args.dim} queries={args.queries} k={args.k} (best of {args.repeats})")
    print(header)
    print("-" * len(header))
    for n in args.sizes:
        x = rng.normal(size=(n, args.dim)).astype(np.float32)
        q = rng.normal(size=(args.queries, args.dim)).astype(np.float32)
        results = {}
        for backend in ("sklearn", "numpy", "torch"):
            t_build, index = _best_of(
                lambda b=backend, x=x: EmbeddingIndex.build(x, metric=args.metric, backend=b), args.repeats
            )
            t_query, (idx, _) = _best_of(lambda i=index, q=q: i.query(q, args.k), args.repeats)
            results[backend] = (t_build, t_query, idx)
        ref = results["sklearn"][2]
        for backend, (t_build, t_query, idx) in results.items():
            agree = float(np.mean(idx == ref))
            speed = results["sklearn"][1] / t_query
            print(
                f"{n:>8} {backend:>8} {t_build * 1e3:>9.1f} {t_query * 1e3:>9.1f} "
                f"{t_query / args.queries * 1e6:>9.1f} {agree:>6.3f} {speed:>7.1f}x"
            )


if __name__ == "__main__":
    main()
