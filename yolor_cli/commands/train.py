"""``yolor train``: train or fine-tune a YOLOR model; with no --data, on the built-in demo data."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from yolor_cli.console import RichReporter, markup, print_json, print_notes, stdout_console
from yolor_cli.engine.train.request import TrainRequest
from yolor_cli.options import JsonOption, request_command


@request_command(TrainRequest)
def train_command(
    request: TrainRequest,
    pt: Annotated[
        bool, typer.Option("--pt", help="Accepted for users of the old scripts; changes nothing.", metavar="")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Train a detector and write runs/train/exp*: weights/{last,best,...}.pt, results.csv, hyp.yaml, opt.yaml."""
    from yolor_cli.engine.train.run import launch, plan_request, train

    plan = plan_request(request)
    if plan.launch:  # --device 0,1: one process per GPU, started by torchrun
        raise typer.Exit(launch(plan, sys.argv[1:]))
    if plan.options.prune_to is not None:  # --prune-to (or a run resumed with it): prune's hook, lazily imported
        from yolor_cli.engine.prune.gradual import train
    from yolor_cli.engine.report.run import report_at_end

    reporter = RichReporter()
    result = train(plan, reporter=reporter)
    if not result.is_main:
        return
    report = report_at_end(result.save_dir, enabled=request.report, device=request.device, reporter=reporter)
    print_notes(
        result.notes
        + ([f"transferred {result.transferred[0]}/{result.transferred[1]} tensors"] if result.transferred else [])
    )
    if json_output:
        print_json(
            {
                "save_dir": str(result.save_dir),
                "epochs_run": result.epochs_run,
                "best_fitness": result.best_fitness,
                **result.metrics,
                "report": str(report) if report else None,
            }
        )
        return
    console = stdout_console()
    summary = "  ".join(f"{k} {v:.3f}" for k, v in result.metrics.items())
    epochs = f"{result.epochs_run} epoch{'' if result.epochs_run == 1 else 's'}"
    console.print(markup("Trained {}. {}\nResults in [b]{}[/]", epochs, summary, result.save_dir))
    if report is not None:
        console.print(markup("Report: [b]{}[/]", report))
