"""Structural pruning of Darknet models with torch-pruning's dependency graph.

Pruning the output channels of one conv also prunes everything coupled to them (its BatchNorm,
the convs that read it, shortcut and route partners, implicit vectors) so the model stays valid.
Rules learnt from torch-pruning 1.6 on YOLOR:

- implicit vectors are unwrapped parameters, given as a list of ``(parameter, 1)``;
- detection-head convs are never pruning roots (and never passed to the graph as ignored layers,
  which makes group search crawl): heads keep their 3 * (5 + nc) outputs;
- pruning replaces parameter objects, so optimisers are built afterwards;
- the result is written back as a cfg (new ``filters=``), so a pruned model is an ordinary
  checkpoint: cfg text plus a plain state_dict.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.model.darknet import DarknetCfg, DarknetModel, build_model, with_channels
from yolor_cli.engine.model.darknet.layers import ImplicitAdd, ImplicitMul, Shortcut
from yolor_cli.engine.model.summary import ConvMacs, probe_input
from yolor_cli.engine.prune.request import GLOBAL_MAX_RATIO, GlobalTarget, check_amount, check_method

UNTRAINED_BN_HINT = "train first (yolor train --sparsity S helps bn ranking), or use --method l1"
COLLAPSED_CHANNELS = 8  # a layer left with fewer channels is flagged: it explains lost accuracy


@dataclass(frozen=True)
class LayerChange:
    module: int
    before: int
    after: int

    @property
    def collapsed(self) -> bool:
        return self.after < COLLAPSED_CHANNELS and self.after < self.before


def is_conv(model: DarknetModel, index: int) -> bool:
    module = model.module_list[index]
    return isinstance(module, nn.Sequential) and "Conv2d" in module._modules


def conv_of(model: DarknetModel, index: int) -> nn.Conv2d:
    return model.module_list[index].Conv2d


def check_prunable(model: DarknetModel, index: int) -> None:
    """A module index the user named must be a backbone or neck conv."""
    layers = len(model.module_list)
    if not 0 <= index < layers:
        raise YolorError(
            f"module {index} does not exist: the model has modules 0..{layers - 1}",
            hint="see the indices with yolor info",
        )
    if not is_conv(model, index):
        raise YolorError(
            f"module {index} is a [{model.cfg.layers[index].type}] layer, not a convolution",
            hint="see the indices with yolor info",
        )
    if index in {head.conv for head in model.heads}:
        raise YolorError(
            f"module {index} is a detection head conv; heads keep their 3*(5+nc) outputs",
            hint="choose a backbone or neck conv",
        )


def check_supported(model: DarknetModel) -> None:
    """Refuse what torch-pruning cannot follow: a [shortcut] that adds layers of different widths
    sums only the common channels, a slice the dependency graph takes for an elementwise op."""
    for index, module in enumerate(model.module_list):
        if isinstance(module, Shortcut):
            widths = {model.layer_channels[index - 1], *(model.layer_channels[j] for j in module.sources)}
            if len(widths) > 1:
                raise YolorError(
                    f"module {index} is a [shortcut] that adds layers of different widths "
                    f"({', '.join(map(str, sorted(widths)))}); pruning such a model is not supported",
                    hint="torch-pruning cannot keep a partial sum consistent",
                )


def channel_importance(model: DarknetModel, index: int, method: str, generator: torch.Generator) -> torch.Tensor:
    """One score per output channel of conv ``index``; the lowest go first."""
    weight = conv_of(model, index).weight.detach()
    if method == "l1":
        return weight.abs().sum((1, 2, 3))
    if method == "l2":
        return weight.pow(2).sum((1, 2, 3)).sqrt()
    if method == "random":
        return torch.rand(weight.shape[0], generator=generator)
    if method == "bn":
        check_bn_rankable(model, [index])
        return model.module_list[index].BatchNorm2d.weight.detach().abs()
    raise AssertionError(method)  # check_method let it through


def check_bn_rankable(model: DarknetModel, indices: list[int]) -> None:
    """``--method bn`` ranks by BatchNorm scales: a fresh model's are all 1 and rank nothing."""
    for index in indices:
        if "BatchNorm2d" not in model.module_list[index]._modules:
            raise YolorError(f"module {index} has no BatchNorm, so --method bn cannot rank its channels")
        if _equal_scales(model, index):
            raise YolorError(
                f"the BatchNorm scales of module {index} are all equal (an untrained model?), so "
                "--method bn cannot rank its channels",
                hint=UNTRAINED_BN_HINT,
            )


def _equal_scales(model: DarknetModel, index: int) -> bool:
    batch_norm = model.module_list[index]._modules.get("BatchNorm2d")
    if batch_norm is None:
        return True
    scales = batch_norm.weight.detach().abs()
    return bool((scales == scales[0]).all())


def check_no_grouped_convs(model: DarknetModel) -> None:
    """``prune conv`` / ``prune layers`` choose channels by plain ranking, which cannot keep a grouped
    conv's groups aligned (depthwise convs, one channel per group, are fine)."""
    for index in range(len(model.module_list)):
        if is_conv(model, index):
            conv = conv_of(model, index)
            if conv.groups > 1 and not conv.groups == conv.in_channels == conv.out_channels:
                raise YolorError(
                    f"module {index} is a grouped conv (groups={conv.groups}), whose groups prune conv "
                    "and prune layers cannot keep aligned",
                    hint="use yolor prune global, which ranks channels group by group",
                )


class ChannelPruner:
    """Holds a model and its dependency graph; prunes conv output channels one group at a time.

    ``yolor prune`` validates its request once, before the slow work; the checks here guard library
    callers that use the pruner directly, and cost nothing next to building the graph."""

    def __init__(self, model: DarknetModel, *, method: str = "l1", seed: int = 0) -> None:
        check_method(method)
        self.model = model.eval()
        self.method = method
        self.generator = torch.Generator().manual_seed(seed)
        self.head_convs = {head.conv for head in model.heads}
        check_supported(model)
        self.graph = dependency_graph(model)

    def prune_conv(self, index: int, amount: float) -> LayerChange | None:
        """Remove ``int(amount * channels)`` output channels of conv ``index`` (the least important)
        and everything coupled to them. None when that is no channel at all."""
        check_prunable(self.model, index)
        check_amount(amount)
        conv = conv_of(self.model, index)
        before = conv.out_channels
        count = int(amount * before)
        if count == 0 or count >= before:
            return None
        scores = channel_importance(self.model, index, self.method, self.generator)
        drop = scores.argsort()[:count].tolist()
        group = self.graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=drop)
        if not self.graph.check_pruning_group(group):
            return None
        group.prune()
        return LayerChange(module=index, before=before, after=conv.out_channels)


def dependency_graph(model: DarknetModel) -> tp.DependencyGraph:
    """torch-pruning's graph of ``model`` (in eval mode: its output's first item is the decoded boxes
    every head feeds), implicit vectors unwrapped and shortcut weights left out of every group."""
    model.eval()
    with _quiet_about_shortcut_weights():
        return tp.DependencyGraph().build_dependency(
            model,
            example_inputs=probe_input(model),
            unwrapped_parameters=unwrapped_parameters(model),
            ignored_params=shortcut_weights(model),
            output_transform=lambda output: output[0],
        )


def convs_between(model: DarknetModel, start: int, upto: int) -> list[int]:
    """Conv modules in [start, upto] (clipped to the model), in module order, heads left out."""
    heads = {head.conv for head in model.heads}
    last = min(upto, len(model.module_list) - 1)
    return [i for i in range(max(start, 0), last + 1) if is_conv(model, i) and i not in heads]


def unwrapped_parameters(model: DarknetModel) -> list[tuple[nn.Parameter, int]]:
    return [(module.implicit, 1) for module in model.modules() if isinstance(module, (ImplicitAdd, ImplicitMul))]


@contextlib.contextmanager
def _quiet_about_shortcut_weights() -> Iterator[None]:
    """torch-pruning warns about every parameter it finds outside a layer; the shortcut weights are
    found, and deliberately ignored (see :func:`shortcut_weights`)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Unwrapped parameters detected", category=UserWarning)
        yield


def shortcut_weights(model: DarknetModel) -> list[nn.Parameter]:
    """The per-input weights of weighted [shortcut]s: one value per input, not per channel, so they
    must never join a channel group (the graph would otherwise refuse every group through them)."""
    return [module.w for module in model.modules() if isinstance(module, Shortcut) and module.weighted]


def pruned_cfg(model: DarknetModel) -> DarknetCfg:
    """The model's cfg with every conv's and implicit layer's ``filters=`` (and the convs' ``groups=``)
    set to their actual widths."""
    filters: dict[int, int] = {}
    groups: dict[int, int] = {}
    for index, module in enumerate(model.module_list):
        if is_conv(model, index):
            conv = conv_of(model, index)
            filters[index], groups[index] = conv.out_channels, conv.groups
        elif isinstance(module, (ImplicitAdd, ImplicitMul)):
            filters[index] = module.implicit.shape[1]
    return with_channels(model.cfg, filters, groups)


def rebuild(model: DarknetModel) -> DarknetModel:
    """A fresh model from the pruned cfg with the pruned weights: proves the round trip and drops
    any bookkeeping the in-place surgery left stale."""
    fresh = build_model(pruned_cfg(model))
    fresh.load_state_dict(model.state_dict())
    return fresh.eval()


# Steps towards a MACs target: many small steps give faster models than one cut of the same MACs, and
# 20 steps rather than 30 keep `prune global` on yolor_csp quick with the finer search
# (benchmarks/README.md#prune).
GLOBAL_STEPS = 20  # 4.5 % of the channels each
# When the step that crosses the target lands more than GLOBAL_GOOD_ENOUGH from it, the search goes on
# from the state before that step with steps of 1 % of the remaining channels.
GLOBAL_FINE_RATIO, GLOBAL_FINE_STEPS = 0.1, 10
GLOBAL_GOOD_ENOUGH = 0.01
GLOBAL_TOLERANCE = 0.05  # the MACs must land within 5 % of the target


def _importance(method: str) -> tp.importance.Importance:
    if method == "l1":
        return tp.importance.MagnitudeImportance(p=1)
    if method == "l2":
        return tp.importance.MagnitudeImportance(p=2)
    if method == "bn":
        return tp.importance.BNScaleImportance()
    if method == "random":
        return tp.importance.RandomImportance()
    raise AssertionError(method)  # check_method let it through


@torch.no_grad()
def recalibrate_batch_norms(model: nn.Module, batches: Iterable[torch.Tensor]) -> None:
    """Re-estimate every BatchNorm's running mean and variance from ``batches`` (float images in [0, 1]).

    Removing channels changes what the next layers receive, but their running statistics still describe
    the unpruned model, so a freshly cut model evaluates far below what its weights can do until training
    has refreshed them (adaptive BatchNorm, as EagleEye, Li et al. ECCV 2020, uses to judge pruned
    candidates; measured in benchmarks/README.md#batchnorm-recalibration). The weights are not touched;
    the mode and momentum of each layer are restored."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    training, momenta = model.training, [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the batches given
    model.train()
    for images in batches:
        model(images)
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.train(training)


def conv_widths(model: DarknetModel) -> dict[int, int]:
    return {i: conv_of(model, i).out_channels for i in range(len(model.module_list)) if is_conv(model, i)}


def meta_pruner(model: DarknetModel, ratio: float, method: str, steps: int) -> tp.pruner.MetaPruner:
    with _quiet_about_shortcut_weights():
        return tp.pruner.MetaPruner(
            model,
            probe_input(model),
            importance=_importance(method),
            global_pruning=True,
            pruning_ratio=ratio,
            iterative_steps=steps,
            ignored_layers=[conv_of(model, head.conv) for head in model.heads] + shortcut_weights(model),
            unwrapped_parameters=unwrapped_parameters(model),
            output_transform=lambda output: output[0],
        )


def check_bn_rankable_globally(model: DarknetModel) -> None:
    """``prune global --method bn`` needs BatchNorm scales that differ somewhere outside the heads."""
    backbone = [i for i in conv_widths(model) if i not in {head.conv for head in model.heads}]
    if all(_equal_scales(model, i) for i in backbone):
        raise YolorError(
            "every BatchNorm scale of the model is equal (an untrained model?), so --method bn cannot rank channels",
            hint=UNTRAINED_BN_HINT,
        )


def prune_global(model: DarknetModel, target: GlobalTarget, *, method: str = "l1") -> DarknetModel:
    """Global pruning with torch-pruning's MetaPruner, heads excluded: ``target.ratio`` of the channels
    ranked across the model in one step, or small steps until the MACs land within 5 % of
    ``target.target_macs`` x the original. Returns the pruned model (``model`` itself for a ratio).

    The target checked its options when it was built; the model must pass :func:`check_supported`
    and, for ``method="bn"``, :func:`check_bn_rankable_globally` (``prune`` checks both once, first)."""
    model.eval()
    if target.ratio is not None:
        meta_pruner(model, target.ratio, method, steps=1).step()
        return model
    assert target.target_macs is not None
    return _search_target(model, target.target_macs, method)


def _step_until(
    model: DarknetModel, target: float, method: str, base: float, ratio: float, steps: int
) -> tuple[list[tuple[float, DarknetModel]], bool]:
    """Prune ``model`` in steps until its MACs fall to ``target`` x ``base``. Returns the states worth
    keeping as (MACs fraction, model): the last one, and a copy of the one before the crossing step
    (taken when the next step is expected to cross, so copies stay rare); and whether it got there."""
    pruner, macs = meta_pruner(model, ratio, method, steps), ConvMacs(model)
    fraction, drop = macs() / base, 0.0
    kept: list[tuple[float, DarknetModel]] = []
    for _ in range(steps):
        if drop and fraction - drop <= target:
            kept = [(fraction, copy.deepcopy(model))]
        pruner.step()
        new = macs() / base
        fraction, drop = new, fraction - new
        if fraction <= target:
            return kept + [(fraction, model)], True
    return kept + [(fraction, model)], False


def _search_target(model: DarknetModel, target: float, method: str) -> DarknetModel:
    base = ConvMacs(model)()
    candidates, reached = _step_until(copy.deepcopy(model), target, method, base, GLOBAL_MAX_RATIO, GLOBAL_STEPS)

    def miss(candidate: tuple[float, DarknetModel]) -> float:
        return abs(candidate[0] / target - 1)

    if reached and min(map(miss, candidates)) > GLOBAL_GOOD_ENOUGH:
        above = [c for c in candidates if c[0] > target]  # the state before the crossing, when copied
        start = above[-1][1] if above else model  # else the crossing was the first step
        finer, _ = _step_until(copy.deepcopy(start), target, method, base, GLOBAL_FINE_RATIO, GLOBAL_FINE_STEPS)
        candidates += finer
    pruned = [c for c in candidates if c[0] < 1.0]
    best = min(pruned, key=miss) if pruned else None
    if best is None or miss(best) > GLOBAL_TOLERANCE:
        closest = f"{best[0]:.3f}" if best else "1.000"
        raise YolorError(
            f"--target-macs {target} cannot be reached within 5 %: the closest was {closest} of the MACs",
            hint="heads and coupled layers bound how far a model shrinks; --method bn needs "
            "trained BatchNorm scales (they are all equal in a fresh model)",
        )
    return best[1]
