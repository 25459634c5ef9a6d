"""The training loop: one step function and hooks for everything around it.

``run_step`` does data -> forward -> loss -> backward -> (accumulated) optimiser step -> EMA, on
one AMP path (``GradScaler(enabled=...)``, autocast off on CPU). Validation, checkpoints, the
results table and progress are hooks; which hooks exist is decided once, when they are built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader

from yolor_cli.engine.config import Hyp
from yolor_cli.engine.darknet import DarknetModel
from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.loss import YolorLoss
from yolor_cli.engine.metrics import Metrics
from yolor_cli.engine.optim import ModelEMA, Warmup, build_optimizer, cosine_lambda
from yolor_cli.engine.reporting import Reporter

LOSS_NAMES = ("box", "obj", "cls", "total")
MULTI_SCALE_RANGE = (0.5, 1.5)


class TrainingError(YolorError):
    """Training cannot go on (a NaN loss, say); last.pt holds the last good epoch."""


@dataclass
class TrainState:
    """What hooks read and write; the trainer owns it."""

    epoch: int
    epochs: int
    iteration: int = 0
    last_step: int = -1
    mean_losses: np.ndarray = field(default_factory=lambda: np.zeros(len(LOSS_NAMES)))
    metrics: Metrics | None = None
    fitness: float | None = None
    stop: bool = False


class Hook(Protocol):
    def after_epoch(self, trainer: Trainer, state: TrainState) -> None: ...

    def after_train(self, trainer: Trainer, state: TrainState) -> None: ...


class Trainer:
    def __init__(self, model: DarknetModel, hyp: Hyp, loader: DataLoader, *, epochs: int, batch_size: int,
                 device: torch.device, img_size: int, adam: bool = False, multi_scale: bool = False,
                 seed: int = 0, reporter: Reporter, hooks: list[Hook] | None = None) -> None:
        self.model = model.to(device)
        self.hyp = hyp
        self.loader = loader
        self.device = device
        self.img_size = img_size
        self.multi_scale = multi_scale
        self.reporter = reporter
        self.hooks = hooks or []
        self.optimizer = build_optimizer(model, hyp, batch_size=batch_size, adam=adam)
        self.lr_factor = cosine_lambda(epochs, hyp.lrf)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda=self.lr_factor)
        self.warmup = Warmup.for_run(hyp, len(loader), epochs, batch_size)
        self.scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
        self.ema = ModelEMA(model)
        self.loss = YolorLoss(model, hyp)
        self.rng = np.random.default_rng(seed)

    # ---- resuming -------------------------------------------------------------------------
    def load_state(self, optimizer: dict | None, scaler: dict | None, ema: dict | None, ema_updates: int,
                   epoch: int) -> None:
        """Continue after ``epoch`` (the last finished one)."""
        if optimizer is not None:
            self.optimizer.load_state_dict(optimizer)
        if scaler is not None:
            self.scaler.load_state_dict(scaler)
        if ema is not None:
            self.ema.ema.load_state_dict(ema)
            self.ema.updates = ema_updates
        self.scheduler.last_epoch = epoch
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * self.lr_factor(epoch + 1)

    # ---- the loop -------------------------------------------------------------------------
    def _images(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True).float() / 255.0
        if self.multi_scale:
            stride = self.model.max_stride
            low, high = (int(self.img_size * f) for f in MULTI_SCALE_RANGE)
            size = int(self.rng.integers(low, high + stride)) // stride * stride
            if size != images.shape[2]:
                factor = size / max(images.shape[2:])
                shape = [math.ceil(x * factor / stride) * stride for x in images.shape[2:]]
                images = torch.nn.functional.interpolate(images, size=shape, mode="bilinear", align_corners=False)
        return images

    def run_step(self, images: torch.Tensor, targets: torch.Tensor, state: TrainState) -> torch.Tensor:
        self.warmup.apply(self.optimizer, state.iteration, self.lr_factor(state.epoch))
        with torch.autocast(self.device.type, enabled=self.device.type == "cuda"):
            raw = self.model(self._images(images))
            loss, items = self.loss([p.float() for p in raw], targets.to(self.device))
        if not torch.isfinite(loss):
            raise TrainingError(f"the loss became {loss.item()} at epoch {state.epoch}, iteration {state.iteration}",
                                hint="lower lr0 in the hyperparameters, or check the labels; last.pt holds the "
                                     "last good epoch")
        self.scaler.scale(loss).backward()
        if state.iteration - state.last_step >= self.warmup.accumulate(state.iteration):
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad()
            self.ema.update(self.model)
            state.last_step = state.iteration
        state.iteration += 1
        return items

    def train(self, start_epoch: int, epochs: int) -> TrainState:
        state = TrainState(epoch=start_epoch, epochs=epochs, iteration=start_epoch * len(self.loader))
        for epoch in range(start_epoch, epochs):
            state.epoch = epoch
            self.model.train()
            totals = np.zeros(len(LOSS_NAMES))
            batches = 0
            description = f"Epoch {epoch + 1}/{epochs}"
            for images, targets, _, _ in self.reporter.track(self.loader, description, total=len(self.loader)):
                items = self.run_step(images, targets, state).cpu().numpy()
                totals += items
                batches += 1
                mean = totals / batches
                memory = torch.cuda.memory_reserved(self.device) / 1e9 if self.device.type == "cuda" else 0.0
                self.reporter.describe(
                    f"{description}  mem {memory:.2f}G  box {mean[0]:.4f}  obj {mean[1]:.4f}  cls {mean[2]:.4f}  "
                    f"total {mean[3]:.4f}  targets {len(targets)}  size {images.shape[-1]}")
            state.mean_losses = totals / max(batches, 1)
            self.scheduler.step()
            for hook in self.hooks:
                hook.after_epoch(self, state)
            if state.stop:
                break
        for hook in self.hooks:
            hook.after_train(self, state)
        return state

    def learning_rates(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]
