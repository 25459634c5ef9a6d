"""The training loop: one step function and hooks for everything around it.

``run_step`` does data -> forward -> loss -> backward -> (accumulated) optimiser step -> EMA, on
one AMP path (:func:`~yolor_cli.engine.runtime.resolve_amp`: the forward autocast to fp16 on CUDA with
``GradScaler(enabled=...)``, to bf16 on a CPU with bf16 hardware when asked, or not at all; the loss, the
weights, the optimiser state and the EMA stay fp32). Validation, checkpoints, the
results table and progress are hooks; which hooks exist is decided once, when they are built.
With ``--teacher`` (:mod:`yolor_cli.engine.train.distill`), each step also runs the teacher on the
same images and adds the weighted distillation term to the loss before the backward pass; the progress
line shows it (``distill``), results.csv keeps its columns (``total`` stays the labels' loss).
Under DDP every process steps (each with its own teacher); rank 0 is given the hooks that validate,
write and report (and a reporter that shows anything), every rank the few that change how it trains
(``--close-mosaic``), and rank 0 shares its stop decision (and the per-class APs that
``--image-weights`` needs) with the others after each epoch.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from yolor_cli.engine.config import Hyp
from yolor_cli.engine.data.labels import ImageRecord
from yolor_cli.engine.data.sampling import WeightedImageSampler, class_weights, image_weights
from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.evaluate.metrics import Metrics
from yolor_cli.engine.files import interrupts_deferred
from yolor_cli.engine.model.darknet import DarknetModel
from yolor_cli.engine.reporting import Reporter
from yolor_cli.engine.runtime import AmpMode, channels_last, resolve_amp
from yolor_cli.engine.train.distill import Distiller
from yolor_cli.engine.train.distributed import SINGLE_PROCESS, DistributedContext, share_from_main
from yolor_cli.engine.train.loss import YolorLoss
from yolor_cli.engine.train.optim import NOMINAL_BATCH_SIZE, ModelEMA, Warmup, build_optimizer, cosine_lambda

LOSS_NAMES = ("box", "obj", "cls", "total")
PROGRESS_FIELDS = ("gpu_mem", *LOSS_NAMES, "targets", "img_size")  # the seed's columns after Epoch
DISTILL_FIELD = "distill"  # after "total" in the progress line of a run with a teacher
MULTI_SCALE_RANGE = (0.5, 1.5)


class TrainingError(YolorError):
    """Training cannot go on (a NaN loss, say); the hint says which epoch, if any, was saved."""


@dataclass
class TrainState:
    """What hooks read and write; the trainer owns it."""

    epoch: int
    epochs: int
    iteration: int = 0
    last_step: int = -1
    mean_losses: np.ndarray = field(default_factory=lambda: np.zeros(len(LOSS_NAMES)))
    metrics: Metrics | None = None
    val_losses: np.ndarray | None = None  # box, obj, cls, total on the validation set
    mean_distill: float | None = None  # the epoch's mean weighted distillation term, with a teacher
    fitness: float | None = None
    stop: bool = False


class TrainHook:
    """Something that runs around the loop on rank 0 (validation, files, plots); override what you need.
    A hook that changes how every process trains (closing mosaic) is given to every rank.

    ``records_epoch``: the hook writes the epoch's record that ``--resume`` reads (results.csv, the
    checkpoints). The trainer runs those hooks' ``after_epoch`` last and as one unit that Ctrl-C waits
    for, so an interrupted run never keeps an epoch in one record and not in the other."""

    records_epoch = False
    # A hook whose own state must survive --resume names it here: the checkpoints keep
    # ``state_dict()`` under this key of their train_options, and the hook reads it back from there.
    state_key: str | None = None

    def state_dict(self) -> dict:
        """What ``--resume`` needs of this hook (plain values), when it has a ``state_key``."""
        return {}

    def before_epoch(self, trainer: Trainer, state: TrainState) -> None:
        """Before the epoch's batches are drawn (loader workers have not started on them yet)."""

    def on_batch(
        self, trainer: Trainer, state: TrainState, batch: int, images: torch.Tensor, targets: torch.Tensor
    ) -> None:
        pass

    def after_epoch(self, trainer: Trainer, state: TrainState) -> None:
        pass

    def after_train(self, trainer: Trainer, state: TrainState) -> None:
        pass

    def on_interrupt(self, trainer: Trainer) -> None:
        """Ctrl-C stopped the epochs: leave what ``--resume`` needs."""


class ImageWeighting:
    """``--image-weights``: after each validation, images of classes with a low mAP are drawn more."""

    def __init__(self, sampler: WeightedImageSampler, records: list[ImageRecord], nc: int) -> None:
        self.sampler, self.records, self.nc = sampler, records, nc
        self.class_weights = class_weights(records, nc)
        self.sampler.set_weights(image_weights(records, self.class_weights))

    def update(self, class_maps: list[float]) -> None:
        weights = self.class_weights * (1 - np.asarray(class_maps)) ** 2
        self.sampler.set_weights(image_weights(self.records, weights))


def class_maps(metrics: Metrics | None, nc: int) -> list[float]:
    """Per-class mAP@0.5:0.95 (0 for classes without instances or without a validation)."""
    maps = [0.0] * nc
    for row in metrics.per_class if metrics is not None else []:
        maps[row.cls] = row.map or 0.0
    return maps


class Trainer:
    def __init__(
        self,
        model: DarknetModel,
        hyp: Hyp,
        loader: DataLoader,
        *,
        epochs: int,
        batch_size: int,
        device: torch.device,
        img_size: int,
        optimizer: str = "sgd",
        multi_scale: bool = False,
        nominal_batch_size: int = NOMINAL_BATCH_SIZE,
        warmup_iterations: int | None = None,
        seed: int = 0,
        reporter: Reporter,
        hooks: list[TrainHook] | None = None,
        distributed: DistributedContext = SINGLE_PROCESS,
        sync_bn: bool = False,
        image_weighting: ImageWeighting | None = None,
        sparsity: float = 0.0,
        amp: AmpMode | None = None,
        distiller: Distiller | None = None,
    ) -> None:
        """``batch_size`` is the total over all processes; ``loader`` gives this process's share.
        ``hooks`` run as given: under DDP, rank 0 gets the writing and reporting ones, every rank those
        that change how it trains.
        ``optimizer``: sgd, adam or adamw; ``warmup_iterations`` (None: YOLOR's, from the hyp) as the
        run's recipe decided (:mod:`yolor_cli.engine.train.recipe`). ``amp`` None is the device's
        automatic mode (as ``yolor train`` without ``--amp``/``--no-amp``). ``distiller``: a teacher to
        distil from (moved to ``device`` here)."""
        if sync_bn and distributed.enabled:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        # Channels-last convolutions: a faster forward+backward on CPU (see runtime.channels_last).
        # Converted before DDP wraps the model: its gradient buckets take each parameter's strides.
        self.model = channels_last(model, device)
        self.distributed = distributed
        self.train_model: nn.Module = self.model
        if distributed.enabled:
            self.train_model = DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None
            )
        self.hyp = hyp
        self.loader = loader
        self.device = device
        self.img_size = img_size
        self.multi_scale = multi_scale
        self.reporter = reporter
        self.hooks = hooks or []
        self.image_weighting = image_weighting
        self.sparsity = sparsity
        self.batch_norms = [m for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self.optimizer = build_optimizer(
            model, hyp, batch_size=batch_size, optimizer=optimizer, nominal_batch_size=nominal_batch_size
        )
        self.lr_factor = cosine_lambda(epochs, hyp.lrf)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda=self.lr_factor)
        self.warmup = (
            Warmup.for_run(hyp, len(loader), epochs, batch_size, nominal_batch_size)
            if warmup_iterations is None
            else Warmup(warmup_iterations, hyp, batch_size, nominal_batch_size)
        )
        self.amp = amp if amp is not None else resolve_amp(device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp.scaler)
        self.ema = ModelEMA(model)
        self.loss = YolorLoss(model, hyp)
        self.distiller = distiller.to(device) if distiller is not None else None
        self.last_distill: torch.Tensor | None = None  # the last step's weighted distillation term, per image
        self.rng = np.random.default_rng(seed)
        self.finished_epoch = -1  # the last epoch whose hooks ran (what Ctrl-C saves)

    # ---- resuming -------------------------------------------------------------------------
    def load_state(
        self, optimizer: dict | None, scaler: dict | None, ema: dict | None, ema_updates: int, epoch: int
    ) -> None:
        """Continue after ``epoch`` (the last finished one)."""
        if optimizer is not None:
            self.optimizer.load_state_dict(optimizer)
        if scaler:  # a run saved without a scaler (CPU, --no-amp) saved {}: a fresh one starts here
            self.scaler.load_state_dict(scaler)
        if ema is not None:
            self.ema.ema.load_state_dict(ema)
            self.ema.updates = ema_updates
        self.scheduler.last_epoch = epoch
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * self.lr_factor(epoch + 1)

    def swap_model(self, model: DarknetModel, ema_model: DarknetModel) -> None:
        """Train ``model`` from here on, with ``ema_model`` as its EMA (the EMA keeps its update count):
        for a hook that changes the architecture mid-run (gradual pruning). The optimizer must already
        hold ``model``'s parameters; the scheduler, warmup and GradScaler keep working on it as they are."""
        if self.distributed.enabled:
            raise TrainingError("the model cannot change shape under DDP", hint="train in one process")
        self.model = self.train_model = channels_last(model, self.device).train()
        self.ema.ema = channels_last(ema_model, self.device).eval().requires_grad_(False)
        self.batch_norms = [m for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    # ---- the loop -------------------------------------------------------------------------
    def _images(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True).float().div_(255.0)
        if self.multi_scale:
            stride = self.model.max_stride
            low, high = (int(self.img_size * f) for f in MULTI_SCALE_RANGE)
            size = int(self.rng.integers(low, high + stride)) // stride * stride
            if size != images.shape[2]:
                factor = size / max(images.shape[2:])
                shape = [math.ceil(x * factor / stride) * stride for x in images.shape[2:]]
                images = torch.nn.functional.interpolate(images, size=shape, mode="bilinear", align_corners=False)
        return images.contiguous(memory_format=torch.channels_last)

    def run_step(self, images: torch.Tensor, targets: torch.Tensor, state: TrainState) -> torch.Tensor:
        self.warmup.apply(self.optimizer, state.iteration, self.lr_factor(state.epoch))
        images = self._images(images)
        with torch.autocast(self.device.type, dtype=self.amp.dtype, enabled=self.amp.enabled):
            raw = self.train_model(images)
            teacher = self.distiller.teacher_maps(images) if self.distiller is not None else None
        # The loss outside autocast, on fp32 predictions: its exp, IoU and BCE need fp32's precision.
        raw = [p.float() for p in raw]
        loss, items = self.loss(raw, targets.to(self.device))
        if self.distiller is not None and teacher is not None:
            distill, distill_items = self.distiller.loss(raw, teacher)
            loss = loss + self.distiller.weight * distill
            self.last_distill = self.distiller.weight * distill_items[3]
        # DDP averages gradients over processes; scaling by their number keeps the step of the total batch.
        loss = loss * self.distributed.world_size
        if not torch.isfinite(loss):
            raise TrainingError(
                f"the loss became {loss.item()} at epoch {state.epoch + 1}, iteration {state.iteration}",
                hint=f"lower lr0 in the hyperparameters, or check the labels; {self._last_good_epoch()}",
            )
        self.scaler.scale(loss).backward()
        if self.sparsity:
            self._sparsity_gradient()
        if state.iteration - state.last_step >= self.warmup.accumulate(state.iteration):
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad()
            self.ema.update(self.model)
            state.last_step = state.iteration
        state.iteration += 1
        return items

    def _last_good_epoch(self) -> str:
        """What a run stopped by a bad loss leaves to go on from: nothing before its first epoch ends."""
        if self.finished_epoch < 0:
            return "no epoch had finished, so no checkpoint was written: start the run again"
        return f"epoch {self.finished_epoch + 1} was the last good one (its last.pt, unless --nosave)"

    @torch.no_grad()
    def _sparsity_gradient(self) -> None:
        """Network slimming: the gradient of sparsity * sum |gamma| over BatchNorm scales, so that
        unneeded channels drift to 0 and ``yolor prune --method bn`` can remove them cheaply."""
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else 1.0  # grads are scaled under AMP
        for batch_norm in self.batch_norms:
            if batch_norm.weight.grad is not None:
                batch_norm.weight.grad.add_(torch.sign(batch_norm.weight), alpha=self.sparsity * scale)

    def train(self, start_epoch: int, epochs: int) -> TrainState:
        """Epochs ``start_epoch`` to ``epochs - 1`` (or until a hook stops the run), then the end of the run.

        The end (the final checkpoints, results.png) is written whole: Ctrl-C waits for it, as for
        a single save. A run killed during it is finished by ``--resume``.
        """
        state = TrainState(epoch=start_epoch, epochs=epochs, iteration=start_epoch * len(self.loader))
        try:
            self._epochs(state, start_epoch, epochs)
        except KeyboardInterrupt:
            for hook in self.hooks:
                hook.on_interrupt(self)
            raise
        with interrupts_deferred():
            for hook in self.hooks:
                hook.after_train(self, state)
        return state

    def _epochs(self, state: TrainState, start_epoch: int, epochs: int) -> None:
        self.finished_epoch = start_epoch - 1
        for epoch in range(start_epoch, epochs):
            state.epoch = epoch
            for hook in self.hooks:
                hook.before_epoch(self, state)
            self._train_epoch(state)
            with warnings.catch_warnings():  # an epoch shorter than one accumulation has no optimizer step
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler")
                self.scheduler.step()
            self._after_epoch(state)
            validated = state.metrics is not None
            shared = share_from_main(
                self.distributed, [float(state.stop), float(validated), *class_maps(state.metrics, self.model.nc)]
            )
            state.stop = bool(shared[0])
            if self.image_weighting is not None and shared[1]:  # epochs without validation keep the last APs
                self.image_weighting.update(shared[2:])
            if state.stop:
                break

    def _after_epoch(self, state: TrainState) -> None:
        """The epoch's hooks: validation and reports first (Ctrl-C stops them at once), then the hooks
        that record the epoch, together: a Ctrl-C while results.csv is written waits for the
        checkpoints too, and the epoch counts as finished for ``on_interrupt`` once both are written."""
        for hook in self.hooks:
            if not hook.records_epoch:
                hook.after_epoch(self, state)
        with interrupts_deferred():
            for hook in self.hooks:
                if hook.records_epoch:
                    hook.after_epoch(self, state)
            self.finished_epoch = state.epoch

    def _train_epoch(self, state: TrainState) -> None:
        sampler = self.loader.sampler
        if hasattr(sampler, "set_epoch"):  # DistributedSampler and the image-weight sampler draw anew per epoch
            sampler.set_epoch(state.epoch)
        self.model.train()
        totals, distill_total = np.zeros(len(LOSS_NAMES)), 0.0
        description = f"{state.epoch + 1}/{state.epochs}"
        batches = self.reporter.track(self.loader, description, total=len(self.loader), fields=self.progress_fields)
        for batch, (images, targets, _, _) in enumerate(batches):
            for hook in self.hooks:
                hook.on_batch(self, state, batch, images, targets)
            totals += self.run_step(images, targets, state).cpu().numpy()
            mean = totals / (batch + 1)
            memory = torch.cuda.memory_reserved(self.device) / 1e9 if self.device.type == "cuda" else 0.0
            values = {
                "gpu_mem": f"{memory:.3g}G",
                **{name: f"{name} {value:.4f}" for name, value in zip(LOSS_NAMES, mean)},
                "targets": f"targets {len(targets)}",
                "img_size": f"size {images.shape[-1]}",
            }
            if self.last_distill is not None:
                distill_total += float(self.last_distill)
                values[DISTILL_FIELD] = f"{DISTILL_FIELD} {distill_total / (batch + 1):.4f}"
            self.reporter.update(values)
        state.mean_losses = totals / max(len(self.loader), 1)
        state.mean_distill = distill_total / max(len(self.loader), 1) if self.distiller is not None else None

    @property
    def progress_fields(self) -> tuple[str, ...]:
        """The progress line's columns: the seed's, and the distillation term after the total when distilling."""
        if self.distiller is None:
            return PROGRESS_FIELDS
        after_total = PROGRESS_FIELDS.index("total") + 1
        return (*PROGRESS_FIELDS[:after_total], DISTILL_FIELD, *PROGRESS_FIELDS[after_total:])

    def learning_rates(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]
