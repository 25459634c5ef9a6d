"""``yolor export``: ONNX, TorchScript and stripped .pt files, each verified on its runtime."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from yolor_cli.console import RichReporter, print_json, print_notes, stdout_console
from yolor_cli.engine.deploy.request import ExportRequest
from yolor_cli.options import (
    CfgOption,
    DataOption,
    ImgSizeOption,
    JsonOption,
    NamesFileOption,
    TrustPickleOption,
)

if TYPE_CHECKING:
    from yolor_cli.engine.deploy.export import Check, ExportResult

MEGABYTE = 1024 * 1024
FORMAT_NAMES = ("onnx", "torchscript", "pt")  # the engine's FORMATS, without importing torch for completion


def complete_formats(incomplete: str) -> list[str]:
    """Shell completion for --format, also after a comma (onnx,tor<TAB>)."""
    done, _, current = incomplete.rpartition(",")
    taken = set(done.split(",")) if done else set()
    prefix = f"{done}," if done else ""
    return [prefix + name for name in FORMAT_NAMES if name.startswith(current) and name not in taken]


def _check_json(check: Check) -> dict[str, Any]:
    return {
        "runtime": check.runtime,
        "input_shape": list(check.input_shape),
        "ran": check.ran,
        "max_abs_diff": check.max_abs_diff,
        "max_rel_diff": check.max_rel_diff,
        "agrees": check.agrees,
        "required": check.required,
        "detail": check.detail,
    }


def _render(result: ExportResult, json_output: bool) -> None:
    print_notes(result.notes)
    if json_output:
        print_json(
            {
                "weights": str(result.weights),
                "weights_bytes": result.weights_bytes,
                "img_size": result.img_size,
                "batch": result.batch,
                "dynamic": result.dynamic,
                "half": result.half,
                "opset": result.opset,
                "params": result.params,
                "nc": result.nc,
                "names": result.names,
                "max_abs_diff": result.max_abs_diff,
                "tolerance": result.tolerance,
                "precision": result.precision,
                "opencv_dnn": result.opencv_dnn(),
                "files": [
                    {
                        "format": f.format,
                        "path": str(f.path),
                        "size_bytes": f.size_bytes,
                        "seconds": round(f.seconds, 3),
                        "precision": f.precision,
                        "tolerance": f.tolerance.as_dict(),
                        "checks": [_check_json(c) for c in f.checks],
                    }
                    for f in result.files
                ],
            }
        )
        return
    console = stdout_console()
    files = Table(
        title=f"Exported from {escape(str(result.weights))} "
        f"({result.weights_bytes / MEGABYTE:.1f} MB, {result.params:,} params)",
        title_justify="left",
    )
    for column, justify in (("format", "left"), ("file", "left"), ("MB", "right"), ("seconds", "right")):
        files.add_column(column, justify=justify)  # type: ignore[arg-type]
    for exported in result.files:
        files.add_row(
            exported.format,
            escape(str(exported.path)),
            f"{exported.size_bytes / MEGABYTE:.1f}",
            f"{exported.seconds:.1f}",
        )
    console.print(files)
    checks = Table(title="Verified against PyTorch on a fixed input", title_justify="left")
    for column in ("format", "runtime", "input", "max |diff|", "result"):
        checks.add_column(column)
    for exported in result.files:
        for check in exported.checks:
            if not check.ran:
                verdict = f"[red]did not run[/] {escape(check.detail)}"
            else:
                verdict = "[green]agrees[/]" if check.agrees else "[yellow]differs[/]"
                if result.half and check.max_rel_diff is not None:
                    verdict += f" (relative {check.max_rel_diff:.1e})"
                if check.detail:
                    verdict += f" ({escape(check.detail)})"
            if not check.required:
                verdict += " [dim](informative)[/]"
            checks.add_row(
                exported.format,
                check.runtime,
                "x".join(map(str, check.input_shape)),
                f"{check.max_abs_diff:.2e}" if check.max_abs_diff is not None else "-",
                verdict,
            )
    console.print(checks)
    dynamic = "" if result.dynamic == "none" else f", dynamic {result.dynamic}"
    precisions = set(result.precision.values())
    if len(precisions) == 1:
        precision = precisions.pop()
    else:  # bf16 TorchScript beside fp16 ONNX, say
        precision = ", ".join(f"{name} {kind}" for name, kind in result.precision.items())
    console.print(
        f"{result.img_size} px, batch {result.batch}{dynamic}, {precision}; "
        f"input 'images' RGB float [0, 1], output (batch, N, {5 + result.nc}) boxes in input pixels."
    )


def export_command(
    weights: Annotated[
        Path,
        typer.Option(
            "--weights",
            "-w",
            help="Checkpoint to export: ours (trained or pruned), or an official one with --cfg.",
            dir_okay=False,
        ),
    ],
    cfg: CfgOption = None,
    formats: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="onnx, torchscript, pt, or several comma-separated (pt = stripped deployment checkpoint).",
            autocompletion=complete_formats,
        ),
    ] = ExportRequest.formats,
    img_size: ImgSizeOption = ExportRequest.img_size,
    batch: Annotated[
        int, typer.Option("--batch", min=1, help="Batch size of the exported input.")
    ] = ExportRequest.batch,
    dynamic: Annotated[bool, typer.Option("--dynamic", help="Dynamic batch axis.")] = ExportRequest.dynamic,
    dynamic_size: Annotated[
        bool, typer.Option("--dynamic-size", help="Dynamic batch, height and width.")
    ] = ExportRequest.dynamic_size,
    simplify: Annotated[
        bool, typer.Option("--simplify", help="Simplify the ONNX graph with onnxslim.")
    ] = ExportRequest.simplify,
    opset: Annotated[
        int, typer.Option("--opset", help="ONNX opset (11 to the exporter's newest).")
    ] = ExportRequest.opset,
    half: Annotated[
        bool,
        typer.Option(
            "--half",
            help="fp16 weights and input (meant for GPU runtimes); on a CPU with AMX-BF16 or AVX-512 BF16 "
            "the TorchScript file is bf16 instead, which that CPU runs fast.",
        ),
    ] = ExportRequest.half,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="File path (one format: written as named) or stem (each format adds its suffix). "
            "Default: NAME.onnx, NAME.torchscript, NAME_deploy.pt beside the weights, never overwriting.",
            dir_okay=False,
            show_default=False,
        ),
    ] = ExportRequest.output,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace existing files at --output.")
    ] = ExportRequest.overwrite,
    device: Annotated[str, typer.Option("--device", help="Export on cpu, or a GPU: 0.")] = ExportRequest.device,
    names_file: NamesFileOption = ExportRequest.names_file,
    data: DataOption = ExportRequest.data,
    json_output: JsonOption = False,
    trust_pickle: TrustPickleOption = ExportRequest.trust_pickle,
) -> None:
    """Export to ONNX / TorchScript / a stripped .pt, verified with onnxruntime, OpenCV DNN and torch.jit."""
    from yolor_cli.engine.deploy.export import export

    request = ExportRequest(
        weights=weights,
        cfg=cfg,
        formats=formats,
        img_size=img_size,
        batch=batch,
        dynamic=dynamic,
        dynamic_size=dynamic_size,
        simplify=simplify,
        opset=opset,
        half=half,
        output=output,
        overwrite=overwrite,
        device=device,
        names_file=names_file,
        data=data,
        trust_pickle=trust_pickle,
    )
    _render(export(request, reporter=RichReporter()), json_output)
