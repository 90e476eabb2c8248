"""Reading and writing ultrasound files: DICOM, AVI/MP4/WebM, PNG/JPG/BMP/TIFF."""

from sonokit.io.writers import write_image, write_video

__all__ = ["write_image", "write_video"]
