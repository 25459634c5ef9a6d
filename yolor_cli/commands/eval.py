"""``yolor eval``: COCO mAP (or the official YOLOR formula) of a model or of a predictions file."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from yolor_cli.console import RichReporter, print_json, print_notes, stdout_console
from yolor_cli.engine.evaluate.request import EvalRequest
from yolor_cli.options import JsonOption, request_command

if TYPE_CHECKING:
    from yolor_cli.engine.evaluate.compare import Comparison, ImageChange
    from yolor_cli.engine.evaluate.errors import ErrorBreakdown
    from yolor_cli.engine.evaluate.evaluator import EvalResult

ERROR_COLUMNS = ("cls", "loc", "both", "dupe", "bkg", "missed")  # engine.evaluate.errors.ERROR_TYPES, torch-free
CHANGED_IMAGES_SHOWN = 10


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


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
        **({"errors": result.errors.payload(result.names)} if result.errors is not None else {}),
        **({"compare": result.comparison.payload()} if result.comparison is not None else {}),
    }


def render_errors(breakdown: ErrorBreakdown, names: list[str]) -> None:
    """TIDE's breakdown: dAP (mAP gained if that error type were fixed), overall and per class."""
    table = Table(
        title="Errors (TIDE): dAP, the mAP gained if each error type were fixed",
        title_justify="left",
        caption="per class on mAP50-95; --json and errors.json hold mAP50 per class and the counts",
        caption_justify="left",
    )
    for column in ("class", "mAP", *ERROR_COLUMNS):
        table.add_column(column, justify="left" if column == "class" else "right")
    overall = breakdown.overall
    table.add_row(
        "all (mAP50-95)", _fmt(overall.base_map), *(_fmt(overall.map[k]) for k in ERROR_COLUMNS), style="bold"
    )
    table.add_row("all (mAP50)", _fmt(overall.base_map50), *(_fmt(overall.map50[k]) for k in ERROR_COLUMNS))
    for cls, figures in breakdown.per_class.items():
        table.add_row(Text(names[cls]), _fmt(figures.base_map), *(_fmt(figures.map[k]) for k in ERROR_COLUMNS))
    stdout_console().print(table)


def largest_changes(changes: list[ImageChange]) -> list[ImageChange]:
    """The changed images prune auto and export --int8 show after their tables (the worst first)."""
    from yolor_cli.engine.evaluate.compare import LARGEST_CHANGES

    return changes[:LARGEST_CHANGES]


def render_changes(changes: list[ImageChange], title: str, limit: int | None = None) -> None:
    """The images whose detections changed most, worst first (one line each)."""
    console = stdout_console()
    if not changes:
        console.print(f"{title}: no image changed")
        return
    console.print(f"{title} (F1 at score 0.25, IoU 0.5; worst first):")
    for change in changes[:limit]:
        console.print(Text("  " + change.describe()))


def _change(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


def _render_comparison(comparison: Comparison) -> None:
    table = Table(title=Text(f"A: {comparison.a_label}  ->  B: {comparison.b_label}"), title_justify="left")
    for column in ("class", "mAP50 A", "mAP50 B", "change", "mAP50-95 A", "mAP50-95 B", "change "):
        table.add_column(column, justify="left" if column == "class" else "right")
    a, b = comparison.a, comparison.b
    table.add_row(
        "all", _fmt(a.map50), _fmt(b.map50), _signed(b.map50 - a.map50),
        _fmt(a.map), _fmt(b.map), _signed(b.map - a.map), style="bold",
    )  # fmt: skip
    for ca, cb in zip(a.per_class, b.per_class):
        if ca.instances:
            table.add_row(
                Text(comparison.names[ca.cls]),
                _fmt(ca.map50), _fmt(cb.map50), _signed(_change(ca.map50, cb.map50)),
                _fmt(ca.map), _fmt(cb.map), _signed(_change(ca.map, cb.map)),
            )  # fmt: skip
    errors = Table(title="Error dAP on mAP50-95 (TIDE)", title_justify="left")
    for column in ("", *ERROR_COLUMNS):
        errors.add_column(column, justify="left" if not column else "right")
    fa, fb = comparison.a_errors.overall, comparison.b_errors.overall
    errors.add_row("A", *(_fmt(fa.map[k]) for k in ERROR_COLUMNS))
    errors.add_row("B", *(_fmt(fb.map[k]) for k in ERROR_COLUMNS))
    errors.add_row("change", *(_signed(fb.map[k] - fa.map[k]) for k in ERROR_COLUMNS), style="bold")
    console = stdout_console()
    console.print(table)
    console.print(errors)
    render_changes(comparison.changes, f"Images changed: {len(comparison.changes)}", CHANGED_IMAGES_SHOWN)


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
    if result.errors is not None and result.comparison is None:
        render_errors(result.errors, result.names)
    if result.comparison is not None:
        _render_comparison(result.comparison)


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
