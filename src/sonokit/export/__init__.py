"""Export trained runs to ONNX and run them with onnxruntime (`sonokit export`, `--backend onnx`)."""

from sonokit.export.backend import BACKENDS, OnnxModel, attach_backend, backend_name
from sonokit.export.onnx import (
    ONNX_FILE,
    ExportResult,
    export_model,
    export_run,
    read_metadata,
    sample_shape,
    state_digest,
    verify_onnx,
)

__all__ = [
    "BACKENDS",
    "ONNX_FILE",
    "ExportResult",
    "OnnxModel",
    "attach_backend",
    "backend_name",
    "export_model",
    "export_run",
    "read_metadata",
    "sample_shape",
    "state_digest",
    "verify_onnx",
]
