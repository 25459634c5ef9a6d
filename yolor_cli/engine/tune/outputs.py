"""What a ``yolor tune`` run folder holds besides its trials: best_hyp.yaml (a file ``yolor train --hyp``
takes as it is), trials.csv, and Optuna's history and importance plots (matplotlib, the ``plots`` extra)."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from yolor_cli.engine.errors import MissingDependencyError, first_line
from yolor_cli.engine.evaluate.plots import PLOT_DPI, require_matplotlib
from yolor_cli.engine.files import atomic_write
from yolor_cli.engine.tune.trial import EPOCHS_ATTR, ERROR_ATTR, RUN_DIR_ATTR, write_hyp

BEST_HYP = "best_hyp.yaml"
TRIALS_CSV = "trials.csv"
HISTORY_PNG = "history.png"
IMPORTANCE_PNG = "importance.png"
STATE_NAMES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running"}


def state_name(trial: Any) -> str:
    return STATE_NAMES.get(trial.state.name, trial.state.name.lower())


def write_best_hyp(
    path: Path, hyp: Mapping[str, float], *, study: str, trial: int, metric: str, value: float, optimizer: str
) -> None:
    header = (
        f"# yolor tune: the best trial ({trial}) of the study {study}, {metric} {value:.4g}.\n"
        f"# Train with it: yolor train --hyp best_hyp.yaml --optimizer {optimizer}\n"
    )
    write_hyp(path, hyp, header)


def write_trials_csv(path: Path, trials: Sequence[Any], param_names: Sequence[str]) -> None:
    """One row per trial (waiting ones left out): number, state, value, epochs, seconds, the params."""
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(["number", "state", "value", "epochs_run", "seconds", *param_names, "run_dir", "error"])
    for trial in trials:
        if trial.state.name == "WAITING":
            continue
        seconds = trial.duration.total_seconds() if trial.duration is not None else ""
        writer.writerow(
            [
                trial.number,
                state_name(trial),
                "" if trial.value is None else trial.value,
                trial.user_attrs.get(EPOCHS_ATTR, ""),
                "" if seconds == "" else f"{seconds:.1f}",
                *(trial.params.get(name, "") for name in param_names),
                trial.user_attrs.get(RUN_DIR_ATTR, ""),
                trial.user_attrs.get(ERROR_ATTR, ""),
            ]
        )
    payload = stream.getvalue().encode()
    atomic_write(path, lambda out: out.write(payload))


def write_plots(optuna: Any, study: Any, folder: Path) -> tuple[list[Path], list[str]]:
    """history.png and importance.png from Optuna's matplotlib plots; the files written, and notes for
    those that could not be (no matplotlib, too few trials for importances)."""
    try:
        plt = require_matplotlib()
    except MissingDependencyError:
        return [], ["history.png and importance.png need matplotlib: pip install 'yolor-cli[plots]'"]
    from optuna.visualization import matplotlib as plots

    written, notes = [], []
    for name, plot in ((HISTORY_PNG, plots.plot_optimization_history), (IMPORTANCE_PNG, plots.plot_param_importances)):
        try:
            axes = plot(study)
        except Exception as error:  # Optuna refuses a plot it has too few trials for, in its own words
            notes.append(f"{name} not drawn: {first_line(error)}")
            continue
        figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
        try:
            figure.tight_layout()
            atomic_write(folder / name, lambda out, figure=figure: figure.savefig(out, format="png", dpi=PLOT_DPI))
            written.append(folder / name)
        finally:
            plt.close(figure)
    return written, notes
