"""`load_index`: one front door that recognises which dataset layout a path holds.

Tasks and the CLI take a `--data PATH` and should not make the user say which format it is; when the path is none
of them, the error lists what was looked for.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from sonokit.data.boxes import BOX_COLUMNS, read_boxes
from sonokit.data.echonet import FILELIST
from sonokit.data.fetal_planes import FETAL_PLANES_CSV, read_fetal_planes
from sonokit.data.hc18 import read_hc18
from sonokit.data.image_folder import looks_like_image_folder, read_image_folder
from sonokit.data.tables import read_csv_text, read_table
from sonokit.errors import InputError
from sonokit.utils import get_logger

log = get_logger(__name__)

EXPECTED = (
    "a CSV table (path,label[,group,split]), a boxes CSV (path,x1,y1,x2,y2,label), "
    f"a FETAL_PLANES_DB folder ({FETAL_PLANES_CSV} + Images/), an HC18 folder (*pixel_size*.csv + images/), "
    "or an image folder with one sub-folder per class"
)


def _call(reader: Callable[..., pd.DataFrame], source: Path, kw: dict[str, Any]) -> pd.DataFrame:
    accepted = inspect.signature(reader).parameters
    used = {k: v for k, v in kw.items() if k in accepted}
    ignored = sorted(set(kw) - set(used))
    if ignored:
        log.debug("%s ignores options %s", reader.__name__, ignored)
    return reader(source, **used)


def detect_format(source: str | Path) -> str:
    """Name of the layout at `source`: table, boxes, fetal_planes, hc18, image_folder or echonet."""
    source = Path(source)
    if not source.exists():
        raise InputError(f"not found (expected {EXPECTED})", source)
    if source.is_file():
        if source.suffix.lower() != ".csv":
            raise InputError(f"not a CSV table (expected {EXPECTED})", source)
        header = read_csv_text(source, nrows=0).columns
        return "boxes" if all(c in header for c in BOX_COLUMNS) else "table"
    if (source / FETAL_PLANES_CSV).is_file():
        return "fetal_planes"
    if (source / FILELIST).is_file():
        return "echonet"
    if any(source.glob("*pixel_size*.csv")):
        return "hc18"
    if looks_like_image_folder(source):
        return "image_folder"
    csvs = sorted(source.glob("*.csv"))
    if len(csvs) == 1:
        return "table"
    raise InputError(f"no dataset recognised (expected {EXPECTED})", source)


def load_index(source: str | Path, **kw: Any) -> pd.DataFrame:
    """Read any supported layout into the normalised index (path, label, group, split, ...).

    Keyword options go to the matching reader (column names and classes for tables, classes for folders);
    options that the detected reader does not take are ignored.
    """
    source = Path(source)
    kind = detect_format(source)
    if kind == "echonet":
        raise InputError(
            "this is an EchoNet-Dynamic folder (FileList.csv): read it with read_echonet or train ef/lv-seg/lv-trace on it",
            source,
        )
    if kind == "table" and source.is_dir():
        source = sorted(source.glob("*.csv"))[0]
    readers = {
        "table": read_table,
        "boxes": read_boxes,
        "fetal_planes": read_fetal_planes,
        "hc18": read_hc18,
        "image_folder": read_image_folder,
    }
    return _call(readers[kind], source, kw)
