"""``yolor export``: ONNX, TorchScript and stripped .pt files, each verified on its runtime."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from yolor_cli.commands.eval import largest_changes, render_changes
from yolor_cli.console import RichReporter, markup, print_json, print_notes, stdout_console
from yolor_cli.engine.deploy.request import ExportRequest
from yolor_cli.options import JsonOption, request_command

if TYPE_CHECKING:
    from yolor_cli.engine.deploy.export import Check, ExportResult
    from yolor_cli.engine.deploy.int8 import Int8Report

MEGABYTE = 1024 * 1024


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
        "largest_changes": [change.payload() for change in largest_changes(report.changes)],
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
    for report in result.int8:
        render_changes(largest_changes(report.changes), f"{report.format} INT8 against fp32, images changed")


@request_command(ExportRequest)
def export_command(request: ExportRequest, json_output: JsonOption = False) -> None:
    """Export to ONNX / OpenVINO / TorchScript / a stripped .pt, verified on their runtimes; --int8 quantizes
    and keeps the file only if its mAP held."""
    from yolor_cli.engine.deploy.export import export

    _render(export(request, reporter=RichReporter()), json_output)
