"""Gradual pruning inside one training run: ``yolor train --prune-to F`` and ``yolor prune auto --schedule
gradual``.

A trainer hook (:class:`GradualPruning`) removes a slice of channels every so many iterations from the end
of the run's warmup to :data:`CUT_PHASE` of its iterations, along the cubic schedule of Zhu & Gupta,
"To prune, or not to prune: exploring the efficacy of pruning for model compression" (2017, arXiv:1710.01878),
written for the kept fraction of the MACs::

    s_t = F + (1 - F) * (1 - (t - t0) / (n * dt)) ** 3,   t = t0 + dt, t0 + 2 dt, ..., t0 + n dt

(n cuts ``dt`` iterations apart, the last one at the end of the cut phase): big slices while the model
has redundancy to spare, thin ones as it nears the target. The model then recovers to the end of the same
run: one warmup, one learning-rate schedule, the teacher (``--teacher``) throughout. The cuts start (t0)
when the warmup ends, not at the first iteration: the warmup's rising learning rates already pull a
trained model down for a few epochs, and cutting through that compounds the two (see
benchmarks/README.md#gradual-against-steps). t0 is capped at half the cut phase, so a run whose warmup
fills most of it still cuts gradually.

How a cut keeps the run consistent:

- **Model and EMA, same channels.** The channels are ranked on the EMA weights (the smoothed copy that is
  validated and saved) with torch-pruning's global ranking (:func:`~yolor_cli.engine.prune.pruning.meta_pruner`),
  in small slices until the MACs reach the cut's share. The dependency graph records every group it
  removed; that history is replayed on the training model, so both lose the same channels and the EMA
  keeps its history (its update count and its averages of the kept channels). Both are then rebuilt from
  the pruned cfg (:func:`~yolor_cli.engine.prune.pruning.rebuild`), so the trainer's model is an ordinary
  one whose cfg the checkpoints write. Their BatchNorm running statistics are then re-estimated on the
  batch being trained: the cut changed what each layer receives, and statistics of the unpruned model
  made the next validation read near zero for a model that trains on unharmed.
- **Optimizer state sliced, not reset.** Each per-parameter buffer of the optimizer (SGD's momentum,
  Adam's two moments) is put into a copy of the model in place of its weights, and the same history is
  replayed on it: the buffers lose exactly the removed channels. The optimizer object stays; its param
  groups are re-pointed at the rebuilt model's parameters and its state re-keyed. A fresh state would throw
  away SGD's momentum and restart Adam's bias correction at every cut, a jolt many times per run. Keeping
  the object keeps the group settings (learning rate, ``initial_lr``, momentum, decay), so the LR scheduler
  and warmup go on as they were; the AMP GradScaler holds no parameters and keeps its scale.
- **Resume.** The hook's state (the schedule, the cuts done, the guard) is saved in every checkpoint
  (``train_options["gradual_pruning"]``) with the model at its current shapes (the cfg of the pruned
  model), so ``--resume`` after Ctrl-C or kill -9 builds the model as it was and makes the cuts still due.
- **Guard.** With a reference mAP50-95 (prune auto: the input's), each validation after the first cut
  and while cuts remain (the run validates every epoch) compares the EMA's mAP50-95 with a yardstick: the
  lower of the reference and the run's last validation before its first cut. The warmup's dip is the new
  run's, not the cuts', so it must not count against them; the cuts are judged by what they take from the
  model they started on. Once a validation falls more than ``max_drop`` below the yardstick, no further
  cut is made, the model keeps its widths for the rest of the run and the state records where and why.
  Whether the finished model is within ``max_drop`` of the input is judged after the run (prune auto).
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.model.darknet import DarknetModel
from yolor_cli.engine.model.summary import ConvMacs
from yolor_cli.engine.prune.pruning import (
    check_bn_rankable_globally,
    check_supported,
    dependency_graph,
    meta_pruner,
    rebuild,
    recalibrate_batch_norms,
)
from yolor_cli.engine.reporting import Reporter, SilentReporter
from yolor_cli.engine.train.run import HookFactory, ResumePoint, TrainOptions, TrainPlan, TrainResult
from yolor_cli.engine.train.run import train as run_training
from yolor_cli.engine.train.trainer import Trainer, TrainHook, TrainState

STATE_KEY = "gradual_pruning"  # the hook's state in a checkpoint's train_options
CUT_PHASE = 0.5  # the cuts are spread over the first half of the run's iterations; the rest recovers
MAX_CUTS = 20  # at most this many cuts (fewer when the cut phase has fewer iterations)
# Within a cut the channels go in slices of 1 % of the current channels, so a cut lands close to its share.
SLICE_RATIO, SLICES = 0.1, 10
DEFAULT_METHOD = "l1"


def kept_fraction(iteration: float, *, target: float, end: float, start: float = 0.0) -> float:
    """The fraction of the starting MACs kept at ``iteration``: Zhu & Gupta's (2017) cubic schedule,
    ``s_t = target + (1 - target) * (1 - (t - start) / (end - start)) ** 3``, 1 before ``start`` and
    ``target`` from ``end`` on."""
    if end <= start:
        return 1.0 if iteration < start else target
    progress = min(max((iteration - start) / (end - start), 0.0), 1.0)
    return target + (1 - target) * (1 - progress) ** 3


@dataclass(frozen=True)
class Cut:
    iteration: int  # made before the optimizer step of this iteration (counted from the run's start)
    fraction: float  # of the starting MACs, kept after the cut


def cut_schedule(
    target: float, iterations: int, *, start: int = 0, phase: float = CUT_PHASE, cuts: int = MAX_CUTS
) -> list[Cut]:
    """The run's cuts: ``n = min(cuts, end - start)`` of them, ``dt`` apart after iteration ``start`` (Zhu &
    Gupta's t0), the last at the end of the cut phase (``phase`` of the run's iterations), each to the
    schedule's fraction at its iteration (the last exactly ``target``)."""
    end = max(0, min(iterations - 1, round(phase * iterations)))
    start = min(max(start, 0), end)
    count = max(1, min(cuts, end - start))
    return [
        Cut(
            start + round(k * (end - start) / count),
            kept_fraction(k, target=target, end=count) if k < count else target,
        )
        for k in range(1, count + 1)
    ]


# ---- one cut: the ranked model, the same channels on the others ------------------------------------


def _plain_indices(indices: Sequence[Any]) -> list[int]:
    """torch-pruning records root indices as its own index objects; replaying needs plain ints."""
    return [int(getattr(index, "idx", index)) for index in indices]


def replay(model: DarknetModel, history: list[tuple[str, bool, Sequence[Any]]]) -> None:
    """Remove from ``model`` the channel groups another model of the same shapes lost (its dependency
    graph's pruning history, in order), so that both keep the same channels."""
    graph = dependency_graph(model)
    for name, out_channels, indices in history:
        module = model.get_submodule(name)
        pruner = graph.get_pruner_of_module(module)
        handler = pruner.prune_out_channels if out_channels else pruner.prune_in_channels
        graph.get_pruning_group(module, handler, _plain_indices(indices)).prune(record_history=False)


def prune_ranked(model: DarknetModel, keep_macs: float, method: str) -> list[tuple[str, bool, Sequence[Any]]]:
    """Prune ``model`` (global ranking, heads kept) in slices until its MACs at the probe size are at most
    ``keep_macs``; returns what was removed, as torch-pruning's history, to replay on other copies.
    Stops short when a whole pass removes nothing more (heads and coupled layers bound the cut)."""
    macs, history = ConvMacs(model), []
    while macs() > keep_macs:
        before = macs()
        pruner = meta_pruner(model, SLICE_RATIO, method, SLICES)
        for _ in range(SLICES):
            pruner.step()
            if macs() <= keep_macs:
                break
        history += pruner.DG.pruning_history()
        if macs() >= before:
            break
    return history


def _optimizer_shadows(model: DarknetModel, optimizer: torch.optim.Optimizer) -> dict[str, DarknetModel]:
    """One copy of ``model`` per per-parameter buffer of the optimizer (momentum_buffer, exp_avg, ...),
    holding that buffer in place of each weight (zeros where a parameter has none yet)."""
    names = {id(p): n for n, p in model.named_parameters()}
    keys = {
        key
        for parameter, state in optimizer.state.items()
        if id(parameter) in names
        for key, value in state.items()
        if torch.is_tensor(value) and value.shape == parameter.shape
    }
    by_name = {names[id(p)]: state for p, state in optimizer.state.items() if id(p) in names}
    shadows = {}
    for key in sorted(keys):
        shadow = copy.deepcopy(model)
        for name, parameter in shadow.named_parameters():
            buffer = by_name.get(name, {}).get(key)
            parameter.data = buffer.clone() if buffer is not None else torch.zeros_like(parameter)
        shadows[key] = shadow
    return shadows


def cut_trainer(trainer: Trainer, keep_macs: float, method: str, images: torch.Tensor | None = None) -> float:
    """Prune the trainer's EMA (ranked) to at most ``keep_macs`` MACs at the probe size, the training model
    and the optimizer's buffers to the same channels, and hand the rebuilt models to the trainer; with
    ``images`` (the batch being trained, uint8), both models' BatchNorm statistics are then re-estimated
    on it, so the next validation and the next ranking see the cut model as it is.
    Returns the MACs reached."""
    model, ema, optimizer = trainer.model, trainer.ema.ema, trainer.optimizer
    old_names = {id(p): n for n, p in model.named_parameters()}
    shadows = _optimizer_shadows(model, optimizer)
    old_state = {old_names[id(p)]: state for p, state in optimizer.state.items() if id(p) in old_names}
    with torch.enable_grad():  # torch-pruning traces the graph through autograd
        history = prune_ranked(ema.eval().requires_grad_(True), keep_macs, method)
    if not history:
        return ConvMacs(ema)()
    for follower in (model, *shadows.values()):
        replay(follower, history)
    new_model, new_ema = rebuild(model), rebuild(ema)
    new_parameters = dict(new_model.named_parameters())
    for group in optimizer.param_groups:
        group["params"] = [new_parameters[old_names[id(p)]] for p in group["params"]]
    shadow_parameters = {key: dict(shadow.named_parameters()) for key, shadow in shadows.items()}
    state: defaultdict[torch.Tensor, dict[str, Any]] = defaultdict(dict)
    for name, old in old_state.items():
        state[new_parameters[name]] = {
            key: shadow_parameters[key][name].detach().clone() if key in shadows else value
            for key, value in old.items()
        }
    optimizer.state = state
    trainer.swap_model(new_model, new_ema)
    if images is not None:
        batch = images.to(trainer.device).float().div(255.0).contiguous(memory_format=torch.channels_last)
        for cut in (trainer.model, trainer.ema.ema):
            recalibrate_batch_norms(cut, [batch])
    return ConvMacs(trainer.ema.ema)()


# ---- the hook --------------------------------------------------------------------------------------


@dataclass
class GradualState:
    """What a checkpoint keeps of the schedule, so that ``--resume`` continues it at the right point."""

    target: float  # the fraction of the starting MACs kept at the end of the cut phase
    method: str  # channel ranking: l1, l2 or bn
    reference_map: float | None = None  # the input's mAP50-95 (None: no guard)
    max_drop: float | None = None
    start_map: float | None = None  # mAP50-95 of the last validation before the first cut
    base_macs: float | None = None  # the starting model's MACs at the probe size (set at the first epoch)
    cuts: list[dict[str, Any]] = field(default_factory=list)  # the schedule: iteration and fraction of each
    done: list[dict[str, Any]] = field(default_factory=list)  # cuts made: iteration, epoch, wanted, reached
    stopped: dict[str, Any] | None = None  # the guard: epoch, mAP50-95 and the cuts done when it stopped

    @property
    def finished(self) -> bool:
        return bool(self.cuts) and len(self.done) >= len(self.cuts)

    @property
    def reached(self) -> float:
        """The fraction of the starting MACs the model is at."""
        return self.done[-1]["reached"] if self.done else 1.0

    @property
    def yardstick(self) -> float:
        """The mAP50-95 the guard measures a drop from (see the module's docstring)."""
        assert self.reference_map is not None
        if self.start_map is None:
            return self.reference_map
        return min(self.reference_map, self.start_map)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GradualState:
        try:
            return cls(**values)
        except TypeError as error:
            raise YolorError(f"the checkpoint's gradual-pruning state is damaged ({error})") from None


class GradualPruning(TrainHook):
    """Cuts along :func:`cut_schedule` (see the module's docstring); the guard checks each validation."""

    state_key = STATE_KEY

    def __init__(self, state: GradualState, reporter: Reporter) -> None:
        self.state, self.reporter = state, reporter

    def state_dict(self) -> dict:
        return asdict(self.state)

    def before_epoch(self, trainer: Trainer, state: TrainState) -> None:
        if self.state.base_macs is not None:
            return
        check_supported(trainer.model)
        if self.state.method == "bn":
            check_bn_rankable_globally(trainer.model)
        self.state.base_macs = ConvMacs(trainer.model)()
        iterations = len(trainer.loader) * state.epochs
        start = min(trainer.warmup.iterations, round(CUT_PHASE * iterations / 2))
        self.state.cuts = [asdict(cut) for cut in cut_schedule(self.state.target, iterations, start=start)]
        first, last = self.state.cuts[0]["iteration"], self.state.cuts[-1]["iteration"]
        self.reporter.info(
            f"pruning to {self.state.target:g} of the MACs in {len(self.state.cuts)} cuts over iterations "
            f"{first + 1}-{last + 1} of {iterations} (Zhu & Gupta's cubic schedule, after the warmup), "
            "then recovering"
        )

    def on_batch(
        self, trainer: Trainer, state: TrainState, batch: int, images: torch.Tensor, targets: torch.Tensor
    ) -> None:
        if self.state.stopped is not None or self.state.finished or self.state.base_macs is None:
            return
        due = [cut for cut in self.state.cuts[len(self.state.done) :] if cut["iteration"] <= state.iteration]
        if not due:
            return
        wanted = due[-1]["fraction"]  # a resumed run past several cuts makes them as one
        keep = wanted * self.state.base_macs
        reached = cut_trainer(trainer, keep, self.state.method, images) / self.state.base_macs
        for cut in due:
            self.state.done.append(
                {"iteration": state.iteration, "epoch": state.epoch, "wanted": cut["fraction"], "reached": reached}
            )
        self.reporter.info(
            f"cut {len(self.state.done)}/{len(self.state.cuts)} at iteration {state.iteration + 1}: "
            f"{reached:.3f} of the MACs (aimed at {wanted:.3f})"
        )

    def after_epoch(self, trainer: Trainer, state: TrainState) -> None:
        """The guard: see the module's docstring (only while cuts remain, and only on validated epochs)."""
        reference, metrics = self.state.reference_map, state.metrics
        if metrics is None or self.state.stopped is not None or self.state.finished:
            return
        if not self.state.done:  # no cut yet: the level the cuts will start from
            self.state.start_map = metrics.map
            return
        if reference is None:
            return
        if self.state.yardstick - metrics.map > (self.state.max_drop or 0.0):
            self.state.stopped = {
                "epoch": state.epoch,
                "map": metrics.map,
                "cuts_done": len(self.state.done),
                "fraction": self.state.reached,
            }
            self.reporter.warning(stop_note(self.state))

    def after_train(self, trainer: Trainer, state: TrainState) -> None:
        self.reporter.info(f"gradual pruning: the model keeps {self.state.reached:.3f} of the starting MACs")


def stop_note(state: GradualState) -> str:
    """What the guard did, in words (for a state whose guard stopped the cuts)."""
    stopped = state.stopped
    assert stopped is not None and state.reference_map is not None
    yardstick = (
        "the run's mAP50-95 before its first cut"
        if state.start_map is not None and state.start_map < state.reference_map
        else "the input's mAP50-95"
    )
    return (
        f"the guard stopped the cuts after epoch {stopped['epoch'] + 1}: mAP50-95 {stopped['map']:.4f} is more "
        f"than --max-drop {state.max_drop} below {state.yardstick:.4f} ({yardstick}); the model keeps "
        f"{stopped['fraction']:.3f} of the MACs ({stopped['cuts_done']}/{len(state.cuts)} cuts) to the end"
    )


def gradual_hooks(
    *, method: str = DEFAULT_METHOD, reference_map: float | None = None, max_drop: float | None = None
) -> HookFactory:
    """The hook factory :func:`yolor_cli.engine.train.run.train` takes for a run with ``prune_to``; a
    resumed run takes its saved state (schedule, cuts done, guard) instead of these arguments."""

    def build(options: TrainOptions, resume: ResumePoint | None, reporter: Reporter) -> list[TrainHook]:
        if options.prune_to is None:
            return []
        saved = (resume.checkpoint.train_options or {}).get(STATE_KEY) if resume is not None else None
        state = (
            GradualState.from_dict(saved)
            if isinstance(saved, dict)
            else GradualState(options.prune_to, method, reference_map, max_drop)
        )
        return [GradualPruning(state, reporter)]

    return build


def saved_state(train_options: dict[str, Any] | None) -> GradualState | None:
    """The gradual-pruning state a checkpoint holds (None when it has none)."""
    saved = (train_options or {}).get(STATE_KEY)
    return GradualState.from_dict(saved) if isinstance(saved, dict) else None


def train(plan: TrainPlan, reporter: Reporter | None = None) -> TrainResult:
    """``yolor train --prune-to F``: the planned run with the gradual-pruning hook."""
    return run_training(plan, reporter or SilentReporter(), hooks=gradual_hooks())
