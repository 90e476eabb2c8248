"""Batch prediction over a folder: decoding in worker processes, rows streamed to <out>.partial, a corrupt file
reported while the others are written, and --resume skipping the files a killed run already wrote."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

TINY_CONFIG = "n_boot: 0\noptions:\n  gradcam_samples: 0\n"
N_IMAGES = 24
DICOM_FRAMES = 30


def train_tiny_run(root: Path) -> tuple[Path, Path]:
    from sonokit.core.config import resolve_config
    from sonokit.synth import make_dataset
    from sonokit.tasks import get_task
    from sonokit.train.engine import train

    data = root / "fp"
    make_dataset("fetal-planes", data, n=N_IMAGES, seed=0, size=64)
    (root / "tiny.yaml").write_text(TINY_CONFIG)
    overrides = {"data": str(data), "out": str(root / "run"), "epochs": 1, "size": 64, "batch_size": 8}
    cfg = resolve_config(
        "fetal-plane", root / "tiny.yaml", overrides, task_defaults=get_task("fetal-plane").defaults
    )
    return train(cfg), data


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    """A tiny trained run and an input folder: 24 PNGs, one truncated PNG, one 30-frame echo DICOM."""
    from pydicom.data import get_testdata_file

    root = tmp_path_factory.mktemp("batch")
    run_dir, data = train_tiny_run(root)
    inputs = root / "inputs"
    shutil.copytree(data / "Images", inputs)
    first = sorted(inputs.glob("*.png"))[0]
    (inputs / "broken.png").write_bytes(first.read_bytes()[:200])  # a truncated transfer
    shutil.copy(get_testdata_file("examples_ybr_color.dcm"), inputs / "cine.dcm")
    return {"root": root, "run": run_dir, "inputs": inputs}


def _load(run_dir: Path):
    from sonokit.core.run import load_run

    return load_run(run_dir, "cpu")


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(["path", "frame"]).reset_index(drop=True)


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _same(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Same rows (order aside); probabilities may differ in the last float digits when batches were cut
    differently."""
    a, b = _sorted(a), _sorted(b)
    probs = [c for c in a.columns if c.startswith("p_")]
    rest = [c for c in a.columns if c not in probs]
    if list(a.columns) != list(b.columns) or len(a) != len(b) or not a[rest].equals(b[rest]):
        return False
    return float(np.abs(a[probs].astype(float).to_numpy() - b[probs].astype(float).to_numpy()).max()) < 1e-6


@pytest.mark.slow
def test_folder_with_corrupt_file_workers(setup) -> None:
    from sonokit.predict import Predictor
    from sonokit.predict.stream import stream_predict

    run = _load(setup["run"])
    out = setup["root"] / "preds.csv"
    res = stream_predict(run, [setup["inputs"]], out, batch_size=8, workers=2)
    assert len(res.errors) == 1 and "broken.png" in res.errors[0]
    assert res.files_done == N_IMAGES + 1 and res.files_skipped == 0
    assert res.path == out and not Path(str(out) + ".partial").exists()
    df = _read(out)
    assert len(df) == res.rows == N_IMAGES + DICOM_FRAMES + 1  # + the cine's aggregated row
    cine = df[df["path"].str.endswith("cine.dcm")]
    assert list(cine["frame"]) == [str(i) for i in range(DICOM_FRAMES)] + ["all"]  # contiguous, in order
    assert not df["path"].str.endswith("broken.png").any()
    # the streamed result equals the in-memory predictor's (different batch boundaries, same numbers)
    ref, errors = Predictor(run).table([setup["inputs"]], batch_size=5)
    assert len(errors) == 1
    a, b = _sorted(df), _sorted(ref.astype(str))
    assert list(a.columns) == list(b.columns)
    assert (a[["path", "frame", "y_pred"]] == b[["path", "frame", "y_pred"]]).all().all()
    cols = [c for c in a.columns if c.startswith("p_")]
    assert np.abs(a[cols].astype(float).to_numpy() - b[cols].astype(float).to_numpy()).max() < 1e-5


class _Crash(nn.Module):
    """The run's model, dying on its n-th call (a kill in the middle of a long folder)."""

    def __init__(self, model: nn.Module, n: int) -> None:
        super().__init__()
        self.model, self.n, self.calls = model, n, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.n:
            raise RuntimeError("killed")
        return self.model(x)


@pytest.mark.slow
def test_crash_keeps_written_rows_and_resume_skips_done_files(setup) -> None:
    from sonokit.predict.stream import partial_path, stream_predict

    root = setup["root"]
    full = root / "full.csv"
    stream_predict(_load(setup["run"]), [setup["inputs"]], full, batch_size=8)

    out = root / "resumed.csv"
    run = _load(setup["run"])
    run.model = _Crash(run.model, n=4)
    with pytest.raises(RuntimeError, match="killed"):
        stream_predict(run, [setup["inputs"]], out, batch_size=8)
    assert not out.exists()
    partial = _read(partial_path(out))
    done = partial["path"].nunique()
    assert done == 3 * 8  # three batches of 8 single-frame files were through the model and written
    assert partial.equals(_read(full).iloc[: len(partial)])

    res = stream_predict(_load(setup["run"]), [setup["inputs"]], out, batch_size=8, resume=True)
    assert res.files_skipped == done
    assert res.files_done == N_IMAGES + 1 - done  # the rest, broken.png excluded
    assert len(res.errors) == 1
    final = _read(out)
    assert not partial_path(out).exists()
    assert final["path"].nunique() == N_IMAGES + 1 and not final.duplicated(["path", "frame"]).any()
    assert _same(final, _read(full))

    # resuming a finished CSV predicts nothing and keeps every row
    res = stream_predict(_load(setup["run"]), [setup["inputs"]], out, batch_size=8, resume=True)
    assert (res.files_skipped, res.files_done, res.rows) == (N_IMAGES + 1, 0, 0)
    assert _same(_read(out), final)


@pytest.mark.slow
def test_resume_cuts_a_half_written_line_and_refuses_another_models_rows(setup) -> None:
    from sonokit.errors import InputError
    from sonokit.predict.stream import partial_path, stream_predict

    root = setup["root"]
    full = _read(root / "full.csv") if (root / "full.csv").exists() else None
    if full is None:
        stream_predict(_load(setup["run"]), [setup["inputs"]], root / "full.csv", batch_size=8)
        full = _read(root / "full.csv")
    out = root / "torn.csv"
    lines = (root / "full.csv").read_text().splitlines(keepends=True)
    partial_path(out).write_text("".join(lines[:6]) + lines[6][:25])  # header, 5 rows, a torn 6th row
    res = stream_predict(_load(setup["run"]), [setup["inputs"]], out, batch_size=8, resume=True)
    assert res.files_skipped == 5 and res.files_done == N_IMAGES + 1 - 5
    assert _same(_read(out), full)

    other = root / "other.csv"
    partial_path(other).write_text(
        "".join(lines[:3]).replace(",run,", ",another-run,").replace(",run\n", ",another-run\n")
    )
    with pytest.raises(InputError, match="another model"):
        stream_predict(_load(setup["run"]), [setup["inputs"]], other, resume=True)


@pytest.mark.slow
def test_table_input_gives_y_true(setup) -> None:
    from sonokit.predict.stream import stream_predict

    root = setup["root"]
    pngs = sorted(p for p in setup["inputs"].glob("*.png") if p.name != "broken.png")[:6]
    labels = ["Fetal brain", "Fetal femur"] * 3
    pd.DataFrame({"path": [p.name for p in pngs], "label": labels}).to_csv(
        setup["inputs"] / "t.csv", index=False
    )
    res = stream_predict(_load(setup["run"]), [setup["inputs"] / "t.csv"], root / "t_pred.csv", batch_size=4)
    df = _read(root / "t_pred.csv")
    assert res.files_done == 6 and not res.errors
    assert list(df["y_true"]) == labels and [Path(p).name for p in df["path"]] == [p.name for p in pngs]
    (setup["inputs"] / "t.csv").unlink()


@pytest.mark.slow
def test_cli_predict_workers_reports_corrupt_file_and_resumes(setup) -> None:
    root = setup["root"]
    env = {**os.environ, "SONOKIT_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    out = root / "cli.csv"
    args = [
        sys.executable,
        "-m",
        "sonokit",
        "predict",
        str(setup["run"]),
        str(setup["inputs"]),
        "--out",
        str(out),
    ]
    proc = subprocess.run(
        [*args, "--workers", "2", "--batch-size", "16"], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 1  # a file could not be read
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "broken.png" in errors[0]
    assert len(_read(out)) == N_IMAGES + DICOM_FRAMES + 1
    proc = subprocess.run([*args, "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert f"{N_IMAGES + 1} files already predicted" in proc.stdout
    assert len(_read(out)) == N_IMAGES + DICOM_FRAMES + 1


@pytest.mark.slow
def test_uncertainty_columns_stream_with_workers_and_cine_rows(setup) -> None:
    from sonokit.errors import InputError
    from sonokit.predict.predictor import predict_to_csv
    from sonokit.predict.uncertainty import COLUMNS
    from sonokit.uncertainty.report import run_uncertainty

    out = setup["root"] / "unc.csv"
    with pytest.raises(InputError, match="sonokit uncertainty"):  # nothing fitted yet: refused up front
        predict_to_csv(setup["run"], [setup["inputs"]], out, device="cpu", uncertainty=True)
    assert not out.exists() and not Path(str(out) + ".partial").exists()

    run_uncertainty(setup["run"], alpha=0.2, device="cpu", k=3, tsne_max=0)
    res = predict_to_csv(setup["run"], [setup["inputs"]], out, device="cpu", workers=2, uncertainty=True)
    assert len(res.errors) == 1 and "broken.png" in res.errors[0]
    df = _read(out)
    assert len(df) == N_IMAGES + DICOM_FRAMES + 1 and list(df.columns[-len(COLUMNS) - 1 : -1]) == list(
        COLUMNS
    )
    items, video = df[df["frame"] != "all"], df[df["frame"] == "all"]
    classes = {c[2:] for c in df.columns if c.startswith("p_") and c != "p_correct"}
    assert set(items["combined_pred"]) <= classes and set(items["knn_pred"]) <= classes
    assert items["abstain"].isin(["True", "False"]).all()
    assert ((items["flagged"] == "True") | (items["combined_pred"] == items["y_pred"])).all()
    assert items["nearest_path"].map(lambda p: Path(p).is_file()).all()
    assert len(video) == 1 and video["combined_pred"].iloc[0] in classes  # the cine's aggregated row
    if not (items[items["path"] == video["path"].iloc[0]]["flagged"] == "True").any():
        assert video["combined_pred"].iloc[0] == video["y_pred"].iloc[0]


def test_predictor_entry_points_agree(setup) -> None:
    """One predictor per run: in memory (`table`), streamed (`to_csv`) and on item rows (`items`) give one row."""
    from sonokit.predict import Predictor

    predictor = Predictor.load(setup["run"], "cpu")
    images = sorted(setup["inputs"].glob("*.png"))[:6]
    table, errors = predictor.table(images, batch_size=4)
    assert not errors and len(table) == len(images)
    res = predictor.to_csv(images, setup["root"] / "predictor.csv", batch_size=3)
    assert not res.errors and _same(_read(res.path), table.astype(str))
    items, _ = predictor.run.task.predict_items(images)
    rows, collected, _ = predictor.items(items, batch_size=5)
    assert list(rows["y_pred"]) == list(table["y_pred"]) and len(collected["index"]) == len(images)
    in_memory = Predictor.from_model(predictor.run.task, predictor.run.model, "cpu", name="mine")
    same, _ = in_memory.table(images)
    assert set(same["model"]) == {"mine"} and _same(same.drop(columns="model"), table.drop(columns="model"))
