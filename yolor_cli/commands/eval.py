"""``yolor eval``: COCO mAP (or the official YOLOR formula) of a model or of a predictions file."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from yolor_cli.console import RichReporter, print_json, print_notes, stdout_console
from yolor_cli.engine.evaluate.request import EvalRequest
from yolor_cli.options import (
    CfgOption,
    ConfOption,
    DeviceOption,
    ExistOkOption,
    HalfOption,
    ImgSizeOption,
    IouOption,
    JsonOption,
    ModelWeightsOption,
    NameOption,
    ProjectOption,
    TrustPickleOption,
)

if TYPE_CHECKING:
    from yolor_cli.engine.evaluate.evaluator import EvalResult


class Metric(str, Enum):
    coco = "coco"
    yolor = "yolor"


class Task(str, Enum):
    val = "val"
    test = "test"


DEFAULT_METRIC = Metric(EvalRequest.metric)
DEFAULT_TASK = Task(EvalRequest.task)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _payload(result: EvalResult) -> dict:
    m = result.metrics
    return {
        "metric": m.metric,
        "precision": m.precision,
        "recall": m.recall,
        "f1": m.f1,
        "map50": m.map50,
        "map": m.map,
        "images": result.images,
        "instances": result.instances,
        "per_class": [
            {
                "class": result.names[c.cls],
                "images": c.images,
                "instances": c.instances,
                "precision": c.precision,
                "recall": c.recall,
                "map50": c.map50,
                "map": c.map,
            }
            for c in m.per_class
        ],
        "speed_ms": result.speed_ms,
        # "precision" is the metric above; these say what the model ran in (null for --predictions).
        "inference_precision": result.precision.name if result.precision else None,
        "inference_precision_reason": result.precision.reason if result.precision else None,
        "files": [str(f) for f in result.files],
    }


def _render(result: EvalResult) -> None:
    m = result.metrics
    table = Table(
        title=f"Evaluation ({'COCO' if m.metric == 'coco' else 'official YOLOR formula'})",
        title_justify="left",
        caption="P and R at the confidence with the highest mean F1"
        if m.metric == "coco"
        else "P and R at score 0.1, as the official test.py",
        caption_justify="left",
    )
    for column in ("class", "images", "instances", "P", "R", "mAP50", "mAP50-95"):
        table.add_column(column, justify="left" if column == "class" else "right")
    table.add_row(
        "all",
        str(result.images),
        str(result.instances),
        _fmt(m.precision),
        _fmt(m.recall),
        _fmt(m.map50),
        _fmt(m.map),
        style="bold",
    )
    for c in m.per_class:
        table.add_row(
            Text(result.names[c.cls]),
            str(c.images),
            str(c.instances),
            _fmt(c.precision),
            _fmt(c.recall),
            _fmt(c.map50),
            _fmt(c.map),
        )
    console = stdout_console()
    console.print(table)
    s = result.speed_ms
    if s.get("inference") is not None:
        console.print(
            f"Speed per image: {s['preprocess']:.1f} ms pre-process, {s['inference']:.1f} ms inference, "
            f"{s['nms']:.1f} ms NMS"
        )
    if result.precision is not None:
        console.print(f"Inference precision: {result.precision.describe()}")


def eval_command(
    data: Annotated[
        Path, typer.Option("--data", help="data.yaml (as written by `yolor dataset prepare`).", dir_okay=False)
    ],
    weights: ModelWeightsOption = None,
    cfg: CfgOption = None,
    img_size: ImgSizeOption = EvalRequest.img_size,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = EvalRequest.batch_size,
    conf: ConfOption = EvalRequest.conf,
    iou: IouOption = EvalRequest.iou,
    task: Annotated[Task, typer.Option("--task", help="Which split of the data file.")] = DEFAULT_TASK,
    metric: Annotated[
        Metric,
        typer.Option(
            "--metric",
            help="coco: exact COCO mAP (pycocotools' definition). "
            "yolor: the official test.py formula, for comparing with old runs.",
        ),
    ] = DEFAULT_METRIC,
    predictions: Annotated[
        Path | None,
        typer.Option(
            "--predictions",
            help="Score a COCO results JSON made elsewhere instead of a model (image_id = image "
            "stem, category_id = 0-based class, bbox = [x, y, w, h] pixels).",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    save_json: Annotated[
        bool, typer.Option("--save-json", help="Write predictions.json (COCO results).")
    ] = EvalRequest.save_json,
    plots: Annotated[
        bool, typer.Option("--plots", help="Write PR, F1, P, R curves and a confusion matrix.")
    ] = EvalRequest.plots,
    single_cls: Annotated[
        bool,
        typer.Option("--single-cls", help="Score every object as one class (for models trained with --single-cls)."),
    ] = EvalRequest.single_cls,
    device: DeviceOption = EvalRequest.device,
    workers: Annotated[int, typer.Option("--workers", min=0)] = EvalRequest.workers,
    half: HalfOption = EvalRequest.half,
    project: ProjectOption = EvalRequest.project,
    name: NameOption = EvalRequest.name,
    exist_ok: ExistOkOption = EvalRequest.exist_ok,
    json_output: JsonOption = False,
    trust_pickle: TrustPickleOption = EvalRequest.trust_pickle,
) -> None:
    """Evaluate a checkpoint on a data split: P, R, mAP@0.5 and mAP@0.5:0.95, per class.

    P and R are read at the confidence that maximises the mean F1 over classes (COCO metric).
    """
    from yolor_cli.engine.evaluate.evaluator import run_eval

    request = EvalRequest(
        data=data,
        weights=weights,
        cfg=cfg,
        predictions=predictions,
        task=task.value,
        img_size=img_size,
        batch_size=batch_size,
        conf=conf,
        iou=iou,
        metric=metric.value,
        device=device,
        workers=workers,
        save_json=save_json,
        plots=plots,
        project=project,
        name=name,
        exist_ok=exist_ok,
        single_cls=single_cls,
        trust_pickle=trust_pickle,
        half=half,
    )
    result = run_eval(request, reporter=RichReporter())
    print_notes(result.notes)
    if json_output:
        print_json(_payload(result))
        return
    _render(result)
    if result.files:
        stdout_console().print("Wrote " + ", ".join(str(f) for f in result.files))
