"""What a training will do, decided once from the request: a new run's options, or the run that
``--resume`` continues (its own options, read from its last.pt), and whether torchrun starts it."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.model.checkpoint import Checkpoint, load_checkpoint
from yolor_cli.engine.options import given_options
from yolor_cli.engine.tracking.options import TrackingSettings, tracking_settings
from yolor_cli.engine.train import distributed
from yolor_cli.engine.train.hooks import final_files
from yolor_cli.engine.train.options import TrainOptions
from yolor_cli.engine.train.request import RESUME_OWN, TrainRequest


def _latest_last(project: Path) -> Path:
    candidates = sorted(project.glob("*/weights/last.pt"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise YolorError(
            f"no run to resume under {project}", hint="pass the path: --resume runs/train/exp/weights/last.pt"
        )
    return candidates[-1]


@dataclass(frozen=True)
class ResumePoint:
    """An interrupted run's last.pt, read once: where the run continues, or that only its end is left."""

    path: Path
    checkpoint: Checkpoint
    options: TrainOptions  # the run's own
    start_epoch: int
    bests: dict[str, float]
    class_maps: list[float] | None = None  # per-class mAP of the last validation (for --image-weights)
    ending: bool = False  # the last epoch is trained; only the end of the run is left to write

    @property
    def save_dir(self) -> Path:
        return self.path.parent.parent


@dataclass(frozen=True)
class TrainPlan:
    """A run as decided from the command line, once: the options it trains with (a resumed run's own,
    with a --device given now), the checkpoint it continues, and whether torchrun must start it."""

    options: TrainOptions
    resume: ResumePoint | None = None
    launch: bool = False  # --device 0,1 outside torchrun: one process per GPU, see launch()
    warnings: tuple[str, ...] = ()  # said before the run starts (options --resume does not use)
    tracking: TrackingSettings | None = None  # where the run is logged in MLflow; None: not tracked
    # A new run's folder when it exists already: the one a torchrun job made before torchrun restarted
    # it, with no checkpoint yet (None: a new numbered folder, or the resumed run's).
    run_dir: Path | None = None
    # A new ``yolor train`` run: when torchrun restarted its group, it continues the run this torchrun
    # job started instead (see restarted_plan; decided once the group is joined).
    elastic: bool = False

    @property
    def device(self) -> str:
        return self.options.device


def _resume_point(last: Path | None, project: str, checkpoint: Checkpoint | None = None) -> ResumePoint:
    path = last if last is not None else _latest_last(Path(project))
    ckpt = checkpoint if checkpoint is not None else load_checkpoint(path)
    saved = (ckpt.train_options or {}).get("options")
    if not saved:
        raise YolorError(
            f"{path} does not record how it was trained, so it cannot be resumed",
            hint="start a new run with --weights to fine-tune from it",
        )
    options = TrainOptions.from_saved(saved)
    start_epoch = ckpt.epoch + 1
    if start_epoch >= options.epochs and ckpt.optimizer_state is None:
        raise YolorError(f"{path} finished all {options.epochs} epochs; nothing to resume")
    if ckpt.optimizer_state is None:
        raise YolorError(f"{path} has no optimizer state (the run ended and was stripped)")
    saved_maps = (ckpt.train_options or {}).get("class_maps")
    return ResumePoint(
        path,
        ckpt,
        options,
        start_epoch,
        dict((ckpt.train_options or {}).get("bests") or {}),
        class_maps=[float(v) for v in saved_maps] if isinstance(saved_maps, list) else None,
        ending=start_epoch >= options.epochs or final_files(ckpt) is not None,
    )


def plan_training(
    options: TrainOptions,
    *,
    resume: bool = False,
    last: str | Path | None = None,
    checkpoint: Checkpoint | None = None,
) -> TrainPlan:
    """The run to do: a new one with ``options``, or with ``resume`` the one ``last`` (default: the
    newest last.pt under ``options.project``) stopped, with its own options and ``options.device``
    when one is given (another machine). ``checkpoint``: ``last`` read already."""
    if not resume:
        return TrainPlan(options, launch=distributed.wants_launch(options.device))
    point = _resume_point(Path(last) if last is not None else None, options.project, checkpoint)
    teacher = point.options.teacher
    if teacher and not point.ending and not Path(teacher).is_file():  # absolute since this version
        raise YolorError(
            f"the resumed run distils from the teacher {teacher}, which is gone",
            hint="put the teacher back at that path (opt.yaml records it), or start a new run with "
            f"--weights {point.path} --teacher ANOTHER.pt",
        )
    device = options.device or point.options.device
    # Only rank 0 writes the end of a run: no processes to start for it. amp stays None unless
    # --amp/--no-amp is given now: then _amp takes the resumed run's own request and says so.
    return TrainPlan(
        dataclasses.replace(point.options, device=device, amp=options.amp),
        point,
        launch=distributed.wants_launch(device) and not point.ending,
    )


def launch(plan: TrainPlan, arguments: Sequence[str]) -> int:
    """Run ``yolor <arguments>`` as one torchrun process per GPU of the plan's device; each process
    plans the run again from the same arguments (torchrun sets its rank) and trains its part."""
    return distributed.launch(arguments, plan.device)


def restarted_plan(options: TrainOptions) -> TrainPlan | None:
    """For a group torchrun restarted after a worker failed (``--max-restarts``): the run this torchrun
    job started, continued from its last.pt as ``--resume`` would, or started again in its own folder
    when it had none yet. None when the job made no run folder yet, or its newest run had finished (a
    job id used again: a new run)."""
    folders = distributed.marked_runs(Path(options.project))
    if not folders:
        return None
    folder = folders[0]
    last = folder / "weights" / "last.pt"
    if not last.exists():
        note = f"torchrun restarted the group: {folder} had no checkpoint yet, its training starts again"
        return TrainPlan(options, run_dir=folder, warnings=(note,))
    checkpoint = load_checkpoint(last)
    if checkpoint.optimizer_state is None and checkpoint.epoch + 1 >= options.epochs:
        return None
    plan = plan_training(options, resume=True, last=last, checkpoint=checkpoint)
    assert plan.resume is not None
    note = (
        f"torchrun restarted the group: {folder} continues from its last.pt "
        f"(epoch {plan.resume.start_epoch + 1}/{plan.options.epochs})"
    )
    return dataclasses.replace(plan, warnings=(*plan.warnings, note))


def plan_request(request: TrainRequest) -> TrainPlan:
    """The plan for a ``yolor train`` request. With ``--resume``, options given now that the run
    keeps its own of (all but --device and --amp/--no-amp) are named in a warning, not used: the
    run continues as it started, so its checkpoints and results stay comparable.
    A new run is ``elastic``: under torchrun after a restart (:func:`restarted_plan`), the run the job
    started continues, unasked."""
    plan = plan_training(request.options(), resume=request.resume, last=request.last)
    tracking = tracking_settings(
        mlflow=request.mlflow,
        experiment=request.mlflow_experiment,
        log_weights=request.mlflow_log_weights,
        default_experiment=Path(plan.options.project).name or "train",
    )
    plan = dataclasses.replace(plan, tracking=tracking)
    if not request.resume:
        return dataclasses.replace(plan, elastic=True)
    if not request.resume:
        return plan
    ignored = given_options(request, ignore=RESUME_OWN)
    if not ignored:
        return plan
    assert plan.resume is not None
    warning = (
        f"--resume continues {plan.resume.save_dir} with its own options (opt.yaml); ignored: {', '.join(ignored)}"
        " (to train with other options, start a new run with --weights "
        f"{plan.resume.path})"
    )
    return dataclasses.replace(plan, warnings=(*plan.warnings, warning))
