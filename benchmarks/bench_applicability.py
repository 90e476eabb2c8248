"""How well does the applicability check tell a model's training domain from foreign inputs?

Trains (or reuses) a small fetal-plane run on simulated data, fits the applicability scorer on its training and
validation embeddings (both methods of sonokit.uncertainty.applicability), and scores:

    in-domain      the run's own test split (simulated fetal planes the model never saw)
    other US       frames of other simulated kinds (lung cines, apical echo cines, PSAX frames) and real images
                   from /work/shared/data (BUS-BRA breast, HC18 fetal head) when present
    natural        skimage.data images (astronaut, coffee, chelsea, camera, ...), resized, plus crops of them

Per foreign set: the AUROC of the distance for separating it from the in-domain test items (1.0: perfect) and the
share of items called applicable at the validation threshold (in-domain: should be about 99%; foreign: 0%).
Every input goes through the run's own predict path (task.predict_items, the dataset, the hooked head).

    python benchmarks/bench_applicability.py [--work /tmp/bench_applicability] [--n 800] [--epochs 10]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

SHARED = Path("/work/shared/data")
NATURAL = ("astronaut", "camera", "cat", "coffee", "chelsea", "rocket", "coins", "moon", "page", "text", "brick",
           "grass", "gravel", "horse", "hubble_deep_field", "immunohistochemistry", "retina", "colorwheel",
           "clock", "logo", "motorcycle_left", "checkerboard")  # fmt: skip


def _train(work: Path, n: int, epochs: int) -> Path:
    from sonokit.core.config import resolve_config
    from sonokit.synth import make_dataset
    from sonokit.tasks import get_task
    from sonokit.train.engine import train

    run = work / "run"
    if (run / "model.safetensors").is_file():
        print(f"reusing {run}")
        return run
    data = make_dataset("fetal-planes", work / "fetal", n=n, size=128, overwrite=True)
    values = {"data": str(data), "out": str(run), "epochs": epochs, "size": 64, "n_boot": 0, "seed": 0,
              "patience": 0, "options": {"gradcam_samples": 0}}  # fmt: skip
    t0 = time.perf_counter()
    out = Path(
        train(resolve_config("fetal-plane", overrides=values, task_defaults=get_task("fetal-plane").defaults))
    )
    print(f"trained {out} in {time.perf_counter() - t0:.0f} s")
    return out


def _save_pngs(images: list[np.ndarray], folder: Path) -> list[Path]:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        p = folder / f"{i:04d}.png"
        if img.ndim == 3:
            img = cv2.cvtColor(img[..., :3], cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(p), img)
        paths.append(p)
    return paths


def _frames_of(videos: list[Path], per_video: int) -> list[np.ndarray]:
    from sonokit.data.frames import count_frames, read_image, sample_indices

    out = []
    for v in videos:
        for i in sample_indices(count_frames(v), 1, per_video):
            out.append(np.asarray(read_image(v, int(i))))
    return out


def _foreign_sets(work: Path, n_real: int, seed: int) -> dict[str, list[Path]]:
    import cv2
    import skimage.data as skd

    from sonokit.synth import make_dataset

    rng = np.random.default_rng(seed)
    sets: dict[str, list[Path]] = {}
    make_dataset("lus", work / "lus", n=8, size=128, seed=seed + 1, overwrite=True)
    videos = sorted(p for p in (work / "lus").rglob("*") if p.suffix.lower() in (".avi", ".mp4"))
    sets["synth lung frames"] = _save_pngs(_frames_of(videos[:8], 8), work / "foreign" / "lus")
    make_dataset("echo", work / "echo", n=8, size=112, seed=seed + 2, overwrite=True)
    videos = sorted((work / "echo").rglob("*.avi"))
    sets["synth echo frames"] = _save_pngs(_frames_of(videos[:8], 8), work / "foreign" / "echo")
    make_dataset("psax", work / "psax", n=64, size=128, seed=seed + 3, overwrite=True)
    sets["synth PSAX frames"] = sorted((work / "psax").rglob("*.png"))[:64]
    for name, folder in (("BUS-BRA breast (real)", SHARED / "busbra" / "Images"),
                         ("HC18 fetal head (real)", SHARED / "hc18" / "images")):  # fmt: skip
        files = (
            sorted(p for p in folder.glob("*.png") if "annotation" not in p.name.lower())
            if folder.is_dir()
            else []
        )
        if files:
            pick = rng.choice(len(files), size=min(n_real, len(files)), replace=False)
            sets[name] = [files[i] for i in sorted(pick)]
    natural = []
    for name in NATURAL:
        try:
            img = np.asarray(getattr(skd, name)())
        except Exception:  # noqa: BLE001 - an image missing from this skimage version is skipped
            continue
        if img.dtype != np.uint8:
            img = img.astype(float)
            img = (255 * (img - img.min()) / max(1e-9, float(img.max() - img.min()))).astype(np.uint8)
        h, w = img.shape[:2]
        natural.append(cv2.resize(img, (256, round(256 * h / w))))
        for _ in range(2):  # two random crops of each: more items, other scales
            s = int(min(h, w) * rng.uniform(0.4, 0.8))
            y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
            natural.append(cv2.resize(np.ascontiguousarray(img[y : y + s, x : x + s]), (160, 160)))
    sets["natural images (skimage.data)"] = _save_pngs(natural, work / "foreign" / "natural")
    return sets


def _auroc(d_in: np.ndarray, d_out: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.zeros(len(d_in)), np.ones(len(d_out))]
    return float(roc_auc_score(y, np.r_[d_in, d_out]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_applicability"))
    ap.add_argument("--n", type=int, default=800, help="simulated fetal-plane images to train on")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--real", type=int, default=100, help="real images per real set")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch

    from sonokit.core.run import input_items, load_run
    from sonokit.retrieval.runs import infer_with_embeddings, run_splits
    from sonokit.uncertainty.applicability import fit_for_run

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    run_dir = _train(args.work, args.n, args.epochs)
    run = load_run(run_dir, "cpu")
    splits = run_splits(run)
    outs = {s: infer_with_embeddings(run, splits[s], desc=s) for s in ("train", "val", "test")}
    acc = float(np.mean(outs["test"].probs.argmax(1) == outs["test"].y))
    sets = _foreign_sets(args.work, args.real, args.seed)
    emb = {}
    for name, files in sets.items():
        items, errors = input_items(run, files)
        if errors:
            print(f"{name}: {len(errors)} unreadable, e.g. {errors[0]}")
        emb[name] = infer_with_embeddings(run, items.reset_index(drop=True), desc=name).embeddings
    scorers = {m: fit_for_run(run, outs["train"], outs["val"], method=m, save=m == "mahalanobis")
               for m in ("mahalanobis", "knn")}  # fmt: skip
    print(f"\nfetal-plane run: {len(outs['train'].y)} train, {len(outs['val'].y)} val, {len(outs['test'].y)} test "
          f"images, test accuracy {acc:.1%}; threshold = 99% quantile of validation distances\n")  # fmt: skip
    header = "| set | n | " + " | ".join(f"AUROC {m} | applicable {m}" for m in scorers) + " |"
    print(header)
    print("|" + "---|" * (2 + 2 * len(scorers)))
    d_in = {m: s.distance(outs["test"].embeddings) for m, s in scorers.items()}
    cells = " | ".join(f"- | {np.mean(d_in[m] <= s.threshold):.1%}" for m, s in scorers.items())
    print(f"| in-domain test (simulated fetal planes) | {len(outs['test'].y)} | {cells} |")
    real_or_synth_us = [n for n in emb if "natural" not in n]
    if real_or_synth_us:
        emb["all other ultrasound (pooled)"] = np.concatenate([emb[n] for n in real_or_synth_us])
    for name, e in emb.items():
        cells = []
        for m, s in scorers.items():
            d = s.distance(e)
            cells.append(f"{_auroc(d_in[m], d):.3f} | {np.mean(d <= s.threshold):.1%}")
        print(f"| {name} | {len(e)} | " + " | ".join(cells) + " |")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
