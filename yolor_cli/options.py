"""Options shared by several commands, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def complete_comma_list(incomplete: str, names: tuple[str, ...]) -> list[str]:
    """Shell completion of a comma-separated list of names, also after a comma (onnx,tor<TAB>)."""
    done, _, current = incomplete.rpartition(",")
    taken = set(done.split(",")) if done else set()
    prefix = f"{done}," if done else ""
    return [prefix + name for name in names if name.startswith(current) and name not in taken]


def complete_cfg(incomplete: str) -> list[str]:
    """Bundled model names for shell completion (paths are completed by the shell)."""
    from yolor_cli.engine.model.bundled import bundled_model_names

    return [name for name in bundled_model_names() if name.startswith(incomplete)]


CfgOption = Annotated[
    str | None,
    typer.Option(
        "--cfg",
        help="Darknet .cfg path or bundled model name (e.g. yolor_csp, yolor_csp_tiny).",
        autocompletion=complete_cfg,
        show_default=False,
    ),
]
WeightsOption = Annotated[
    Path | None,
    typer.Option(
        "--weights",
        "-w",
        help="Checkpoint (.pt): ours, or an official YOLOR one with --cfg.",
        dir_okay=False,
        show_default=False,
    ),
]
# What eval and detect run: a checkpoint, or a file from yolor export (an OpenVINO IR is a folder).
ModelWeightsOption = Annotated[
    Path | None,
    typer.Option(
        "--weights",
        "-w",
        help="Checkpoint (.pt): ours, or an official YOLOR one with --cfg; or a file from yolor export "
        "(.onnx, INT8 included; .torchscript; an OpenVINO _openvino_model folder or .xml).",
        show_default=False,
    ),
]
NcOption = Annotated[
    int | None,
    typer.Option(
        "--nc", min=1, help="Number of classes; rewrites every dependent line of the cfg.", show_default=False
    ),
]
ImgSizeOption = Annotated[int, typer.Option("--img-size", min=32, help="Square input size in pixels.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout instead of tables.")]
TrustPickleOption = Annotated[
    bool,
    typer.Option(
        "--trust-pickle",
        help="Allow weights files that run pickled code when loaded (only for "
        "files you trust, e.g. old pruned torch.save(model) files).",
    ),
]
DataOption = Annotated[
    Path | None,
    typer.Option(
        "--data", help="data.yaml (as written by `yolor dataset prepare`).", dir_okay=False, show_default=False
    ),
]
DeviceOption = Annotated[str, typer.Option("--device", help="'' = GPU 0 if available else CPU; cpu; 0; 0,1.")]
ConfOption = Annotated[float, typer.Option("--conf", min=0.0, max=1.0, help="Score threshold.")]
IouOption = Annotated[float, typer.Option("--iou", min=0.0, max=1.0, help="NMS IoU threshold.")]
NamesFileOption = Annotated[
    Path | None,
    typer.Option("--names", help="File with one class name per line.", dir_okay=False, show_default=False),
]
ProjectOption = Annotated[Path, typer.Option("--project", help="Folder that holds the run folders.")]
NameOption = Annotated[str, typer.Option("--name", help="Run folder name; name2, name3... if it exists.")]
ExistOkOption = Annotated[bool, typer.Option("--exist-ok", help="Reuse the run folder if it exists.")]
HalfOption = Annotated[
    bool | None,
    typer.Option(
        "--half/--no-half",
        help="Inference precision. Default: bf16 on a CPU with AMX-BF16 or AVX-512 BF16, else fp32. "
        "--half: fp16 on CUDA, bf16 on such a CPU (ignored on other CPUs); --no-half: fp32. "
        "An .onnx file runs in the precision it was exported in.",
        show_default=False,
    ),
]
