"""The pieces of a training, built one step each from its options: data, model, teacher, datasets,
samplers, loader, run folder, hooks, AMP mode and trainer (:mod:`yolor_cli.engine.train.run` puts
them together). Also the built-in demo data a run without ``--data`` trains on.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
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
from yolor_cli.engine.files import atomic_write
from yolor_cli.engine.model.bundled import load_cfg
from yolor_cli.engine.model.checkpoint import load_checkpoint, load_state
from yolor_cli.engine.model.darknet import DarknetModel, build_model
from yolor_cli.engine.reporting import Reporter
from yolor_cli.engine.runs import new_run_dir
from yolor_cli.engine.runtime import AmpMode, resolve_amp
from yolor_cli.engine.tracking.tracker import NO_TRACKING, Tracker
from yolor_cli.engine.train import distributed
from yolor_cli.engine.train.distill import Distiller
from yolor_cli.engine.train.hooks import (
    BatchPlotHook,
    CheckpointHook,
    CloseMosaicHook,
    ResultsHook,
    TrackingHook,
    ValidationHook,
    closing_epochs,
    tensorboard_hook,
)
from yolor_cli.engine.train.options import DEMO_CFG, DEMO_HYP, DEMO_IMAGES, DEMO_VERSION, TrainOptions
from yolor_cli.engine.train.plan import ResumePoint
from yolor_cli.engine.train.recipe import Recipe, decide_recipe
from yolor_cli.engine.train.trainer import ImageWeighting, Trainer, TrainHook


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


def write_yaml(path: Path, values: dict[str, Any]) -> None:
    payload = yaml.safe_dump(values, sort_keys=False).encode()
    atomic_write(path, lambda stream: stream.write(payload))


def checked_options(
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
    if options.prune_to is not None and context.enabled:
        raise YolorError("--prune-to trains in one process", hint="give one device, e.g. --device 0")
    if options.sync_bn and not (context.enabled and device.type == "cuda"):
        notes.append("--sync-bn only works with several GPU processes (DDP on CUDA); ignored")
        options = dataclasses.replace(options, sync_bn=False)
    return options


def recipe_notes(options: TrainOptions, recipe: Recipe, notes: list[str]) -> None:
    if options.sparsity and recipe.optimizer != "sgd":
        notes.append(
            "--sparsity with Adam: Adam rescales the L1 gradient like any other, so every BatchNorm scale "
            "shrinks about evenly and few channels are singled out (measured on the demo); network "
            "slimming is meant for SGD (train with --optimizer sgd; the demo profile and short runs "
            "under --optimizer auto use Adam)"
        )


def seed(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def hyp_name(options: TrainOptions) -> str:
    return options.hyp or (DEFAULT_HYP if options.data else DEMO_HYP)


def load_data(options: TrainOptions, reporter: Reporter) -> tuple[Path, DataConfig, Hyp]:
    data_path = Path(options.data) if options.data else demo_data(reporter)
    data = load_data_config(data_path)
    return data_path, data.as_single_class() if options.single_cls else data, load_hyp(hyp_name(options))


def recipe(options: TrainOptions, dataset: DetectionDataset, data: DataConfig, hyp: Hyp) -> Recipe:
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


@dataclasses.dataclass(frozen=True)
class ModelStart:
    """Where the model to train comes from: the tensors transferred from --weights (matching, total)
    and the MLflow run that wrote --weights (its lineage), when known."""

    transferred: tuple[int, int] | None = None
    input_run_id: str | None = None


def model(
    options: TrainOptions, resume: ResumePoint | None, data: DataConfig, notes: list[str]
) -> tuple[DarknetModel, ModelStart]:
    """The model to train, with the image sizes checked against its stride before any epoch runs."""
    model, start = resumed_model(resume) if resume is not None else new_model(options, data, notes)
    model.check_img_size(options.img_size)
    if options.test_img_size:
        model.check_img_size(options.test_img_size)  # before training, not after the first epoch
    return model, start


def resumed_model(resume: ResumePoint) -> tuple[DarknetModel, ModelStart]:
    model = build_model(resume.checkpoint.cfg)
    load_state(model, resume.checkpoint.model_state, "the resumed checkpoint")
    return model, ModelStart()


def new_model(options: TrainOptions, data: DataConfig, notes: list[str]) -> tuple[DarknetModel, ModelStart]:
    cfg = load_cfg(options.cfg) if options.cfg else None
    if options.weights is None:
        return build_model(cfg or load_cfg(DEMO_CFG), nc=data.nc), ModelStart()
    ckpt = load_checkpoint(options.weights, cfg)
    notes.extend(ckpt.notes)
    model = build_model(ckpt.cfg, nc=data.nc)  # the checkpoint's architecture (pruned shapes too), data's classes
    if ckpt.nc != data.nc:
        notes.append(f"{options.weights} has {ckpt.nc} classes, the data {data.nc}: the detection heads start anew")
    return model, ModelStart(transfer_weights(model, ckpt.best_state()), ckpt.mlflow_run_id)


def distiller(options: TrainOptions, model: DarknetModel, data: DataConfig, hyp: Hyp) -> Distiller | None:
    """--teacher: the teacher loaded and checked against the student and the data before any epoch."""
    if not options.teacher:
        return None
    return Distiller.from_checkpoint(
        options.teacher, student=model, names=list(data.names), hyp=hyp, weight=options.distill_weight
    )


def teacher_metrics(
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


def check_labels(dataset: DetectionDataset, data: DataConfig) -> None:
    """Training on labels whose classes the data file lacks would silently drop them: refuse."""
    scan = dataset.label_scan
    if scan is not None and scan.class_out_of_range:
        raise DataError(
            f"{scan.class_out_of_range} label rows name a class that {data.source} does not have "
            f"(e.g. {scan.first_out_of_range})",
            hint="fix the labels or the names in the data file",
        )


def train_dataset(
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
    check_labels(dataset, data)
    if not options.noval:
        build_dataset(data, "val", img_size=options.img_size, batch_size=1, reporter=reporter)
    return dataset


def sampler(
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


def loader(
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


def plot_dataset_labels(dataset: DetectionDataset, names: list[str], path: Path, reporter: Reporter) -> None:
    rows = [record.labels for record in dataset.records if len(record.labels)]
    try:
        plot_labels(np.concatenate(rows) if rows else np.zeros((0, 5)), names, path)
    except MissingDependencyError:
        reporter.warning("labels.png and results.png need matplotlib: pip install 'yolor-cli[plots]'")


def run_dir(
    options: TrainOptions,
    resume: ResumePoint | None,
    hyp: Hyp,
    dataset: DetectionDataset,
    data: DataConfig,
    reporter: Reporter,
    restarted: Path | None = None,
) -> Path:
    """The run folder (a new exp*, the resumed one, or ``restarted``: the folder a restarted torchrun
    job made before, with no checkpoint) with weights/, hyp.yaml, opt.yaml and, when new, labels.png
    and the torchrun job's marker. Rank 0 only."""
    if resume is not None:
        save_dir = resume.save_dir
    else:
        save_dir = restarted or new_run_dir(options.project, options.name, options.exist_ok, training=True)
        distributed.mark_run(save_dir)
    (save_dir / "weights").mkdir(parents=True, exist_ok=True)
    write_yaml(save_dir / "hyp.yaml", hyp.as_dict())
    write_yaml(save_dir / "opt.yaml", dataclasses.asdict(options.with_absolute_paths()))
    if resume is None:
        plot_dataset_labels(dataset, list(data.names), save_dir / "labels.png", reporter)
    return save_dir


def default_hooks(
    save_dir: Path,
    data: DataConfig,
    options: TrainOptions,
    resume: ResumePoint | None,
    bests: dict[str, float],
    per_process: int,
    reporter: Reporter,
    tracker: Tracker = NO_TRACKING,
) -> list[TrainHook]:
    """Everything a run writes and reports around its loop: rank 0's hooks (other ranks get only
    :func:`every_rank_hooks`); MLflow's last, so that it copies the run's final files."""
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
    if board is not None:
        hooks.append(board)
    if tracker.enabled:
        hooks.append(TrackingHook(tracker, save_dir))
    return hooks


def every_rank_hooks(options: TrainOptions, dataset: DetectionDataset, reporter: Reporter) -> list[TrainHook]:
    """Hooks that change how each process trains, so every rank gets them."""
    closing = closing_epochs(options.close_mosaic, options.epochs)
    if not closing or not dataset.mosaic:  # --rect batches never make mosaics
        return []
    return [CloseMosaicHook(dataset, options.epochs - closing, reporter)]


def image_weighting(
    sampler: Sampler | None, dataset: DetectionDataset, data: DataConfig, resume: ResumePoint | None
) -> ImageWeighting | None:
    if not isinstance(sampler, WeightedImageSampler):
        return None
    weighting = ImageWeighting(sampler, dataset.records, data.nc)
    if resume is not None and resume.class_maps and len(resume.class_maps) == data.nc:
        weighting.update(resume.class_maps)  # a resumed run draws as the interrupted one would have
    return weighting


def trainer(
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


def amp(
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
