"""What ``yolor tune`` is asked to do: each option declared once (see engine/options.py).

Only the standard library at import: the command line builds its options from these fields without
loading torch or Optuna.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.options import (
    REQUIRED,
    Request,
    batch_option,
    cfg_option,
    data_option,
    device_option,
    img_size_option,
    name_option,
    option,
    project_option,
    seed_option,
    weights_option,
    workers_option,
)
from yolor_cli.engine.tracking.options import mlflow_experiment_option, mlflow_log_weights_option, mlflow_option
from yolor_cli.engine.train.request import MAX_EPOCHS

MAX_TRIALS = 100_000  # far above any budget; bounds a typo before a study is made
MAX_TIMEOUT_MINUTES = 60 * 24 * 365  # a year: anything longer is a typo
METRICS = ("map", "map50", "fitness")  # mAP@.5:.95, mAP@.5, YOLOR's fitness (0.1 mAP@.5 + 0.9 mAP@.5:.95)
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "hyperband", "none")


def _check_timeout(minutes: float) -> None:
    if minutes <= 0:
        raise YolorError(f"--timeout {minutes:g} is not above 0 minutes", hint="e.g. --timeout 120 for two hours")


def _check_device(device: str) -> None:
    if "," in device:
        raise YolorError(
            f"--device {device}: a trial trains in one process on one device",
            hint="start one yolor tune per GPU (--device 0, --device 1, ...) with the same --storage and --study",
        )


@dataclass(frozen=True)
class TuneRequest(Request):
    """One ``yolor tune``: a study of ``trials`` trainings of ``epochs`` epochs each (the study's total:
    processes sharing a study share it), every trial the normal trainer with the trial's hyp."""

    data: Path = data_option(REQUIRED, help="data.yaml (as written by `yolor dataset prepare`) to tune on.")
    cfg: str | None = cfg_option()
    weights: Path | None = weights_option(
        None, help="Start every trial from these weights (ours, or official ones with --cfg)."
    )
    hyp: str | None = option(
        None,
        "--hyp",
        help="Base hyperparameters: the values of the keys not searched (default scratch.640); "
        "tried first when inside the space.",
    )
    trials: int = option(
        30,
        "--trials",
        help="Finished trials (complete or pruned) the study is to hold, over every process on it; "
        "failed trials are replaced.",
        min=1,
        max=MAX_TRIALS,
    )
    epochs: int = option(10, "--epochs", help="Epochs per trial.", min=1, max=MAX_EPOCHS)
    img_size: int = img_size_option(320)
    batch_size: int = batch_option(16)
    space: Path | None = option(
        None,
        "--space",
        help="YAML that narrows or fixes keys: key: number (fixed), key: [low, high], optimizer: [sgd, adam]; "
        "others: fixed searches only the keys listed.",
        path_kind="file",
    )
    metric: str = option(
        "map",
        "--metric",
        help="What a trial maximises: map (mAP@.5:.95), map50, or fitness (0.1 mAP@.5 + 0.9 mAP@.5:.95).",
        choices=METRICS,
    )
    sampler: str = option("tpe", "--sampler", help="How trials choose their values.", choices=SAMPLERS)
    pruner: str = option(
        "median", "--pruner", help="How hopeless trials are stopped after a validated epoch.", choices=PRUNERS
    )
    storage: str | None = option(
        None,
        "--storage",
        help="SQLAlchemy URL of the study database (e.g. postgresql://user@host/db); default: a SQLite "
        "file in the run folder. Processes with the same --storage and --study share one study.",
    )
    study: str | None = option(None, "--study", help="Study name (default: --name).")
    timeout: float | None = option(
        None,
        "--timeout",
        help="Start no trial after this many minutes (a running one finishes).",
        min=0.0,
        max=MAX_TIMEOUT_MINUTES,
        check=_check_timeout,
    )
    device: str = device_option(help="'' = GPU 0 if available else CPU; cpu; 0 (one device per process).")
    workers: int = workers_option(8)
    project: Path = project_option(Path("runs/tune"))
    name: str = name_option()
    resume: bool = option(
        False,
        "--resume",
        help="Continue the study of the newest run under --project (or of --name), up to --trials.",
    )
    seed: int = seed_option(help="Seed of the sampler (each trial draws from it and its number) and of training.")
    # One MLflow run per command, each trial a run nested in it; --mlflow-log-weights copies the best
    # trial's best.pt only (a trial's own run gets its files, not its weights).
    mlflow: bool = mlflow_option()
    mlflow_experiment: str | None = mlflow_experiment_option()
    mlflow_log_weights: bool = mlflow_log_weights_option()

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_device(self.device)

    @property
    def study_name(self) -> str:
        return self.study or self.name
