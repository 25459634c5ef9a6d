"""One trial of ``yolor tune``: the normal trainer (same hooks, loss and validation as ``yolor train``)
with the trial's hyp, a hook that reports each validated epoch to Optuna and stops the run cleanly when
the pruner says so, and the disk policy: a trial keeps its results.csv, opt.yaml and hyp.yaml; only the
study's best trial keeps its weights.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from yolor_cli.engine.evaluate.metrics import Metrics
from yolor_cli.engine.files import atomic_write
from yolor_cli.engine.reporting import Reporter
from yolor_cli.engine.tracking.tracker import NO_TRACKING, Tracker
from yolor_cli.engine.train.run import ResumePoint, TrainOptions, plan_training, train
from yolor_cli.engine.train.trainer import Trainer, TrainHook, TrainState
from yolor_cli.engine.tune.study import import_optuna

TRIALS_DIR = "trials"  # the trials' run folders, inside the tune run folder
HYPS_DIR = "hyps"  # the hyp file each trial trains with (the run's --hyp)
RUN_DIR_ATTR = "run_dir"  # a trial's user attribute: its run folder (absolute)
EPOCHS_ATTR = "epochs_run"
ERROR_ATTR = "error"
# The checkpoint names a training run writes (hooks.CheckpointHook's set: best_p, best_ap50, last_009,
# epoch_000...): the only files the disk policy deletes.
CHECKPOINT_NAME = re.compile(r"(last|best)(_(\d+|p|r|ap50|ap|f))?\.pt|epoch_\d+\.pt")
BEST_KEPT = ("best.pt", "last.pt")  # what the study's best trial keeps: its best epoch and its end


def metric_value(metrics: Metrics, metric: str) -> float:
    """What a trial maximises, from a validation: map, map50 or YOLOR's fitness."""
    return float(metrics.fitness if metric == "fitness" else getattr(metrics, metric))


@dataclass
class EpochReport:
    number: int  # the trial's
    epoch: int  # 0-based, the epoch just validated
    epochs: int
    value: float | None


class PruningHook(TrainHook):
    """After each validated epoch: report the metric to the trial (its step is the epoch); when the
    pruner wants the trial stopped, stop the run as ``--patience`` does (its last epoch is saved and
    recorded) and remember it, so the trial is told PRUNED once the run has ended."""

    def __init__(self, trial: Any, metric: str, on_epoch: Callable[[EpochReport], None]) -> None:
        self.trial, self.metric, self.on_epoch = trial, metric, on_epoch
        self.values: list[float] = []
        self.pruned = False
        self.epochs_run = 0

    def after_epoch(self, trainer: Trainer, state: TrainState) -> None:
        self.epochs_run = state.epoch + 1
        value = None if state.metrics is None else metric_value(state.metrics, self.metric)
        if value is not None:
            self.values.append(value)
            self.trial.report(value, state.epoch)
        self.on_epoch(EpochReport(self.trial.number, state.epoch, state.epochs, value))
        if value is not None and state.epoch < state.epochs - 1 and self.trial.should_prune():
            self.pruned = True
            state.stop = True


class TrialReporter:
    """What a trial's training shows: nothing of its own progress (the trials table does), its warnings
    once per study (the same note every trial would flood the table)."""

    def __init__(self, outer: Reporter, said: set[str]) -> None:
        self.outer, self.said = outer, said

    def track(self, items: Any, description: str, total: int | None = None, fields: Any = ()) -> Any:
        yield from items

    def update(self, values: dict[str, str]) -> None:
        pass

    def table(self, title: str, headers: Any, rows: Any) -> None:
        pass

    def info(self, message: str) -> None:
        pass

    def warning(self, message: str) -> None:
        if message not in self.said:
            self.said.add(message)
            self.outer.warning(message)


@dataclass
class TrialOutcome:
    value: float | None  # the best validated value of the run (what its best.pt scored)
    epochs_run: int
    run_dir: Path
    values: list[float] = field(default_factory=list)


def write_hyp(path: Path, values: Mapping[str, float], header: str = "") -> None:
    """A hyp YAML that ``yolor train --hyp`` reads as it is (every key, plain floats)."""
    text = header + yaml.safe_dump({key: float(value) for key, value in values.items()}, sort_keys=False)
    payload = text.encode()
    atomic_write(path, lambda stream: stream.write(payload))


@dataclass(frozen=True)
class TrialSetup:
    """What every trial of a process shares: the data, model and schedule options, and where they go."""

    tune_dir: Path
    data: str
    cfg: str | None
    weights: str | None
    epochs: int
    batch_size: int
    img_size: int
    device: str
    workers: int
    seed: int
    metric: str


def nominal_batch_size(optimizer: str, batch_size: int) -> int | None:
    """Adam and AdamW trials step every batch, as ``--optimizer auto``'s AdamW does (its lr was measured
    so); SGD accumulates to YOLOR's nominal 64 (None: the trainer's default)."""
    return batch_size if optimizer in ("adam", "adamw") else None


def run_trial(
    trial: Any,
    *,
    setup: TrialSetup,
    hyp: Mapping[str, float],
    optimizer: str,
    reporter: Reporter,
    on_epoch: Callable[[EpochReport], None],
    tracker: Tracker = NO_TRACKING,
) -> TrialOutcome:
    """Train the trial; its run folder is recorded on the trial before training starts (the disk policy
    and a later process find it there, even when this one dies). ``tracker``: the trial's MLflow run
    (nested in the tune's), which the training logs its options, hyp and epochs to; the caller ends it."""
    number = trial.number
    hyp_path = setup.tune_dir / HYPS_DIR / f"trial_{number}.yaml"
    write_hyp(hyp_path, hyp)
    hook = PruningHook(trial, setup.metric, on_epoch)

    def hooks(options: TrainOptions, resume: ResumePoint | None, _reporter: Reporter) -> list[TrainHook]:
        return [hook]

    options = TrainOptions(
        data=setup.data,
        cfg=setup.cfg,
        weights=setup.weights,
        hyp=str(hyp_path),
        epochs=setup.epochs,
        batch_size=setup.batch_size,
        img_size=setup.img_size,
        optimizer=optimizer,
        nominal_batch_size=nominal_batch_size(optimizer, setup.batch_size),
        device=setup.device,
        workers=setup.workers,
        project=str(setup.tune_dir / TRIALS_DIR),
        name=f"trial_{number}",
        save_period=0,  # no epoch_NNN.pt: a trial's weights are kept only if it is the best
        seed=setup.seed,
    )
    trial.set_user_attr(RUN_DIR_ATTR, str((setup.tune_dir / TRIALS_DIR / f"trial_{number}").resolve()))
    result = train(plan_training(options), reporter, hooks=hooks, tracker=tracker)
    run_dir = result.save_dir.resolve()
    if run_dir != Path(trial.user_attrs[RUN_DIR_ATTR]):  # the name was taken: numbered (trial_72...)
        trial.set_user_attr(RUN_DIR_ATTR, str(run_dir))
    trial.set_user_attr(EPOCHS_ATTR, hook.epochs_run)
    if hook.pruned:  # Optuna's way to say it; the caller tells the study (the last reported value stays)
        raise import_optuna().TrialPruned(f"pruned after epoch {hook.epochs_run}")
    return TrialOutcome(max(hook.values) if hook.values else None, hook.epochs_run, run_dir, hook.values)


def is_trial_run(folder: Path) -> bool:
    """A folder ``yolor tune`` made for a trial: a training run folder (opt.yaml) in ``trials/`` of a
    tune run folder (tune.json)."""
    return (
        (folder / "opt.yaml").is_file()
        and folder.parent.name == TRIALS_DIR
        and (folder.parent.parent / "tune.json").is_file()
    )


def drop_weights(folder: Path, keep: tuple[str, ...] = ()) -> int:
    """Delete the checkpoints a trial's training wrote but ``keep`` (only those names, nothing else in
    weights/); the folder's results.csv, opt.yaml and hyp.yaml stay. Returns how many files went.
    Processes sharing a study each clean every finished trial, so a file or the folder may go between
    looking and deleting: what another process deleted first is simply gone."""
    weights = folder / "weights"
    if not is_trial_run(folder) or not weights.is_dir():
        return 0
    try:
        entries = list(weights.iterdir())
    except FileNotFoundError:
        return 0
    removed = 0
    for path in entries:
        ours = CHECKPOINT_NAME.fullmatch(path.name) and path.name not in keep
        if ours and path.is_file() and not path.is_symlink():
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            removed += 1
    with contextlib.suppress(OSError):  # gone already, or not empty (a name we keep, or one not ours)
        if not any(weights.iterdir()):
            weights.rmdir()
    return removed
