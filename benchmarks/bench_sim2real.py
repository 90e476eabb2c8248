"""Sim-to-real check of the LV segmentation: an lv-seg model trained only on simulated cines, scored on labelled
cines it has never seen (issue #19, "Echo on real cines").

    1. the run: --run RUN reuses one; otherwise `sonokit synth echo` data (--synth, made when missing, full look and
       both screen conventions by default) trains `sonokit train lv-seg` into OUT/run (reused when it exists);
    2. `sonokit evaluate RUN --data REAL --out OUT/eval` (external validation: every row of REAL): Dice on the
       expert-traced ED and ES frames, and EF by Simpson's method from the predicted outlines on those frames;
    3. `sonokit ef predict --run RUN REAL/Videos` (what a user runs, no labels): the LV on every frame, ED/ES from
       the area curve, EF per beat; its `ef` is compared with FileList.csv's EF. Rows that failed (no EF) and rows
       with flags or judged not applicable are counted;
    4. floors: the training data's mean EF predicted for every video, and REAL's own mean EF (optimistic: it peeks
       at the answers).

REAL is an EchoNet-Dynamic-format folder (FileList.csv, VolumeTracings.csv, Videos/). Real labelled echo is held
aside by the project; a simulated folder stands in for it to test the script end to end, e.g.

    sonokit synth echo --out /tmp/realstand --n 16 --seed 77 --realism full --convention left
    python benchmarks/bench_sim2real.py --real /tmp/realstand --synth /tmp/synth_full --n 200 --epochs 12
    python benchmarks/bench_sim2real.py --real EchoNet-Dynamic --run runs/lv-seg/sim2real --device cuda

--cines FILE ... also measures unlabelled cines (e.g. pydicom's examples_ybr_color.dcm) and, with --montage PNG,
tiles their ED and ES review frames (predicted LV contour, LV area curve with ED red / ES blue) into one image.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from sonokit.utils import atomic_write_text


def train_run(args: argparse.Namespace, run_dir: Path) -> Path:
    """An lv-seg run trained on simulated data (made when --synth does not exist yet)."""
    from sonokit.core.config import resolve_config
    from sonokit.synth import make_echo_dataset
    from sonokit.tasks import get_task
    from sonokit.train.engine import train

    synth = Path(args.synth or run_dir.parent / f"synth_{args.realism}")
    if not (synth / "FileList.csv").is_file():
        print(f"simulating {args.n} cines ({args.realism} look, convention {args.convention}) into {synth}")
        make_echo_dataset(synth, n=args.n, seed=args.seed, realism=args.realism, convention=args.convention)
    values = {
        "data": str(synth),
        "out": str(run_dir),
        "epochs": args.epochs,
        "seed": args.seed,
        "model": args.model,
        "size": args.size,
        "device": args.device,
        "threads": args.threads,
        "options": {"cine_eval": [], "appearance_aug": args.appearance_aug, "hflip": args.appearance_aug},
    }
    cfg = resolve_config("lv-seg", overrides=values, task_defaults=get_task("lv-seg").defaults)
    print(f"training lv-seg on {synth} for {args.epochs} epochs into {run_dir}")
    return Path(train(cfg))


def training_mean_ef(run_dir: Path) -> float:
    """Mean EF of the run's training videos (its splits.csv when there is one, else its whole FileList)."""
    from sonokit.core.run import load_run

    run = load_run(run_dir, "cpu")
    filelist = pd.read_csv(Path(run.task.cfg.data) / "FileList.csv")
    splits = run_dir / "splits.csv"
    if splits.is_file():
        s = pd.read_csv(splits)
        name_col = next((c for c in ("path", "name", "group") if c in s.columns), None)
        if name_col is not None and "split" in s.columns:
            train_names = {Path(str(v)).stem for v in s.loc[s["split"] == "train", name_col]}
            chosen = filelist[filelist["FileName"].map(lambda v: Path(str(v)).stem).isin(train_names)]
            if len(chosen):
                filelist = chosen
    return float(pd.to_numeric(filelist["EF"], errors="coerce").mean())


def ef_predict(run_dir: Path, inputs: list[Path], out_csv: Path, overlay: Path | None, args) -> pd.DataFrame:
    from sonokit.echo.predict import predict_to_csv

    result = predict_to_csv(
        [run_dir], inputs, out_csv, overlay_dir=overlay, device=args.device, workers=1, batch_size=16
    )
    for e in result.errors:
        print(f"error: {e}")
    return result.table


def model_key(table: pd.DataFrame) -> str:
    """The lv-seg model's key in ef predict's per-model columns (ed_frames_<key>, ef_<key>, ...)."""
    return next(c[len("ed_frames_") :] for c in table.columns if c.startswith("ed_frames_"))


def score_predictions(table: pd.DataFrame, real: Path) -> dict:
    """EF MAE of ef predict's `ef` against FileList.csv's EF, with failed / flagged / not-applicable counts."""
    fl = pd.read_csv(real / "FileList.csv")
    ef = pd.to_numeric(fl["EF"], errors="coerce")
    truth = pd.Series(ef.to_numpy(float), index=fl["FileName"].map(lambda v: Path(str(v)).stem).to_numpy())
    stems = table["path"].map(lambda p: Path(str(p)).stem)
    y_true = stems.map(truth).to_numpy(float)
    # `ef` is the headline a user gets (empty when the cine is judged not applicable); ef_<model> is measured anyway
    y_pred = pd.to_numeric(table[f"ef_{model_key(table)}"], errors="coerce").to_numpy(float)
    headline = pd.to_numeric(table["ef"], errors="coerce").to_numpy(float)
    ok = np.isfinite(y_true) & np.isfinite(y_pred)
    flags = (
        table["flags"].fillna("").astype(str) if "flags" in table.columns else pd.Series([""] * len(table))
    )
    app_cols = [c for c in table.columns if c.startswith("applicable_")]
    not_app = (
        int((~table[app_cols[0]].map(lambda v: str(v).lower() in ("true", "1", "1.0"))).sum())
        if app_cols
        else None
    )
    err = np.abs(y_pred[ok] - y_true[ok])
    return {
        "n_videos": int(len(table)),
        "n_failed": int((~np.isfinite(y_pred)).sum()),
        "n_headline_ef": int(np.isfinite(headline).sum()),
        "n_flagged": int((flags.str.strip() != "").sum()),
        "n_not_applicable": not_app,
        "ef_mae": float(err.mean()) if len(err) else math.nan,
        "ef_mae_n": int(ok.sum()),
        "y_true": y_true,
    }


def montage(overlay_dir: Path, table: pd.DataFrame, out_png: Path, scale: float = 0.75) -> Path | None:
    """The ED and ES review frames (first beat) of every measured cine, side by side, one cine per row."""
    import cv2

    rows, k = [], model_key(table)
    for _, r in table.iterrows():
        videos = [Path(str(r["overlay"]))] if isinstance(r.get("overlay"), str) else []
        ed = str(r.get(f"ed_frames_{k}", "")).split(";")[0]
        es = str(r.get(f"es_frames_{k}", "")).split(";")[0]
        if not videos or not ed.strip().lstrip("-").isdigit() or not es.strip().lstrip("-").isdigit():
            continue
        cap = cv2.VideoCapture(str(videos[0]))
        frames = []
        while True:
            ok, f = cap.read()
            if not ok:
                break
            frames.append(f)
        cap.release()
        if not frames:
            continue
        # the review frames carry their own frame number, ED/ES mark, EF and area curve with a cursor
        tiles = [frames[min(int(i), len(frames) - 1)] for i in (ed, es)]
        rows.append(np.concatenate(tiles, axis=1))
    if not rows:
        return None
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    image = np.concatenate(rows, axis=0)
    image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out_png), image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return out_png


def fmt(v, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "-" if not math.isfinite(v) else f"{v:.{digits}f}"
    return str(v)


def score_run(run_dir: Path, args: argparse.Namespace, out: Path, floor_run: Path | None = None) -> dict:
    """Steps 2-4 for one run: external evaluation, `ef predict` on every real video, the floors (the training
    mean EF of `floor_run`'s simulated data, default the run's own)."""
    from sonokit.evaluate.external import evaluate_external

    t0 = time.time()
    ev = evaluate_external(run_dir, args.real, out / "eval", n_boot=args.n_boot)
    t_eval = time.time() - t0
    t0 = time.time()
    videos = sorted((args.real / "Videos").glob("*.avi"))
    table = ef_predict(run_dir, videos, out / "ef_predict.csv", None, args)
    scored = score_predictions(table, args.real)
    t_pred = time.time() - t0
    y_true = scored.pop("y_true")
    finite = y_true[np.isfinite(y_true)]
    train_mean = training_mean_ef(floor_run or run_dir)
    floors = {
        "training_mean_ef": train_mean,
        "mae_training_mean": float(np.abs(finite - train_mean).mean()),
        "mae_own_mean": float(np.abs(finite - finite.mean()).mean()),
    }
    return {"run": str(run_dir), "evaluate": ev, "ef_predict": scored, "floors": floors,
            "seconds": {"evaluate": t_eval, "ef_predict": t_pred},
            "per_video": per_video(out / "eval" / "predictions_external.csv", table, y_true)}  # fmt: skip


def per_video(eval_csv: Path, table: pd.DataFrame, y_true: np.ndarray) -> pd.DataFrame:
    """One row per scored video (index: file stem): mean Dice of its traced frames, the EF error of Simpson on
    the traced frames, and the absolute EF error of `ef predict`; for paired comparisons of two runs."""
    preds = pd.read_csv(eval_csv)
    preds["stem"] = preds["path"].map(lambda v: Path(str(v)).stem)
    frames = preds[preds["level"] == "frame"].dropna(subset=["dice"])
    traced = preds[preds["level"] == "traced"].set_index("stem")
    out = pd.DataFrame({"dice": frames.groupby("stem")["dice"].mean()})
    out["traced_abs_error"] = (traced["y_pred"] - traced["y_true"]).abs()
    ef = pd.to_numeric(table[f"ef_{model_key(table)}"], errors="coerce").to_numpy(float)
    stems = table["path"].map(lambda v: Path(str(v)).stem).to_numpy()
    out["predict_abs_error"] = pd.Series(np.abs(ef - y_true), index=stems)
    return out


def paired_difference(a: pd.DataFrame, b: pd.DataFrame, column: str, n_boot: int, seed: int = 0) -> str:
    """Mean of b - a over the videos both scored, with a 95% CI from resampling videos."""
    diff = (b[column] - a[column]).dropna().to_numpy(float)
    if not len(diff):
        return ""
    rng = np.random.default_rng(seed)
    boots = [diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(n_boot)]
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return f"{diff.mean():+.3f} [{lo:+.3f}, {hi:+.3f}] (n={len(diff)})"


def table_rows(r: dict) -> list[tuple[str, str]]:
    ev, scored, floors = r["evaluate"], r["ef_predict"], r["floors"]
    return [
        ("videos scored (evaluate / ef predict)", f"{ev.get('n_videos')} / {scored['n_videos']}"),
        ("Dice, traced ED+ES frames (95% CI)", f"{fmt(ev.get('dice'))} {fmt_ci(ev.get('dice_ci95'))}"),
        ("Dice at ED / ES", f"{fmt(ev.get('dice_ed'))} / {fmt(ev.get('dice_es'))}"),
        ("EF MAE, Simpson on the traced frames", f"{fmt(ev.get('mae'), 1)} {fmt_ci(ev.get('mae_ci95'), 1)}"),
        (
            "EF MAE, `ef predict` (ED/ES found by the model)",
            f"{fmt(scored['ef_mae'], 1)} (n={scored['ef_mae_n']})",
        ),
        ("ef predict rows failed (no EF)", str(scored["n_failed"])),
        ("ef predict rows with a headline EF (applicable)", str(scored["n_headline_ef"])),
        ("ef predict rows flagged", str(scored["n_flagged"])),
        ("ef predict rows judged not applicable", fmt(scored["n_not_applicable"])),
        (
            "floor: training mean EF for all, MAE",
            f"{floors['mae_training_mean']:.1f} (mean {floors['training_mean_ef']:.1f}%)",
        ),
        ("floor: the scored set's own mean EF, MAE (peeks)", f"{floors['mae_own_mean']:.1f}"),
    ]


def self_train(args: argparse.Namespace, teacher: Path) -> tuple[Path, dict]:
    """The student of `sonokit train lv-seg --unlabelled`: pseudo-labels from the teacher on --unlabelled, then
    the teacher's recipe on the simulated cines plus them (OUT/self_train; its teacher is a copy of the run)."""
    import shutil

    from sonokit.core.run import load_run
    from sonokit.echo.self_train import PSEUDO_REPORT, TEACHER, train_with_unlabelled

    out = args.out / "self_train"
    if not (out / "model.safetensors").is_file():
        if not (out / TEACHER / "model_card.json").is_file():
            shutil.copytree(teacher, out / TEACHER, dirs_exist_ok=True)
        cfg = load_run(teacher, "cpu").cfg.model_copy(update={"threads": args.threads, "device": args.device})
        train_with_unlabelled(cfg.model_copy(update={"out": str(out)}), args.unlabelled)
    report = pd.read_csv(out / PSEUDO_REPORT)
    return out, {"cines": int(len(report)), "cines_used": int((report["frames"] > 0).sum()),
                 "frames": int(report["frames"].sum())}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--real", type=Path, required=True, help="labelled EchoNet-format folder to score on")
    p.add_argument("--run", type=Path, help="an lv-seg run to reuse (default: OUT/run, trained when missing)")
    p.add_argument("--synth", type=Path, help="simulated training folder (made when missing)")
    p.add_argument("--out", type=Path, default=Path("sim2real_out"))
    p.add_argument("--n", type=int, default=200, help="simulated videos to make")
    p.add_argument("--realism", default="full", choices=["basic", "full"])
    p.add_argument("--convention", default="both", choices=["right", "left", "both"])
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--model", default="unet")
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-appearance-aug", dest="appearance_aug", action="store_false")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--n-boot", type=int, default=200)
    p.add_argument(
        "--unlabelled",
        type=Path,
        nargs="*",
        default=[],
        help="unlabelled real cines (folders or files) to self-train on; the student is scored beside the run",
    )
    p.add_argument("--cines", type=Path, nargs="*", default=[], help="unlabelled cines to measure and show")
    p.add_argument("--montage", type=Path, help="PNG of the --cines' ED/ES review frames")
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from sonokit.data.echonet import read_echonet

    read_echonet(args.real, check_videos=True)  # fail early on a folder that is not EchoNet-format
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    run_dir = args.run or args.out / "run"
    if not (run_dir / "model.safetensors").is_file():
        if args.run is not None:
            raise SystemExit(f"{run_dir} is not a finished run (no model.safetensors)")
        run_dir = train_run(args, run_dir)
    t_train = time.time() - t0
    results = {"simulated only": score_run(run_dir, args, args.out)}
    pseudo = None
    if args.unlabelled:
        t0 = time.time()
        student, pseudo = self_train(args, run_dir)
        t_self = time.time() - t0
        results["self-trained on --unlabelled"] = score_run(
            student, args, args.out / "self_train_scores", floor_run=run_dir
        )

    names = list(results)
    per_run = [dict(table_rows(results[n])) for n in names]
    lines = [
        f"sim2real: run {run_dir}, scored on {args.real}",
        "",
        "| measure | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
        *[f"| {k} | " + " | ".join(r[k] for r in per_run) + " |" for k in per_run[0]],
        "",
        f"seconds: train {t_train:.0f} (0 = reused), "
        + ", ".join(
            f"{n}: evaluate {results[n]['seconds']['evaluate']:.0f}, ef predict {results[n]['seconds']['ef_predict']:.0f}"
            for n in names
        ),
    ]
    if pseudo is not None:
        a, b = (results[n]["per_video"] for n in names)
        lines += [
            "",
            "self-trained minus simulated only, paired by video (95% CI, videos resampled):",
            "",
            f"- Dice (mean of the traced frames): {paired_difference(a, b, 'dice', args.n_boot)}",
            f"- EF abs. error, Simpson on the traced frames: {paired_difference(a, b, 'traced_abs_error', args.n_boot)}",
            f"- EF abs. error, `ef predict`: {paired_difference(a, b, 'predict_abs_error', args.n_boot)}",
            "",
        ]
        lines.append(
            f"self-training ({t_self:.0f} s, 0 = reused): pseudo-labels on {pseudo['frames']} frames of "
            f"{pseudo['cines_used']} of {pseudo['cines']} unlabelled cines"
        )
    if args.cines:
        for name, r in results.items():
            overlay = args.out / ("overlay" if name == names[0] else "overlay_self_train")
            cines = ef_predict(Path(r["run"]), list(args.cines), overlay.with_suffix(".csv"), overlay, args)
            k = model_key(cines)
            keep = ["ef", f"ef_{k}", f"n_beats_{k}", f"ed_frames_{k}", f"es_frames_{k}", f"beat_efs_{k}"]
            keep += [f"consistency_{k}", f"applicable_{k}", f"applicability_{k}", "flags"]
            lines += ["", f"unlabelled cines, {name}:", ""]
            for _, row in cines.iterrows():
                lines.append(
                    f"- {Path(str(row['path'])).name}: " + ", ".join(f"{c}={row.get(c)}" for c in keep)
                )
            if args.montage:
                png = (
                    args.montage
                    if name == names[0]
                    else args.montage.with_name(args.montage.stem + "_self_train.png")
                )
                lines.append(f"\nmontage: {montage(overlay, cines, png)}")
    text = "\n".join(lines)
    print(text)
    atomic_write_text(args.out / "table.md", text + "\n")
    for r in results.values():
        r["per_video"] = r["per_video"].rename_axis("video").reset_index().to_dict("records")
    summary = {"real": str(args.real), "runs": results, "pseudo_labels": pseudo}
    atomic_write_text(args.out / "summary.json", json.dumps(summary, indent=2, default=str))


def fmt_ci(ci, digits: int = 3) -> str:
    if not ci or len(ci) != 2 or any(v is None for v in ci):
        return ""
    return f"[{fmt(float(ci[0]), digits)}, {fmt(float(ci[1]), digits)}]"


if __name__ == "__main__":
    main()
