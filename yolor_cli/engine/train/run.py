"""``yolor train`` as an engine call: options, data, model, run folder, hooks, resume, DDP.

The loop itself is :mod:`yolor_cli.engine.train.trainer`; what a run writes around it is
:mod:`yolor_cli.engine.train.hooks`. Without ``--data`` a run uses the built-in demo data and the
demo profile (:data:`DEMO_DEFAULTS`), chosen so that a CPU reaches a useful mAP in minutes.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.utils.data import DistributedSampler, Sampler

from yolor_cli.engine.config import DataConfig, Hyp, load_data_config, load_hyp
from yolor_cli.engine.data.dataset import DetectionDataset
from yolor_cli.engine.data.loader import build_dataloader, build_dataset
from yolor_cli.engine.data.prepare import prepare_dataset
from yolor_cli.engine.data.sampling import RectBlockSampler, WeightedImageSampler
from yolor_cli.engine.data.synth import synthesize
from yolor_cli.engine.errors import DataError, MissingDependencyError, YolorError
from yolor_cli.engine.evaluate.plots import plot_labels
from yolor_cli.engine.files import atomic_write, interrupts_deferred
from yolor_cli.engine.model.bundled import load_cfg
from yolor_cli.engine.model.checkpoint import Checkpoint, load_checkpoint, load_state
from yolor_cli.engine.model.darknet import DarknetModel, build_model
from yolor_cli.engine.reporting import Reporter, SilentReporter
from yolor_cli.engine.runs import new_run_dir
from yolor_cli.engine.train import distributed
from yolor_cli.engine.train.hooks import (
    METRIC_NAMES,
    BatchPlotHook,
    CheckpointHook,
    ResultsHook,
    ValidationHook,
    final_files,
    finish_checkpoints,
    read_results,
    tensorboard_hook,
)
from yolor_cli.engine.train.optim import NOMINAL_BATCH_SIZE
from yolor_cli.engine.train.trainer import ImageWeighting, Trainer, TrainHook

DEMO_CFG = "yolor_csp_tiny"
DEMO_IMAGES = 400
DEMO_VERSION = 1  # bump when the generated demo data changes, so caches are rebuilt
# The demo profile, for options the user leaves unset when training on the demo data. Measured on a
# 2-core CPU (see the README): Adam at lr 0.002 with no gradient accumulation reaches mAP50 ~0.95 in
# 10 epochs (~2.5 min), where YOLOR's SGD recipe (built for 300 epochs on COCO) is still near 0.05.
DEMO_DEFAULTS: dict[str, Any] = {
    "hyp": "demo",
    "epochs": 10,
    "batch_size": 8,
    "nominal_batch_size": 8,
    "img_size": 320,
    "adam": True,
}


@dataclass(frozen=True)
class TrainOptions:
    data: str | None = None
    cfg: str | None = None
    weights: str | None = None
    hyp: str = "scratch.640"
    epochs: int = 300
    batch_size: int = 8
    nominal_batch_size: int = NOMINAL_BATCH_SIZE
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
    adam: bool = False
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

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainOptions:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def resolve(cls, **given: Any) -> TrainOptions:
        """Options from the command line, where None means "not given": the demo profile fills those
        when there is no --data, the usual defaults otherwise."""
        values = {k: v for k, v in given.items() if v is not None}
        if not values.get("data"):
            values = {**DEMO_DEFAULTS, **values}
            if given.get("adam") is False:  # a flag left off is not a choice against Adam
                values["adam"] = True
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


def _model(options: TrainOptions, data: DataConfig, notes: list[str]) -> tuple[DarknetModel, tuple[int, int] | None]:
    cfg = load_cfg(options.cfg) if options.cfg else None
    if options.weights is None:
        return build_model(cfg or load_cfg(DEMO_CFG), nc=data.nc), None
    ckpt = load_checkpoint(options.weights, cfg)
    notes.extend(ckpt.notes)
    model = build_model(ckpt.cfg, nc=data.nc)  # the checkpoint's architecture (pruned shapes too), data's classes
    if ckpt.nc != data.nc:
        notes.append(f"{options.weights} has {ckpt.nc} classes, the data {data.nc}: the detection heads start anew")
    return model, transfer_weights(model, ckpt.best_state())


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


@dataclass
class _Resumed:
    checkpoint: Checkpoint
    options: TrainOptions
    start_epoch: int
    bests: dict[str, float]
    save_dir: Path
    class_maps: list[float] | None = None  # per-class mAP of the last validation (for --image-weights)
    ending: bool = False  # the last epoch is trained; only the end of the run is left to write


# The command reads the checkpoint to learn the device (to decide on torchrun) before training reads
# it again; one read is kept for the next call, if the file has not changed since.
_read_ahead: dict[tuple[str, int, int], Checkpoint] = {}


def _file_key(path: Path) -> tuple[str, int, int] | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return str(path.resolve()), status.st_mtime_ns, status.st_size


def _resume(resume: str, project: str, keep: bool = False) -> _Resumed:
    path = _latest_last(Path(project)) if resume == "" else Path(resume)
    key = _file_key(path)
    ckpt = _read_ahead.pop(key, None) if key else None
    _read_ahead.clear()
    if ckpt is None:
        ckpt = load_checkpoint(path)
    if keep and key:
        _read_ahead[key] = ckpt
    saved = (ckpt.train_options or {}).get("options")
    if not saved:
        raise YolorError(
            f"{path} does not record how it was trained, so it cannot be resumed",
            hint="start a new run with --weights to fine-tune from it",
        )
    options = TrainOptions.from_dict(saved)
    start_epoch = ckpt.epoch + 1
    if start_epoch >= options.epochs and ckpt.optimizer_state is None:
        raise YolorError(f"{path} finished all {options.epochs} epochs; nothing to resume")
    if ckpt.optimizer_state is None:
        raise YolorError(f"{path} has no optimizer state (the run ended and was stripped)")
    saved_maps = (ckpt.train_options or {}).get("class_maps")
    return _Resumed(
        ckpt,
        options,
        start_epoch,
        dict((ckpt.train_options or {}).get("bests") or {}),
        path.parent.parent,
        class_maps=[float(v) for v in saved_maps] if isinstance(saved_maps, list) else None,
        ending=start_epoch >= options.epochs or final_files(ckpt) is not None,
    )


def resume_device(resume: str, project: str, device: str) -> str:
    """The device a resumed run will use: the one given now, else the one it was started with."""
    return device or _resume(resume, project, keep=True).options.device


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


def _check_labels(dataset: DetectionDataset, data: DataConfig) -> None:
    """Training on labels whose classes the data file lacks would silently drop them: refuse."""
    scan = dataset.label_scan
    if scan is not None and scan.class_out_of_range:
        raise DataError(
            f"{scan.class_out_of_range} label rows name a class that {data.source} does not have "
            f"(e.g. {scan.first_out_of_range})",
            hint="fix the labels or the names in the data file",
        )


def _plot_labels(dataset: DetectionDataset, names: list[str], path: Path, reporter: Reporter) -> None:
    rows = [record.labels for record in dataset.records if len(record.labels)]
    try:
        plot_labels(np.concatenate(rows) if rows else np.zeros((0, 5)), names, path)
    except MissingDependencyError:
        reporter.warning("labels.png and results.png need matplotlib: pip install 'yolor-cli[plots]'")


def train(options: TrainOptions, *, resume: str | None = None, reporter: Reporter | None = None) -> TrainResult:
    """Run (or continue) a training; in a torchrun process, this process's part of it."""
    resumed = _resume(resume, options.project) if resume is not None else None
    if resumed is not None:  # the run's own options; a --device given now (another machine) wins
        options = dataclasses.replace(resumed.options, device=options.device or resumed.options.device)
    if resumed is not None and resumed.ending:
        return _finish(resumed, reporter or SilentReporter())
    context, device = distributed.start(options.device)
    try:
        return _train(
            options, resumed, context, device, (reporter or SilentReporter()) if context.is_main else SilentReporter()
        )
    finally:
        distributed.stop()


def _final_metrics(results: Path, epoch: int) -> dict[str, float]:
    rows = read_results(results, epoch + 1)
    last = rows[-1] if rows and int(rows[-1]["epoch"]) == epoch else {}
    return {name: float(last[name]) for name in METRIC_NAMES if last.get(name)}


def _finish(resumed: _Resumed, reporter: Reporter) -> TrainResult:
    """A run killed while writing its end: write it now, from the final last.pt (rank 0 only)."""
    if not distributed.DistributedContext.from_env().is_main:
        return TrainResult(resumed.save_dir, 0, None, is_main=False)
    epoch, results = resumed.checkpoint.epoch, resumed.save_dir / "results.csv"
    with interrupts_deferred():
        ResultsHook(results, epoch + 1, reporter).plot()
        finish_checkpoints(resumed.save_dir / "weights", resumed.checkpoint)
    return TrainResult(
        save_dir=resumed.save_dir,
        epochs_run=0,
        best_fitness=resumed.bests.get("fitness"),
        metrics=_final_metrics(results, epoch),
        notes=[
            f"{resumed.save_dir} had trained its last epoch ({epoch + 1}/{resumed.options.epochs}) "
            "but not written its final files; they are written now"
        ],
    )


def _train(
    options: TrainOptions,
    resumed: _Resumed | None,
    context: distributed.DistributedContext,
    device: torch.device,
    reporter: Reporter,
) -> TrainResult:
    notes: list[str] = []
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
    if options.sparsity and options.adam:
        notes.append(
            "--sparsity with Adam: Adam rescales the L1 gradient like any other, so every BatchNorm scale "
            "shrinks about evenly and few channels are singled out (measured on the demo); network "
            "slimming is meant for SGD (train without --adam; the demo profile uses Adam)"
        )
    torch.manual_seed(options.seed + context.rank)
    np.random.seed(options.seed + context.rank)
    with distributed.main_first(context):  # rank 0 generates the demo data and writes label caches
        data_path = Path(options.data) if options.data else demo_data(reporter)
        data = load_data_config(data_path)
        if options.single_cls:
            data = data.as_single_class()
        hyp: Hyp = load_hyp(options.hyp)
        if resumed is not None:
            model = build_model(resumed.checkpoint.cfg)
            load_state(model, resumed.checkpoint.model_state, "the resumed checkpoint")
            transferred = None
        else:
            model, transferred = _model(options, data, notes)
        model.check_img_size(options.img_size)
        if options.test_img_size:
            model.check_img_size(options.test_img_size)  # before training, not after the first epoch
        per_process = options.batch_size // context.world_size
        dataset = build_dataset(
            data,
            "train",
            img_size=options.img_size,
            batch_size=per_process,
            hyp=hyp,
            augment=True,
            rect=options.rect,
            stride=model.max_stride,
            cache_images=options.cache_images,
            seed=options.seed + context.rank,
            reporter=reporter,
        )
        _check_labels(dataset, data)
        if not options.noval:
            build_dataset(data, "val", img_size=options.img_size, batch_size=1, reporter=reporter)  # fail early
    sampler = _sampler(dataset, options, context, per_process)
    workers = min(options.workers, max((os.cpu_count() or 1) // context.world_size, 1), per_process)
    loader = build_dataloader(
        dataset,
        batch_size=per_process,
        workers=workers,
        shuffle=not options.rect and sampler is None,
        seed=options.seed + context.rank,
        sampler=sampler,
    )
    options = dataclasses.replace(options, data=str(data_path))
    hooks: list[TrainHook] = []
    save_dir = resumed.save_dir if resumed else Path(options.project) / options.name
    bests = resumed.bests if resumed else {}
    start_epoch = resumed.start_epoch if resumed else 0
    if context.is_main:
        if resumed is None:
            save_dir = new_run_dir(options.project, options.name, options.exist_ok)
        weights_dir = save_dir / "weights"
        weights_dir.mkdir(parents=True, exist_ok=True)
        _write_yaml(save_dir / "hyp.yaml", hyp.as_dict())
        _write_yaml(save_dir / "opt.yaml", dataclasses.asdict(options))
        if resumed is None:
            _plot_labels(dataset, list(data.names), save_dir / "labels.png", reporter)
        hooks = [
            ValidationHook(
                data,
                img_size=options.test_img_size or options.img_size,
                batch_size=per_process * 2,
                noval=options.noval,
                period=options.period,
                reporter=reporter,
            ),
            ResultsHook(save_dir / "results.csv", start_epoch, reporter),
            CheckpointHook(weights_dir, list(data.names), options, bests, resumed.class_maps if resumed else None),
            BatchPlotHook(save_dir, list(data.names)),
        ]
        board = tensorboard_hook(save_dir)
        if board is not None:
            hooks.append(board)
    weighting = ImageWeighting(sampler, dataset.records, data.nc) if isinstance(sampler, WeightedImageSampler) else None
    if weighting is not None and resumed is not None and resumed.class_maps and len(resumed.class_maps) == data.nc:
        weighting.update(resumed.class_maps)  # a resumed run draws as the interrupted one would have
    trainer = Trainer(
        model,
        hyp,
        loader,
        epochs=options.epochs,
        batch_size=options.batch_size,
        device=device,
        img_size=options.img_size,
        adam=options.adam,
        multi_scale=options.multi_scale,
        nominal_batch_size=options.nominal_batch_size,
        seed=options.seed + context.rank,
        reporter=reporter,
        hooks=hooks,
        distributed=context,
        sync_bn=options.sync_bn,
        image_weighting=weighting,
        sparsity=options.sparsity,
    )
    if resumed is not None:
        ckpt = resumed.checkpoint
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
    )
