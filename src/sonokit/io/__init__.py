"""Reading and writing ultrasound files: DICOM, AVI/MP4/WebM, PNG/JPG/BMP/TIFF; DICOM de-identification.

    with open_cine("study.dcm") as cine:      # DICOM, video or image; frames decoded on demand
        cine.n_frames, cine.fps, cine.spacing_mm, cine.meta
        frame = cine.frame(10)                 # uint8 (H, W) or RGB (H, W, 3)
    anonymize_file("study.dcm", "anon/study.dcm")

Importing this package loads neither OpenCV nor pydicom; readers import them when first used.
"""

import os

# FFmpeg (inside OpenCV) prints its own complaints about damaged videos to stderr; sonokit reports each problem as
# one InputError line instead. OpenCV reads this when it first opens a video, so it is set on import; export
# OPENCV_FFMPEG_LOGLEVEL yourself (e.g. 24) to see FFmpeg's messages.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
# OpenCV's own decoders print warnings about damaged images the same way; sonokit's error line says it.
os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")

from sonokit.io.cine import Cine, open_cine, read_frames  # noqa: E402
from sonokit.io.convert import convert_cine, convert_files, update_filelist  # noqa: E402
from sonokit.io.deid import UidMapper, anonymize_file, anonymize_paths, deidentify_dataset  # noqa: E402
from sonokit.io.describe import describe  # noqa: E402
from sonokit.io.dicom_meta import summary as dicom_summary  # noqa: E402
from sonokit.io.formats import SUPPORTED_EXTENSIONS, file_kind, find_inputs  # noqa: E402
from sonokit.io.writers import write_image, write_video  # noqa: E402

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "Cine",
    "UidMapper",
    "anonymize_file",
    "anonymize_paths",
    "convert_cine",
    "convert_files",
    "deidentify_dataset",
    "describe",
    "dicom_summary",
    "file_kind",
    "find_inputs",
    "open_cine",
    "read_frames",
    "update_filelist",
    "write_image",
    "write_video",
]
