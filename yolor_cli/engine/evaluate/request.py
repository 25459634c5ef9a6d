"""What ``yolor eval`` is asked to do, and the evaluation defaults (validation while training uses
them too).

Only the standard library here: the command line builds its options from these fields without
loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from yolor_cli.engine.infer.request import DEFAULT_IMG_SIZE
from yolor_cli.engine.options import (
    MODEL_WEIGHTS_HELP,
    REQUIRED,
    Request,
    batch_option,
    cfg_option,
    conf_option,
    data_option,
    device_option,
    exist_ok_option,
    half_option,
    img_size_option,
    iou_option,
    name_option,
    option,
    project_option,
    trust_pickle_option,
    weights_option,
    workers_option,
)

EVAL_CONF = 0.001  # low, so the precision-recall curve reaches high recall (as the official test.py)
EVAL_IOU = 0.65  # NMS IoU threshold of the official test.py
EVAL_BATCH_SIZE = 32
TASKS = ("val", "test")
METRICS = ("coco", "yolor")


@dataclass(frozen=True)
class EvalRequest(Request):
    """One ``yolor eval`` run: a model (``weights``) or a results file (``predictions``) on a split."""

    data: Path = data_option(REQUIRED)
    weights: Path | None = weights_option(None, MODEL_WEIGHTS_HELP, model=True)
    cfg: str | None = cfg_option()
    predictions: Path | None = option(
        None,
        "--predictions",
        help="Score a COCO results JSON made elsewhere instead of a model (image_id = image "
        "stem, category_id = 0-based class, bbox = [x, y, w, h] pixels).",
        path_kind="file",
    )
    task: str = option("val", "--task", help="Which split of the data file.", choices=TASKS)
    img_size: int = img_size_option(DEFAULT_IMG_SIZE)
    batch_size: int = batch_option(EVAL_BATCH_SIZE)
    conf: float = conf_option(EVAL_CONF)
    iou: float = iou_option(EVAL_IOU)
    metric: str = option(
        "coco",
        "--metric",
        help="coco: exact COCO mAP (pycocotools' definition). "
        "yolor: the official test.py formula, for comparing with old runs.",
        choices=METRICS,
    )
    device: str = device_option()
    workers: int = workers_option(0)
    save_json: bool = option(False, "--save-json", help="Write predictions.json (COCO results).")
    plots: bool = option(False, "--plots", help="Write PR, F1, P, R curves and a confusion matrix.")
    errors: bool = option(
        False,
        "--errors",
        help="Split the mAP lost into TIDE's error types (cls, loc, both, dupe, bkg, missed) with the dAP "
        "of each, overall and per class; writes errors.json (and errors.png with the plots extra).",
    )
    compare: Path | None = option(
        None,
        "--compare",
        help="Another model, exported file or predictions JSON (.json) to score on the same split: shows "
        "what changed (mAP, per-class AP, error dAPs, the images that got worse); writes compare.json.",
    )
    project: Path = project_option(Path("runs/eval"))
    name: str = name_option()
    exist_ok: bool = exist_ok_option()
    single_cls: bool = option(
        False, "--single-cls", help="Score every object as one class (for models trained with --single-cls)."
    )
    trust_pickle: bool = trust_pickle_option()
    half: bool | None = half_option()  # None: bf16 where the CPU has it, else fp32
