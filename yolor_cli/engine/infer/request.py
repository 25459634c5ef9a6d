"""What ``yolor detect`` is asked to do, and the inference defaults every layer shares.

Only the standard library here: the command line builds its options from these fields without
loading torch or OpenCV.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from yolor_cli.engine.options import (
    DEFAULT_IMG_SIZE,
    MODEL_WEIGHTS_HELP,
    REQUIRED,
    Request,
    cfg_option,
    conf_option,
    data_option,
    device_option,
    exist_ok_option,
    half_option,
    img_size_option,
    iou_option,
    name_option,
    names_file_option,
    option,
    project_option,
    trust_pickle_option,
    weights_option,
)

DEFAULT_CONF = 0.25  # score threshold for detections meant to be looked at
DEFAULT_IOU = 0.45  # NMS IoU threshold
DEFAULT_MAX_DET = 300  # most detections kept per image after NMS
MAX_MAX_DET = 100_000  # far above any image's objects; bounds the NMS output buffers


@dataclass(frozen=True)
class DetectRequest(Request):
    """One ``yolor detect`` run; the fields are the command's options, the defaults theirs."""

    source: str = option(REQUIRED, "--source", help="Image, folder, glob (quote it), video or .txt list.")
    weights: Path = weights_option(REQUIRED, MODEL_WEIGHTS_HELP, model=True)  # or a file from yolor export
    cfg: str | None = cfg_option()
    conf: float = conf_option(DEFAULT_CONF)
    iou: float = iou_option(DEFAULT_IOU)
    img_size: int = img_size_option(DEFAULT_IMG_SIZE)
    device: str = device_option()
    half: bool | None = half_option()  # None: bf16 where the CPU has it, else fp32
    classes: tuple[str, ...] | None = option(
        None, "--classes", help="Keep only these classes: indices or names, comma-separated or repeated."
    )
    max_det: int = option(DEFAULT_MAX_DET, "--max-det", help="Most detections per image.", min=1, max=MAX_MAX_DET)
    save_txt: bool = option(False, "--save-txt", help="Write YOLO labels to labels/*.txt.")
    save_conf: bool = option(False, "--save-conf", help="Add the score to each --save-txt row.")
    save_images: bool = option(True, "--nosave", help="Do not write annotated images or videos.", negate=True)
    names_file: Path | None = names_file_option()
    data: Path | None = data_option()
    project: Path = project_option(Path("runs/detect"))
    name: str = name_option()
    exist_ok: bool = exist_ok_option()
    trust_pickle: bool = trust_pickle_option()

    def __post_init__(self) -> None:
        if isinstance(self.classes, list):  # a library caller's list: kept as the hashable tuple
            object.__setattr__(self, "classes", tuple(self.classes))
        if self.classes == ():
            object.__setattr__(self, "classes", None)
        super().__post_init__()
