"""ONNX export: the exporter and its checks (:mod:`~ghostdet.export.onnx`) and the portable
plain-conv graph form of GhostNet that runtimes execute fast (:mod:`~ghostdet.export.portable`)."""

from ghostdet.export.onnx import (
    ExportError,
    build_for_export,
    export_models,
    export_names,
    export_onnx,
    match_detections,
    require_onnx,
    run_onnx,
    supported_opsets,
)
from ghostdet.export.portable import PortableGhostNet, portable_ghostnet, portable_model

__all__ = [
    "ExportError",
    "PortableGhostNet",
    "build_for_export",
    "export_models",
    "export_names",
    "export_onnx",
    "match_detections",
    "portable_ghostnet",
    "portable_model",
    "require_onnx",
    "run_onnx",
    "supported_opsets",
]
