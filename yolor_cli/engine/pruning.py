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

from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from yolor_cli.engine.darknet import DarknetModel, DarknetCfg, build_model
from yolor_cli.engine.darknet.layers import ImplicitAdd, ImplicitMul
from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.summary import ConvMacs, probe_input

METHODS = ("l1", "l2", "random", "bn")
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


def check_amount(amount: float) -> None:
    if not 0 < amount < 1:
        raise YolorError(f"--amount {amount} is outside (0, 1)", hint="e.g. --amount 0.4 removes 40 % of the channels")


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
        batch_norm = model.module_list[index]._modules.get("BatchNorm2d")
        if batch_norm is None:
            raise YolorError(f"module {index} has no BatchNorm, so --method bn cannot rank its channels")
        return batch_norm.weight.detach().abs()
    raise AssertionError(method)  # check_method let it through


def check_method(method: str) -> None:
    if method not in METHODS:
        raise YolorError(f"unknown pruning method {method!r}", hint=f"choose one of {', '.join(METHODS)}")


class ChannelPruner:
    """Holds a model and its dependency graph; prunes conv output channels one group at a time."""

    def __init__(self, model: DarknetModel, *, method: str = "l1", seed: int = 0) -> None:
        check_method(method)
        self.model = model.eval()
        self.method = method
        self.generator = torch.Generator().manual_seed(seed)
        self.head_convs = {head.conv for head in model.heads}
        self.graph = tp.DependencyGraph().build_dependency(
            model, example_inputs=probe_input(model), unwrapped_parameters=unwrapped_parameters(model),
            output_transform=lambda output: output[0])

    def check_prunable(self, index: int) -> None:
        layers = len(self.model.module_list)
        if not 0 <= index < layers:
            raise YolorError(f"module {index} does not exist: the model has modules 0..{layers - 1}",
                             hint="see the indices with yolor info")
        if not is_conv(self.model, index):
            kind = self.model.cfg.layers[index].type
            raise YolorError(f"module {index} is a [{kind}] layer, not a convolution",
                             hint="see the indices with yolor info")
        if index in self.head_convs:
            raise YolorError(f"module {index} is a detection head conv; heads keep their 3*(5+nc) outputs",
                             hint="choose a backbone or neck conv")

    def prune_conv(self, index: int, amount: float) -> LayerChange | None:
        """Remove ``int(amount * channels)`` output channels of conv ``index`` (the least important)
        and everything coupled to them. None when that is no channel at all."""
        self.check_prunable(index)
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

    def convs_between(self, start: int, upto: int) -> list[int]:
        """Conv modules in [start, upto], in module order, heads left out."""
        last = min(upto, len(self.model.module_list) - 1)
        return [i for i in range(max(start, 0), last + 1) if is_conv(self.model, i) and i not in self.head_convs]


def unwrapped_parameters(model: DarknetModel) -> list[tuple[nn.Parameter, int]]:
    return [(module.implicit, 1) for module in model.modules() if isinstance(module, (ImplicitAdd, ImplicitMul))]


def pruned_cfg(model: DarknetModel) -> DarknetCfg:
    """The model's cfg with every conv's and implicit layer's ``filters=`` set to its actual width."""
    cfg = model.cfg.copy()
    for index, (section, module) in enumerate(zip(cfg.layers, model.module_list)):
        if is_conv(model, index):
            section.options["filters"] = str(conv_of(model, index).out_channels)
        elif isinstance(module, (ImplicitAdd, ImplicitMul)):
            section.options["filters"] = str(module.implicit.shape[1])
    return cfg


def rebuild(model: DarknetModel) -> DarknetModel:
    """A fresh model from the pruned cfg with the pruned weights: proves the round trip and drops
    any bookkeeping the in-place surgery left stale."""
    fresh = build_model(pruned_cfg(model))
    fresh.load_state_dict(model.state_dict())
    return fresh.eval()


GLOBAL_STEPS = 30  # steps towards the target (2-3 % of the MACs each, ~0.5 s each on yolor_csp), stopping at it
GLOBAL_MAX_RATIO = 0.9  # what the steps add up to, should the target need it all


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


def conv_widths(model: DarknetModel) -> dict[int, int]:
    return {i: conv_of(model, i).out_channels for i in range(len(model.module_list)) if is_conv(model, i)}


def prune_global(model: DarknetModel, *, target_macs: float | None = None, ratio: float | None = None,
                 method: str = "l1") -> list[LayerChange]:
    """Global pruning with torch-pruning's MetaPruner, heads excluded: to ``ratio`` of the channels
    in one go, or in small steps until the MACs reach ``target_macs`` x the original (one small step
    past it at most)."""
    if (target_macs is None) == (ratio is None):
        raise YolorError("give exactly one of --target-macs and --ratio")
    check_amount(target_macs if target_macs is not None else ratio)  # type: ignore[arg-type]
    check_method(method)
    model.eval()
    widths = conv_widths(model)
    steps = 1 if ratio is not None else GLOBAL_STEPS
    pruner = tp.pruner.MetaPruner(
        model, probe_input(model), importance=_importance(method), global_pruning=True,
        pruning_ratio=ratio if ratio is not None else GLOBAL_MAX_RATIO, iterative_steps=steps,
        ignored_layers=[conv_of(model, head.conv) for head in model.heads],
        unwrapped_parameters=unwrapped_parameters(model), output_transform=lambda output: output[0])
    macs = ConvMacs(model)
    base = macs()
    for _ in range(steps):
        pruner.step()
        if target_macs is not None and macs() <= target_macs * base:
            break
    return [LayerChange(module=i, before=before, after=conv_of(model, i).out_channels)
            for i, before in widths.items() if conv_of(model, i).out_channels != before]
