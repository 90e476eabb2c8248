"""Bootstrap confidence intervals: resample items (or whole patients) with replacement, recompute the metric.

Why our own: scipy.stats.bootstrap cannot resample by group, and a clinical test set with several images per
patient gives intervals that are too narrow unless patients, not images, are the resampled unit.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

Metric = Callable[..., float]


def bootstrap_indices(
    n: int, n_boot: int, seed: int = 0, groups: Sequence | np.ndarray | None = None
) -> Iterator[np.ndarray]:
    """Yield `n_boot` index arrays; with `groups`, draw whole groups with replacement and take all their items."""
    rng = np.random.default_rng(seed)
    if groups is None:
        for _ in range(n_boot):
            yield rng.integers(0, n, size=n)
        return
    groups = np.asarray(groups)
    if len(groups) != n:
        raise ValueError(f"groups has {len(groups)} entries for {n} items")
    _, inverse = np.unique(groups, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    counts = np.bincount(inverse)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    members = [order[s : s + c] for s, c in zip(starts, counts, strict=True)]
    n_groups = len(members)
    for _ in range(n_boot):
        picked = rng.integers(0, n_groups, size=n_groups)
        yield np.concatenate([members[g] for g in picked])


def bootstrap_cis(
    fns: Mapping[str, Metric],
    *arrays: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    groups: Sequence | np.ndarray | None = None,
    level: float = 0.95,
) -> dict[str, tuple[float, float] | None]:
    """Percentile CIs for several metrics of the same arrays, sharing one set of resamples.

    Each fn takes the resampled arrays positionally. Resamples where a metric is undefined (NaN) are ignored;
    a metric that is NaN on every resample (or n_boot == 0) gets None.
    """
    arrays = tuple(np.asarray(a) for a in arrays)
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError("all arrays must have the same length")
    if n_boot <= 0 or n == 0:
        return {name: None for name in fns}
    stats = {name: np.empty(n_boot) for name in fns}
    for b, idx in enumerate(bootstrap_indices(n, n_boot, seed, groups)):
        sample = tuple(a[idx] for a in arrays)
        for name, fn in fns.items():
            stats[name][b] = fn(*sample)
    tail = (1.0 - level) / 2.0 * 100.0
    out: dict[str, tuple[float, float] | None] = {}
    for name, values in stats.items():
        values = values[np.isfinite(values)]
        if values.size == 0:
            out[name] = None
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lo, hi = np.percentile(values, [tail, 100.0 - tail])
        out[name] = (float(lo), float(hi))
    return out


def bootstrap_ci(
    fn: Metric,
    *arrays: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    groups: Sequence | np.ndarray | None = None,
    level: float = 0.95,
) -> tuple[float, float] | None:
    """Percentile bootstrap CI of `fn(*arrays)`; resamples patients instead of items when `groups` is given."""
    return bootstrap_cis({"m": fn}, *arrays, n_boot=n_boot, seed=seed, groups=groups, level=level)["m"]


def name_resampled_unit(metrics: dict[str, Any], unit: str) -> dict[str, Any]:
    """Metrics that say what the bootstrap resampled: `resampled` = unit, and "resamples of patients" in every
    `ci_method` becomes "resamples of <unit>" (groups made of single images are images, not patients)."""

    def fix(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: (
                    v.replace("of patients", f"of {unit}")
                    if k == "ci_method" and isinstance(v, str)
                    else fix(v)
                )
                for k, v in value.items()
            }
        return value

    return {**fix(metrics), "resampled": unit}
