"""`sonokit ef simpson` as a user runs it (subprocess) on a hand-built EchoNet folder with known EFs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from sonokit.data import read_echonet
from sonokit.data.echonet_simpson import simpson_summary, simpson_table
from test_data_echonet import expected_ef, write_echonet


def _run(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sonokit", "ef", "simpson", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_echonet(
        tmp_path / "echo",
        [
            # ES listed first in the file: ED must still be the larger volume
            {"name": "0XA", "ef": 50.0, "edv": 110.0, "esv": 56.0, "traces": [(31, 24.0), (12, 30.0)]},
            {"name": "0XB", "ef": round(expected_ef(30, 20), 2), "traces": [(3, 30.0), (17, 20.0)]},
            {"name": "0XC", "ef": 60.0, "traces": [(8, 28.0)]},  # one traced frame
            {"name": "0XD", "ef": 40.0, "traces": [(1, 28.0), (9, 21.0)], "n_lines": 15},  # short tracing
            {"name": "0XE", "ef": 65.0},  # no tracings at all
        ],
        write_videos=False,  # Simpson needs tracings only
    )


def test_ef_simpson_cli_writes_table_and_summary(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "simpson.csv"
    proc = _run(folder, "--out", out)
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(out).set_index("FileName")
    assert list(table.index) == ["0XA.avi", "0XB.avi", "0XC.avi", "0XD.avi", "0XE.avi"]  # none dropped

    a = table.loc["0XA.avi"]
    assert (a["ED_frame"], a["ES_frame"]) == (12, 31)
    assert a["EF_simpson"] == pytest.approx(expected_ef(30, 24), abs=1e-6)  # 48.8
    assert a["EF_diff"] == pytest.approx(expected_ef(30, 24) - 50.0, abs=1e-6)  # -1.2
    assert a["class"] == "mildly reduced"
    assert a["EDV_ratio"] == pytest.approx(110.0 / a["EDV_simpson"]) and a["ESV_filelist"] == 56.0
    assert a["EDV_simpson"] / a["ESV_simpson"] == pytest.approx((30 / 24) ** 3)
    b = table.loc["0XB.avi"]
    assert abs(b["EF_diff"]) < 0.01 and b["class"] == "normal"  # 70.37

    problems = table["problem"].fillna("")
    assert problems["0XC.avi"] == "1 traced frame (need 2)"
    assert problems["0XD.avi"].startswith("frame 1 has 15 tracing lines")
    assert problems["0XE.avi"] == "no tracings"
    assert table.loc[["0XC.avi", "0XD.avi", "0XE.avi"], "EF_simpson"].isna().all()

    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 3 and "0XC.avi" in warnings[0]
    mean_abs = (
        abs(expected_ef(30, 24) - 50.0) + abs(expected_ef(30, 20) - round(expected_ef(30, 20), 2))
    ) / 2
    assert f"2 videos: mean |EF_diff| {mean_abs:.2f}" in proc.stdout
    assert "3 without usable tracings" in proc.stdout and "0XE.avi" in proc.stdout


def test_ef_simpson_cli_missing_filelist_fails_in_one_line(tmp_path: Path) -> None:
    out = tmp_path / "never.csv"
    proc = _run(tmp_path, "--out", out)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "FileList.csv not found" in lines[0]
    assert not out.exists()


def test_simpson_thresholds_presets(folder: Path) -> None:
    index = read_echonet(folder)
    bse, problems = simpson_table(index, "bse")
    assert len(problems) == 3
    assert bse.set_index("FileName").loc["0XA.avi", "class"] == "impaired"  # 48.8 under BSE 2020
    assert simpson_summary(bse)["n"] == 2
    from sonokit.errors import InputError

    with pytest.raises(InputError, match="unknown EF thresholds"):
        simpson_table(index, "esc2099")
