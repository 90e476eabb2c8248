"""`sonokit demo --quick` end to end: every section has numbers from the run and every plot is a real PNG."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sonokit.demo.runner import SYSTEMS, parse_systems
from sonokit.errors import InputError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _metric_tables(md: str) -> dict[str, dict[str, str]]:
    """Section title -> {metric name: value} from report.md's tables."""
    out: dict[str, dict[str, str]] = {}
    current = None
    for line in md.splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            out[current] = {}
        elif (
            current
            and line.startswith("| ")
            and not line.startswith("| metric")
            and not line.startswith("|---")
        ):
            cells = [c.strip() for c in line.strip("|").split("|")]
            out[current][cells[0]] = cells[1]
    return out


@pytest.mark.slow
def test_quick_demo_writes_a_report_with_numbers_from_the_run(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "sonokit", "demo", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    from sonokit.demo.runner import STEP_SECONDS

    steps = re.findall(r"\[\s*\d+%\] (.+?) \(elapsed", proc.stderr)
    assert len(steps) >= 10 and set(steps) <= set(STEP_SECONDS)  # every step has a measured share
    html = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    assert "not for clinical use" in html
    tables = _metric_tables(md)
    assert len(tables) == len(SYSTEMS)
    for title, metrics in tables.items():
        numbers = [float(v) for v in metrics.values() if re.fullmatch(r"-?\d+(\.\d+)?", v)]
        assert len(numbers) >= 3, f"section {title!r} has too few numbers: {metrics}"
    # numbers come from the run: they match the metrics files the training wrote
    fetal = json.loads((out / "runs" / "fetal-plane" / "metrics_test.json").read_text())
    assert tables["Fetal standard planes"]["accuracy"] == f"{fetal['accuracy']:.3f}"
    # every image the report links exists and is a valid PNG
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(linked) >= 2 * len(SYSTEMS)
    for rel in linked:
        data = (out / rel).read_bytes()
        assert data[:8] == PNG_MAGIC, rel
    assert html.count("data:image/png;base64,") == len(linked)


def test_systems_option_is_checked() -> None:
    assert parse_systems("echo, lus") == ["echo", "lus"]
    with pytest.raises(InputError):
        parse_systems("echo,heart")
    with pytest.raises(InputError):
        parse_systems(" , ")
