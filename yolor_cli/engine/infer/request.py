"""What ``yolor detect`` is asked to do, and the inference defaults every layer shares.

Only the standard library here: the command line reads these defaults for its options without
loading torch or OpenCV.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_IMG_SIZE = 640  # square input side in pixels, as the released YOLOR models
DEFAULT_CONF = 0.25  # score threshold for detections meant to be looked at
DEFAULT_IOU = 0.45  # NMS IoU threshold
DEFAULT_MAX_DET = 300  # most detections kept per image after NMS


@dataclass(frozen=True)
class DetectRequest:
    """One ``yolor detect`` run; the fields are the command's options, the defaults theirs."""

    source: str  # image, folder, glob, video or .txt list
    weights: Path  # a checkpoint, or an .onnx file from ``yolor export``
    cfg: str | None = None
    conf: float = DEFAULT_CONF
    iou: float = DEFAULT_IOU
    img_size: int = DEFAULT_IMG_SIZE
    device: str = ""
    classes: tuple[str, ...] | None = None  # indices or names, each possibly comma-separated
    max_det: int = DEFAULT_MAX_DET
    save_txt: bool = False
    save_conf: bool = False
    save_images: bool = True
    names_file: Path | None = None
    data: Path | None = None
    project: Path = Path("runs/detect")
    name: str = "exp"
    exist_ok: bool = False
    trust_pickle: bool = False
    half: bool | None = None  # --half / --no-half; None: bf16 where the CPU has it, else fp32
