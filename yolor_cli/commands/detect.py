"""``yolor detect``: run a checkpoint on images, folders, globs, videos or .txt lists."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from yolor_cli.console import RichReporter, markup, print_json, print_notes, stdout_console
from yolor_cli.engine.infer.request import DetectRequest
from yolor_cli.options import JsonOption, request_command


@request_command(DetectRequest)
def detect_command(
    request: DetectRequest,
    pruned: Annotated[
        bool,
        typer.Option(
            "--pruned",
            help="Accepted for users of the old scripts; changes nothing (checkpoints say what they are).",
            metavar="",
        ),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Detect objects and write annotated images/videos (and labels with [b]--save-txt[/])."""
    from yolor_cli.engine.infer.detect import detect

    result = detect(request, reporter=RichReporter())
    print_notes(result.notes)
    speed, precision = result.speed_ms, result.precision
    if json_output:
        print_json(
            {
                "save_dir": str(result.save_dir),
                "images": result.images,
                "video_frames": result.video_frames,
                "detections": dict(result.detections),
                "speed_ms": speed,
                "inference_precision": precision.name if precision else None,
                "inference_precision_reason": precision.reason if precision else None,
                "unreadable": [{"path": str(u.path), "reason": u.reason} for u in result.unreadable],
            }
        )
        return
    console = stdout_console()
    table = Table(title="Detections", title_justify="left")
    table.add_column("class")
    table.add_column("count", justify="right")
    for class_label, count in sorted(result.detections.items()):
        table.add_row(Text(class_label), str(count))
    console.print(table)
    console.print(
        Text(
            f"{result.images} images, {result.video_frames} video frames, {len(result.unreadable)} skipped; "
            f"{speed['preprocess']:.1f} ms pre-process, {speed['inference']:.1f} ms inference, "
            f"{speed['nms']:.1f} ms NMS per image"
            + (f", in {precision.describe()}" if precision else "")
            + ". Results in "
        )
        + markup("[b]{}[/]", result.save_dir)
    )
