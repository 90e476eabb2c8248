"""FETAL_PLANES_DB (Burgos-Artizzu et al. 2020): a semicolon-separated CSV beside an `Images/` folder.

The published CSV has a trailing space in its `Train ` header and spaces around some values; both are stripped.
Patients (Patient_num) become groups so no patient is split across train and test.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sonokit.data.tables import normalise_split, read_csv_text
from sonokit.data.validate import require_columns, require_files, require_no_missing
from sonokit.errors import InputError

FETAL_PLANES_CSV = "FETAL_PLANES_DB_data.csv"
FETAL_PLANES = ("Fetal abdomen", "Fetal brain", "Fetal femur", "Fetal thorax", "Maternal cervix", "Other")
_COLUMNS = ("Image_name", "Patient_num", "Plane", "Brain_plane", "Operator", "US_Machine", "Train")


def read_fetal_planes(root: str | Path, check_files: bool = True) -> pd.DataFrame:
    """Index FETAL_PLANES_DB: label=Plane, group=Patient_num, split from Train (1 train, 0 test).

    Extra columns: brain_plane, operator, machine, image_name.
    """
    root = Path(root)
    csv_path = root / FETAL_PLANES_CSV if root.is_dir() else root
    if not csv_path.is_file():
        raise InputError(f"{FETAL_PLANES_CSV} not found (expected the FETAL_PLANES_DB folder)", csv_path)
    raw = read_csv_text(csv_path, sep=";")
    raw = raw.loc[:, [c for c in raw.columns if c and not c.startswith("Unnamed")]]
    if raw.empty:
        raise InputError("table has no rows", csv_path)
    require_columns(raw.columns, _COLUMNS[:3] + ("Train",), csv_path)
    require_no_missing(raw, ["Image_name", "Patient_num", "Plane", "Train"], csv_path)
    raw = raw.apply(lambda col: col.astype(str).str.strip())

    images = csv_path.parent / "Images"
    names = raw["Image_name"]
    names = names.where(names.str.lower().str.endswith(".png"), names + ".png")
    df = pd.DataFrame(
        {
            "path": [str((images / n).resolve()) for n in names],
            "label": raw["Plane"].to_numpy(),
            "group": raw["Patient_num"].to_numpy(),
            "split": normalise_split(raw["Train"], csv_path, "Train").to_numpy(),
            "brain_plane": raw.get("Brain_plane", pd.Series([""] * len(raw))).to_numpy(),
            "operator": raw.get("Operator", pd.Series([""] * len(raw))).to_numpy(),
            "machine": raw.get("US_Machine", pd.Series([""] * len(raw))).to_numpy(),
            "image_name": raw["Image_name"].to_numpy(),
        }
    )
    if check_files:
        require_files(df["path"], csv_path, what="images")
    return df
