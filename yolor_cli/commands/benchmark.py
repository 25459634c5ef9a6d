"""``yolor benchmark``: size, mAP and latency of every deployment format of one model, in one table."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table
from rich.text import Text

from yolor_cli.console import RichReporter, markup, print_error, print_json, stdout_console
from yolor_cli.engine.deploy.request import BenchmarkRequest
from yolor_cli.options import JsonOption, request_command

if TYPE_CHECKING:
    from yolor_cli.engine.deploy.benchmark import BenchmarkResult, BenchmarkRow

MEGABYTE = 1024 * 1024
FAILED_MARK = "✗"


def _row_json(row: BenchmarkRow) -> dict[str, Any]:
    return {
        "format": row.format,
        "ok": row.ok,
        "precision": row.precision,
        "size_bytes": row.size_bytes,
        "map": row.map,
        "map50": row.map50,
        "latency_ms": row.latency_ms,
        "fps": row.fps,
        "speedup": row.speedup,
        "reason": row.reason,
    }


def _number(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def _render(result: BenchmarkResult, json_output: bool, report: Path | None) -> None:
    if json_output:
        print_json(
            {
                "weights": str(result.weights),
                "data": str(result.data),
                "img_size": result.img_size,
                "batch": result.batch,
                "device": result.device,
                "images": result.images,
                "min_map": result.min_map,
                "below_min_map": [row.format for row in result.below_min_map],
                "csv": str(result.csv) if result.csv else None,
                "seconds": round(result.seconds, 1),
                "rows": [_row_json(row) for row in result.rows],
                "report": str(report) if report else None,
            }
        )
        return
    table = Table(
        title=Text(
            f"{result.weights} on {result.images} val images, {result.img_size} px, "
            f"batch {result.batch}, {result.device}"
        ),
        title_justify="left",
    )
    for column in ("format", "precision", "size MB", "mAP50-95", "mAP50", "latency ms", "FPS", "speed-up"):
        table.add_column(column, justify="left" if column in ("format", "precision") else "right")
    for row in result.rows:
        if not row.ok:
            table.add_row(
                row.format, "", "", markup("[red]{}[/]", FAILED_MARK), markup("[red]{}[/]", row.reason), "", "", ""
            )
            continue
        low = row in result.below_min_map
        table.add_row(
            row.format,
            row.precision,
            _number(row.size_bytes / MEGABYTE if row.size_bytes is not None else None, "{:.1f}"),
            markup("[red]{}[/]", f"{row.map:.4f}") if low else _number(row.map, "{:.4f}"),
            _number(row.map50, "{:.4f}"),
            _number(row.latency_ms, "{:.1f}"),
            _number(row.fps, "{:.1f}"),
            _number(row.speedup, "{:.2f}x"),
        )
    console = stdout_console()
    console.print(table)
    console.print(
        f"Median latency after warm-up; speed-up against PyTorch fp32. Written: {result.csv} ({result.seconds:.0f} s)"
    )
    if report is not None:
        console.print(markup("Report: [b]{}[/]", report))


@request_command(BenchmarkRequest)
def benchmark_command(request: BenchmarkRequest, json_output: JsonOption = False) -> None:
    """Make every deployment format of a model, score each on the val split and time it: one table."""
    from yolor_cli.engine.deploy.benchmark import run_benchmark
    from yolor_cli.engine.report.run import report_at_end

    reporter = RichReporter()
    result = run_benchmark(request, reporter=reporter)
    report = None
    if result.csv is not None:
        report = report_at_end(result.csv, enabled=request.report, device=request.device, reporter=reporter)
    _render(result, json_output, report)
    low = result.below_min_map
    if low:
        figures = ", ".join(f"{row.format} {row.map:.4f}" for row in low)
        print_error(f"mAP50-95 below --min-map {result.min_map}: {figures}")
        raise typer.Exit(1)
