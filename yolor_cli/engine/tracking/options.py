"""The tracking options of the commands that log to MLflow (train, prune, tune, export, benchmark),
declared once, and what they resolve to. Standard library only: the requests import this.

Tracking is on with ``--mlflow`` or when ``MLFLOW_TRACKING_URI`` is set (MLflow's own variable, so a
team's server set in the environment is used by every command). The default store is a SQLite
database in the current folder's ``runs/`` (:data:`DEFAULT_STORE`), the folder the commands write
their runs under by default, with the runs' files in ``runs/mlartifacts/``; open it with
``mlflow ui --backend-store-uri sqlite:///runs/mlflow.db``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.options import option

URI_VARIABLE = "MLFLOW_TRACKING_URI"  # MLflow's own: a server (http://...) or a database URL
EXPERIMENT_VARIABLE = "MLFLOW_EXPERIMENT_NAME"  # MLflow's own default experiment
# Relative to the current folder, as the commands' default --project folders (runs/train, runs/prune):
# one store for every command, so that train -> prune -> export runs find each other.
DEFAULT_STORE = Path("runs/mlflow.db")
DEFAULT_ARTIFACTS = Path("runs/mlartifacts")  # the default store's run files (MLflow's default is ./mlruns)
MAX_EXPERIMENT_NAME = 500  # far above any folder name; a pasted paragraph is a mistake


def _check_experiment(name: str | None) -> None:
    if name is not None and not name.strip():
        raise YolorError("--mlflow-experiment is empty", hint="give a name, e.g. --mlflow-experiment detector-v2")
    if name is not None and len(name) > MAX_EXPERIMENT_NAME:
        raise YolorError(f"--mlflow-experiment is longer than {MAX_EXPERIMENT_NAME} characters")


def mlflow_option() -> Any:
    return option(
        False,
        "--mlflow",
        help=f"Log this run to MLflow (also on when {URI_VARIABLE} is set); default store: "
        f"sqlite:///{DEFAULT_STORE.as_posix()} (mlflow ui --backend-store-uri sqlite:///{DEFAULT_STORE.as_posix()}).",
    )


def mlflow_experiment_option() -> Any:
    return option(
        None,
        "--mlflow-experiment",
        help=f"MLflow experiment (default: ${EXPERIMENT_VARIABLE}, else the --project folder's name, "
        "else the command's name).",
        check=_check_experiment,
    )


def mlflow_log_weights_option() -> Any:
    return option(False, "--mlflow-log-weights", help="Also copy the run's weights (best.pt, pruned.pt...) to MLflow.")


@dataclass(frozen=True)
class TrackingSettings:
    """Where and how a command's run is logged, resolved once from its options and the environment."""

    uri: str  # MLflow's tracking URI
    experiment: str
    log_weights: bool = False
    explicit: bool = True  # --mlflow given (else only MLFLOW_TRACKING_URI): a missing mlflow is an error
    artifacts: str | None = None  # the default store's artifact folder (file URI); a server decides its own


def default_store_uri(cwd: Path | None = None) -> str:
    return f"sqlite:///{((cwd or Path.cwd()) / DEFAULT_STORE).as_posix()}"


def tracking_settings(
    *, mlflow: bool, experiment: str | None, log_weights: bool, default_experiment: str
) -> TrackingSettings | None:
    """The settings of a command given ``--mlflow``, ``--mlflow-experiment`` and ``--mlflow-log-weights``;
    None when tracking is off. ``default_experiment``: the --project folder's name, or the command's."""
    uri = os.environ.get(URI_VARIABLE, "").strip()
    if not mlflow and not uri:
        if experiment is not None or log_weights:
            flag = "--mlflow-experiment" if experiment is not None else "--mlflow-log-weights"
            raise YolorError(
                f"{flag} needs tracking on", hint=f"add --mlflow (or set {URI_VARIABLE} to a tracking server)"
            )
        return None
    name = experiment or os.environ.get(EXPERIMENT_VARIABLE, "").strip() or default_experiment
    artifacts = None if uri else (Path.cwd() / DEFAULT_ARTIFACTS).as_uri()
    return TrackingSettings(uri or default_store_uri(), name, log_weights, explicit=mlflow, artifacts=artifacts)
