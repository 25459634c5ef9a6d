"""What ``yolor export`` is asked to do.

Only the standard library here: the command line reads these defaults for its options without
loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from yolor_cli.engine.infer.request import DEFAULT_IMG_SIZE

DEFAULT_OPSET = 17
DEFAULT_CALIB_IMAGES = 300  # training images INT8 ranges are calibrated on (NNCF's default subset size)
DEFAULT_MAX_DROP = 0.01  # absolute mAP50-95 an INT8 file may lose against fp32 and still be written


@dataclass(frozen=True)
class ExportRequest:
    """One ``yolor export`` run; the fields are the command's options, the defaults theirs."""

    weights: Path
    cfg: str | None = None
    formats: str = "onnx"  # one or more of onnx, openvino, torchscript, pt, comma-separated
    img_size: int = DEFAULT_IMG_SIZE
    batch: int = 1
    dynamic: bool = False  # dynamic batch axis
    dynamic_size: bool = False  # dynamic batch, height and width
    simplify: bool = False
    opset: int = DEFAULT_OPSET
    half: bool = False
    output: Path | None = None  # a file (one format) or a stem; None: beside the weights
    overwrite: bool = False
    device: str = "cpu"
    names_file: Path | None = None
    data: Path | None = None
    trust_pickle: bool = False
    int8: bool = False  # post-training INT8 of the onnx / openvino files, calibrated on ``data``
    calib_images: int = DEFAULT_CALIB_IMAGES
    max_drop: float = DEFAULT_MAX_DROP
