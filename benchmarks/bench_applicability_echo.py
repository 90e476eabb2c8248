"""Does the echo models' applicability check tell apical four-chamber cines from everything else a user may drop?

Trains (or reuses) a two-stream EF run and an lv-seg run on simulated echo, then scores cines exactly as
`sonokit ef predict` does (sonokit.echo.predict: the cine is loaded and prepared at the model size, the video
model runs the all-clips protocol, the LV model every frame; the features come from the same forward hook). A
cine's distance is the median over its clips (video) or frames (LV); its verdict is the predict rule (applicable
when at least half of its clips / frames are within the 99% validation limit).

    in-domain       simulated apical four-chamber cines of another seed (the models never saw them)
    real echo       the real four-chamber cines in the pydicom wheel and pydicom-data (a domain gap; listed)
    other US        simulated lung cines; real still images (BUS-BRA, HC18, pydicom's single-frame US) as
                    cines of one repeated frame (a still exported to video)
    natural         skimage.data images panned slowly into 32-frame cines

Per set: AUROC of the distance for separating it from the in-domain cines (1.0: perfect) and the share of cines
called applicable (in-domain: should be about 99%; foreign: 0%).

    python benchmarks/bench_applicability_echo.py [--work /tmp/bench_applicability_echo] [--n 120] [--epochs 8]
"""

from __future__ import annotations

import argparse
import glob
import os
import time
from pathlib import Path

import numpy as np

SHARED = Path(os.environ.get("SONOKIT_SHARED", "/work/shared")) / "data"
NATURAL = ("astronaut", "camera", "cat", "coffee", "chelsea", "rocket", "coins", "moon", "page", "text", "brick",
           "grass", "gravel", "horse", "hubble_deep_field", "immunohistochemistry", "retina", "clock",
           "motorcycle_left")  # fmt: skip


def _train(work: Path, n: int, epochs: int) -> dict[str, Path]:
    from sonokit.core.config import resolve_config
    from sonokit.synth import make_dataset
    from sonokit.tasks import get_task
    from sonokit.train.engine import train

    data = work / "echo"
    if not (data / "FileList.csv").is_file():
        make_dataset("echo", data, n=n, size=112, seed=0, overwrite=True)
    runs = {}
    for task, values in (("ef", {"model": "two-stream", "size": 64, "lr": 0.001}), ("lv-seg", {})):
        out = work / "runs" / task
        if not (out / "model.safetensors").is_file():
            t0 = time.perf_counter()
            cfg = {"data": str(data), "out": str(out), "epochs": epochs, "n_boot": 0, "seed": 0, "patience": 0,
                   **values}  # fmt: skip
            train(resolve_config(task, overrides=cfg, task_defaults=get_task(task).defaults))
            print(f"trained {task} in {time.perf_counter() - t0:.0f} s")
        runs[task] = out
    return runs


def _still_cine(image: np.ndarray, path: Path, frames: int = 16) -> Path:
    from sonokit.io import write_video

    write_video(path, np.repeat(image[None], frames, axis=0), fps=25)
    return path


def _panned_cine(image: np.ndarray, path: Path, rng: np.random.Generator, frames: int = 32) -> Path:
    """A slow pan across a natural image: a moving video that is not ultrasound."""
    import cv2

    from sonokit.io import write_video

    h, w = image.shape[:2]
    s = int(min(h, w) * 0.7)
    (y0, x0), (y1, x1) = (rng.integers(0, [h - s + 1, w - s + 1]) for _ in range(2))
    out = []
    for t in np.linspace(0, 1, frames):
        y, x = int(y0 + t * (y1 - y0)), int(x0 + t * (x1 - x0))
        out.append(cv2.resize(np.ascontiguousarray(image[y : y + s, x : x + s]), (160, 160)))
    write_video(path, np.stack(out), fps=25)
    return path


def _gray(img: np.ndarray) -> np.ndarray:
    import cv2

    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = img.astype(float)
        img = (255 * (img - img.min()) / max(1e-9, float(img.max() - img.min()))).astype(np.uint8)
    return cv2.cvtColor(img[..., :3], cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img


def _sets(work: Path, n_in: int, n_other: int, seed: int) -> dict[str, list[Path]]:
    import cv2
    import pydicom
    import skimage.data as skd

    from sonokit.synth import make_dataset

    rng = np.random.default_rng(seed)
    sets: dict[str, list[Path]] = {}
    make_dataset("echo", work / "echo_other", n=n_in, size=112, seed=seed + 100, overwrite=True)
    sets["in-domain: simulated echo, other seed"] = sorted((work / "echo_other" / "Videos").glob("*.avi"))
    dicoms = []
    import pydicom.data

    roots = [Path(pydicom.data.__file__).parent]
    try:
        import data_store  # pydicom-data

        roots.append(Path(data_store.__file__).parent)
    except ImportError:
        pass
    for p in sorted({f for r in roots for f in glob.glob(str(r / "**" / "*.dcm"), recursive=True)}):
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - not every test file is a readable DICOM
            continue
        if ds.get("Modality") == "US":
            dicoms.append((Path(p), int(ds.get("NumberOfFrames") or 1)))
    sets["real echo cines (pydicom)"] = [p for p, n in dicoms if n >= 16]
    make_dataset("lus", work / "lus", n=n_other, size=128, seed=seed + 1, overwrite=True)
    sets["simulated lung cines"] = sorted(
        p for p in (work / "lus").rglob("*") if p.suffix.lower() in (".avi", ".mp4")
    )
    stills_dir = work / "stills"
    stills_dir.mkdir(parents=True, exist_ok=True)
    stills = []
    for name, folder in (("busbra", SHARED / "busbra" / "Images"), ("hc18", SHARED / "hc18" / "images")):
        files = (
            sorted(p for p in folder.glob("*.png") if "annotation" not in p.name.lower())
            if folder.is_dir()
            else []
        )
        for i in rng.choice(len(files), size=min(n_other, len(files)), replace=False) if files else []:
            img = cv2.imread(str(files[i]), cv2.IMREAD_GRAYSCALE)
            stills.append(_still_cine(img, stills_dir / f"{name}_{i}.avi"))
    from sonokit.io import read_frames

    for p, n in dicoms:
        if n < 16:
            try:
                stills.append(_still_cine(_gray(read_frames(p)[0]), stills_dir / f"{p.stem}.avi"))
            except Exception as err:  # noqa: BLE001 - a DICOM this build cannot decode is skipped
                print(f"skipped {p.name}: {str(err).splitlines()[0]}")
    sets["real still US as cines (BUS-BRA, HC18, pydicom)"] = stills
    natural = []
    for name in NATURAL:
        try:
            img = _gray(getattr(skd, name)())
        except Exception:  # noqa: BLE001 - an image missing from this skimage version is skipped
            continue
        natural.append(_panned_cine(img, work / "natural" / f"{name}.avi", rng))
    sets["natural images panned into cines"] = natural
    return sets


def _distances(models, files: list[Path]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per model key: (median distance per cine, applicable per cine), through ef predict's own path."""
    from sonokit.echo.frames import load_study
    from sonokit.echo.predict import measure_lv, video_ef
    from sonokit.errors import InputError
    from sonokit.uncertainty.applicability import score_set

    out = {m.key: ([], []) for m in models}
    for f in files:
        try:
            study = load_study(f, {m.run.cfg.size for m in models})
        except InputError as err:  # refused before any model runs (e.g. a multi-pane screen): not scored
            print(f"refused {f.name}: {str(err).splitlines()[0]}")
            continue
        for m in models:
            cine = study.prepared[m.run.cfg.size]
            v = video_ef(m, cine) if m.role == "video" else measure_lv(m, cine)
            feats = m.tap.take()
            if m.role == "video":
                feats = feats[: v["clips"]]
            out[m.key][0].append(float(np.median(m.applicability.distance(feats))))
            out[m.key][1].append(score_set(m.applicability, feats)[0])
    return {k: (np.asarray(d), np.asarray(a)) for k, (d, a) in out.items()}


def _auroc(d_in: np.ndarray, d_out: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.r_[np.zeros(len(d_in)), np.ones(len(d_out))], np.r_[d_in, d_out]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_applicability_echo"))
    ap.add_argument("--n", type=int, default=120, help="simulated echo cines to train on")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--n-in", type=int, default=40, help="in-domain cines to score")
    ap.add_argument("--n-other", type=int, default=30, help="cines per foreign set")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch

    from sonokit.echo.predict import load_echo_models

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    runs = _train(args.work, args.n, args.epochs)
    models = load_echo_models([runs["ef"], runs["lv-seg"]], "cpu")  # fits each check on first use
    sets = _sets(args.work, args.n_in, args.n_other, args.seed)
    scored = {name: _distances(models, files) for name, files in sets.items() if files}
    inside = scored.pop("in-domain: simulated echo, other seed")
    keys = [m.key for m in models]
    print(f"\necho runs trained on {args.n} simulated cines ({args.epochs} epochs); threshold = 99% quantile of "
          f"validation clips/frames; a cine is applicable when at least half of its clips/frames are\n")  # fmt: skip
    print("| set | cines | " + " | ".join(f"AUROC {k} | applicable {k}" for k in keys) + " |")
    print("|" + "---|" * (2 + 2 * len(keys)))
    cells = " | ".join(f"- | {inside[k][1].mean():.1%}" for k in keys)
    print(f"| in-domain: simulated echo, other seed | {len(inside[keys[0]][0])} | {cells} |")
    for name, res in scored.items():
        cells = " | ".join(f"{_auroc(inside[k][0], res[k][0]):.3f} | {res[k][1].mean():.1%}" for k in keys)
        print(f"| {name} | {len(res[keys[0]][0])} | {cells} |")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
