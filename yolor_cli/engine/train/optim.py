"""Optimiser, learning-rate schedule, warmup and EMA as YOLOR trains (groundwork for the trainer).

- Three parameter groups: BatchNorm weights and implicit vectors without weight decay, conv
  weights with decay, biases without decay (and with their own warmup learning rate). SGD with
  Nesterov momentum, Adam (decay added to the gradient, as YOLOR's ``--adam``) or AdamW (decay
  decoupled from the gradient, as Ultralytics' short-run choice).
- Cosine schedule from lr0 to lr0 * lrf; warmup ramps learning rates, momentum and gradient
  accumulation over the first iterations; a nominal batch of 64 is reached by accumulation.
- EMA of the weights with a decay that ramps up over the first updates.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from yolor_cli.engine.config import Hyp
from yolor_cli.engine.train.recipe import (  # the pure arithmetic lives with the recipe (no torch there)
    NOMINAL_BATCH_SIZE,
    OPTIMIZERS,
    accumulation_steps,
    yolor_warmup_iterations,
)

EMA_DECAY = 0.9999
EMA_RAMP = 2000  # updates over which the EMA decay rises towards EMA_DECAY
ADAM_BETA2 = 0.999


def build_optimizer(
    model: nn.Module,
    hyp: Hyp,
    *,
    batch_size: int,
    optimizer: str = "sgd",
    nominal_batch_size: int = NOMINAL_BATCH_SIZE,
) -> torch.optim.Optimizer:
    """Group 0: no decay (BatchNorm weights, implicit vectors); group 1: conv weights with decay
    scaled to the nominal batch; group 2: biases. Build after pruning: pruning replaces parameters.

    ``optimizer`` is one of :data:`OPTIMIZERS`. AdamW's decay is decoupled (the weights shrink by
    lr x decay each step, whatever the gradient); Adam's is added to the gradient, so Adam's
    normalisation rescales it like any other gradient."""
    no_decay, decay, biases = [], [], []
    for name, parameter in model.named_parameters():  # every parameter lands in exactly one group
        if name.endswith(".bias"):
            biases.append(parameter)
        elif name.endswith("Conv2d.weight"):
            decay.append(parameter)
        else:  # BatchNorm weights, implicit vectors, weighted-shortcut weights
            no_decay.append(parameter)
    steps = accumulation_steps(batch_size, nominal_batch_size)
    weight_decay = hyp.weight_decay * batch_size * steps / nominal_batch_size
    built = _optimizer(optimizer, no_decay, hyp)
    built.add_param_group({"params": decay, "weight_decay": weight_decay})
    built.add_param_group({"params": biases})
    return built


def _optimizer(name: str, params: list[nn.Parameter], hyp: Hyp) -> torch.optim.Optimizer:
    """The optimizer with its first group; ``weight_decay=0`` is explicit because it is the default of
    the later groups too (AdamW's own default, 0.01, would decay BatchNorm scales and biases)."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=hyp.lr0, momentum=hyp.momentum, nesterov=True, weight_decay=0.0)
    if name == "adam":
        return torch.optim.Adam(params, lr=hyp.lr0, betas=(hyp.momentum, ADAM_BETA2), weight_decay=0.0)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=hyp.lr0, betas=(hyp.momentum, ADAM_BETA2), weight_decay=0.0)
    raise ValueError(f"unknown optimizer {name!r}; expected one of {', '.join(OPTIMIZERS)}")


def cosine_lambda(epochs: int, lrf: float) -> Callable[[int], float]:
    """Learning-rate factor per epoch: 1 at the start, lrf at the end, along half a cosine."""
    return lambda epoch: ((1 + math.cos(epoch * math.pi / epochs)) / 2) * (1 - lrf) + lrf


@dataclass(frozen=True)
class Warmup:
    """Ramps for the first ``iterations`` optimiser iterations of a run."""

    iterations: int
    hyp: Hyp
    batch_size: int
    nominal_batch_size: int = NOMINAL_BATCH_SIZE

    @classmethod
    def for_run(
        cls,
        hyp: Hyp,
        batches_per_epoch: int,
        epochs: int,
        batch_size: int,
        nominal_batch_size: int = NOMINAL_BATCH_SIZE,
    ) -> Warmup:
        return cls(
            iterations=yolor_warmup_iterations(hyp.warmup_epochs, batches_per_epoch, epochs),
            hyp=hyp,
            batch_size=batch_size,
            nominal_batch_size=nominal_batch_size,
        )

    def accumulate(self, iteration: int) -> int:
        """Batches per optimiser step: from 1 up to the nominal batch over the warmup."""
        if iteration >= self.iterations:
            return accumulation_steps(self.batch_size, self.nominal_batch_size)
        target = self.nominal_batch_size / self.batch_size
        return max(1, round(float(np.interp(iteration, [0, self.iterations], [1, target]))))

    def apply(self, optimizer: torch.optim.Optimizer, iteration: int, epoch_factor: float) -> None:
        """Set learning rates and momentum for this iteration (no-op after the warmup)."""
        if iteration >= self.iterations:
            return
        span = [0, self.iterations]
        for index, group in enumerate(optimizer.param_groups):
            start = self.hyp.warmup_bias_lr if index == 2 else 0.0
            group["lr"] = float(np.interp(iteration, span, [start, group["initial_lr"] * epoch_factor]))
            if "momentum" in group:
                group["momentum"] = float(np.interp(iteration, span, [self.hyp.warmup_momentum, self.hyp.momentum]))


class ModelEMA:
    """Exponential moving average of a model's weights, the copy that is evaluated and saved."""

    def __init__(self, model: nn.Module, updates: int = 0) -> None:
        self.ema = copy.deepcopy(model).eval()
        self.updates = updates
        for parameter in self.ema.parameters():
            parameter.requires_grad_(False)

    def decay(self) -> float:
        return EMA_DECAY * (1 - math.exp(-self.updates / EMA_RAMP))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay()
        source = model.state_dict()
        for name, value in self.ema.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(d).add_(source[name].detach(), alpha=1 - d)
            else:
                value.copy_(source[name])
