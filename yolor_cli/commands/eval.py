"""``yolor eval``: COCO mAP (or the official YOLOR formula) of a model or of a predictions file."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from yolor_cli.console import RichReporter, print_json, print_notes, stdout_console
from yolor_cli.engine.evaluate.request import EvalRequest
from yolor_cli.options import JsonOption, request_command

if TYPE_CHECKING:
    from yolor_cli.engine.evaluate.evaluator import EvalResult


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


@request_command(EvalRequest)
def eval_command(request: EvalRequest, json_output: JsonOption = False) -> None:
    """Evaluate a checkpoint on a data split: P, R, mAP@0.5 and mAP@0.5:0.95, per class.

    P and R are read at the confidence that maximises the mean F1 over classes (COCO metric).
    """
    from yolor_cli.engine.evaluate.evaluator import run_eval

    result = run_eval(request, reporter=RichReporter())
    print_notes(result.notes)
    if json_output:
        print_json(_payload(result))
        return
    _render(result)
    if result.files:
        stdout_console().print("Wrote " + ", ".join(str(f) for f in result.files))
