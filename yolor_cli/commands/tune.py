"""``yolor tune``: search hyperparameters with Optuna, each trial a normal training; writes runs/tune/exp*."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from rich.live import Live
from rich.table import Table
from rich.text import Text

from yolor_cli.console import RichReporter, _is_terminal, markup, print_json, print_notes, stdout_console
from yolor_cli.engine.tune.request import TuneRequest
from yolor_cli.options import JsonOption, request_command

TRIALS_TITLE = "Trials"  # engine/tune/run.py's title for the trials table (not imported: that loads torch)
RUNNING = "running"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> Table:
    table = Table(title=TRIALS_TITLE, header_style="bold", title_justify="left")
    for index, header in enumerate(headers):
        table.add_column(Text(header), justify="left" if index < 2 else "right")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return table


class TuneReporter(RichReporter):
    """The trials table live on a terminal (redrawn as trials start, validate and end); in a log, one
    line per trial as it ends. Everything else as ``yolor train`` shows it."""

    def __init__(self) -> None:
        super().__init__()
        self.live: Live | None = None
        self.logged: set[str] = set()
        self.is_live = _is_terminal(sys.stderr)

    def table(self, title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        if title != TRIALS_TITLE:
            super().table(title, headers, rows)
            return
        if self.is_live:
            if self.live is None:
                self.live = Live(console=self.console, auto_refresh=False)
                self.live.start()
            self.live.update(_table(headers, rows), refresh=True)
            return
        for row in rows:
            if row[1] != RUNNING and row[0] not in self.logged:
                self.logged.add(row[0])
                details = "  ".join(f"{h.lower()} {c}" for h, c in zip(headers[2:], row[2:]) if c)
                self.console.print(f"trial {row[0]} {row[1]}: {details}")

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


@request_command(TuneRequest)
def tune_command(request: TuneRequest, json_output: JsonOption = False) -> None:
    """Tune hyperparameters: an Optuna study of short trainings (pruned when hopeless) whose best hyp
    trains with `yolor train --hyp runs/tune/exp/best_hyp.yaml`."""
    from yolor_cli.engine.tune.run import tune

    reporter = TuneReporter()
    try:
        result = tune(request, reporter=reporter)
    finally:
        reporter.close()
    print_notes(result.notes)
    if json_output:
        print_json(result.json())
        return
    console = stdout_console()
    table = Table(header_style="bold")
    table.add_column("Study")
    for header in ("Best", "Trial", "Complete", "Pruned", "Failed", "Epochs"):
        table.add_column(header, justify="right")
    best = "" if result.best_value is None else f"{result.best_value:.4g}"
    table.add_row(
        Text(result.study),
        best,
        "" if result.best_trial is None else str(result.best_trial),
        str(result.trials_complete),
        str(result.trials_pruned),
        str(result.trials_failed),
        str(result.epochs_run),
    )
    console.print(table)
    console.print(markup("Storage [b]{}[/]\nResults in [b]{}[/]", result.storage, result.save_dir))
    if result.best_weights is not None:
        console.print(markup("Best trial's weights: {}", result.best_weights))
    if result.command:
        console.print(markup("Train with the best hyperparameters:\n  [b]{}[/]", result.command))
