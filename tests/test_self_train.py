"""Self-training of the LV models on unlabelled cines (`sonokit train lv-seg --unlabelled`): the checks a teacher's
outline must pass, pseudo-tracings that land where the teacher drew them, the three stages through the CLI (the
teacher reused on a rerun), and bad unlabelled input.

The teacher is a tiny U-Net trained for seconds: the tests check what self-training writes and feeds the student,
not how much it gains (benchmarks/bench_self_train.py measures that).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from sonokit.core.config import resolve_config
from sonokit.echo.self_train import (
    PSEUDO_LABELS,
    PSEUDO_REPORT,
    PseudoRules,
    frame_problem,
    read_pseudo_labels,
)
from sonokit.errors import InputError
from sonokit.tasks import get_task
from sonokit.train.engine import train
from test_engine_cli import sonokit

pytestmark = pytest.mark.slow

SIZE = 64


def _disc(cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[:SIZE, :SIZE]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _cine(mask: np.ndarray, n: int = 3) -> np.ndarray:
    return np.stack([mask] * n)


def test_frame_checks_accept_a_steady_lv_and_name_each_problem() -> None:
    rules = PseudoRules()
    lv = _disc(30, 34, 14, 7)  # about 7.5% of the image, convex
    assert frame_problem(_cine(lv), 1, rules) is None

    tiny = _disc(30, 34, 2, 1)
    assert "LV area" in frame_problem(_cine(tiny), 1, rules)
    huge = np.ones((SIZE, SIZE), bool)
    assert "LV area" in frame_problem(_cine(huge), 1, rules)

    split = _disc(20, 20, 7, 5) | _disc(44, 44, 7, 5)  # two equal regions
    assert "split into 2 regions" in frame_problem(_cine(split), 1, rules)
    speck = lv.copy()
    speck[2, 2] = True  # a stray pixel beside the LV is dropped, not a reason to refuse
    assert frame_problem(_cine(speck), 1, rules) is None

    crescent = _disc(30, 34, 14, 12) & ~_disc(30, 42, 13, 10)  # a thin curved region, not a cavity
    assert "not compact" in frame_problem(_cine(crescent), 1, rules)

    jumping = np.stack([lv, lv, _disc(30, 20, 14, 7)])
    assert "jumps from frame 2" in frame_problem(jumping, 1, rules)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    from sonokit.synth import make_echo_dataset

    root = tmp_path_factory.mktemp("selftrain")
    labelled = make_echo_dataset(root / "labelled", n=12, seed=3, size=SIZE, realism="basic")
    # the unlabelled cines: other patients, the LV on the screen's other side (a new domain for the teacher)
    unlabelled = make_echo_dataset(root / "real", n=4, seed=9, size=SIZE, realism="basic", convention="left")
    return {"root": root, "labelled": labelled, "unlabelled": unlabelled / "Videos"}


@pytest.fixture(scope="module")
def teacher(data) -> Path:
    values = {
        "data": str(data["labelled"]), "out": str(data["root"] / "teacher"), "n_boot": 20, "seed": 0,
        "model": "unet-tiny", "epochs": 12, "batch_size": 4, "lr": 0.003, "size": SIZE, "threads": 1,
        "options": {"cine_eval": [], "area_plots": 0, "hflip": True},
    }  # fmt: skip
    return train(resolve_config("lv-seg", overrides=values, task_defaults=get_task("lv-seg").defaults))


def test_pseudo_tracings_land_on_the_teachers_outline(teacher, data, tmp_path) -> None:
    """Each pseudo-tracing, taken back to model pixels as training reads it, covers the teacher's own mask at that
    frame: a wrong coordinate mapping (model vs original pixels, x/y swapped) fails this."""
    from sonokit.clinical import rasterize_tracing
    from sonokit.core.run import load_run
    from sonokit.echo.evaluate import dice
    from sonokit.echo.frames import PreparedStore
    from sonokit.echo.self_train import pseudo_label
    from sonokit.echo.tracing import map_tracing

    found = pseudo_label(teacher, [data["unlabelled"]], tmp_path)
    assert found.cines == 4 and found.frames > 0, pd.read_csv(found.report).to_string()
    labels = pd.read_csv(found.labels)
    assert set(labels["phase"]) <= {"ED", "ES"} and len(labels) == found.frames
    for _, beat in labels.groupby(["path", "beat"]):  # every beat gives its ED and its ES, ED the larger
        assert list(beat["phase"]) == ["ED", "ES"]
    run = load_run(teacher, "cpu")
    store = PreparedStore(SIZE)
    pseudo = read_pseudo_labels(found.labels)
    for path, frames in pseudo.items():
        cine = store.get(path)
        for f, (_, lines) in frames.items():
            x = np.repeat(cine.frames[f : f + 1, None].astype(np.float32) / 255.0, 3, axis=1)
            with torch.no_grad():
                logits = run.model(run.task.inputs({"x": torch.from_numpy(x)}))
            teacher_mask = logits[0, 0].numpy() > 0
            drawn = rasterize_tracing(map_tracing(lines, cine.transform.to_crop), (SIZE, SIZE))
            assert dice(drawn, teacher_mask) > 0.85, (path, f)
    report = pd.read_csv(found.report)
    assert list(report.columns) == ["path", "n_frames", "n_beats", "frames", "reason"]
    assert report["frames"].sum() == found.frames


def test_train_unlabelled_cli_teacher_pseudo_labels_student(teacher, data, tmp_path) -> None:
    out = tmp_path / "run"
    args = ["train", "lv-seg", "--data", str(data["labelled"]), "--out", str(out), "--model", "unet-tiny",
            "--epochs", "2", "--batch-size", "4", "--size", str(SIZE), "--threads", "1", "--quiet",
            "--set", "options.cine_eval=[]", "--set", "options.area_plots=0", "--set", "n_boot=20",
            "--unlabelled", str(data["unlabelled"])]  # fmt: skip
    # the stage a user stopped after: a finished teacher is reused as it is
    shutil.copytree(teacher, out / "teacher")
    before = (out / "teacher" / "model.safetensors").stat().st_mtime_ns
    res = sonokit(*args, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (out / "teacher" / "model.safetensors").stat().st_mtime_ns == before
    labels = pd.read_csv(out / PSEUDO_LABELS)
    assert len(labels) > 0 and (out / PSEUDO_REPORT).is_file()
    card = json.loads((out / "model_card.json").read_text())
    info = card["training_data"]
    assert info["pseudo_labelled"]["frames"] == len(labels)
    assert info["pseudo_labelled"]["cines"] == labels["path"].nunique()
    teacher_card = json.loads((out / "teacher" / "model_card.json").read_text())
    assert info["traced_frames"]["train"] == teacher_card["training_data"]["traced_frames"]["train"] + len(
        labels
    )
    assert info["traced_frames"]["test"] == teacher_card["training_data"]["traced_frames"]["test"]
    assert "pseudo_labels:" in (out / "config.yaml").read_text()

    # the student evaluates like any run (its pseudo-labelled cines stay in training)
    res = sonokit("evaluate", str(out), "--split", "test", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]


def test_unlabelled_input_that_is_not_a_cine(teacher, data, tmp_path) -> None:
    from sonokit.echo.self_train import pseudo_label

    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "broken.avi").write_bytes(b"RIFF\x00\x00\x00\x00AVI LIST" + bytes(200))
    with pytest.raises(InputError, match="none of the 1 unlabelled files is a readable cine"):
        pseudo_label(teacher, [junk], tmp_path / "out")
    assert not (tmp_path / "out" / PSEUDO_LABELS).exists()

    # a broken file among cines is reported and left out; the others are used
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    good = sorted(data["unlabelled"].glob("*.avi"))[0]
    (mixed / good.name).write_bytes(good.read_bytes())
    (mixed / "broken.avi").write_bytes((junk / "broken.avi").read_bytes())
    found = pseudo_label(teacher, [mixed], tmp_path / "out2")
    report = pd.read_csv(found.report).set_index("path")
    assert report.loc[str(mixed / "broken.avi"), "reason"].startswith("not read:")
    assert found.cines == 2

    res = sonokit("train", "lv-seg", "--data", str(data["labelled"]), "--out", str(tmp_path / "r"),
                  "--unlabelled", str(tmp_path / "nothing"), "--epochs", "1", cwd=tmp_path)  # fmt: skip
    assert res.returncode != 0 and "no such file or folder" in res.stderr
    res = sonokit(
        "train", "classify", "--data", str(data["labelled"]), "--unlabelled", str(junk), cwd=tmp_path
    )
    assert res.returncode != 0 and "--unlabelled trains lv-seg or lv-trace" in res.stderr


def test_bad_pseudo_label_file_names_the_problem(tmp_path) -> None:
    bad = tmp_path / "p.csv"
    pd.DataFrame({"path": ["a.avi"], "frame": [3], "phase": ["ED"], "lines": ["[1, 2, 3]"]}).to_csv(
        bad, index=False
    )
    with pytest.raises(InputError, match="row 2: lines is not 84 numbers"):
        read_pseudo_labels(bad)
    pd.DataFrame({"path": ["a.avi"], "frame": [3]}).to_csv(bad, index=False)
    with pytest.raises(InputError, match="missing columns 'phase', 'lines'"):
        read_pseudo_labels(bad)


def test_a_tracing_teacher_that_draws_one_shape_teaches_nothing(data, tmp_path) -> None:
    """lv-trace runs teach through the same checks (their tracings drawn as masks). A barely trained regressor
    draws about its mean tracing on every frame: the outline is steady and compact, but its beats have an EF near
    0, so no frame becomes a pseudo-label and every cine says why. (lr 1e-5 keeps it barely trained: 8 epochs at
    the default lr learnt enough on some machines to draw beats of plausible EF, 5%+, in three cines.)"""
    from sonokit.echo.self_train import pseudo_label

    values = {
        "data": str(data["labelled"]), "out": str(tmp_path / "trace"), "n_boot": 20, "seed": 0,
        "model": "mobilenetv2", "epochs": 2, "lr": 1e-5, "batch_size": 4, "size": SIZE, "threads": 1,
        "options": {"cine_eval": [], "area_plots": 0},
    }  # fmt: skip
    run = train(resolve_config("lv-trace", overrides=values, task_defaults=get_task("lv-trace").defaults))
    found = pseudo_label(run, [data["unlabelled"]], tmp_path / "labels")
    report = pd.read_csv(found.report)
    assert len(report) == 4 and found.frames == 0 and report["frames"].sum() == 0
    assert report["reason"].str.contains("implausible EF|no heartbeat").all(), report.to_string()
