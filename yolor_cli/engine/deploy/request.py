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


BENCHMARK_FORMATS = ("pytorch", "onnx", "onnx-int8", "openvino", "openvino-int8", "torchscript")
# Asked for by name only: the same files computing in bf16 where the CPU has it.
EXTRA_BENCHMARK_FORMATS = ("pytorch-bf16", "openvino-bf16")
BENCHMARK_IMG_SIZE = 640  # what deployments run; the latency targets are quoted at it


@dataclass(frozen=True)
class BenchmarkRequest:
    """One ``yolor benchmark`` run: each format made from ``weights``, scored on ``data``'s val split
    and timed on the same images."""

    weights: Path
    data: Path
    cfg: str | None = None
    formats: str = ",".join(BENCHMARK_FORMATS)
    img_size: int = BENCHMARK_IMG_SIZE
    batch: int = 1
    device: str = "cpu"
    min_map: float | None = None  # exit 1 when a format that ran scores mAP50-95 below this
    output: Path | None = None  # benchmark.csv; None: beside the weights
    overwrite: bool = False  # replace an --output file that is not an earlier benchmark table
    calib_images: int = DEFAULT_CALIB_IMAGES
    trust_pickle: bool = False
