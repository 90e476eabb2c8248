"""External validation (`sonokit evaluate RUN --data OTHER --out DIR --by COLUMN`) as a user runs it.

A tiny lung-score run (videos, ordinal classes) and a tiny EF run are trained on one simulated data set and scored
on a second one made with another seed and given a `site` column. The per-level tables are recomputed here from
the predictions CSV, the run folder is compared byte for byte and by mtime before and after, and bad input must
stop with one line naming the problem, leaving no output folder.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sonokit.errors import InputError
from sonokit.evaluate.breakdown import BySpec, parse_by
from sonokit.evaluate.external import staged_folder


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run `sonokit ARGS` through the console entry point (in this process: the imports are already paid)."""
    from sonokit.cli.main import main

    argv = sys.argv
    sys.argv = ["sonokit", *args]
    try:
        main()
        rc = 0
    except SystemExit as stop:
        rc = int(stop.code or 0)
    finally:
        sys.argv = argv
    out, err = capsys.readouterr()
    return rc, out, err


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file and folder under `folder` (and itself) with its bytes (files) and mtime in ns."""
    paths = [folder, *folder.rglob("*")]
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"", p.stat().st_mtime_ns)
        for p in paths
    }


def _train(task: str, data: Path, out: Path, **overrides) -> Path:
    from sonokit.core.config import resolve_config
    from sonokit.tasks import get_task
    from sonokit.train.engine import train

    values = {"data": str(data), "out": str(out), "n_boot": 20, "seed": 0, **overrides}
    return train(resolve_config(task, overrides=values, task_defaults=get_task(task).defaults))


# ---------------------------------------------------------------------------------------------- units


def test_by_syntax() -> None:
    assert parse_by(["site,vendor", "ef:30,40,50", "age:q4"]) == [
        BySpec("site"),
        BySpec("vendor"),
        BySpec("ef", (30.0, 40.0, 50.0)),
        BySpec("age", (), 4),
    ]
    assert parse_by(["ef:40,55,site"]) == [BySpec("ef", (40.0, 55.0)), BySpec("site")]
    for bad in ("ef:50,40", "ef:q1", "ef:low", ":30", "site,site"):
        with pytest.raises(InputError, match="--by"):
            parse_by([bad])


def test_staged_folder_leaves_nothing_on_failure_and_replaces_on_success(tmp_path) -> None:
    out = tmp_path / "eval"
    with pytest.raises(RuntimeError), staged_folder(out) as tmp:
        (tmp / "metrics_external.json").write_text("{}")
        raise RuntimeError("inference failed half way")
    assert list(tmp_path.iterdir()) == []
    with staged_folder(out) as tmp:
        (tmp / "a.txt").write_text("first")
    with staged_folder(out) as tmp:
        (tmp / "b.txt").write_text("second")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"]
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]


# ---------------------------------------------------------------------------------------------- classification


@pytest.fixture(scope="module")
def lus(tmp_path_factory) -> dict[str, Path]:
    from sonokit.synth import make_dataset

    root = tmp_path_factory.mktemp("ext")
    train_data = make_dataset("lus", root / "A", n=12, seed=2, size=48)
    other = make_dataset("lus", root / "B", n=12, seed=7, size=48)
    table = pd.read_csv(other / "lus.csv", dtype=str)
    table["site"] = ["north" if int(g[1:]) % 2 else "south" for g in table["group"]]
    table.to_csv(other / "lus.csv", index=False)
    run = _train("lus", train_data / "lus.csv", root / "run", epochs=1, size=32, options={"max_frames": 4})
    return {"root": root, "run": run, "other": other / "lus.csv"}


@pytest.mark.slow
def test_external_lus_scores_every_row_per_site_and_leaves_the_run_alone(lus, capsys) -> None:
    run, other, out = lus["run"], lus["other"], lus["root"] / "external_B"
    before = snapshot(run)
    rc, stdout, err = cli(
        capsys, "evaluate", str(run), "--data", str(other), "--out", str(out),
        "--by", "site", "--by", "b_line_fraction:q2", "--n-boot", "20",
    )  # fmt: skip
    assert rc == 0, err
    assert snapshot(run) == before  # not a byte, not an mtime: the run is only read
    table = pd.read_csv(other, dtype=str)
    assert stdout.startswith(f"external: {len(table)} rows of {other.resolve()} (split all)")
    assert "by site:" in stdout and "| north |" in stdout

    preds = pd.read_csv(out / "predictions_external.csv", dtype={"frame": str})
    videos = preds[preds["frame"] == "all"]
    expected = {str((other.parent / p).resolve()) for p in table["path"]}
    assert set(preds["path"]) == expected and len(videos) == len(table)  # every row scored, none re-split
    site_of = {
        str((other.parent / p).resolve()): s for p, s in zip(table["path"], table["site"], strict=True)
    }
    assert (preds["by_site"] == preds["path"].map(site_of)).all()

    by_site = pd.read_csv(out / "by_site_external.csv", dtype={"site": str}).set_index("site")
    assert list(by_site.index) == ["all", "north", "south"]
    for site, rows in preds.groupby("by_site"):
        frames, clips = rows[rows["frame"] != "all"], rows[rows["frame"] == "all"]
        assert by_site.loc[site, "n"] == len(frames) and by_site.loc[site, "n_videos"] == len(clips)
        acc = float((frames["y_true"] == frames["y_pred"]).mean())
        assert by_site.loc[site, "accuracy"] == pytest.approx(acc)
        vacc = float((clips["y_true"] == clips["y_pred"]).mean())
        assert by_site.loc[site, "video_accuracy"] == pytest.approx(vacc)
        assert by_site.loc[site, "accuracy_ci_low"] <= acc <= by_site.loc[site, "accuracy_ci_high"]
    assert by_site.loc["all", "n_videos"] == len(table)

    quant = pd.read_csv(out / "by_b_line_fraction_external.csv", dtype={"b_line_fraction": str})
    assert len(quant) == 3 and quant["n_videos"].iloc[1:].sum() == len(table)  # two halves cover all

    metrics = json.loads((out / "metrics_external.json").read_text())
    assert metrics["rows"] == len(table) and metrics["data_split"] == "all"
    assert metrics["run"] == str(run.resolve()) and set(metrics["by"]) == {"site", "b_line_fraction"}
    assert metrics["video_accuracy"] == pytest.approx(float((videos["y_true"] == videos["y_pred"]).mean()))
    md = (out / "by_site_external.md").read_text()
    assert md.splitlines()[0].startswith("| site | n | n_videos |") and "(95% CI)" in md
    report = (out / "report.html").read_text(encoding="utf-8")
    assert str(run.resolve()) in report and str(other.resolve()) in report
    assert f"rows scored</td><td>{len(table)}<" in report and "By site" in report
    for name in ("confusion_external.png", "confusion_video_external.png", "roc_external.png"):
        assert (out / "plots" / name).read_bytes()[:4] == b"\x89PNG"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging folder left


@pytest.mark.slow
def test_external_bad_input_is_one_line_and_writes_nothing(lus, capsys) -> None:
    run, other, root = lus["run"], lus["other"], lus["root"]
    before = snapshot(run)
    table = pd.read_csv(other, dtype=str)
    unknown = table.assign(label=["7"] + list(table["label"].iloc[1:]))
    unknown.to_csv(other.parent / "unknown.csv", index=False)
    missing = table.assign(path=["videos/gone.avi"] + list(table["path"].iloc[1:]))
    missing.to_csv(other.parent / "missing.csv", index=False)
    out = root / "never"
    cases = [
        ((str(run), "--data", str(other)), "--out DIR"),  # other data without --out
        ((str(run), "--data", str(other), "--out", str(out), "--by", "vendor"), "no column 'vendor'"),
        ((str(run), "--data", str(other), "--out", str(out), "--by", "site:1,2"), "numeric"),
        ((str(run), "--data", str(other.parent / "unknown.csv"), "--out", str(out)), "'7'"),
        ((str(run), "--data", str(other.parent / "missing.csv"), "--out", str(out)), "gone.avi"),
        ((str(run), "--data", str(other), "--out", str(out), "--split", "test"), "no rows in split 'test'"),
        ((str(run), "--data", str(other), "--out", str(run)), "run folder"),
        ((str(run), "--data", str(other), "--out", str(other.parent)), "not an evaluation folder"),
    ]
    for args, needle in cases:
        rc, _, err = cli(capsys, "evaluate", *args)
        lines = err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), (args, err)
        assert needle in lines[0], (needle, lines[0])
    missing_col = cli(
        capsys, "evaluate", str(run), "--data", str(other), "--out", str(out), "--by", "vendor"
    )[2]
    assert str(other) in missing_col  # the file is named with the column
    assert not out.exists() and snapshot(run) == before
    assert not [p for p in root.iterdir() if p.name.startswith(".")]


@pytest.mark.slow
def test_by_on_the_runs_own_test_split_writes_beside_its_metrics(lus, capsys) -> None:
    run = lus["run"]
    rc, stdout, err = cli(capsys, "evaluate", str(run), "--split", "test", "--by", "group", "--n-boot", "20")
    assert rc == 0, err
    preds = pd.read_csv(run / "predictions_test.csv", dtype={"frame": str})
    table = pd.read_csv(run / "by_group_test.csv", dtype={"group": str}).set_index("group")
    assert set(table.index) == {"all", *preds["by_group"]}
    for group, rows in preds[preds["frame"] == "all"].groupby("by_group"):
        assert table.loc[group, "n_videos"] == len(rows)
    assert "group" in json.loads((run / "metrics_test.json").read_text())["by"]
    assert "By group" in (run / "report.html").read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------- ef


@pytest.mark.slow
def test_external_ef_by_site_and_ef_range(tmp_path, capsys) -> None:
    from sonokit.synth import make_echo_dataset

    train_data = make_echo_dataset(tmp_path / "A", n=8, seed=11, size=64)
    other = make_echo_dataset(tmp_path / "B", n=6, seed=5, size=64)
    filelist = pd.read_csv(other / "FileList.csv")
    filelist["site"] = ["north", "south"] * 3
    filelist.to_csv(other / "FileList.csv", index=False)
    run = _train(
        "ef", train_data, tmp_path / "run", model="two-stream-tiny", epochs=1, batch_size=4, size=64,
        options={"frames": 8, "period": 4, "clip_stride": 16},
    )  # fmt: skip
    before = snapshot(run)
    out = tmp_path / "eval"
    rc, stdout, err = cli(
        capsys, "evaluate", str(run), "--data", str(other), "--out", str(out),
        "--by", "site,EF:30,45,60", "--n-boot", "20",
    )  # fmt: skip
    assert rc == 0, err
    assert snapshot(run) == before
    preds = pd.read_csv(out / "predictions_external.csv", dtype={"frame": str})
    videos = preds[preds["frame"] == "all"]
    assert len(videos) == len(filelist)  # the TRAIN/VAL/TEST column of the other data is not used to select
    by_site = pd.read_csv(out / "by_site_external.csv").set_index("site")
    for site, rows in videos.groupby("by_site"):
        mae = float((rows["y_pred"] - rows["y_true"]).abs().mean())
        assert by_site.loc[site, "mae"] == pytest.approx(mae, abs=1e-4) and by_site.loc[site, "n"] == len(
            rows
        )
    by_ef = pd.read_csv(out / "by_EF_external.csv", dtype={"EF": str}).set_index("EF")
    assert list(by_ef.index) == ["all", "<30", "30-45", "45-60", ">=60"]
    bins = pd.cut(filelist["EF"], [-np.inf, 30, 45, 60, np.inf], right=False, labels=list(by_ef.index[1:]))
    assert by_ef["n"].iloc[1:].tolist() == bins.value_counts(sort=False).tolist()  # empty bins show n = 0
    bin_of = dict(zip(filelist["FileName"].astype(str) + ".avi", bins.astype(str), strict=True))
    assert (videos["by_EF"] == videos["path"].map(lambda p: bin_of[Path(p).name])).all()
    for name in ("ef_bland_altman_external.png", "ef_pred_vs_true_external.png"):
        assert (out / "plots" / name).read_bytes()[:4] == b"\x89PNG"
    assert "by EF:" in stdout and "| 45-60 |" in stdout
