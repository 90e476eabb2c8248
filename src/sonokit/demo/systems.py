"""One function per system for `sonokit demo`: simulate, train, evaluate, analyse, and describe it in a Section.

They call the same library functions as the CLI commands listed in each section, so the report's commands redo
exactly what the demo did, on a user's own data.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from sonokit.demo.report import Metric, Section
from sonokit.utils import get_logger

log = get_logger(__name__)


# ---------------------------------------------------------------------------------------------------- helpers


def _fresh(path: Path) -> Path:
    """The demo owns everything under its out folder: clear a previous demo's copy before writing it again."""
    if path.exists():
        shutil.rmtree(path)
    return path


def _synth(ctx: Any, kind: str, folder: str, n: int, size: int) -> Path:
    from sonokit.synth import make_dataset

    out = _fresh(ctx.data_dir / folder)
    return make_dataset(kind, out, n=n, seed=ctx.seed, size=size)


def _train(ctx: Any, task: str, data: Path, name: str, **overrides: Any) -> Path:
    from sonokit.train.config import resolve_config
    from sonokit.train.engine import train

    run = _fresh(ctx.runs_dir / name)
    values = {"data": str(data), "out": str(run), "seed": ctx.seed, "n_boot": ctx.scale.n_boot, **overrides}
    return Path(train(resolve_config(task, overrides=values)))


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _plots(run: Path, *names: str) -> list[Path]:
    return [run / "plots" / n for n in names if (run / "plots" / n).is_file()]


def _uncertainty(ctx: Any, section: Section, run: Path, weight: float, label: str) -> None:
    """Calibration, conformal sets, correctness check and selective prediction on the run's val/test splits."""
    from sonokit.uncertainty.report import run_uncertainty

    summary = ctx.step(f"{label}: uncertainty", weight, lambda: run_uncertainty(run, alpha=0.1, seed=ctx.seed))
    for key, label_, note in _UNCERTAINTY_ROWS:
        value = _dig(summary, key)
        if value is not None:
            section.metrics.append(Metric(label_, value, None, note))
    section.plots += _plots(run, "reliability_before.png", "reliability_after.png", "risk_coverage.png")
    section.plots += _plots(run, "tsne_embeddings.png")


# (path in uncertainty.json, label, note)
_UNCERTAINTY_ROWS = [
    ("calibration.ece_before", "ECE before temperature scaling", "test"),
    ("calibration.ece_after", "ECE after temperature scaling", "test"),
    ("conformal.lac.coverage", "conformal coverage (LAC, alpha 0.1)", "target 0.90"),
    ("conformal.lac.mean_set_size", "conformal mean set size (LAC)", ""),
    ("correctness.msp.auroc_test", "error detection AUROC (max softmax)", "test"),
    ("correctness.mlp.auroc_test", "error detection AUROC (MLP on softmax)", "test"),
    ("correctness.svc.auroc_test", "error detection AUROC (SVC on softmax)", "test"),
    ("selective.risk_at_80", "error at 80% coverage", "test"),
    ("selective.aurc", "AURC", "lower is better"),
    ("combined.accuracy_plain", "accuracy, classifier alone", "test"),
    ("combined.by_correctness_model.msp.accuracy", "accuracy, classifier + kNN fallback when flagged", "test"),
]


def _dig(obj: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def _classification_metrics(section: Section, metrics: dict[str, Any], video: bool = False) -> None:
    for key in ("accuracy", "macro_f1", "top2_accuracy", "auroc", "ece"):
        section.add_metric(metrics, key, note="test, per frame" if video else "test")
    if video:
        for key in ("video_accuracy", "video_macro_f1"):
            section.add_metric(metrics, key, note="test, per video")


def _similar(ctx: Any, section: Section, run: Path, query: Path, label: str, weight: float) -> None:
    from sonokit.retrieval.runs import find_similar

    out = _fresh(ctx.out / "similar" / run.name)
    _, montages, _ = ctx.step(f"{label}: similar cases", weight, lambda: find_similar(run, [query], out, k=5))
    section.examples += montages[:1]


# ---------------------------------------------------------------------------------------------------- systems


def fetal(ctx: Any) -> Section:
    s = ctx.scale
    section = Section(
        key="fetal",
        title="Fetal standard planes",
        summary="Six planes of FETAL_PLANES_DB (abdomen, brain, femur, thorax, maternal cervix, other), split by "
        "patient; a small CNN with the attention + MLP head, top-2 accuracy, Grad-CAM, calibration and similar cases.",
    )
    data = ctx.step("fetal: simulate", 0.2, lambda: _synth(ctx, "fetal-planes", "fetal_planes", s.n["fetal"], 128))
    run = ctx.step(
        "fetal: train + evaluate",
        1.2,
        lambda: _train(
            ctx, "fetal-plane", data, "fetal-plane", epochs=s.epochs["fetal"], size=s.size["fetal"],
            head="attention-mlp", options={"gradcam_samples": 4},
        ),
    )
    _classification_metrics(section, _json(run / "metrics_test.json"))
    section.plots += _plots(run, "confusion_test.png", "roc_test.png", "training_curves.png")
    section.examples += sorted((run / "plots").glob("gradcam_*.png"))[:2]
    _uncertainty(ctx, section, run, 0.4, "fetal")
    test_image = sorted((data / "Images").glob("*.png"))[0]
    _similar(ctx, section, run, test_image, "fetal", 0.2)
    section.commands = [
        "# FETAL_PLANES_DB: FETAL_PLANES_DB_data.csv (sep ';') + Images/<Image_name>.png",
        "sonokit train fetal-plane --data FETAL_PLANES_DB --out runs/fetal-plane/mine --head attention-mlp",
        "sonokit evaluate runs/fetal-plane/mine --split test",
        "sonokit uncertainty runs/fetal-plane/mine --alpha 0.1",
        "sonokit similar runs/fetal-plane/mine new_image.png --k 5 --out similar/",
    ]
    return section


def lus(ctx: Any) -> Section:
    s = ctx.scale
    section = Section(
        key="lus",
        title="Lung ultrasound score (0-3)",
        summary="Frame-level scoring of simulated lung cines (A-lines, B-lines, consolidation, white lung) with "
        "patient-wise splits; a clip's score is its most severe frame (max rule). Uncertain frames are flagged.",
    )
    data = ctx.step("lus: simulate", 0.2, lambda: _synth(ctx, "lus", "lus", s.n["lus"], 128))
    run = ctx.step(
        "lus: train + evaluate",
        0.9,
        lambda: _train(
            ctx, "lus", data / "lus.csv", "lus", epochs=s.epochs["lus"], size=s.size["lus"]
        ),
    )
    _classification_metrics(section, _json(run / "metrics_test.json"), video=True)
    section.plots += _plots(run, "confusion_test.png", "confusion_video_test.png", "roc_test.png")
    _uncertainty(ctx, section, run, 0.3, "lus")
    query = sorted((data).rglob("*.avi"))[0]
    _similar(ctx, section, run, query, "lus", 0.1)
    section.commands = [
        "# a table: path (cine or frame, relative to the CSV), label (0-3), group (patient)",
        "sonokit train lus --data lus.csv --out runs/lus/mine",
        "sonokit predict runs/lus/mine new_clip.avi --out lus_predictions.csv",
        "sonokit uncertainty runs/lus/mine --alpha 0.1",
    ]
    return section


def echo(ctx: Any) -> Section:
    raise NotImplementedError("the echo system is not wired into the demo yet")


def aortic_valve(ctx: Any) -> Section:
    raise NotImplementedError("the aortic-valve system is not wired into the demo yet")


def quality(ctx: Any) -> Section:
    raise NotImplementedError("the image-quality system is not wired into the demo yet")
