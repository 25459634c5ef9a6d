"""``yolor export``: ONNX, TorchScript and stripped .pt files, each verified on its runtime."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from yolor_cli.console import RichReporter, markup, print_json, print_notes, stdout_console
from yolor_cli.engine.deploy.request import ExportRequest
from yolor_cli.options import (
    CfgOption,
    DataOption,
    ImgSizeOption,
    JsonOption,
    NamesFileOption,
    TrustPickleOption,
    complete_comma_list,
)

if TYPE_CHECKING:
    from yolor_cli.engine.deploy.export import Check, ExportResult
    from yolor_cli.engine.deploy.int8 import Int8Report

MEGABYTE = 1024 * 1024
FORMAT_NAMES = ("onnx", "openvino", "torchscript", "pt")  # the engine's FORMATS, without importing torch for completion


def complete_formats(incomplete: str) -> list[str]:
    """Shell completion for --format, also after a comma (onnx,tor<TAB>)."""
    return complete_comma_list(incomplete, FORMAT_NAMES)


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


def _int8_json(report: Int8Report) -> dict[str, Any]:
    return {
        "runtime": report.runtime,
        "method": report.method,
        "calib_images": report.calib_images,
        "max_drop": report.max_drop,
        "map_fp32": round(report.map_fp32, 5),
        "map50_fp32": round(report.map50_fp32, 5),
        "map_int8": round(report.map_int8, 5),
        "map50_int8": round(report.map50_int8, 5),
        "drop": round(report.drop, 5),
        "latency_ms_fp32": round(report.latency_ms_fp32, 3),
        "latency_ms_int8": round(report.latency_ms_int8, 3),
        "speedup": round(report.speedup, 3),
    }


def _int8_top_level(result: ExportResult) -> dict[str, Any]:
    """The INT8 figures at the top of --json, from the first INT8 file (each file has its own too)."""
    if not result.int8:
        return {}
    first = _int8_json(result.int8[0])
    return {key: first[key] for key in ("map_fp32", "map_int8", "latency_ms_fp32", "latency_ms_int8")}


def _render(result: ExportResult, json_output: bool) -> None:
    print_notes(result.notes)
    if json_output:
        print_json(
            {
                **_int8_top_level(result),
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
                        **({"int8": _int8_json(f.int8)} if f.int8 is not None else {}),
                    }
                    for f in result.files
                ],
            }
        )
        return
    console = stdout_console()
    files = Table(
        title=Text(
            f"Exported from {result.weights} ({result.weights_bytes / MEGABYTE:.1f} MB, {result.params:,} params)"
        ),
        title_justify="left",
    )
    for column, justify in (("format", "left"), ("file", "left"), ("MB", "right"), ("seconds", "right")):
        files.add_column(column, justify=justify)  # type: ignore[arg-type]
    for exported in result.files:
        files.add_row(
            exported.format,
            Text(str(exported.path)),
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
                verdict = markup("[red]did not run[/] {}", check.detail)
            else:
                verdict = markup("[green]agrees[/]" if check.agrees else "[yellow]differs[/]")
                if result.half and check.max_rel_diff is not None:
                    verdict.append(f" (relative {check.max_rel_diff:.1e})")
                if check.detail:
                    verdict.append(f" ({check.detail})")
            if not check.required:
                verdict.append(" (informative)", style="dim")
            checks.add_row(
                exported.format,
                check.runtime,
                "x".join(map(str, check.input_shape)),
                f"{check.max_abs_diff:.2e}" if check.max_abs_diff is not None else "-",
                verdict,
            )
    console.print(checks)
    if result.int8:
        _render_int8(result)
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


def _render_int8(result: ExportResult) -> None:
    table = Table(
        title="INT8 accuracy check on the val split (the file is written only within --max-drop)", title_justify="left"
    )
    for column in ("format", "runtime", "calib images", "mAP50-95 fp32", "mAP50-95 INT8", "drop", "ms fp32", "ms INT8"):
        table.add_column(column, justify="left" if column in ("format", "runtime") else "right")
    table.add_column("speed-up", justify="right")
    for report in result.int8:
        table.add_row(
            report.format,
            report.runtime,
            str(report.calib_images),
            f"{report.map_fp32:.4f}",
            f"{report.map_int8:.4f}",
            f"{report.drop:+.4f} (max {report.max_drop})",
            f"{report.latency_ms_fp32:.1f}",
            f"{report.latency_ms_int8:.1f}",
            f"{report.speedup:.2f}x",
        )
    stdout_console().print(table)


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
            help="onnx, openvino, torchscript, pt, or several comma-separated (pt = stripped deployment "
            "checkpoint; openvino = an IR folder, needs the openvino extra).",
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
            "Default: NAME.onnx, NAME_openvino_model/, NAME.torchscript, NAME_deploy.pt (NAME_int8.onnx, "
            "NAME_int8_openvino_model/ with --int8) beside the weights, never overwriting.",
            show_default=False,
        ),
    ] = ExportRequest.output,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace existing files at --output.")
    ] = ExportRequest.overwrite,
    device: Annotated[str, typer.Option("--device", help="Export on cpu, or a GPU: 0.")] = ExportRequest.device,
    names_file: NamesFileOption = ExportRequest.names_file,
    data: DataOption = ExportRequest.data,
    int8: Annotated[
        bool,
        typer.Option(
            "--int8",
            help="Post-training INT8 of the onnx / openvino file, calibrated on --data's training images and "
            "written only if its mAP50-95 on the val split stays within --max-drop of fp32.",
        ),
    ] = ExportRequest.int8,
    calib_images: Annotated[
        int, typer.Option("--calib-images", min=1, help="Training images to calibrate INT8 ranges on.")
    ] = ExportRequest.calib_images,
    max_drop: Annotated[
        float,
        typer.Option("--max-drop", min=0.0, help="Largest mAP50-95 loss (absolute) an INT8 file may have."),
    ] = ExportRequest.max_drop,
    json_output: JsonOption = False,
    trust_pickle: TrustPickleOption = ExportRequest.trust_pickle,
) -> None:
    """Export to ONNX / OpenVINO / TorchScript / a stripped .pt, verified on their runtimes; --int8 quantizes
    and keeps the file only if its mAP held."""
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
        int8=int8,
        calib_images=calib_images,
        max_drop=max_drop,
    )
    _render(export(request, reporter=RichReporter()), json_output)
