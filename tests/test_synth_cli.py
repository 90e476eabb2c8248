"""`sonokit synth ...` from the command line: success, refusal to clobber, --overwrite, montage."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def sonokit(monkeypatch, capsys):
    """Run the real console entry point (sonokit.cli.main:main) in-process: no interpreter start-up per call."""
    from sonokit.cli.main import main

    def run(*args: str) -> Result:
        monkeypatch.setattr(sys, "argv", ["sonokit", *args])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return Result(code, out.out, out.err)

    return run


def test_synth_cli_writes_refuses_and_overwrites(tmp_path: Path, sonokit):
    out = tmp_path / "psax"
    done = sonokit("synth", "psax", "--out", str(out), "--n", "2", "--seed", "4", "--size", "96")
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == out
    labels = pd.read_csv(out / "labels.csv")
    assert len(labels) == 2 and all((out / p).is_file() for p in labels["path"])
    first = (out / labels["path"][0]).read_bytes()

    again = sonokit("synth", "psax", "--out", str(out), "--n", "3")
    assert again.returncode == 2
    assert again.stderr.strip().startswith("error:") and "not empty" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    assert len(pd.read_csv(out / "labels.csv")) == 2  # untouched
    assert [p.name for p in tmp_path.iterdir()] == ["psax"]  # no temp folder left behind

    over = sonokit(
        "synth", "psax", "--out", str(out), "--n", "3", "--seed", "4", "--size", "96", "--overwrite"
    )
    assert over.returncode == 0, over.stderr
    assert len(pd.read_csv(out / "labels.csv")) == 3
    assert (out / labels["path"][0]).read_bytes() == first  # same seed, same first image

    png = tmp_path / "sheet.png"
    sheet = sonokit("synth", "montage", str(out), "--out", str(png))
    assert sheet.returncode == 0, sheet.stderr
    assert png.stat().st_size > 1000
    bad = sonokit("synth", "montage", str(tmp_path / "nowhere"), "--out", str(png))
    assert bad.returncode == 2 and "nowhere" in bad.stderr


def test_console_entry_point_runs_as_a_module(tmp_path: Path):
    done = subprocess.run(
        [sys.executable, "-m", "sonokit", "synth", "fetal-planes", "--out", str(tmp_path / "f"), "--n", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"SONOKIT_NO_PROGRESS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "f" / "FETAL_PLANES_DB_data.csv").is_file()


def test_synth_echo_cli_options(tmp_path: Path, sonokit):
    out = tmp_path / "echo"
    done = sonokit(
        "synth", "echo", "--out", str(out), "--n", "1", "--size", "64", "--convention", "left",
        "--realism", "full", "--fps-min", "30", "--fps-max", "30", "--max-rotation", "2",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    fl = pd.read_csv(out / "FileList.csv")
    meta = pd.read_csv(out / "synth_meta.csv")
    assert fl["FPS"].tolist() == [30.0] and meta["convention"].tolist() == ["left"]
    assert abs(meta["rotation_deg"].iloc[0]) <= 2.0
    bad = sonokit("synth", "echo", "--out", str(tmp_path / "bad"), "--n", "1", "--convention", "up")
    assert bad.returncode == 2 and "convention" in bad.stderr and not (tmp_path / "bad").exists()
