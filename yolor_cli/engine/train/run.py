"""``yolor train`` as an engine call: plan a run once (:mod:`~yolor_cli.engine.train.plan`), build its
pieces (:mod:`~yolor_cli.engine.train.build`) and train, resume or finish it.

The options a run records are :mod:`yolor_cli.engine.train.options`, what the command line asks is
:mod:`yolor_cli.engine.train.request`; the loop itself is :mod:`yolor_cli.engine.train.trainer`; what a
run writes around it is :mod:`yolor_cli.engine.train.hooks`; how it optimises is
:mod:`yolor_cli.engine.train.recipe`; what ``--teacher`` adds is :mod:`yolor_cli.engine.train.distill`.
Without ``--data`` a run uses the built-in demo data and the demo profile (``DEMO_DEFAULTS``,
``DEMO_RECIPE``), chosen so that a CPU reaches a useful mAP in minutes.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from yolor_cli.engine.config import Hyp
from yolor_cli.engine.errors import YolorError, first_line
from yolor_cli.engine.files import interrupts_deferred
from yolor_cli.engine.model.memory import check_batch_fits
from yolor_cli.engine.reporting import Reporter, SilentReporter
from yolor_cli.engine.tracking.tracker import (
    INPUT_RUN_TAG,
    NO_TRACKING,
    RUN_NAME_TAG,
    Tracker,
    start_tracking,
)
from yolor_cli.engine.train import build, distributed
from yolor_cli.engine.train.hooks import METRIC_NAMES, ResultsHook, finish_checkpoints, read_results
from yolor_cli.engine.train.options import TrainOptions
from yolor_cli.engine.train.plan import ResumePoint, TrainPlan, launch, plan_request, plan_training, restarted_plan
from yolor_cli.engine.train.request import TrainRequest
from yolor_cli.engine.train.trainer import TrainHook

__all__ = [
    "HookFactory",
    "ResumePoint",
    "TrainOptions",
    "TrainPlan",
    "TrainRequest",
    "TrainResult",
    "launch",
    "plan_request",
    "plan_training",
    "train",
]


# Hooks a higher stage adds to a run (gradual pruning: train may not import prune, so prune hands its
# hook in): built once the run's options and resume point are known, on the one process that trains.
HookFactory = Callable[[TrainOptions, ResumePoint | None, Reporter], list[TrainHook]]


@dataclass
class TrainResult:
    save_dir: Path
    epochs_run: int
    best_fitness: float | None
    metrics: dict[str, float] = field(default_factory=dict)
    transferred: tuple[int, int] | None = None
    notes: list[str] = field(default_factory=list)
    is_main: bool = True  # False in the other DDP processes, which print nothing
    # --teacher: its precision, recall, map50 and map on the val split at the start (None: --noval or no teacher)
    teacher_metrics: dict[str, float] | None = None


def train(
    plan: TrainPlan,
    reporter: Reporter | None = None,
    hooks: HookFactory | None = None,
    tracker: Tracker | None = None,
) -> TrainResult:
    """Run (or continue, or finish) the planned training; in a torchrun process, this process's part of it.
    ``hooks`` adds a higher stage's hooks (``--prune-to`` needs :func:`yolor_cli.engine.prune.gradual.train`'s).
    ``tracker``: the MLflow run to log to, owned by the caller (a nested run of prune auto or tune);
    without it the run is tracked as ``plan.tracking`` says, in a run of its own (a resumed training
    continues the MLflow run its last.pt names)."""
    if plan.options.prune_to is not None and hooks is None:
        raise YolorError(
            "--prune-to needs the gradual-pruning hook, which this call does not give",
            hint="train through yolor_cli.engine.prune.gradual.train (as yolor train does)",
        )
    for warning in plan.warnings if distributed.DistributedContext.from_env().is_main else ():
        (reporter or SilentReporter()).warning(warning)
    if plan.resume is not None and plan.resume.ending:
        return _finish(plan.resume, reporter or SilentReporter())
    joined = distributed.joined()  # a caller's group (prune auto's) outlives this run
    context, device = distributed.start(plan.device)
    try:
        if plan.elastic and distributed.group_restarted(context):
            restarted = restarted_plan(plan.options)
            plan = dataclasses.replace(restarted, tracking=plan.tracking) if restarted is not None else plan
            for warning in plan.warnings if context.is_main else ():
                (reporter or SilentReporter()).warning(warning)
            if plan.resume is not None and plan.resume.ending:
                return _finish(plan.resume, reporter or SilentReporter())
        shown = (reporter or SilentReporter()) if context.is_main else SilentReporter()
        with _tracking(plan, tracker, context, shown) as run_tracker:
            return _train(plan, context, device, shown, hooks, run_tracker)
    except RuntimeError as error:
        if context.enabled and distributed.peer_failure(error):
            raise YolorError(
                f"another training process stopped, so this one cannot go on ({first_line(error)})",
                hint="with torchrun --max-restarts N the group restarts and continues from last.pt; "
                "else continue with yolor train --resume",
            ) from error
        raise
    finally:
        if not joined:
            distributed.stop()


def _tracking(
    plan: TrainPlan, given: Tracker | None, context: distributed.DistributedContext, reporter: Reporter
) -> contextlib.AbstractContextManager[Tracker]:
    """The run's tracker, on rank 0 only: the caller's (not ended here), or one started and ended here."""
    if not context.is_main:
        return contextlib.nullcontext(NO_TRACKING)
    if given is not None:
        return contextlib.nullcontext(given)
    resumed = plan.resume.checkpoint.mlflow_run_id if plan.resume is not None else None
    return start_tracking(plan.tracking, reporter, command="train", resume_run_id=resumed)


# ---- the end of a run cut short -------------------------------------------------------------------


def _final_metrics(results: Path, epoch: int) -> dict[str, float]:
    rows = read_results(results, epoch + 1)
    last = rows[-1] if rows and int(rows[-1]["epoch"]) == epoch else {}
    return {name: float(last[name]) for name in METRIC_NAMES if last.get(name)}


def _finish(point: ResumePoint, reporter: Reporter) -> TrainResult:
    """A run killed while writing its end: write it now, from the final last.pt (rank 0 only)."""
    if not distributed.DistributedContext.from_env().is_main:
        return TrainResult(point.save_dir, 0, None, is_main=False)
    epoch, results = point.checkpoint.epoch, point.save_dir / "results.csv"
    with interrupts_deferred():
        ResultsHook(results, epoch + 1, reporter).plot()
        finish_checkpoints(point.save_dir / "weights", point.checkpoint)
    return TrainResult(
        save_dir=point.save_dir,
        epochs_run=0,
        best_fitness=point.bests.get("fitness"),
        metrics=_final_metrics(results, epoch),
        notes=[
            f"{point.save_dir} had trained its last epoch ({epoch + 1}/{point.options.epochs}) "
            "but not written its final files; they are written now"
        ],
    )


# ---- a training, one step each --------------------------------------------------------------------


def _train(
    plan: TrainPlan,
    context: distributed.DistributedContext,
    device: torch.device,
    reporter: Reporter,
    extra_hooks: HookFactory | None = None,
    tracker: Tracker = NO_TRACKING,
) -> TrainResult:
    notes: list[str] = []
    options, resume = build.checked_options(plan.options, context, device, notes), plan.resume
    options, amp = build.amp(options, device, notes, resume)
    reporter.info(amp.describe())
    build.seed(options.seed + context.rank)
    with distributed.main_first(context):  # rank 0 generates the demo data and writes label caches
        data_path, data, hyp = build.load_data(options, reporter)
        model, start = build.model(options, resume, data, notes)
        distiller = build.distiller(options, model, data, hyp)
        dataset = build.train_dataset(options, data, hyp, model.max_stride, context, reporter)
    recipe = build.recipe(options, dataset, data, hyp)
    build.recipe_notes(options, recipe, notes)
    reporter.info(recipe.header())
    if distiller is not None:
        reporter.info(f"distilling from the teacher {distiller.source}, weight {distiller.weight:g}")
    hyp = recipe.applied_to(hyp)
    dataset.hyp = hyp  # auto's short-run augmentation; set before the loader starts its workers
    options = dataclasses.replace(
        options,
        data=str(data_path),
        hyp=build.hyp_name(options),
        optimizer=recipe.optimizer,
        nominal_batch_size=recipe.nominal_batch_size,
        recipe=recipe,
    )
    per_process = options.batch_size // context.world_size
    check_batch_fits(model, batch=per_process, img_size=options.img_size, device=device)
    sampler = build.sampler(dataset, options, context, per_process)
    bests = dict(resume.bests) if resume is not None else {}  # the checkpoint hook updates them
    start_epoch = resume.start_epoch if resume is not None else 0
    distributed.check_same(context, "the epoch the run starts at", start_epoch)
    if context.is_main:  # rank is decided here, once: the other processes write nothing
        save_dir = build.run_dir(options, resume, hyp, dataset, data, reporter, plan.run_dir)
    elif resume is not None:
        save_dir = resume.save_dir
    else:
        save_dir = plan.run_dir or Path(options.project) / options.name
    options = options.with_absolute_paths()  # as opt.yaml and the checkpoints record them: resumable anywhere
    _describe_run(tracker, options, hyp, save_dir, start.input_run_id)
    hooks = []
    if context.is_main:
        hooks = build.default_hooks(save_dir, data, options, resume, bests, per_process, reporter, tracker)
        if extra_hooks is not None:  # after validation, so a guard sees the epoch's figures
            hooks += extra_hooks(options, resume, reporter)
    hooks = [*build.every_rank_hooks(options, dataset, reporter), *hooks]
    teacher_metrics = None
    if distiller is not None and context.is_main:
        teacher_metrics = build.teacher_metrics(distiller, data, options, per_process * 2, device, reporter)
    trainer = build.trainer(
        model,
        hyp,
        build.loader(dataset, options, context, sampler),
        options,
        context,
        device,
        hooks,
        build.image_weighting(sampler, dataset, data, resume),
        recipe,
        reporter,
        amp,
        distiller,
    )
    if resume is not None:
        ckpt = resume.checkpoint
        trainer.load_state(ckpt.optimizer_state, ckpt.scaler_state, ckpt.ema_state, ckpt.ema_updates, ckpt.epoch)
    state = trainer.train(start_epoch, options.epochs)
    final = state.metrics
    return TrainResult(
        save_dir=save_dir,
        epochs_run=state.epoch + 1 - start_epoch,
        best_fitness=bests.get("fitness"),
        metrics={}
        if final is None
        else {"precision": final.precision, "recall": final.recall, "map50": final.map50, "map": final.map},
        transferred=start.transferred,
        notes=notes,
        is_main=context.is_main,
        teacher_metrics=teacher_metrics,
    )


def _describe_run(tracker: Tracker, options: TrainOptions, hyp: Hyp, save_dir: Path, input_run_id: str | None) -> None:
    """The MLflow run's name, tags (cfg, data, the run that wrote --weights) and params (the options with
    the resolved recipe, the hyp as trained); a continued run keeps the params it has."""
    tracker.tags(
        {
            RUN_NAME_TAG: save_dir.name,
            "yolor.run_dir": str(save_dir.resolve()),
            "yolor.cfg": options.cfg or (f"from {options.weights}" if options.weights else build.DEMO_CFG),
            "yolor.data": options.data,
            INPUT_RUN_TAG: input_run_id,
        }
    )
    if not tracker.continued:
        tracker.params({**dataclasses.asdict(options), "hyp": hyp.as_dict()})
