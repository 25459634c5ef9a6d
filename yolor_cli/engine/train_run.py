"""``yolor train`` as an engine call: data, model, run folder, hooks, resume and the files a run writes."""

from __future__ import annotations

import csv
import dataclasses
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from yolor_cli.engine.checkpoint import Checkpoint, load_checkpoint, load_state, save_checkpoint
from yolor_cli.engine.config import DataConfig, Hyp, load_data_config, load_hyp
from yolor_cli.engine.configs import load_cfg
from yolor_cli.engine.darknet import DarknetModel, build_model
from yolor_cli.engine.data.loader import build_dataloader, build_dataset
from yolor_cli.engine.data.prepare import prepare_dataset
from yolor_cli.engine.data.synth import synthesize
from yolor_cli.engine.errors import DataError, YolorError
from yolor_cli.engine.evaluator import evaluate_model
from yolor_cli.engine.files import atomic_write
from yolor_cli.engine.reporting import Reporter, SilentReporter
from yolor_cli.engine.runs import new_run_dir
from yolor_cli.engine.runtime import select_device
from yolor_cli.engine.trainer import LOSS_NAMES, Trainer, TrainState

DEMO_CFG = "yolor_csp_tiny"
DEMO_IMAGES = 400
DEMO_VERSION = 1  # bump when the generated demo data changes, so caches are rebuilt
LAST_EPOCHS_KEPT = 5  # last_NNN.pt for the final epochs
BEST_HISTORY_FROM = 200  # best_NNN.pt for improvements after this epoch
RESULT_COLUMNS = ["epoch", *LOSS_NAMES, "precision", "recall", "map50", "map", "lr0", "lr1", "lr2"]
BEST_KEYS = ("p", "r", "ap50", "ap", "f")


@dataclass(frozen=True)
class TrainOptions:
    data: str | None = None
    cfg: str | None = None
    weights: str | None = None
    hyp: str = "scratch.640"
    epochs: int = 300
    batch_size: int = 8
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

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainOptions:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


@dataclass
class TrainResult:
    save_dir: Path
    epochs_run: int
    best_fitness: float | None
    metrics: dict[str, float] = field(default_factory=dict)
    transferred: tuple[int, int] | None = None
    notes: list[str] = field(default_factory=list)


def cache_dir() -> Path:
    return Path(os.environ.get("YOLOR_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                / "yolor-cli")


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
        raise YolorError(f"no run to resume under {project}", hint="pass the path: --resume runs/train/exp/weights/last.pt")
    return candidates[-1]


class ValidationHook:
    def __init__(self, data: DataConfig, options: TrainOptions, reporter: Reporter) -> None:
        self.data, self.options, self.reporter = data, options, reporter

    def after_epoch(self, trainer: Trainer, state: TrainState) -> None:
        final = state.epoch == state.epochs - 1
        if (self.options.noval or state.epoch < self.options.period) and not final:
            state.metrics, state.fitness = None, None
            return
        result, _ = evaluate_model(trainer.ema.ema, self.data, task="val",
                                   img_size=self.options.test_img_size or self.options.img_size,
                                   batch_size=self.options.batch_size * 2, device=trainer.device)
        state.metrics, state.fitness = result.metrics, result.metrics.fitness
        m = result.metrics
        self.reporter.info(f"epoch {state.epoch + 1}/{state.epochs}: loss {state.mean_losses[3]:.4f}  "
                           f"P {m.precision:.3f}  R {m.recall:.3f}  mAP50 {m.map50:.3f}  mAP50-95 {m.map:.3f}")

    def after_train(self, trainer: Trainer, state: TrainState) -> None:
        pass


class ResultsHook:
    """results.csv: one row per epoch; rows of epochs being redone after a resume are replaced."""

    def __init__(self, path: Path, start_epoch: int) -> None:
        self.path = path
        kept = []
        if path.exists():
            with path.open(newline="") as stream:
                kept = [row for row in csv.DictReader(stream) if int(row["epoch"]) < start_epoch]
        self.rows: list[dict[str, Any]] = kept

    def after_epoch(self, trainer: Trainer, state: TrainState) -> None:
        m = state.metrics
        values = [state.epoch, *state.mean_losses.tolist(), *(
            (m.precision, m.recall, m.map50, m.map) if m else ("", "", "", "")), *trainer.learning_rates()]
        self.rows.append(dict(zip(RESULT_COLUMNS, values)))
        lines = [",".join(RESULT_COLUMNS)] + [",".join(str(row[c]) for c in RESULT_COLUMNS) for row in self.rows]
        payload = ("\n".join(lines) + "\n").encode()
        atomic_write(self.path, lambda stream: stream.write(payload))

    def after_train(self, trainer: Trainer, state: TrainState) -> None:
        pass


class CheckpointHook:
    """The seed's checkpoint set, written atomically; the optimizer is stripped at the end."""

    def __init__(self, weights_dir: Path, names: list[str], options: TrainOptions, bests: dict[str, float]) -> None:
        self.dir, self.names, self.options = weights_dir, names, options
        self.bests = bests  # best fitness and best P, R, AP50, AP, F so far
        self.epochs_without_gain = 0

    def _checkpoint(self, trainer: Trainer, epoch: int, with_optimizer: bool) -> Checkpoint:
        return Checkpoint(cfg=trainer.model.cfg, model_state=trainer.model.state_dict(), names=self.names,
                          ema_state=trainer.ema.ema.state_dict(), ema_updates=trainer.ema.updates,
                          optimizer_state=trainer.optimizer.state_dict() if with_optimizer else None,
                          scaler_state=trainer.scaler.state_dict() if with_optimizer else None, epoch=epoch,
                          fitness=self.bests.get("fitness"),
                          train_options={"options": dataclasses.asdict(self.options), "bests": dict(self.bests)})

    def save_last(self, trainer: Trainer, epoch: int) -> None:
        save_checkpoint(self._checkpoint(trainer, epoch, with_optimizer=True), self.dir / "last.pt")

    def after_epoch(self, trainer: Trainer, state: TrainState) -> None:
        improved: list[str] = []
        m = state.metrics
        if m is not None:
            f_score = 2 * m.precision * m.recall / (m.precision + m.recall + 1e-16)  # the seed dropped the 2
            for key, value in (("fitness", m.fitness), ("p", m.precision), ("r", m.recall), ("ap50", m.map50),
                               ("ap", m.map), ("f", f_score)):
                if value > self.bests.get(key, -1.0):
                    self.bests[key] = value
                    improved.append(key)
        self.epochs_without_gain = 0 if "fitness" in improved else self.epochs_without_gain + 1
        final = state.epoch == state.epochs - 1
        if self.options.nosave and not final:
            return
        ckpt = self._checkpoint(trainer, state.epoch, with_optimizer=True)
        save_checkpoint(ckpt, self.dir / "last.pt")
        if self.options.nosave:
            return
        names = [f"best_{key}.pt" if key != "fitness" else "best.pt" for key in improved]
        if "fitness" in improved and state.epoch >= BEST_HISTORY_FROM:
            names.append(f"best_{state.epoch:03d}.pt")
        if state.epoch == 0 or (self.options.save_period > 0 and state.epoch % self.options.save_period == 0):
            names.append(f"epoch_{state.epoch:03d}.pt")
        if state.epoch >= state.epochs - LAST_EPOCHS_KEPT:
            names.append(f"last_{state.epoch:03d}.pt")
        for name in names:
            save_checkpoint(ckpt, self.dir / name)
        if self.options.patience and self.epochs_without_gain >= self.options.patience:
            state.stop = True

    def after_train(self, trainer: Trainer, state: TrainState) -> None:
        """Final files hold the EMA weights only: what evaluation and deployment use, a third of the size."""
        for path in sorted(self.dir.glob("*.pt")):
            ckpt = load_checkpoint(path)
            ckpt.model_state, ckpt.ema_state = ckpt.best_state(), None
            ckpt.optimizer_state = ckpt.scaler_state = None
            save_checkpoint(ckpt, path)


def _write_yaml(path: Path, values: dict[str, Any]) -> None:
    payload = yaml.safe_dump(values, sort_keys=False).encode()
    atomic_write(path, lambda stream: stream.write(payload))


def train(options: TrainOptions, *, resume: str | None = None, reporter: Reporter | None = None) -> TrainResult:
    reporter = reporter or SilentReporter()
    notes: list[str] = []
    start_epoch, bests, resumed = 0, {}, None
    save_dir: Path | None = None  # a new run folder is made only once the inputs have been checked
    if resume is not None:
        path = _latest_last(Path(options.project)) if resume == "" else Path(resume)
        resumed = load_checkpoint(path)
        saved = (resumed.train_options or {}).get("options")
        if not saved:
            raise YolorError(f"{path} does not record how it was trained, so it cannot be resumed",
                             hint="start a new run with --weights to fine-tune from it")
        options = TrainOptions.from_dict(saved)
        start_epoch = resumed.epoch + 1
        bests = dict((resumed.train_options or {}).get("bests") or {})
        if start_epoch >= options.epochs:
            raise YolorError(f"{path} finished all {options.epochs} epochs; nothing to resume")
        if resumed.optimizer_state is None:
            raise YolorError(f"{path} has no optimizer state (the run ended and was stripped)")
        save_dir = path.parent.parent
    torch.manual_seed(options.seed)
    np.random.seed(options.seed)
    data_path = Path(options.data) if options.data else demo_data(reporter)
    data = load_data_config(data_path)
    hyp: Hyp = load_hyp(options.hyp)
    if resumed is not None:
        model = build_model(resumed.cfg)
        load_state(model, resumed.model_state, str(resume))
        transferred = None
    else:
        model, transferred = _model(options, data, notes)
    device = select_device(options.device)
    model.check_img_size(options.img_size)
    dataset = build_dataset(data, "train", img_size=options.img_size, batch_size=options.batch_size, hyp=hyp,
                            augment=True, rect=options.rect, stride=model.max_stride,
                            cache_images=options.cache_images, seed=options.seed, reporter=reporter)
    bad_classes = [w for w in dataset.label_warnings if "is not below nc" in w]
    if bad_classes:
        raise DataError(f"{len(bad_classes)} label rows name a class that {data.source} does not have "
                        f"(e.g. {bad_classes[0]})", hint="fix the labels or the names in the data file")
    if not options.noval:
        build_dataset(data, "val", img_size=options.img_size, batch_size=1, reporter=reporter)  # fail early
    loader = build_dataloader(dataset, batch_size=options.batch_size, workers=options.workers,
                              shuffle=not options.rect, seed=options.seed)
    if save_dir is None:
        save_dir = new_run_dir(options.project, options.name, options.exist_ok)
    weights_dir = save_dir / "weights"
    weights_dir.mkdir(parents=True, exist_ok=True)
    _write_yaml(save_dir / "hyp.yaml", hyp.as_dict())
    _write_yaml(save_dir / "opt.yaml", {**dataclasses.asdict(options), "data": str(data_path)})
    options = dataclasses.replace(options, data=str(data_path))
    checkpoints = CheckpointHook(weights_dir, list(data.names), options, bests)
    hooks = [ValidationHook(data, options, reporter), ResultsHook(save_dir / "results.csv", start_epoch), checkpoints]
    trainer = Trainer(model, hyp, loader, epochs=options.epochs, batch_size=options.batch_size, device=device,
                      img_size=options.img_size, adam=options.adam, multi_scale=options.multi_scale,
                      seed=options.seed, reporter=reporter, hooks=hooks)
    if resumed is not None:
        trainer.load_state(resumed.optimizer_state, resumed.scaler_state, resumed.ema_state, resumed.ema_updates,
                           resumed.epoch)
    try:
        state = trainer.train(start_epoch, options.epochs)
    except KeyboardInterrupt:
        if not (weights_dir / "last.pt").exists():
            checkpoints.save_last(trainer, start_epoch - 1)
        raise
    final = state.metrics
    return TrainResult(save_dir=save_dir, epochs_run=state.epoch + 1 - start_epoch, best_fitness=bests.get("fitness"),
                       metrics={} if final is None else {"precision": final.precision, "recall": final.recall,
                                                         "map50": final.map50, "map": final.map},
                       transferred=transferred, notes=notes)
