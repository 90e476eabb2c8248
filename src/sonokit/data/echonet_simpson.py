"""EF from EchoNet-Dynamic's expert tracings by Simpson's method, compared with FileList's EF.

This is the ground-truth check behind `sonokit ef simpson`: if our volumes from VolumeTracings.csv do not
reproduce FileList's EF, every model trained on that folder learns a different quantity than we report.
Volumes are in mL when FileList.csv gives every traced video's pixel spacing (SpacingY_mm, SpacingX_mm, as
`sonokit convert` writes them), else in pixel^3 (EchoNet-Dynamic's own folder has no spacing); EF is a ratio and
needs neither. One table never mixes the two: a FileList giving spacing for some traced videos only is refused.
With mL, FileList's EDV/ESV are compared as differences (EDV_diff, ESV_diff); with pixel^3 they are not
compared, only their quotient is given as EDV_ratio/ESV_ratio: the implied mL per pixel^3 (a unit conversion
factor, nearly constant across a scanner's videos when the tracings agree).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sonokit.data.echonet import FILELIST, EchoNetIndex
from sonokit.data.validate import listing
from sonokit.errors import InputError
from sonokit.io.sidecar import SPACING_X, SPACING_Y
from sonokit.utils import get_logger

log = get_logger(__name__)


def _column(filelist: pd.DataFrame, column: str) -> dict[str, float]:
    if column not in filelist.columns:
        return {}
    values = pd.to_numeric(filelist[column], errors="coerce").astype(float)
    return dict(zip(filelist["FileName"], values, strict=True))


def video_spacings(index: EchoNetIndex) -> dict[str, tuple[float, float] | None] | None:
    """{FileName: (dy, dx) mm or None} for every traced video, or None when FileList has no spacing columns.

    Raises InputError naming the videos when only some traced videos have a spacing: their volumes would be
    in mL and the others' in pixel^3, in one column.
    """
    filelist = index.filelist
    if not {SPACING_Y, SPACING_X} <= set(filelist.columns):
        return None
    dy, dx = (pd.to_numeric(filelist[c], errors="coerce").astype(float) for c in (SPACING_Y, SPACING_X))
    given = {
        name: (float(y), float(x))
        for name, y, x in zip(filelist["FileName"], dy, dx, strict=True)
        if np.isfinite(y) and np.isfinite(x) and y > 0 and x > 0
    }
    traced = [
        n for n in list(filelist["FileName"]) + list(index.tracings) if index.tracing_problem(n) is None
    ]
    traced = list(dict.fromkeys(traced))
    missing = [n for n in traced if n not in given]
    if missing and len(missing) < len(traced):
        raise InputError(
            f"{SPACING_Y}/{SPACING_X} missing for {len(missing)} of {len(traced)} traced videos "
            f"({listing(missing)}): their volumes would be pixel^3 beside others' mL; fill them in or drop "
            "the columns",
            index.root / FILELIST,
        )
    return {n: given.get(n) for n in traced} if not missing else None


def simpson_table(index: EchoNetIndex, thresholds: str = "default") -> tuple[pd.DataFrame, dict[str, str]]:
    """One row per video (FileList order, then traced videos missing from FileList).

    Columns: FileName, ED_frame, ES_frame, EDV_simpson, ESV_simpson, volume_unit (mL or px^3), EF_simpson,
    EF_filelist, EF_diff (simpson - filelist), class, [when FileList has volumes: EDV_filelist, ESV_filelist and,
    in mL, EDV_diff, ESV_diff (simpson - filelist), in px^3, EDV_ratio, ESV_ratio (filelist / simpson: mL per
    pixel^3)], problem ("" or why the tracings are unusable; such rows keep NaN values rather than being dropped).
    Returns the table and {FileName: problem} for the unusable videos.
    """
    from sonokit.clinical import ejection_fraction, get_thresholds

    preset = get_thresholds(thresholds)
    filelist = index.filelist
    listed = set(filelist["FileName"])
    names = list(filelist["FileName"]) + [n for n in index.tracings if n not in listed]
    ef_of, edv_of, esv_of = (_column(filelist, c) for c in ("EF", "EDV", "ESV"))
    has_volumes = bool(edv_of) and bool(esv_of)
    spacings = video_spacings(index)
    unit = "mL" if spacings else "px^3"
    nan = float("nan")
    rows, problems = [], {}
    for name in names:
        ef_list = ef_of.get(name, nan)
        row: dict[str, object] = {"FileName": name}
        problem = index.tracing_problem(name)
        if problem is None:
            ed, es, edv, esv = index.ed_es_volumes(name, spacings.get(name) if spacings else None)
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
            volume_unit=unit,
            EF_simpson=ef,
            EF_filelist=ef_list,
            EF_diff=ef - ef_list,
            **{"class": preset.classify(ef) if np.isfinite(ef) else ""},
        )
        if has_volumes:
            edv_list, esv_list = edv_of.get(name, nan), esv_of.get(name, nan)
            row.update(EDV_filelist=edv_list, ESV_filelist=esv_list)
            if unit == "mL":  # same unit: a difference
                row.update(EDV_diff=edv - edv_list, ESV_diff=esv - esv_list)
            else:  # pixel^3 vs mL are never subtracted; their quotient is the implied mL per pixel^3
                row.update(
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
    """n (videos with an EF), n_compared (also with FileList EF), mean and max |EF_diff|, n_unusable, volume_unit,
    mean |EDV_diff| (mL; NaN unless volumes are in mL and FileList has EDV)."""
    ok = table["EF_simpson"].notna()
    diff = table.loc[ok, "EF_diff"].abs().dropna()
    return {
        "n": int(ok.sum()),
        "n_compared": int(len(diff)),
        "mean_abs_ef_diff": float(diff.mean()) if len(diff) else float("nan"),
        "max_abs_ef_diff": float(diff.max()) if len(diff) else float("nan"),
        "n_unusable": int((~ok).sum()),
        "volume_unit": str(table["volume_unit"].iloc[0]) if len(table) else "px^3",
        "mean_abs_edv_diff": float(table.loc[ok, "EDV_diff"].abs().mean())
        if "EDV_diff" in table.columns and table.loc[ok, "EDV_diff"].notna().any()
        else float("nan"),
    }
