"""EF from EchoNet-Dynamic's expert tracings by Simpson's method, compared with FileList's EF.

This is the ground-truth check behind `sonokit ef simpson`: if our volumes from VolumeTracings.csv do not
reproduce FileList's EF, every model trained on that folder learns a different quantity than we report.
Volumes are in pixel^3 (the folder has no spacing); EF is a ratio and needs none. When FileList has EDV/ESV (mL),
their ratio to ours is the implied mL per pixel^3, which should be nearly constant across a scanner's videos.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sonokit.data.echonet import EchoNetIndex
from sonokit.utils import get_logger

log = get_logger(__name__)


def _column(filelist: pd.DataFrame, column: str) -> dict[str, float]:
    if column not in filelist.columns:
        return {}
    values = pd.to_numeric(filelist[column], errors="coerce").astype(float)
    return dict(zip(filelist["FileName"], values, strict=True))


def simpson_table(index: EchoNetIndex, thresholds: str = "default") -> tuple[pd.DataFrame, dict[str, str]]:
    """One row per video (FileList order, then traced videos missing from FileList).

    Columns: FileName, ED_frame, ES_frame, EDV_simpson, ESV_simpson, EF_simpson, EF_filelist, EF_diff
    (simpson - filelist), class, [EDV_filelist, ESV_filelist, EDV_ratio, ESV_ratio when FileList has volumes],
    problem ("" or why the tracings are unusable; such rows keep NaN values rather than being dropped).
    Returns the table and {FileName: problem} for the unusable videos.
    """
    from sonokit.clinical import ejection_fraction, get_thresholds

    preset = get_thresholds(thresholds)
    filelist = index.filelist
    listed = set(filelist["FileName"])
    names = list(filelist["FileName"]) + [n for n in index.tracings if n not in listed]
    ef_of, edv_of, esv_of = (_column(filelist, c) for c in ("EF", "EDV", "ESV"))
    has_volumes = bool(edv_of) and bool(esv_of)
    nan = float("nan")
    rows, problems = [], {}
    for name in names:
        ef_list = ef_of.get(name, nan)
        row: dict[str, object] = {"FileName": name}
        problem = index.tracing_problem(name)
        if problem is None:
            ed, es, edv, esv = index.ed_es_volumes(name)
            ef = ejection_fraction(edv, esv) if edv > 0 else float("nan")
            if not np.isfinite(ef):
                problem = "end-diastolic tracing has zero volume"
        if problem is not None:
            problems[name] = problem
            ed = es = -1
            edv = esv = ef = float("nan")
        row.update(
            ED_frame=ed,
            ES_frame=es,
            EDV_simpson=edv,
            ESV_simpson=esv,
            EF_simpson=ef,
            EF_filelist=ef_list,
            EF_diff=ef - ef_list,
            **{"class": preset.classify(ef) if np.isfinite(ef) else ""},
        )
        if has_volumes:
            edv_list, esv_list = edv_of.get(name, nan), esv_of.get(name, nan)
            row.update(
                EDV_filelist=edv_list,
                ESV_filelist=esv_list,
                EDV_ratio=edv_list / edv if edv > 0 else float("nan"),
                ESV_ratio=esv_list / esv if esv > 0 else float("nan"),
            )
        row["problem"] = problem or ""
        rows.append(row)
    table = pd.DataFrame(rows)
    table[["ED_frame", "ES_frame"]] = table[["ED_frame", "ES_frame"]].astype(np.int64)
    log.debug("simpson: %d videos, %d unusable", len(table), len(problems))
    return table, problems


def simpson_summary(table: pd.DataFrame) -> dict[str, float | int]:
    """n (videos with an EF), n_compared (also with FileList EF), mean and max |EF_diff|, n_unusable."""
    ok = table["EF_simpson"].notna()
    diff = table.loc[ok, "EF_diff"].abs().dropna()
    return {
        "n": int(ok.sum()),
        "n_compared": int(len(diff)),
        "mean_abs_ef_diff": float(diff.mean()) if len(diff) else float("nan"),
        "max_abs_ef_diff": float(diff.max()) if len(diff) else float("nan"),
        "n_unusable": int((~ok).sum()),
    }
