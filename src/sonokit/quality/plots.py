"""Robustness and quality plots (matplotlib, Agg, written atomically).

- sweep: metric vs intensity (one panel per corruption, threshold marked), metric vs SSIM, SSIM vs intensity;
- quality classifier: accuracy by distortion intensity bin per corruption (the study's accuracy-by-distortion plot).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sonokit.utils import atomic_path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return path


def _threshold_of(thresholds: pd.DataFrame | None, name: str) -> pd.Series | None:
    if thresholds is None or thresholds.empty:
        return None
    hit = thresholds[thresholds["corruption"] == name]
    return hit.iloc[0] if len(hit) else None


def plot_sweep(
    curve: pd.DataFrame,
    out_dir: str | Path,
    thresholds: pd.DataFrame | None = None,
    metric_name: str = "accuracy",
) -> list[Path]:
    """Write metric_vs_intensity.png, metric_vs_ssim.png and ssim_vs_intensity.png; return their paths."""
    plt = _plt()
    out_dir = Path(out_dir)
    names = list(dict.fromkeys(curve["corruption"]))
    cols = min(3, len(names))
    rows = int(np.ceil(len(names) / cols))
    paths = []

    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        part = curve[curve["corruption"] == name].sort_values("intensity")
        ax.plot(part["intensity"], part["metric"], "o-", color="C0")
        th = _threshold_of(thresholds, name)
        if th is not None:
            ax.axhline(th["target"], color="grey", ls="--", lw=1)
            if th["crossed"]:
                ax.axvline(th["threshold_intensity"], color="C3", ls=":", lw=1.5)
                ax.set_title(f"{name}: threshold {th['threshold_intensity']:.3g}", fontsize=10)
            else:
                ax.set_title(f"{name}: no crossing", fontsize=10)
        else:
            ax.set_title(name, fontsize=10)
        ax.set_xlabel("intensity")
        ax.set_ylabel(metric_name)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.tight_layout()
    paths.append(_save(fig, out_dir / "metric_vs_intensity.png"))

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for i, name in enumerate(names):
        part = curve[curve["corruption"] == name].sort_values("intensity")
        ax.plot(part["ssim_mean"], part["metric"], "o-", color=f"C{i}", label=name, ms=3)
        th = _threshold_of(thresholds, name)
        if th is not None and th["crossed"]:
            ax.axvline(th["threshold_ssim"], color=f"C{i}", ls=":", lw=1)
    if thresholds is not None and not thresholds.empty:
        ax.axhline(float(thresholds["target"].iloc[0]), color="grey", ls="--", lw=1)
    ax.set_xlabel("SSIM to the clean image")
    ax.set_ylabel(metric_name)
    ax.invert_xaxis()
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(_save(fig, out_dir / "metric_vs_ssim.png"))

    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        part = curve[curve["corruption"] == name].sort_values("intensity")
        ax.errorbar(part["intensity"], part["ssim_mean"], yerr=part["ssim_std"], fmt="o-", ms=3, capsize=2)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("intensity")
        ax.set_ylabel("SSIM")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.tight_layout()
    paths.append(_save(fig, out_dir / "ssim_vs_intensity.png"))
    return paths


def plot_accuracy_by_distortion(table: pd.DataFrame, path: str | Path) -> Path:
    """Bar panels of accuracy per intensity bin for each corruption (columns: class, bin, accuracy, n)."""
    plt = _plt()
    names = list(dict.fromkeys(table["class"]))
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        part = table[table["class"] == name]
        ax.bar(range(len(part)), part["accuracy"], color="C0")
        ax.set_xticks(range(len(part)), part["bin"], rotation=45, ha="right", fontsize=7)
        for j, (acc, n) in enumerate(zip(part["accuracy"], part["n"], strict=True)):
            ax.text(j, min(acc, 0.95) + 0.02, f"n={n}", ha="center", fontsize=6)
        ax.set_ylim(0, 1.05)
        ax.set_title(name, fontsize=10)
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return _save(fig, Path(path))
