"""``yolor prune conv|layers|global``: structural channel pruning that writes an ordinary checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from yolor_cli.console import RichReporter, markup, print_json, print_notes, stdout_console
from yolor_cli.engine.prune.request import (
    AUTO_DEFAULT_PROJECT,
    DEFAULT_AMOUNT,
    DEFAULT_SENSITIVITY_AMOUNTS,
    AutoPruneRequest,
    ConvTargets,
    GlobalTarget,
    LayerSpan,
    PruneRequest,
    SensitivityRequest,
    parse_amounts,
)
from yolor_cli.options import (
    CfgOption,
    DataOption,
    DeviceOption,
    ExistOkOption,
    JsonOption,
    NameOption,
    ProjectOption,
    TrustPickleOption,
)

if TYPE_CHECKING:
    from yolor_cli.engine.prune.auto import AutoPruneResult
    from yolor_cli.engine.prune.run import PruneResult
    from yolor_cli.engine.prune.sensitivity import SensitivityResult

app = typer.Typer(
    help="Prune channels of a trained model (the result is an ordinary checkpoint).", no_args_is_help=True
)

RequiredWeights = Annotated[
    Path, typer.Option("--weights", "-w", help="Checkpoint to prune (ours, or official with --cfg).", dir_okay=False)
]
AmountOption = Annotated[
    float,
    typer.Option("--amount", help="Fraction of each conv's output channels to remove (int(amount x channels) go)."),
]
MethodOption = Annotated[
    str, typer.Option("--method", help="Channel importance: l1, l2, random, or bn (BatchNorm scales).")
]
OutputOption = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "-o",
        help="Where to write (default: NAME_pruned.pt beside the input, never overwriting).",
        dir_okay=False,
        show_default=False,
    ),
]
PruneImgSizeOption = Annotated[int, typer.Option("--img-size", min=32, help="Input size for GFLOPs and latency.")]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Show what would be pruned; write nothing.")]
LatencyOption = Annotated[
    bool, typer.Option("--latency/--no-latency", help="Measure CPU latency before and after (a few seconds).")
]
OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace an existing --output file.")]


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

    _render(prune(request), json_output)


@app.command("conv")
def conv_command(
    weights: RequiredWeights,
    layer: Annotated[
        list[int], typer.Option("--layer", help="Module index of a conv to prune (repeatable; see yolor info).")
    ],
    cfg: CfgOption = None,
    amount: AmountOption = DEFAULT_AMOUNT,
    method: MethodOption = PruneRequest.method,
    output: OutputOption = None,
    overwrite: OverwriteOption = False,
    img_size: PruneImgSizeOption = PruneRequest.img_size,
    dry_run: DryRunOption = False,
    latency: LatencyOption = PruneRequest.latency,
    json_output: JsonOption = False,
    trust_pickle: TrustPickleOption = False,
) -> None:
    """Prune the output channels of the given convs, with every coupled layer."""
    target = ConvTargets(layers=tuple(layer), amount=amount)
    _run(
        PruneRequest(
            weights=weights,
            target=target,
            cfg=cfg,
            method=method,
            img_size=img_size,
            output=output,
            overwrite=overwrite,
            dry_run=dry_run,
            latency=latency,
            trust_pickle=trust_pickle,
        ),
        json_output,
    )


@app.command("layers")
def layers_command(
    weights: RequiredWeights,
    upto: Annotated[int, typer.Option("--upto", min=0, help="Last module index to prune (inclusive).")],
    start: Annotated[int, typer.Option("--from", min=0, help="First module index to prune.")] = LayerSpan.start,
    cfg: CfgOption = None,
    amount: AmountOption = DEFAULT_AMOUNT,
    method: MethodOption = PruneRequest.method,
    output: OutputOption = None,
    overwrite: OverwriteOption = False,
    img_size: PruneImgSizeOption = PruneRequest.img_size,
    dry_run: DryRunOption = False,
    latency: LatencyOption = PruneRequest.latency,
    json_output: JsonOption = False,
    trust_pickle: TrustPickleOption = False,
) -> None:
    """Prune every conv of modules FROM..UPTO in module order (heads stay whole)."""
    target = LayerSpan(upto=upto, start=start, amount=amount)
    _run(
        PruneRequest(
            weights=weights,
            target=target,
            cfg=cfg,
            method=method,
            img_size=img_size,
            output=output,
            overwrite=overwrite,
            dry_run=dry_run,
            latency=latency,
            trust_pickle=trust_pickle,
        ),
        json_output,
    )


@app.command("global")
def global_command(
    weights: RequiredWeights,
    target_macs: Annotated[
        float | None,
        typer.Option(
            "--target-macs",
            help="Prune until the MACs are this fraction of the original (e.g. 0.5).",
            show_default=False,
        ),
    ] = None,
    ratio: Annotated[
        float | None,
        typer.Option(
            "--ratio",
            help="Or: remove this fraction of the channels, ranked across the whole model.",
            show_default=False,
        ),
    ] = None,
    cfg: CfgOption = None,
    method: MethodOption = PruneRequest.method,
    output: OutputOption = None,
    overwrite: OverwriteOption = False,
    img_size: PruneImgSizeOption = PruneRequest.img_size,
    dry_run: DryRunOption = False,
    latency: LatencyOption = PruneRequest.latency,
    json_output: JsonOption = False,
    trust_pickle: TrustPickleOption = False,
) -> None:
    """Prune channels ranked across the whole model (heads stay whole) to a MACs target or ratio."""
    target = GlobalTarget(target_macs=target_macs, ratio=ratio)
    _run(
        PruneRequest(
            weights=weights,
            target=target,
            cfg=cfg,
            method=method,
            img_size=img_size,
            output=output,
            overwrite=overwrite,
            dry_run=dry_run,
            latency=latency,
            trust_pickle=trust_pickle,
        ),
        json_output,
    )


def _figure(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _render_auto(result: AutoPruneResult, json_output: bool) -> None:
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
                "output": str(result.output),
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
    console.print(markup("Pruned model: [b]{}[/]", result.output))


@app.command("auto")
def auto_command(
    weights: Annotated[
        Path | None,
        typer.Option(
            "--weights",
            "-w",
            help="Checkpoint to prune (ours, or official with --cfg); not needed with --resume.",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    data: DataOption = None,
    target_macs: Annotated[
        float | None,
        typer.Option("--target-macs", help="End at this fraction of the input's MACs (e.g. 0.5).", show_default=False),
    ] = None,
    target_latency_ms: Annotated[
        float | None,
        typer.Option(
            "--target-latency-ms",
            help="Or: aim at this CPU latency (fused, batch 1), taken as proportional to the MACs.",
            show_default=False,
        ),
    ] = None,
    max_drop: Annotated[
        float, typer.Option("--max-drop", help="Largest allowed fall of mAP50-95 against the input (absolute).")
    ] = AutoPruneRequest.max_drop,
    steps: Annotated[int, typer.Option("--steps", help="Cuts to reach the target, each fine-tuned.")] = (
        AutoPruneRequest.steps
    ),
    epochs_per_step: Annotated[
        int, typer.Option("--epochs-per-step", help="Fine-tuning epochs after each cut.")
    ] = AutoPruneRequest.epochs_per_step,
    final_epochs: Annotated[
        int, typer.Option("--final-epochs", help="Fine-tuning epochs of the kept model at the end.")
    ] = AutoPruneRequest.final_epochs,
    allocate: Annotated[
        str,
        typer.Option(
            "--allocate",
            help="global (channels ranked across the model) or sensitivity (per-layer amounts from a scan).",
        ),
    ] = AutoPruneRequest.allocate,
    method: Annotated[
        str, typer.Option("--method", help="Channel importance: l1, l2 or bn (BatchNorm scales).")
    ] = AutoPruneRequest.method,
    distill: Annotated[
        bool, typer.Option("--distill/--no-distill", help="Fine-tune with the input model as the teacher.")
    ] = AutoPruneRequest.distill,
    img_size: Annotated[
        int, typer.Option("--img-size", min=32, help="Size to train, validate and measure GFLOPs and latency at.")
    ] = AutoPruneRequest.img_size,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Fine-tuning batch size.")] = (
        AutoPruneRequest.batch_size
    ),
    device: DeviceOption = AutoPruneRequest.device,
    workers: Annotated[int, typer.Option("--workers")] = AutoPruneRequest.workers,
    project: ProjectOption = AUTO_DEFAULT_PROJECT,
    name: NameOption = AutoPruneRequest.name,
    exist_ok: ExistOkOption = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the run in --project/--name (the folder as on disk, e.g. --name exp2) where it "
            "stopped, with its own options.",
        ),
    ] = False,
    cfg: CfgOption = None,
    trust_pickle: TrustPickleOption = False,
    seed: Annotated[int, typer.Option("--seed")] = AutoPruneRequest.seed,
    json_output: JsonOption = False,
) -> None:
    """Prune in steps to a target, fine-tuning after each, within --max-drop; writes steps.csv and pruned.pt."""
    from yolor_cli.engine.prune.auto import auto_prune

    request = AutoPruneRequest(
        weights=weights,
        data=data,
        target_macs=target_macs,
        target_latency_ms=target_latency_ms,
        max_drop=max_drop,
        steps=steps,
        epochs_per_step=epochs_per_step,
        final_epochs=final_epochs,
        allocate=allocate,
        method=method,
        distill=distill,
        img_size=img_size,
        batch_size=batch_size,
        device=device,
        workers=workers,
        project=project,
        name=name,
        exist_ok=exist_ok,
        resume=resume,
        cfg=cfg,
        trust_pickle=trust_pickle,
        seed=seed,
    )
    _render_auto(auto_prune(request, reporter=RichReporter()), json_output)


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
            f"{trial.amount:g}",
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
def sensitivity_command(
    weights: RequiredWeights,
    data: Annotated[Path, typer.Option("--data", help="data.yaml whose val split scores the trials.", dir_okay=False)],
    amounts: Annotated[
        str,
        typer.Option("--amounts", help="Comma-separated fractions of each conv's channels to remove, one trial each."),
    ] = ",".join(f"{a:g}" for a in DEFAULT_SENSITIVITY_AMOUNTS),
    unit: Annotated[
        str,
        typer.Option(
            "--unit",
            help="What is pruned alone: conv (one conv with its coupled convs) or stage (the convs between "
            "two route/shortcut joins).",
        ),
    ] = SensitivityRequest.unit,
    cfg: CfgOption = None,
    method: Annotated[
        str, typer.Option("--method", help="Channel importance: l1, l2, or bn (BatchNorm scales).")
    ] = SensitivityRequest.method,
    img_size: Annotated[
        int, typer.Option("--img-size", min=32, help="Evaluation size (also the size MACs are counted at).")
    ] = SensitivityRequest.img_size,
    max_images: Annotated[
        int | None,
        typer.Option(
            "--max-images",
            min=1,
            help="Score on this many val images, spread over the split (default: all; all are held in memory).",
            show_default=False,
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = SensitivityRequest.batch_size,
    device: DeviceOption = SensitivityRequest.device,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Folder for sensitivity.csv/.json/.png (default: NAME_sensitivity/ beside the weights). "
            "It must be new, empty, or hold only an earlier scan's files.",
            file_okay=False,
            show_default=False,
        ),
    ] = None,
    json_output: JsonOption = False,
    trust_pickle: TrustPickleOption = False,
) -> None:
    """Prune each conv (or stage) alone at each amount, without fine-tuning, and rank what it costs."""
    from yolor_cli.engine.prune.sensitivity import run_sensitivity

    request = SensitivityRequest(
        weights=weights,
        data=data,
        cfg=cfg,
        amounts=parse_amounts(amounts),
        unit=unit,
        method=method,
        img_size=img_size,
        max_images=max_images,
        batch_size=batch_size,
        device=device,
        output=output,
        trust_pickle=trust_pickle,
    )
    result = run_sensitivity(request, RichReporter())
    print_notes(result.notes)
    if json_output:
        print_json(result.payload())
        return
    _render_sensitivity(result)
