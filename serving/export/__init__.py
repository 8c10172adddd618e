"""ONNX export of the GPT and SoVITS: wrapper modules, the exporter and the JSON sidecar."""
from serving.export.onnx_export import EXPORT_PRECISIONS, ExportError, export_onnx
from serving.export.sidecar import SIDECAR_NAME, ExportFormatError, ExportInfo, load_export_info

__all__ = [
    "EXPORT_PRECISIONS", "ExportError", "ExportFormatError", "ExportInfo", "SIDECAR_NAME",
    "export_onnx", "load_export_info",
]
