"""What ``yolor export`` is asked to do.

Only the standard library here: the command line reads these defaults for its options without
loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from yolor_cli.engine.infer.request import DEFAULT_IMG_SIZE

DEFAULT_OPSET = 17


@dataclass(frozen=True)
class ExportRequest:
    """One ``yolor export`` run; the fields are the command's options, the defaults theirs."""

    weights: Path
    cfg: str | None = None
    formats: str = "onnx"  # one or more of onnx, torchscript, pt, comma-separated
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
