"""The app's plain parts without trained models: run discovery, masking, file handling, downloads, the launcher."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sonokit.app.failures import clean
from sonokit.app.images import mask, unletterbox
from sonokit.app.runs import by_system, discover_runs, read_card
from sonokit.app.study import (
    ClassResult,
    EchoResult,
    Options,
    Selection,
    StudyResult,
    _header,
    analyse_upload,
    load_models,
    safe_suffix,
)


def _run(root: Path, name: str, task: str, classes=None, metrics=None) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(f"task: {task}\n")
    (d / "model.safetensors").write_bytes(b"x")
    card = {"task": task, "name": name, "architecture": {"name": "tinycnn"}, "classes": classes,
            "metrics": metrics or {}, "intended_use": "research"}  # fmt: skip
    (d / "model_card.json").write_text(json.dumps(card))
    return d


def test_discover_runs_groups_by_system_and_skips_broken_folders(tmp_path) -> None:
    _run(tmp_path / "ef", "a", "ef", metrics={"test": {"mae": {"value": 6.25, "ci95": [5.0, 7.5]}}})
    _run(tmp_path / "fetal", "b", "fetal-plane", classes=["x", "y"])
    _run(tmp_path, "q", "quality", classes=["original", "blur"])
    _run(tmp_path / "av", "det", "av-detect")
    broken = _run(tmp_path, "broken", "classify", classes=["a", "b"])
    (broken / "model_card.json").write_text("{not json")
    no_weights = _run(tmp_path, "noweights", "lus", classes=["0", "1"])
    (no_weights / "model.safetensors").unlink()
    _run(tmp_path / "a" / "index", "hidden", "lus", classes=["0", "1"])  # inside a run output folder: ignored

    runs = discover_runs(tmp_path)
    assert [(r.system, r.task) for r in runs] == [
        ("av", "av-detect"), ("classification", "fetal-plane"), ("echo", "ef"), ("quality", "quality"),
    ]  # fmt: skip
    groups = by_system(runs)
    assert set(groups) == {"av", "classification", "echo", "quality"}
    ef = groups["echo"][0]
    assert ef.headline() == ["mae 6.25 [5, 7.5]"] and ef.label == "ef / a (tinycnn)"
    assert read_card(broken) is None and read_card(no_weights) is None
    assert discover_runs(tmp_path / "missing") == []
    assert [r.task for r in discover_runs(tmp_path / "fetal" / "b")] == ["fetal-plane"]  # a run folder itself


def test_unletterbox_inverts_the_dataset_letterbox() -> None:
    from sonokit.data.datasets import letterbox

    ys, xs = np.mgrid[:30, :60]
    image = (xs * 3 + ys * 2).astype(np.uint8)  # a smooth ramp, and a bright block at rows 10-19, cols 40-49
    image[10:20, 40:50] = 255
    square = letterbox(image, 64).astype(np.float32)
    assert square[:16].max() == 0 and square[-16:].max() == 0  # zero bands above and below
    back = unletterbox(square, image.shape)
    assert back.shape == (30, 60)
    assert np.abs(back - image).mean() < 6  # bilinear resampling only, no shift
    assert back[12:18, 42:48].min() > 200 and back[12:18, 30:38].max() < 150


def test_mask_blanks_burned_in_text_outside_the_fan() -> None:
    from sonokit.preprocess import detect_sector, render_sector

    rng = np.random.default_rng(1)
    fan = render_sector((120, 160), (80, 5), (-35, 35), (10, 110))
    frame = np.where(fan, rng.integers(40, 200, fan.shape), 0).astype(np.uint8)
    frame[2:12, 2:40] = 255  # "DOE^JANE" burned into a corner
    masked = mask(frame, detect_sector(frame))
    assert masked is not None and masked[2:12, 2:40].max() == 0
    inside = fan & (masked > 0)
    assert inside.sum() > 0.95 * (fan & (frame > 0)).sum()
    assert mask(frame, None) is None  # no region found: nothing is shown


def test_header_and_messages_hide_the_temporary_path(tmp_path) -> None:
    header = _header({"path": "/tmp/x/upload.dcm", "frames": 3, "spacing_mm": [0.3, 0.25], "regions": [
        {"spatial_format_name": "2D"}], "manufacturer": None})  # fmt: skip
    assert header == {"frames": 3, "spacing_mm": "0.3000 x 0.2500", "regions": "2D"}
    p = tmp_path / "upload.avi"
    assert clean(f"{p}: cannot decode", p, "clinic.avi") == "clinic.avi: cannot decode"
    assert safe_suffix("A.DCM") == ".dcm" and safe_suffix("IM_0001") == "" and safe_suffix("x.exe") == ""


def test_unreadable_uploads_report_one_line_and_leave_no_temporary_files(tmp_path, monkeypatch) -> None:
    import tempfile

    made: list[str] = []
    real = tempfile.mkdtemp

    def spy(*a, **kw):
        made.append(real(*a, **kw))
        return made[-1]

    monkeypatch.setattr(tempfile, "mkdtemp", spy)
    models = load_models(Selection())
    r = analyse_upload("notes.dcm", b"this is a text file, not DICOM", models, Options())
    assert r.error == "notes.dcm: not a DICOM file (no DICOM header found)"
    r = analyse_upload("empty.png", b"", models, Options())
    assert r.error == "empty.png: empty file"
    assert len(made) == 2 and not any(Path(d).exists() for d in made)


def test_private_temporary_folder_is_owner_only(monkeypatch) -> None:
    import tempfile

    seen = {}
    real = tempfile.mkdtemp

    def spy(*a, **kw):
        d = real(*a, **kw)
        seen["mode"] = Path(d).stat().st_mode & 0o777
        return d

    monkeypatch.setattr(tempfile, "mkdtemp", spy)
    analyse_upload("x.png", b"\x89PNG broken", load_models(Selection()), Options())
    assert seen["mode"] == 0o700


def test_downloads_hold_every_answer_and_no_identifiers() -> None:
    from sonokit.app.report import predictions_table, report_html

    echo = EchoResult(models=["ef"], ef=47.5, ef_source="video", heart_class="mildly reduced", thresholds="default",
                      interval=(40.0, 55.0), interval_note="split-conformal 90% interval from 20 validation videos",
                      curve=np.linspace(10, 20, 30), ed=[0], es=[12], beats=[{"beat": 1, "ed": 0, "es": 12, "ef": 47.5}],
                      row={"path": "/tmp/secret/upload.avi", "ef": 47.5, "class": "mildly reduced"})  # fmt: skip
    cls = ClassResult(model="fetal", task="fetal-plane", classes=["brain", "femur"], probs=np.array([0.8, 0.2]),
                      prediction="brain", top_k=[("brain", 0.8)], unit="image", conformal_set=["brain"],
                      abstain=False)  # fmt: skip
    results = [
        StudyResult(name="a.avi", echo=echo, classifications=[cls], preview=np.zeros((8, 8), np.uint8)),
        StudyResult(name="bad.dcm", error="bad.dcm: not a DICOM file"),
    ]
    table = predictions_table(results)
    assert table["system"].tolist() == ["echo", "classification", ""]
    assert table.loc[0, "ef"] == 47.5 and table.loc[0, "ef_low"] == 40.0 and table.loc[1, "p_brain"] == 0.8
    assert table.loc[2, "error"] == "bad.dcm: not a DICOM file" and "path" not in table.columns
    page = report_html(results, Options())
    assert "EF 47.5 %" in page and "mildly reduced" in page and "not for clinical use" in page
    assert "bad.dcm: not a DICOM file" in page and "/tmp/secret" not in page
    assert page.count("data:image/png;base64,") == 2  # the masked frame and the LV area curve
    assert math.isnan(EchoResult(models=[], ef=1, ef_source="", heart_class="", thresholds="").edv)


def test_launcher_command_and_cli_errors(tmp_path) -> None:
    from sonokit.app.launch import SCRIPT, streamlit_command

    cmd = streamlit_command(tmp_path, 8765)
    assert cmd[1:5] == ["-m", "streamlit", "run", str(SCRIPT)] and SCRIPT.is_file()
    flags = dict(zip(cmd[5:-5:2], cmd[6:-5:2], strict=True))
    assert flags["--server.address"] == "127.0.0.1" and flags["--browser.gatherUsageStats"] == "false"
    assert flags["--server.headless"] == "true" and flags["--server.maxUploadSize"] == "500"
    assert cmd[-5:] == ["--", "--runs", str(tmp_path), "--device", "auto"]
    out = subprocess.run([sys.executable, "-m", "sonokit", "app", "--runs", str(tmp_path / "nope")],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 2 and "runs folder not found" in out.stderr and len(out.stderr.splitlines()) == 1


def test_incomplete_av_selection_is_reported_not_raised() -> None:
    models = load_models(Selection(av_detect="/nowhere/det"))
    assert models.cascade is None and "needs both" in next(iter(models.errors.values()))
    models = load_models(Selection(classifiers=("/nowhere/run",)))
    assert models.classifiers == [] and "run folder not found" in models.errors["/nowhere/run"]


@pytest.mark.parametrize(
    ("preset", "colours"),
    [
        ("default", {"normal": "green", "mildly reduced": "orange", "reduced": "red"}),
        ("aha2022", {"preserved": "green", "mildly reduced": "orange", "reduced": "red"}),
        (
            "bse",
            {"normal": "green", "borderline low": "orange", "impaired": "orange", "severely impaired": "red"},
        ),
    ],
)
def test_badge_colours_follow_the_preset_order(preset, colours) -> None:
    from sonokit.app.figures import badge_colour

    assert {label: badge_colour(label, preset) for label in colours} == colours
    assert badge_colour("", preset) == "gray"
