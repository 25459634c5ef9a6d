"""What ``yolor eval`` is asked to do, and the evaluation defaults (validation while training uses
them too).

Only the standard library here: the command line reads these defaults for its options without
loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from yolor_cli.engine.infer.request import DEFAULT_IMG_SIZE

EVAL_CONF = 0.001  # low, so the precision-recall curve reaches high recall (as the official test.py)
EVAL_IOU = 0.65  # NMS IoU threshold of the official test.py
EVAL_BATCH_SIZE = 32


@dataclass(frozen=True)
class EvalRequest:
    """One ``yolor eval`` run: a model (``weights``) or a results file (``predictions``) on a split."""

    data: Path  # data.yaml
    weights: Path | None = None
    cfg: str | None = None
    predictions: Path | None = None  # a COCO results JSON made elsewhere, instead of a model
    task: str = "val"  # "val" or "test"
    img_size: int = DEFAULT_IMG_SIZE
    batch_size: int = EVAL_BATCH_SIZE
    conf: float = EVAL_CONF
    iou: float = EVAL_IOU
    metric: str = "coco"  # "coco" or "yolor" (the official test.py formula)
    device: str = ""
    workers: int = 0
    save_json: bool = False
    plots: bool = False
    project: Path = Path("runs/eval")
    name: str = "exp"
    exist_ok: bool = False
    single_cls: bool = False
    trust_pickle: bool = False
    half: bool | None = None  # --half / --no-half; None: bf16 where the CPU has it, else fp32
