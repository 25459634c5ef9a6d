"""``yolor tune`` as an engine call: an Optuna study whose trials are normal trainings.

Everything a user can get wrong (the space file, the base hyp, the data file, the storage URL, a study
of other settings) is checked before the first trial trains. The run folder (``runs/tune/exp``) holds
tune.json (the study, its storage and settings), study.db (the default storage), hyps/ (each trial's
hyp file), trials/trial_N/ (each trial's training run: results.csv, opt.yaml, hyp.yaml; weights only
for the best trial), best_hyp.yaml, trials.csv, history.png and importance.png.

With tracking on (--mlflow, MLFLOW_TRACKING_URI), the command is one MLflow run and each trial a run
nested in it, which the trial's training logs itself into (:func:`_run_trials`, :func:`_describe_run`).
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yolor_cli.engine.config import DEFAULT_HYP, Hyp, load_data_config, load_hyp
from yolor_cli.engine.data.labels import collect_image_files
from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.files import atomic_write
from yolor_cli.engine.model.checkpoint import load_checkpoint
from yolor_cli.engine.options import given_options
from yolor_cli.engine.reporting import Reporter, SilentReporter
from yolor_cli.engine.runs import new_run_dir
from yolor_cli.engine.tracking.options import tracking_settings
from yolor_cli.engine.tracking.tracker import INPUT_RUN_TAG, RUN_NAME_TAG, Tracker, start_tracking
from yolor_cli.engine.train.recipe import Recipe, decide_recipe
from yolor_cli.engine.train.trainer import TrainingError
from yolor_cli.engine.tune import outputs
from yolor_cli.engine.tune import study as studies
from yolor_cli.engine.tune.request import TuneRequest
from yolor_cli.engine.tune.space import OPTIMIZER_KEY, SearchSpace, load_space
from yolor_cli.engine.tune.trial import (
    BEST_KEPT,
    EPOCHS_ATTR,
    ERROR_ATTR,
    RUN_DIR_ATTR,
    EpochReport,
    TrialReporter,
    TrialSetup,
    drop_weights,
    nominal_batch_size,
    run_trial,
)

TUNE_RECORD = "tune.json"  # marks a tune run folder; --resume finds the study through it
MLFLOW_RUN_KEY = "mlflow_run_id"  # tune.json: the command's MLflow run, which a --resume continues
TRIAL_TAG = "yolor.trial"  # a trial's MLflow run: the trial's number
TRIAL_STATE_TAG = "yolor.trial_state"  # and how it ended: complete, pruned or failed
TRACKING_FIELDS = ("mlflow", "mlflow_experiment", "mlflow_log_weights")  # how the command is logged, not params
STUDY_DB = "study.db"
TRIALS_TITLE = "Trials"
# A study whose trials keep failing (every lr0 drawn makes the loss NaN, say) stops after this many
# failures in a row in one process, instead of drawing forever.
MAX_FAILURES_IN_A_ROW = 5
MAIN_PARAMS = ("optimizer", "lr0", "momentum", "weight_decay", "mosaic")  # the trials table's columns, when searched


@dataclass
class TuneResult:
    best_value: float | None
    best_params: dict[str, Any]
    best_trial: int | None
    trials_complete: int
    trials_pruned: int
    trials_failed: int
    epochs_run: int  # every finished trial's epochs, over the whole study
    storage: str  # the URL without its password
    study: str
    save_dir: Path
    best_hyp: Path | None = None
    best_weights: Path | None = None
    best_optimizer: str | None = None
    command: str | None = None  # yolor train with the best hyp
    plots: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def json(self) -> dict[str, Any]:
        """The ``--json`` object: these keys and no others."""
        return {
            "best_value": self.best_value,
            "best_params": self.best_params,
            "best_trial": self.best_trial,
            "trials_complete": self.trials_complete,
            "trials_pruned": self.trials_pruned,
            "trials_failed": self.trials_failed,
            "epochs_run": self.epochs_run,
            "storage": self.storage,
            "study": self.study,
        }


# ---- the run folder and the study's record ------------------------------------------------------


def _tune_dirs(project: Path) -> list[Path]:
    return sorted(
        (path.parent for path in project.glob(f"*/{TUNE_RECORD}")), key=lambda p: (p / TUNE_RECORD).stat().st_mtime
    )


def _resumed_dir(request: TuneRequest) -> Path:
    if "--name" in given_options(request):
        folder = request.project / request.name
        if not (folder / TUNE_RECORD).is_file():
            raise YolorError(f"{folder} is not a yolor tune run", hint="give the --name of a run under --project")
        return folder
    found = _tune_dirs(request.project)
    if not found:
        raise YolorError(f"no yolor tune run to resume under {request.project}", hint="start one without --resume")
    return found[-1]


def _read_record(folder: Path) -> dict[str, Any]:
    try:
        record = json.loads((folder / TUNE_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise YolorError(f"cannot read {folder / TUNE_RECORD}: {error}") from None
    if not isinstance(record, dict) or not isinstance(record.get("study"), str):
        raise YolorError(f"{folder / TUNE_RECORD} is not a yolor tune record")
    return record


def _write_record(folder: Path, record: Mapping[str, Any]) -> None:
    payload = (json.dumps(record, indent=2) + "\n").encode()
    atomic_write(folder / TUNE_RECORD, lambda stream: stream.write(payload))


def _storage_url(folder: Path) -> str:
    return f"sqlite:///{(folder / STUDY_DB).resolve()}"


@dataclass(frozen=True)
class _Plan:
    folder: Path
    url: str
    study: str
    record: dict[str, Any]


def _plan(request: TuneRequest, settings: dict[str, Any]) -> _Plan:
    """The run folder, storage and study name: a new run folder, or with --resume the one found."""
    if request.resume:
        folder = _resumed_dir(request)
        record = _read_record(folder)
        if request.storage:
            url = request.storage
        elif record.get("default_storage"):
            url = _storage_url(folder)
        else:
            raise YolorError(
                f"the study of {folder} is in {record.get('storage')}, whose password is not kept",
                hint="give the same --storage URL again with --resume",
            )
        return _Plan(folder, url, request.study or record["study"], record)
    folder = new_run_dir(request.project, request.name, training=True)
    url = request.storage or _storage_url(folder)
    record = {
        "study": request.study_name,
        "storage": studies.shown_url(url),
        "default_storage": request.storage is None,
        "settings": settings,
    }
    _write_record(folder, record)
    return _Plan(folder, url, request.study_name, record)


def _settings(request: TuneRequest, space: SearchSpace, base: Mapping[str, float]) -> dict[str, Any]:
    """What makes two trials comparable; kept with the study. The data path is not: another machine
    may hold the same data elsewhere."""
    return {
        "space": space.record(),
        "base_hyp": dict(base),
        "metric": request.metric,
        "epochs": request.epochs,
        "img_size": request.img_size,
        "batch_size": request.batch_size,
        "cfg": request.cfg,
    }


# ---- the trials table ----------------------------------------------------------------------------


def _shown(value: Any) -> str:
    if value is None or value == "":
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class _Table:
    """The trials of the study as table rows, redrawn through the reporter whenever one changes."""

    def __init__(self, optuna: Any, storage: Any, study: Any, space: SearchSpace, epochs: int, reporter: Reporter):
        self.optuna, self.storage, self.study, self.reporter, self.epochs = optuna, storage, study, reporter, epochs
        searched = [*space.ranges, *([OPTIMIZER_KEY] if len(space.optimizers) > 1 else [])]
        self.params = [name for name in MAIN_PARAMS if name in searched]
        self.progress: dict[int, int] = {}  # this process's running trial: epochs done

    def show(self) -> None:
        trials = self.storage.get_all_trials(self.study._study_id, deepcopy=False)
        headers = ["Trial", "State", "Epochs", "Metric", *self.params]
        rows = []
        for trial in sorted(trials, key=lambda t: t.number):
            if trial.state.name == "WAITING" or not studies.counted(trial):
                continue
            done = trial.user_attrs.get(EPOCHS_ATTR)
            if done is None:
                done = self.progress.get(trial.number, (trial.last_step + 1) if trial.last_step is not None else 0)
            value = trial.value
            if value is None and trial.intermediate_values:
                value = trial.intermediate_values[trial.last_step]
            rows.append(
                [
                    str(trial.number),
                    outputs.state_name(trial),
                    f"{done}/{self.epochs}",
                    _shown(value),
                    *(_shown(trial.params.get(name)) for name in self.params),
                ]
            )
        self.reporter.table(TRIALS_TITLE, headers, rows)

    def epoch(self, report: EpochReport) -> None:
        self.progress[report.number] = report.epoch + 1
        self.show()


# ---- the study ----------------------------------------------------------------------------------


def _keep_best_weights(optuna: Any, storage: Any, study: Any) -> Any:
    """The disk policy: every finished trial but the study's best loses its checkpoints (on this machine).
    Returns the best trial (None while no trial completed)."""
    states = optuna.trial.TrialState
    finished = storage.get_all_trials(
        study._study_id, deepcopy=False, states=(states.COMPLETE, states.PRUNED, states.FAIL)
    )
    complete = [trial for trial in finished if trial.state == states.COMPLETE and trial.value is not None]
    best = max(complete, key=lambda t: (t.value, -t.number)) if complete else None
    for trial in finished:
        folder = trial.user_attrs.get(RUN_DIR_ATTR)
        if folder:
            drop_weights(Path(folder), keep=BEST_KEPT if best is not None and trial.number == best.number else ())
    return best


def _base_params(space: SearchSpace, base: Mapping[str, float], default: Recipe | None) -> dict[str, Any] | None:
    """The first trial's draw, when the space holds it: what ``yolor train`` with the same data, epochs
    and batch does by default (``default``: ``--optimizer auto``'s recipe for the run; its optimizer, lr0,
    momentum and scale on the base hyp), so that a tune starts from the figure it must beat; with a
    ``--hyp`` given, that hyp with SGD (the optimizer its lr0 is for). None outside the space."""
    values = dict(base)
    optimizer = "sgd"
    if default is not None and default.optimizer in space.optimizers:
        optimizer = default.optimizer
        values.update(lr0=default.lr0, momentum=default.momentum)
        if default.scale is not None:
            values["scale"] = default.scale
    elif "sgd" not in space.optimizers:
        optimizer = space.optimizers[0]
    if not space.inside(values):
        return None
    params: dict[str, Any] = {key: values[key] for key in space.ranges}
    if len(space.optimizers) > 1:
        params[OPTIMIZER_KEY] = optimizer
    return params


def _default_recipe(request: TuneRequest, base: Mapping[str, float]) -> Recipe | None:
    """What ``yolor train`` decides for these data, epochs and batch without options (``--optimizer auto``
    on the default hyp); None when the tune was given its own ``--hyp``."""
    if request.hyp is not None:
        return None
    train_images = len(collect_image_files(load_data_config(request.data).train))
    return decide_recipe(
        "auto", epochs=request.epochs, train_images=train_images, batch_size=request.batch_size, hyp=Hyp(**base)
    )


def _finished(optuna: Any, storage: Any, study: Any) -> int:
    states = optuna.trial.TrialState
    return len(storage.get_all_trials(study._study_id, deepcopy=False, states=(states.COMPLETE, states.PRUNED)))


def _run_trials(
    optuna: Any,
    request: TuneRequest,
    storage: Any,
    study: Any,
    space: SearchSpace,
    base: Mapping[str, float],
    setup: TrialSetup,
    table: _Table,
    reporter: Reporter,
    tracker: Tracker,
    default: Recipe | None,
) -> list[str]:
    """Trials until the study holds ``--trials`` finished ones or ``--timeout`` passes; notes to show."""
    notes: list[str] = []
    deadline = time.monotonic() + request.timeout * 60 if request.timeout else None
    said: set[str] = set()
    failures = 0
    while True:
        studies.fail_stale(optuna, study)
        if deadline is not None and time.monotonic() >= deadline:
            notes.append(f"--timeout {request.timeout:g} minutes passed: no further trial started")
            break
        if _finished(optuna, storage, study) >= request.trials:
            break
        trial = study.ask()
        if studies.live_ahead(optuna, storage, study, trial.number) >= request.trials:
            studies.set_aside(optuna, storage, trial)  # the other processes' running trials complete the study
            break
        fixed = _base_params(space, base, default) if trial.number == 0 else None
        seed = studies.trial_seed(request.seed, trial.number)
        study.sampler = studies.make_sampler(optuna, request.sampler, seed, fixed)
        hyp, optimizer = space.suggest(trial, base)
        table.progress[trial.number] = 0
        table.show()
        value = None
        # The trial's MLflow run, nested in the command's: the training logs its options, hyp and epochs
        # there. Each outcome ends it explicitly with its state (a pruned trial leaves through
        # TrialPruned, which would end it FAILED); Ctrl-C or an unexpected error ends it KILLED / FAILED.
        with tracker.child(f"trial_{trial.number}", tags={TRIAL_TAG: trial.number}, log_weights=False) as child:
            try:
                with studies.heartbeat(storage, trial._trial_id):
                    outcome = run_trial(
                        trial,
                        setup=setup,
                        hyp=hyp,
                        optimizer=optimizer,
                        reporter=TrialReporter(reporter, said),
                        on_epoch=table.epoch,
                        tracker=child,
                    )
            except optuna.TrialPruned:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                _end_trial_run(child, "PRUNED")
                failures = 0
            except TrainingError as error:  # this trial's values cannot train (a NaN loss): the next may
                trial.set_user_attr(ERROR_ATTR, error.message)
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                _end_trial_run(child, "FAIL")
                reporter.warning(f"trial {trial.number} failed: {error.message}")
                failures += 1
                if failures >= MAX_FAILURES_IN_A_ROW:
                    raise YolorError(
                        f"{failures} trials in a row failed to train; the last: {error.message}",
                        hint="narrow the space with --space (lr0 first)",
                    ) from None
            except BaseException:  # Ctrl-C, or an error every trial would meet: the trial fails, the study stays
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                child.tags({TRIAL_STATE_TAG: outputs.STATE_NAMES["FAIL"]})
                raise
            else:
                if outcome.value is None:
                    trial.set_user_attr(ERROR_ATTR, "no validated epoch")
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    _end_trial_run(child, "FAIL")
                else:
                    study.tell(trial, outcome.value)
                    _end_trial_run(child, "COMPLETE")
                    value = outcome.value
                failures = 0
        best = _keep_best_weights(optuna, storage, study)
        # The parent's figures with the trial number as their step: this trial's value (complete trials
        # only: a pruned one has none) and the study's best so far (every process's trials).
        tracker.metrics({"value": value, "best_value": None if best is None else best.value}, step=trial.number)
        table.progress.pop(trial.number, None)
        table.show()
    return notes


def _end_trial_run(child: Tracker, state: str) -> None:
    """A trial's run tagged with the trial's state (complete, pruned, failed, as trials.csv names them)
    and ended: FINISHED unless the trial failed."""
    child.tags({TRIAL_STATE_TAG: outputs.STATE_NAMES[state]})
    child.end("FAILED" if state == "FAIL" else "FINISHED")


def _next_command(request: TuneRequest, best_hyp: Path, optimizer: str | None) -> str:
    parts = ["yolor", "train", "--data", str(request.data), "--hyp", str(best_hyp)]
    if optimizer:
        parts += ["--optimizer", optimizer]
    if request.cfg:
        parts += ["--cfg", request.cfg]
    if request.weights:
        parts += ["--weights", str(request.weights)]
    parts += ["--img-size", str(request.img_size), "--batch-size", str(request.batch_size)]
    nominal = nominal_batch_size(optimizer or "", request.batch_size)
    if nominal is not None:  # as the trials trained: a step every batch
        parts += ["--nominal-batch-size", str(nominal)]
    return shlex.join(parts)


def _result(
    optuna: Any,
    storage: Any,
    study: Any,
    plan: _Plan,
    request: TuneRequest,
    space: SearchSpace,
    base: Mapping[str, float],
) -> TuneResult:
    """The study as it stands (every process's trials), with trials.csv and best_hyp.yaml written."""
    states = optuna.trial.TrialState
    trials = [t for t in storage.get_all_trials(study._study_id, deepcopy=False) if studies.counted(t)]
    counts = {state: sum(1 for t in trials if t.state == state) for state in (states.COMPLETE, states.PRUNED)}
    failed = sum(1 for t in trials if t.state == states.FAIL)
    epochs_run = sum(int(t.user_attrs.get(EPOCHS_ATTR, 0)) for t in trials if t.state.is_finished())
    result = TuneResult(
        best_value=None,
        best_params={},
        best_trial=None,
        trials_complete=counts[states.COMPLETE],
        trials_pruned=counts[states.PRUNED],
        trials_failed=failed,
        epochs_run=epochs_run,
        storage=studies.shown_url(plan.url),
        study=plan.study,
        save_dir=plan.folder,
    )
    param_names = sorted({name for t in trials for name in t.params})
    outputs.write_trials_csv(plan.folder / outputs.TRIALS_CSV, sorted(trials, key=lambda t: t.number), param_names)
    complete = [t for t in trials if t.state == states.COMPLETE and t.value is not None]
    if not complete:
        result.notes.append("no trial completed yet: no best_hyp.yaml")
        return result
    best = max(complete, key=lambda t: (t.value, -t.number))
    hyp = {**base, **space.fixed}  # the study's own: open_study refused other settings
    hyp.update({key: float(value) for key, value in best.params.items() if key != OPTIMIZER_KEY})
    optimizer = best.params.get(OPTIMIZER_KEY, space.optimizers[0])
    best_hyp = plan.folder / outputs.BEST_HYP
    outputs.write_best_hyp(
        best_hyp, hyp, study=plan.study, trial=best.number, metric=request.metric, value=best.value, optimizer=optimizer
    )
    folder = best.user_attrs.get(RUN_DIR_ATTR)
    weights = Path(folder) / "weights" / "best.pt" if folder else None
    result.best_value, result.best_trial = float(best.value), best.number
    result.best_params = {**best.params, OPTIMIZER_KEY: optimizer} if optimizer else dict(best.params)
    result.best_hyp, result.best_optimizer = best_hyp, optimizer
    result.best_weights = weights if weights is not None and weights.is_file() else None
    result.command = _next_command(request, best_hyp, optimizer)
    return result


def tune(request: TuneRequest, reporter: Reporter | None = None) -> TuneResult:
    """Run (or continue, or join) the study; the result is the whole study's, as it stands at the end."""
    reporter = reporter or SilentReporter()
    optuna = studies.import_optuna()
    space = load_space(request.space)
    base = load_hyp(request.hyp or DEFAULT_HYP).as_dict()
    load_data_config(request.data)  # a broken data file is named now, not when the first trial starts
    settings = _settings(request, space, base)
    tracking = tracking_settings(
        mlflow=request.mlflow,
        experiment=request.mlflow_experiment,
        log_weights=request.mlflow_log_weights,
        default_experiment=Path(request.project).name or "tune",
    )
    with studies.forward_logs(optuna, reporter):
        # A --storage that does not work is named before a run folder is made.
        given = studies.open_storage(optuna, request.storage) if request.storage else None
        plan = _plan(request, settings)
        storage = given if given is not None and plan.url == request.storage else studies.open_storage(optuna, plan.url)
        study, created = studies.open_study(
            optuna,
            storage,
            plan.study,
            settings,
            sampler=studies.make_sampler(optuna, request.sampler, request.seed),
            pruner=studies.make_pruner(optuna, request.pruner, request.epochs),
        )
        default = _default_recipe(request, base)
        if created and _base_params(space, base, default) is not None:
            reporter.info(
                f"the first trial trains the base hyp ({request.hyp})"
                if default is None
                else f"the first trial trains what yolor train does by default here ({default.header()})"
            )
        setup = TrialSetup(
            tune_dir=plan.folder.resolve(),
            data=str(request.data.resolve()),
            cfg=request.cfg,
            weights=str(request.weights.resolve()) if request.weights else None,
            epochs=request.epochs,
            batch_size=request.batch_size,
            img_size=request.img_size,
            device=request.device,
            workers=request.workers,
            seed=request.seed,
            metric=request.metric,
        )
        table = _Table(optuna, storage, study, space, request.epochs, reporter)
        # One MLflow run per command (a --resume continues the run folder's), started once everything a
        # user can get wrong has been checked; each trial a run nested in it.
        with start_tracking(
            tracking,
            reporter,
            command="tune",
            name=plan.folder.name,
            resume_run_id=plan.record.get(MLFLOW_RUN_KEY),
        ) as tracker:
            _describe_run(tracker, request, plan, space, base)
            notes = _run_trials(optuna, request, storage, study, space, base, setup, table, reporter, tracker, default)
            result = _result(optuna, storage, study, plan, request, space, base)
            plots, plot_notes = outputs.write_plots(optuna, study, plan.folder)
            _log_result(tracker, result)
    result.plots, result.notes = plots, [*notes, *result.notes, *plot_notes]
    return result


def _describe_run(
    tracker: Tracker, request: TuneRequest, plan: _Plan, space: SearchSpace, base: Mapping[str, float]
) -> None:
    """The tune's MLflow run: its id kept in tune.json (a --resume continues it), its tags (cfg, data,
    study, the run that wrote --weights) and its params (the request, the space, the base hyp); a
    continued run keeps the params it has (MLflow refuses a param's second value)."""
    if tracker.run_id is None:
        return
    if plan.record.get(MLFLOW_RUN_KEY) != tracker.run_id:
        _write_record(plan.folder, {**plan.record, MLFLOW_RUN_KEY: tracker.run_id})
    tracker.tags(
        {
            RUN_NAME_TAG: plan.folder.name,
            "yolor.run_dir": str(plan.folder.resolve()),
            "yolor.cfg": request.cfg or (f"from {request.weights}" if request.weights else None),
            "yolor.data": str(request.data.resolve()),
            "yolor.study": plan.study,
            "yolor.storage": studies.shown_url(plan.url),
            INPUT_RUN_TAG: _input_run_id(request.weights),
        }
    )
    if tracker.continued:
        return
    params = {k: v for k, v in dataclasses.asdict(request).items() if k not in TRACKING_FIELDS}
    params["storage"] = studies.shown_url(plan.url)  # never a password
    params["study"] = plan.study
    tracker.params(params)
    tracker.params(_space_params(space), prefix="space.")
    tracker.params(dict(base), prefix="base_hyp.")


def _space_params(space: SearchSpace) -> dict[str, str]:
    """The search space as MLflow params: ``low..high`` (``log`` for a log scale), a fixed value, the
    optimizers."""
    values = {key: f"{span.low:g}..{span.high:g}{' log' if span.log else ''}" for key, span in space.ranges.items()}
    values.update({key: f"{value:g}" for key, value in space.fixed.items()})
    values[OPTIMIZER_KEY] = ",".join(space.optimizers)
    return values


def _input_run_id(weights: Path | None) -> str | None:
    """The MLflow run that wrote --weights (lineage), when one of ours did."""
    if weights is None:
        return None
    try:
        return load_checkpoint(weights).mlflow_run_id
    except YolorError:  # an official file (needs --cfg): no run of ours wrote it
        return None


def _log_result(tracker: Tracker, result: TuneResult) -> None:
    """The study's figures, best trial and files on the tune's run; the best trial's best.pt with
    --mlflow-log-weights (the only weights a tune logs)."""
    tracker.metrics(
        {
            "trials_complete": result.trials_complete,
            "trials_pruned": result.trials_pruned,
            "trials_failed": result.trials_failed,
            "epochs_run": result.epochs_run,
        }
    )
    tracker.tags({"yolor.best_trial": result.best_trial})
    folder = result.save_dir
    names = (outputs.BEST_HYP, outputs.TRIALS_CSV, outputs.HISTORY_PNG, outputs.IMPORTANCE_PNG)
    tracker.artifacts([folder / name for name in names])
    if tracker.log_weights and result.best_weights is not None:
        tracker.artifact(result.best_weights, "weights")
