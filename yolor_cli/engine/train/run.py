"""``yolor train`` as an engine call: options, data, model, run folder, hooks, resume, DDP.

The loop itself is :mod:`yolor_cli.engine.train.trainer`; what a run writes around it is
:mod:`yolor_cli.engine.train.hooks`; how it optimises is :mod:`yolor_cli.engine.train.recipe`; what
``--teacher`` adds is :mod:`yolor_cli.engine.train.distill`.
Without ``--data`` a run uses the built-in demo data and the demo profile (:data:`DEMO_DEFAULTS`,
:data:`DEMO_RECIPE`), chosen so that a CPU reaches a useful mAP in minutes.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from yolor_cli.engine.config import DEFAULT_HYP, DataConfig, Hyp, load_data_config, load_hyp
from yolor_cli.engine.data.dataset import DetectionDataset
from yolor_cli.engine.data.loader import build_dataloader, build_dataset
from yolor_cli.engine.data.prepare import prepare_dataset
from yolor_cli.engine.data.sampling import RectBlockSampler, WeightedImageSampler
from yolor_cli.engine.data.synth import synthesize
from yolor_cli.engine.errors import DataError, MissingDependencyError, YolorError
from yolor_cli.engine.evaluate.evaluator import evaluate_model
from yolor_cli.engine.evaluate.plots import plot_labels
from yolor_cli.engine.files import atomic_write, interrupts_deferred
from yolor_cli.engine.model.bundled import load_cfg
from yolor_cli.engine.model.checkpoint import Checkpoint, load_checkpoint, load_state
from yolor_cli.engine.model.darknet import DarknetModel, build_model
from yolor_cli.engine.reporting import Reporter, SilentReporter
from yolor_cli.engine.runs import new_run_dir
from yolor_cli.engine.runtime import AmpMode, resolve_amp
from yolor_cli.engine.train import distributed
from yolor_cli.engine.train.distill import DEFAULT_DISTILL_WEIGHT, Distiller, check_distill_options
from yolor_cli.engine.train.hooks import (
    DEFAULT_CLOSE_MOSAIC,
    METRIC_NAMES,
    BatchPlotHook,
    CheckpointHook,
    CloseMosaicHook,
    ResultsHook,
    ValidationHook,
    closing_epochs,
    final_files,
    finish_checkpoints,
    read_results,
    tensorboard_hook,
)
from yolor_cli.engine.train.recipe import AUTO, Recipe, decide_recipe
from yolor_cli.engine.train.trainer import ImageWeighting, Trainer, TrainHook

DEMO_CFG = "yolor_csp_tiny"
DEMO_IMAGES = 400
DEMO_VERSION = 1  # bump when the generated demo data changes, so caches are rebuilt
DEMO_HYP = "demo"  # the demo's hyp when none is given: YOLOR's scratch values, lr0 0.002, scale 0.5
# The demo profile, for options the user leaves unset when training on the demo data.
DEMO_DEFAULTS: dict[str, Any] = {"epochs": 10, "batch_size": 8, "img_size": 320}
# The demo's 10-epoch recipe, for a demo run of those 10 epochs: Adam at the demo hyp's lr 0.002, no
# gradient accumulation, mosaic to the end. YOLOR's SGD recipe barely starts learning in 10 epochs, and
# --optimizer auto's AdamW scored a little lower over three seeds, so the demo keeps Adam
# (benchmarks/README.md#demo); a demo run of other --epochs uses auto.
DEMO_RECIPE: dict[str, Any] = {"optimizer": "adam", "nominal_batch_size": 8, "close_mosaic": 0}
# Options of runs saved before --optimizer and --close-mosaic: they resume as they trained.
LEGACY_OPTIONS: dict[str, Any] = {"close_mosaic": 0}


@dataclass(frozen=True)
class TrainOptions:
    data: str | None = None
    cfg: str | None = None
    weights: str | None = None
    hyp: str | None = None  # None: scratch.640 (demo data: demo), and auto may choose lr0 and momentum
    epochs: int = 300
    batch_size: int = 8
    nominal_batch_size: int | None = None  # None: as the recipe decides (64, or no accumulation)
    optimizer: str = AUTO  # auto, sgd, adam or adamw; a planned run holds the resolved name ...
    recipe: Recipe | None = None  # ... and the resolved recipe, so that --resume repeats it
    close_mosaic: int = DEFAULT_CLOSE_MOSAIC  # the last N epochs without mosaic and mixup (0: none)
    img_size: int = 640
    test_img_size: int | None = None
    device: str = ""
    workers: int = 8
    project: str = "runs/train"
    name: str = "exp"
    exist_ok: bool = False
    multi_scale: bool = False
    rect: bool = False
    cache_images: bool = False
    noval: bool = False
    nosave: bool = False
    period: int = 0
    save_period: int = 25
    patience: int = 0
    seed: int = 0
    image_weights: bool = False
    sync_bn: bool = False
    single_cls: bool = False
    sparsity: float = 0.0
    amp: bool | None = None  # --amp/--no-amp as asked; None: fp16 on CUDA, fp32 on CPU (resolve_amp, see _amp)
    amp_mode: str | None = None  # what the run trained with (fp16, bf16, off): for opt.yaml's reader only
    teacher: str | None = None  # --teacher: a checkpoint to distil from (a resumed run reloads it)
    distill_weight: float = DEFAULT_DISTILL_WEIGHT  # the distillation term's factor in the loss

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainOptions:
        known = {f.name for f in dataclasses.fields(cls)}
        chosen = {k: v for k, v in values.items() if k in known}
        if isinstance(chosen.get("recipe"), dict):
            chosen["recipe"] = Recipe.from_dict(chosen["recipe"])
        return cls(**chosen)

    @classmethod
    def from_saved(cls, values: dict[str, Any]) -> TrainOptions:
        """A run's options as opt.yaml and its checkpoints hold them; those of runs saved before
        --optimizer (``adam: true`` or false) resume with the optimizer they trained with."""
        if "optimizer" not in values:  # saved before --optimizer and --close-mosaic
            values = {**LEGACY_OPTIONS, "optimizer": "adam" if values.get("adam") else "sgd", **values}
        return cls.from_dict(values)

    @classmethod
    def resolve(cls, **given: Any) -> TrainOptions:
        """Options from the command line, where None means "not given": the demo profile fills those
        when there is no --data, the usual defaults otherwise. ``adam=True`` is ``optimizer="adam"``;
        ``distill_weight`` needs a ``teacher``."""
        check_distill_options(given.get("teacher"), given.get("distill_weight"))
        values = {k: v for k, v in given.items() if v is not None and k != "adam"}
        if given.get("adam"):
            if values.get("optimizer", "adam") != "adam":
                raise YolorError(f"--adam means --optimizer adam, not {values['optimizer']}", hint="give one of them")
            values["optimizer"] = "adam"
        if not values.get("data"):
            measured = values.get("epochs", DEMO_DEFAULTS["epochs"]) == DEMO_DEFAULTS["epochs"]
            values = {**DEMO_DEFAULTS, **(DEMO_RECIPE if measured else {}), **values}
        return cls.from_dict(values)


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


def cache_dir() -> Path:
    return Path(
        os.environ.get("YOLOR_CACHE_DIR")
        or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "yolor-cli"
    )


def demo_data(reporter: Reporter) -> Path:
    """The built-in data: generated once into the cache folder, then reused."""
    root = cache_dir() / f"demo-shapes-v{DEMO_VERSION}"
    data = root / "data.yaml"
    if not data.exists():
        partial = root.with_name(root.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)  # left by an interrupted generation
        synthesize(partial, images=DEMO_IMAGES, seed=0, reporter=reporter)
        partial.rename(root)  # appears whole or not at all
        prepare_dataset(root, val=0.15, test=0.0, seed=0, reporter=reporter)
    return data


def transfer_weights(model: DarknetModel, state: dict[str, torch.Tensor]) -> tuple[int, int]:
    """Copy every tensor whose name and shape match (a new head for another class count is skipped)."""
    own = model.state_dict()
    matching = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    own.update(matching)
    model.load_state_dict(own)
    return len(matching), len(own)


def _latest_last(project: Path) -> Path:
    candidates = sorted(project.glob("*/weights/last.pt"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise YolorError(
            f"no run to resume under {project}", hint="pass the path: --resume runs/train/exp/weights/last.pt"
        )
    return candidates[-1]


def _write_yaml(path: Path, values: dict[str, Any]) -> None:
    payload = yaml.safe_dump(values, sort_keys=False).encode()
    atomic_write(path, lambda stream: stream.write(payload))


# ---- the plan: what a run will do, decided once ---------------------------------------------------


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

    @property
    def device(self) -> str:
        return self.options.device


def _resume_point(last: Path | None, project: str) -> ResumePoint:
    path = last if last is not None else _latest_last(Path(project))
    ckpt = load_checkpoint(path)
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


def plan_training(options: TrainOptions, *, resume: bool = False, last: str | Path | None = None) -> TrainPlan:
    """The run to do: a new one with ``options``, or with ``resume`` the one ``last`` (default: the
    newest last.pt under ``options.project``) stopped, with its own options and ``options.device``
    when one is given (another machine)."""
    if not resume:
        return TrainPlan(options, launch=distributed.wants_launch(options.device))
    point = _resume_point(Path(last) if last is not None else None, options.project)
    teacher = point.options.teacher
    if teacher and not point.ending and not Path(teacher).is_file():
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


def train(plan: TrainPlan, reporter: Reporter | None = None) -> TrainResult:
    """Run (or continue, or finish) the planned training; in a torchrun process, this process's part of it."""
    if plan.resume is not None and plan.resume.ending:
        return _finish(plan.resume, reporter or SilentReporter())
    context, device = distributed.start(plan.device)
    try:
        return _train(plan, context, device, (reporter or SilentReporter()) if context.is_main else SilentReporter())
    finally:
        distributed.stop()


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


def _checked_options(
    options: TrainOptions, context: distributed.DistributedContext, device: torch.device, notes: list[str]
) -> TrainOptions:
    """Refuse options that cannot work together; note (and drop) those that would do nothing."""
    if options.batch_size % context.world_size:
        raise YolorError(f"--batch-size {options.batch_size} is not a multiple of the {context.world_size} processes")
    if options.rect and options.image_weights:
        raise YolorError(
            "--rect and --image-weights cannot be combined",
            hint="rectangular batches need the dataset order; image weights redraw it",
        )
    if options.sync_bn and not (context.enabled and device.type == "cuda"):
        notes.append("--sync-bn only works with several GPU processes (DDP on CUDA); ignored")
        options = dataclasses.replace(options, sync_bn=False)
    return options


def _recipe_notes(options: TrainOptions, recipe: Recipe, notes: list[str]) -> None:
    if options.sparsity and recipe.optimizer != "sgd":
        notes.append(
            "--sparsity with Adam: Adam rescales the L1 gradient like any other, so every BatchNorm scale "
            "shrinks about evenly and few channels are singled out (measured on the demo); network "
            "slimming is meant for SGD (train with --optimizer sgd; the demo profile and short runs "
            "under --optimizer auto use Adam)"
        )


def _seed(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def _hyp_name(options: TrainOptions) -> str:
    return options.hyp or (DEFAULT_HYP if options.data else DEMO_HYP)


def _load_data(options: TrainOptions, reporter: Reporter) -> tuple[Path, DataConfig, Hyp]:
    data_path = Path(options.data) if options.data else demo_data(reporter)
    data = load_data_config(data_path)
    return data_path, data.as_single_class() if options.single_cls else data, load_hyp(_hyp_name(options))


def _recipe(options: TrainOptions, dataset: DetectionDataset, data: DataConfig, hyp: Hyp) -> Recipe:
    """The run's recipe: a resumed run's own, else decided now from its size (the same in every process)."""
    if options.recipe is not None:
        return options.recipe
    return decide_recipe(
        options.optimizer,
        epochs=options.epochs,
        train_images=len(dataset),
        batch_size=options.batch_size,
        hyp=hyp,
        hyp_given=options.hyp is not None,
        nominal_batch_size=options.nominal_batch_size,
    )


def _model(
    options: TrainOptions, resume: ResumePoint | None, data: DataConfig, notes: list[str]
) -> tuple[DarknetModel, tuple[int, int] | None]:
    """The model to train, with the image sizes checked against its stride before any epoch runs.
    Returns the tensors transferred from --weights (matching, total), if any."""
    model, transferred = _resumed_model(resume) if resume is not None else _new_model(options, data, notes)
    model.check_img_size(options.img_size)
    if options.test_img_size:
        model.check_img_size(options.test_img_size)  # before training, not after the first epoch
    return model, transferred


def _resumed_model(resume: ResumePoint) -> tuple[DarknetModel, None]:
    model = build_model(resume.checkpoint.cfg)
    load_state(model, resume.checkpoint.model_state, "the resumed checkpoint")
    return model, None


def _new_model(
    options: TrainOptions, data: DataConfig, notes: list[str]
) -> tuple[DarknetModel, tuple[int, int] | None]:
    cfg = load_cfg(options.cfg) if options.cfg else None
    if options.weights is None:
        return build_model(cfg or load_cfg(DEMO_CFG), nc=data.nc), None
    ckpt = load_checkpoint(options.weights, cfg)
    notes.extend(ckpt.notes)
    model = build_model(ckpt.cfg, nc=data.nc)  # the checkpoint's architecture (pruned shapes too), data's classes
    if ckpt.nc != data.nc:
        notes.append(f"{options.weights} has {ckpt.nc} classes, the data {data.nc}: the detection heads start anew")
    return model, transfer_weights(model, ckpt.best_state())


def _distiller(options: TrainOptions, model: DarknetModel, data: DataConfig, hyp: Hyp) -> Distiller | None:
    """--teacher: the teacher loaded and checked against the student and the data before any epoch."""
    if not options.teacher:
        return None
    return Distiller.from_checkpoint(
        options.teacher, student=model, names=list(data.names), hyp=hyp, weight=options.distill_weight
    )


def _teacher_metrics(
    distiller: Distiller,
    data: DataConfig,
    options: TrainOptions,
    batch_size: int,
    device: torch.device,
    reporter: Reporter,
) -> dict[str, float] | None:
    """The teacher on the val split, once, as validation will score the student (None with --noval):
    the figures a distilled student is measured against."""
    if options.noval:
        return None
    result, _ = evaluate_model(
        distiller.teacher,
        data,
        task="val",
        img_size=options.test_img_size or options.img_size,
        batch_size=batch_size,
        device=device,
    )
    m = result.metrics
    reporter.info(f"teacher {distiller.source}: mAP50 {m.map50:.3f}, mAP50-95 {m.map:.3f}")
    return {"precision": m.precision, "recall": m.recall, "map50": m.map50, "map": m.map}


def _check_labels(dataset: DetectionDataset, data: DataConfig) -> None:
    """Training on labels whose classes the data file lacks would silently drop them: refuse."""
    scan = dataset.label_scan
    if scan is not None and scan.class_out_of_range:
        raise DataError(
            f"{scan.class_out_of_range} label rows name a class that {data.source} does not have "
            f"(e.g. {scan.first_out_of_range})",
            hint="fix the labels or the names in the data file",
        )


def _train_dataset(
    options: TrainOptions,
    data: DataConfig,
    hyp: Hyp,
    stride: int,
    context: distributed.DistributedContext,
    reporter: Reporter,
) -> DetectionDataset:
    """This process's training set, its labels checked; the validation set is read too, to fail early."""
    dataset = build_dataset(
        data,
        "train",
        img_size=options.img_size,
        batch_size=options.batch_size // context.world_size,
        hyp=hyp,
        augment=True,
        rect=options.rect,
        stride=stride,
        cache_images=options.cache_images,
        seed=options.seed + context.rank,
        reporter=reporter,
    )
    _check_labels(dataset, data)
    if not options.noval:
        build_dataset(data, "val", img_size=options.img_size, batch_size=1, reporter=reporter)
    return dataset


def _sampler(
    dataset: DetectionDataset, options: TrainOptions, context: distributed.DistributedContext, per_process: int
) -> Sampler | None:
    if options.rect and context.enabled:
        return RectBlockSampler(len(dataset), per_process, rank=context.rank, world_size=context.world_size)
    if options.image_weights:
        return WeightedImageSampler(
            np.ones(len(dataset)), seed=options.seed, rank=context.rank, world_size=context.world_size
        )
    if context.enabled:
        return DistributedSampler(
            dataset, num_replicas=context.world_size, rank=context.rank, shuffle=not options.rect, seed=options.seed
        )
    return None


def _loader(
    dataset: DetectionDataset, options: TrainOptions, context: distributed.DistributedContext, sampler: Sampler | None
) -> DataLoader:
    per_process = options.batch_size // context.world_size
    workers = min(options.workers, max((os.cpu_count() or 1) // context.world_size, 1), per_process)
    return build_dataloader(
        dataset,
        batch_size=per_process,
        workers=workers,
        shuffle=not options.rect and sampler is None,
        seed=options.seed + context.rank,
        sampler=sampler,
    )


def _plot_labels(dataset: DetectionDataset, names: list[str], path: Path, reporter: Reporter) -> None:
    rows = [record.labels for record in dataset.records if len(record.labels)]
    try:
        plot_labels(np.concatenate(rows) if rows else np.zeros((0, 5)), names, path)
    except MissingDependencyError:
        reporter.warning("labels.png and results.png need matplotlib: pip install 'yolor-cli[plots]'")


def _run_dir(
    options: TrainOptions,
    resume: ResumePoint | None,
    hyp: Hyp,
    dataset: DetectionDataset,
    data: DataConfig,
    reporter: Reporter,
) -> Path:
    """The run folder (a new exp* or the resumed one) with weights/, hyp.yaml, opt.yaml and, when new,
    labels.png. Rank 0 only."""
    save_dir = (
        resume.save_dir
        if resume is not None
        else new_run_dir(options.project, options.name, options.exist_ok, training=True)
    )
    (save_dir / "weights").mkdir(parents=True, exist_ok=True)
    _write_yaml(save_dir / "hyp.yaml", hyp.as_dict())
    _write_yaml(save_dir / "opt.yaml", dataclasses.asdict(options))
    if resume is None:
        _plot_labels(dataset, list(data.names), save_dir / "labels.png", reporter)
    return save_dir


def default_hooks(
    save_dir: Path,
    data: DataConfig,
    options: TrainOptions,
    resume: ResumePoint | None,
    bests: dict[str, float],
    per_process: int,
    reporter: Reporter,
) -> list[TrainHook]:
    """Everything a run writes and reports around its loop: rank 0's hooks (other ranks get only
    :func:`_every_rank_hooks`)."""
    hooks: list[TrainHook] = [
        ValidationHook(
            data,
            img_size=options.test_img_size or options.img_size,
            batch_size=per_process * 2,
            noval=options.noval,
            period=options.period,
            reporter=reporter,
        ),
        ResultsHook(save_dir / "results.csv", resume.start_epoch if resume is not None else 0, reporter),
        CheckpointHook(
            save_dir / "weights",
            list(data.names),
            options,
            bests,
            resume.class_maps if resume is not None else None,
        ),
        BatchPlotHook(save_dir, list(data.names)),
    ]
    board = tensorboard_hook(save_dir)
    return hooks if board is None else [*hooks, board]


def _every_rank_hooks(options: TrainOptions, dataset: DetectionDataset, reporter: Reporter) -> list[TrainHook]:
    """Hooks that change how each process trains, so every rank gets them."""
    closing = closing_epochs(options.close_mosaic, options.epochs)
    if not closing or not dataset.mosaic:  # --rect batches never make mosaics
        return []
    return [CloseMosaicHook(dataset, options.epochs - closing, reporter)]


def _image_weighting(
    sampler: Sampler | None, dataset: DetectionDataset, data: DataConfig, resume: ResumePoint | None
) -> ImageWeighting | None:
    if not isinstance(sampler, WeightedImageSampler):
        return None
    weighting = ImageWeighting(sampler, dataset.records, data.nc)
    if resume is not None and resume.class_maps and len(resume.class_maps) == data.nc:
        weighting.update(resume.class_maps)  # a resumed run draws as the interrupted one would have
    return weighting


def _trainer(
    model: DarknetModel,
    hyp: Hyp,
    loader: DataLoader,
    options: TrainOptions,
    context: distributed.DistributedContext,
    device: torch.device,
    hooks: list[TrainHook],
    weighting: ImageWeighting | None,
    recipe: Recipe,
    reporter: Reporter,
    amp: AmpMode,
    distiller: Distiller | None,
) -> Trainer:
    return Trainer(
        model,
        hyp,
        loader,
        epochs=options.epochs,
        batch_size=options.batch_size,
        device=device,
        img_size=options.img_size,
        optimizer=recipe.optimizer,
        multi_scale=options.multi_scale,
        nominal_batch_size=recipe.nominal_batch_size,
        warmup_iterations=recipe.warmup_iterations,
        seed=options.seed + context.rank,
        reporter=reporter,
        hooks=hooks,
        distributed=context,
        sync_bn=options.sync_bn,
        image_weighting=weighting,
        sparsity=options.sparsity,
        amp=amp,
        distiller=distiller,
    )


def _amp(
    options: TrainOptions, device: torch.device, notes: list[str], resume: ResumePoint | None
) -> tuple[TrainOptions, AmpMode]:
    """The run's AMP mode, decided once. opt.yaml keeps the request (--amp, --no-amp or neither), not
    the mode: a run resumed on another device resolves the same request there (an fp16 CUDA run
    resumed on a CPU does not turn into bf16 unasked), and a --amp/--no-amp given now wins."""
    requested, kept = options.amp, False
    if requested is None and resume is not None and resume.options.amp is not None:
        requested, kept = resume.options.amp, True
    amp = resolve_amp(device, requested)
    if kept:
        flag = "--amp" if requested else "--no-amp"
        reason = f"{amp.reason}; the resumed run's {flag}" if requested else f"the resumed run's {flag}"
        amp = dataclasses.replace(amp, reason=reason)
    if requested and not amp.enabled:
        notes.append(f"--amp is off on this machine: {amp.reason}; training in fp32")
    return dataclasses.replace(options, amp=requested, amp_mode=amp.name), amp


def _train(
    plan: TrainPlan, context: distributed.DistributedContext, device: torch.device, reporter: Reporter
) -> TrainResult:
    notes: list[str] = []
    options, resume = _checked_options(plan.options, context, device, notes), plan.resume
    options, amp = _amp(options, device, notes, resume)
    reporter.info(amp.describe())
    _seed(options.seed + context.rank)
    with distributed.main_first(context):  # rank 0 generates the demo data and writes label caches
        data_path, data, hyp = _load_data(options, reporter)
        model, transferred = _model(options, resume, data, notes)
        distiller = _distiller(options, model, data, hyp)
        dataset = _train_dataset(options, data, hyp, model.max_stride, context, reporter)
    recipe = _recipe(options, dataset, data, hyp)
    _recipe_notes(options, recipe, notes)
    reporter.info(recipe.header())
    if distiller is not None:
        reporter.info(f"distilling from the teacher {distiller.source}, weight {distiller.weight:g}")
    hyp = recipe.applied_to(hyp)
    dataset.hyp = hyp  # auto's short-run augmentation; set before the loader starts its workers
    options = dataclasses.replace(
        options,
        data=str(data_path),
        hyp=_hyp_name(options),
        optimizer=recipe.optimizer,
        nominal_batch_size=recipe.nominal_batch_size,
        recipe=recipe,
    )
    per_process = options.batch_size // context.world_size
    sampler = _sampler(dataset, options, context, per_process)
    bests = dict(resume.bests) if resume is not None else {}  # the checkpoint hook updates them
    if context.is_main:  # rank is decided here, once: the other processes write nothing
        save_dir = _run_dir(options, resume, hyp, dataset, data, reporter)
        hooks = default_hooks(save_dir, data, options, resume, bests, per_process, reporter)
    else:
        save_dir, hooks = resume.save_dir if resume is not None else Path(options.project) / options.name, []
    hooks = [*_every_rank_hooks(options, dataset, reporter), *hooks]
    teacher_metrics = None
    if distiller is not None and context.is_main:
        teacher_metrics = _teacher_metrics(distiller, data, options, per_process * 2, device, reporter)
    trainer = _trainer(
        model,
        hyp,
        _loader(dataset, options, context, sampler),
        options,
        context,
        device,
        hooks,
        _image_weighting(sampler, dataset, data, resume),
        recipe,
        reporter,
        amp,
        distiller,
    )
    start_epoch = 0
    if resume is not None:
        ckpt, start_epoch = resume.checkpoint, resume.start_epoch
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
        transferred=transferred,
        notes=notes,
        is_main=context.is_main,
        teacher_metrics=teacher_metrics,
    )
