"""``yolor detect``: run a checkpoint on images, folders, globs, videos or .txt lists."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from yolor_cli.console import RichReporter, markup, print_json, print_notes, stdout_console
from yolor_cli.engine.infer.request import DetectRequest
from yolor_cli.options import (
    CfgOption,
    ConfOption,
    DataOption,
    DeviceOption,
    ExistOkOption,
    HalfOption,
    ImgSizeOption,
    IouOption,
    JsonOption,
    NameOption,
    NamesFileOption,
    ProjectOption,
    TrustPickleOption,
)


def detect_command(
    source: Annotated[str, typer.Option("--source", help="Image, folder, glob (quote it), video or .txt list.")],
    weights: Annotated[
        Path,
        typer.Option(
            "--weights",
            "-w",
            help="Checkpoint (.pt): ours, or an official YOLOR one with --cfg; or a file from yolor export "
            "(.onnx, INT8 included; .torchscript; an OpenVINO _openvino_model folder or .xml).",
        ),
    ],
    cfg: CfgOption = None,
    conf: ConfOption = DetectRequest.conf,
    iou: IouOption = DetectRequest.iou,
    img_size: ImgSizeOption = DetectRequest.img_size,
    device: DeviceOption = DetectRequest.device,
    half: HalfOption = DetectRequest.half,
    classes: Annotated[
        list[str] | None,
        typer.Option(
            "--classes",
            help="Keep only these classes: indices or names, comma-separated or repeated.",
            show_default=False,
        ),
    ] = None,
    max_det: Annotated[
        int, typer.Option("--max-det", min=1, help="Most detections per image.")
    ] = DetectRequest.max_det,
    save_txt: Annotated[
        bool, typer.Option("--save-txt", help="Write YOLO labels to labels/*.txt.")
    ] = DetectRequest.save_txt,
    save_conf: Annotated[
        bool, typer.Option("--save-conf", help="Add the score to each --save-txt row.")
    ] = DetectRequest.save_conf,
    nosave: Annotated[
        bool, typer.Option("--nosave", help="Do not write annotated images or videos.")
    ] = not DetectRequest.save_images,
    names_file: NamesFileOption = None,
    data: DataOption = None,
    project: ProjectOption = DetectRequest.project,
    name: NameOption = DetectRequest.name,
    exist_ok: ExistOkOption = DetectRequest.exist_ok,
    pruned: Annotated[
        bool,
        typer.Option(
            "--pruned", help="Accepted for users of the old scripts; changes nothing (checkpoints say what they are)."
        ),
    ] = False,
    json_output: JsonOption = False,
    trust_pickle: TrustPickleOption = DetectRequest.trust_pickle,
) -> None:
    """Detect objects and write annotated images/videos (and labels with [b]--save-txt[/])."""
    from yolor_cli.engine.infer.detect import detect

    request = DetectRequest(
        source=source,
        weights=weights,
        cfg=cfg,
        conf=conf,
        iou=iou,
        img_size=img_size,
        device=device,
        classes=tuple(classes) if classes else None,
        max_det=max_det,
        save_txt=save_txt,
        save_conf=save_conf,
        save_images=not nosave,
        names_file=names_file,
        data=data,
        project=project,
        name=name,
        exist_ok=exist_ok,
        trust_pickle=trust_pickle,
        half=half,
    )
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
