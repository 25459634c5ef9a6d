"""``yolor prune conv|layers|global``: structural channel pruning that writes an ordinary checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table
from rich.text import Text

from yolor_cli.commands.eval import render_changes
from yolor_cli.console import RichReporter, markup, print_json, print_notes, stdout_console
from yolor_cli.engine.prune.request import (
    AutoPruneRequest,
    ConvTargets,
    GlobalTarget,
    LayerSpan,
    PruneRequest,
    SensitivityRequest,
)
from yolor_cli.options import JsonOption, request_command

if TYPE_CHECKING:
    from yolor_cli.engine.prune.auto import AutoPruneResult
    from yolor_cli.engine.prune.final_table import FinalTable
    from yolor_cli.engine.prune.run import PruneResult
    from yolor_cli.engine.prune.sensitivity import SensitivityResult

app = typer.Typer(
    help="Prune channels of a trained model (the result is an ordinary checkpoint).", no_args_is_help=True
)


def _cost_keys(before: Any, after: Any) -> dict[str, Any]:
    """The JSON keys every prune command shares: params, MACs and latency before and after."""
    return {
        "params_before": before.params,
        "params_after": after.params,
        "macs_before": before.macs,
        "macs_after": after.macs,
        "latency_ms_before": before.latency_ms,
        "latency_ms_after": after.latency_ms,
    }


def _render(result: PruneResult, json_output: bool) -> None:
    before, after = result.before, result.after
    print_notes(result.notes)
    if json_output:
        print_json(
            {
                **_cost_keys(before, after),
                "img_size": result.img_size,
                "output": str(result.output) if result.output else None,
                "layers": [
                    {"module": c.module, "before": c.before, "after": c.after, "collapsed": c.collapsed}
                    for c in result.changes
                ],
            }
        )
        return
    console = stdout_console()
    console.print(markup("[b]Pruned layers[/] (their coupled layers follow them)"))
    layers = Table()
    for column in ("module", "channels before", "after", ""):
        layers.add_column(column, justify="right")
    for change in result.changes:
        layers.add_row(
            str(change.module),
            str(change.before),
            str(change.after),
            markup("[red]collapsed[/]") if change.collapsed else "",
        )
    console.print(layers)
    console.print(markup("[b]Model at {} px[/]", result.img_size))
    totals = Table()
    for column in ("", "before", "after", "after/before"):
        totals.add_column(column, justify="right")

    def row(name: str, a: float | None, b: float | None, fmt: str) -> None:
        ratio = f"{b / a:.3f}" if a and b is not None else "-"
        totals.add_row(name, format(a, fmt) if a is not None else "-", format(b, fmt) if b is not None else "-", ratio)

    row("Params", before.params, after.params, ",")
    row("GFLOPs", before.macs * 2 / 1e9, after.macs * 2 / 1e9, ".3f")
    row("Latency ms (CPU, fused, batch 1)", before.latency_ms, after.latency_ms, ".1f")
    console.print(totals)
    console.print(f"Params {before.params:,} => {after.params:,}")
    console.print(markup("Wrote [b]{}[/]", result.output) if result.output else "Dry run: nothing written.")


def _run(request: PruneRequest, json_output: bool) -> None:
    from yolor_cli.engine.prune.run import prune

    _render(prune(request, reporter=RichReporter()), json_output)


@app.command("conv")
@request_command(PruneRequest, parts={"target": ConvTargets})
def conv_command(request: PruneRequest, json_output: JsonOption = False) -> None:
    """Prune the output channels of the given convs, with every coupled layer."""
    _run(request, json_output)


@app.command("layers")
@request_command(PruneRequest, parts={"target": LayerSpan})
def layers_command(request: PruneRequest, json_output: JsonOption = False) -> None:
    """Prune every conv of modules FROM..UPTO in module order (heads stay whole)."""
    _run(request, json_output)


@app.command("global")
@request_command(PruneRequest, parts={"target": GlobalTarget})
def global_command(request: PruneRequest, json_output: JsonOption = False) -> None:
    """Prune channels ranked across the whole model (heads stay whole) to a MACs target or ratio."""
    _run(request, json_output)


def _figure(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _render_auto(result: AutoPruneResult, json_output: bool, report: Path | None = None) -> None:
    """The steps and the final table, or ``--json``: the keys every prune command has (``latency_ms_before``
    and ``latency_ms_after`` stay PyTorch's), and ``latency_ms_runtimes`` ``{"before": {runtime: ms},
    "after": {runtime: ms}}`` for every runtime the final table timed, and ``final_table`` (one object per
    row: model, params, gflops, latency_ms ``{runtime: ms}``, map50, map)."""
    before, after = result.input, result.final
    print_notes(result.notes)
    if json_output:
        print_json(
            {
                **_cost_keys(before, after),
                "map_before": before.map,
                "map_after": after.map,
                "map50_before": before.map50,
                "map50_after": after.map50,
                "steps": result.rows(),
                "schedule": result.schedule,
                "epochs": result.epochs,
                "latency_ms_runtimes": result.latency_runtimes(),
                "final_table": [row.payload() for row in result.table.rows] if result.table else [],
                "output": str(result.output),
                "report": str(report) if report else None,
                "largest_changes": [change.payload() for change in result.changes],
            }
        )
        return
    console = stdout_console()
    console.print(markup("[b]Steps[/] (mAP on the val split; figures also in {})", result.run_dir / "steps.csv"))
    table = Table()
    for column in ("step", "Params", "GFLOPs", "latency ms", "pruned mAP50", "mAP50-95", "tuned mAP50", "mAP50-95"):
        table.add_column(column, justify="right")
    for record, label in [(r, str(r.step)) for r in (before, *result.steps)] + [(after, f"final ({after.step})")]:
        table.add_row(
            label,
            f"{record.params:,}",
            f"{record.gflops:.3f}",
            f"{record.latency_ms:.1f}",
            *(_figure(v, ".4f") for v in (record.map50_pruned, record.map_pruned, record.map50, record.map)),
        )
    console.print(table)
    console.print(
        f"Params {before.params:,} => {after.params:,}, GFLOPs {before.gflops:.3f} => {after.gflops:.3f}, "
        f"latency {before.latency_ms:.1f} => {after.latency_ms:.1f} ms, "
        f"mAP50-95 {_figure(before.map, '.4f')} => {_figure(after.map, '.4f')}"
    )
    if result.table is not None:
        _render_final_table(result.table, result)
    render_changes(result.changes, "Images pruning changed most, input against pruned")
    console.print(markup("Pruned model: [b]{}[/]", result.output))
    if report is not None:
        console.print(markup("Report: [b]{}[/]", report))


def _render_final_table(table: FinalTable, result: AutoPruneResult) -> None:
    from yolor_cli.engine.prune.auto import REFERENCE_NAME
    from yolor_cli.engine.prune.final_table import INT8_NAME, INT8_ROW, REFERENCE_ROW

    console = stdout_console()
    console.print(
        markup(
            "[b]Final table[/] (latency: CPU, batch 1, each model exported as it deploys, on openvino-int8 "
            "quantized as the pruned + INT8 row is; mAP on the val split)"
        )
    )
    rendered = Table()
    for column in ("model", "Params", "GFLOPs", *(f"{runtime} ms" for runtime in table.runtimes), "mAP50", "mAP50-95"):
        rendered.add_column(column, justify="left" if column == "model" else "right")
    for row in table.rows:
        rendered.add_row(
            row.model,
            f"{row.params:,}",
            f"{row.gflops:.3f}",
            *(_figure(row.latency_ms.get(runtime), ".2f") for runtime in table.runtimes),
            f"{row.map50:.4f}",
            f"{row.map:.4f}",
        )
    console.print(rendered)
    if table.row(REFERENCE_ROW) is not None:
        console.print(
            markup(
                "reference: the input trained {} epochs as the run did, without distillation, in [b]{}[/]",
                result.epochs,
                result.run_dir / REFERENCE_NAME,
            )
        )
    if table.row(INT8_ROW) is not None:
        console.print(markup("pruned + INT8 (OpenVINO, NNCF): [b]{}[/]", result.run_dir / INT8_NAME))


@app.command("auto")
@request_command(AutoPruneRequest)
def auto_command(request: AutoPruneRequest, json_output: JsonOption = False) -> None:
    """Prune in steps to a target, fine-tuning after each, within --max-drop; writes steps.csv and pruned.pt,
    and ends with a table of the input, the pruned model and the pruned model in INT8 on each runtime."""
    from yolor_cli.engine.prune.auto import auto_prune
    from yolor_cli.engine.report.run import report_at_end

    reporter = RichReporter()
    result = auto_prune(request, reporter=reporter)
    if result.is_main:  # under torchrun, rank 0 alone writes the report and renders
        report = report_at_end(result.run_dir, enabled=request.report, device=request.device, reporter=reporter)
        _render_auto(result, json_output, report)


def _render_sensitivity(result: SensitivityResult) -> None:
    scan = result.scan
    console = stdout_console()
    base_gmacs = scan.base_macs / 1e9
    console.print(
        markup(
            "[b]Unpruned[/] {}",
            f"at {result.img_size} px on {result.images} val images: mAP50 {scan.base_map50:.3f}, "
            f"mAP50-95 {scan.base_map:.3f}, {base_gmacs:.3f} GMACs, {scan.base_params:,} params",
        )
    )
    table = Table(
        title=f"Each {result.unit} pruned alone ({result.method}), cheapest first: mAP50-95 lost per GMAC saved",
        title_justify="left",
    )
    for column in ("rank", result.unit, "amount", "mAP50", "mAP50-95", "mAP50-95 drop", "GMACs saved", "params saved"):
        table.add_column(column, justify="left" if column == result.unit else "right")
    table.add_column("drop / GMAC", justify="right")
    for rank, trial in enumerate(scan.ranked(), 1):
        saved = trial.macs_saved / 1e9
        table.add_row(
            str(rank),
            Text(trial.unit.name),
            "removed" if trial.unit.kind == "block" else f"{trial.amount:g}",
            f"{trial.map50:.3f}",
            f"{trial.map:.3f}",
            f"{trial.map_drop:+.3f}",
            f"{saved:.3f} ({saved / base_gmacs:.1%})",
            f"{trial.params_saved:,}",
            f"{trial.cost:.3f}",
        )
    console.print(table)
    console.print(
        markup(
            "Safest to prune: [b]{}[/] (least mAP50-95 lost per GMAC saved over their amounts)",
            ", ".join(scan.safest()),
        )
    )
    console.print(
        markup(
            "{} Wrote [b]{}[/] ({})",
            f"{len(scan.trials)} trials in {result.seconds:.1f} s.",
            result.output,
            ", ".join(f.name for f in result.files),
        )
    )


@app.command("sensitivity")
@request_command(SensitivityRequest)
def sensitivity_command(request: SensitivityRequest, json_output: JsonOption = False) -> None:
    """Prune each conv (or stage) alone at each amount, or remove each residual block, without fine-tuning,
    and rank what it costs."""
    from yolor_cli.engine.prune.sensitivity import run_sensitivity

    result = run_sensitivity(request, RichReporter())
    print_notes(result.notes)
    if json_output:
        print_json(result.payload())
        return
    _render_sensitivity(result)
