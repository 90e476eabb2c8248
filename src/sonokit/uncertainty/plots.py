"""Uncertainty plots as PNG files. The reliability diagram is the evaluation module's (one per project); the
risk-coverage curve lives here. matplotlib's object API on the Agg canvas, written atomically."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from sonokit.evaluate.plots import plot_reliability
from sonokit.uncertainty.selective import aurc, risk_coverage
from sonokit.utils import atomic_path

__all__ = ["plot_reliability", "plot_risk_coverage"]


def plot_risk_coverage(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]] | tuple[np.ndarray, np.ndarray],
    out_png: str | Path,
    title: str = "Risk-coverage",
    mark_coverage: float = 0.8,
) -> Path:
    """One curve per confidence score: {name: (confidence, correct)} or a single (confidence, correct) pair."""
    from matplotlib.figure import Figure

    if not isinstance(curves, Mapping):
        curves = {"confidence": curves}
    fig = Figure(figsize=(5.5, 4.5), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    for name, (conf, ok) in curves.items():
        cov, risk = risk_coverage(conf, ok)
        ax.step(
            np.r_[0.0, cov], np.r_[risk[0], risk], where="pre", label=f"{name} (AURC {aurc(conf, ok):.3f})"
        )
    ax.axvline(mark_coverage, color="grey", ls=":", lw=1)
    ax.set(xlim=(0, 1), ylim=(0, None), xlabel="coverage", ylabel="selective risk (error rate)", title=title)
    ax.legend(loc="upper left", fontsize=8)
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png")
    return out_png
