"""What a sensitivity scan prunes at a time: a *unit* of convs, cut together by one amount.

Two kinds, both leaving the detection-head convs whole (they keep their 3 * (5 + nc) outputs):

- ``conv``: one backbone or neck conv with everything coupled to it. Convs whose output channels
  torch-pruning must cut together (the inputs of a [shortcut], a depthwise conv and the conv before
  it) form one group, and one group is one unit, named after all its convs ("conv 8+10"): cutting
  any of them cuts all of them, so scanning them separately would measure the same cut twice.
- ``stage``: the convs that run between two joins, in module order ("stage 63-66"). A join is a
  layer that reads an earlier layer besides the previous one ([route], [shortcut], and the
  [shift_channels] / [control_channels] that add implicit knowledge); a head conv or a [yolo] layer
  also ends a stage. A stage is a block of plain sequential convs, the natural span to thin evenly.
  A chain of residual blocks couples convs of several stages into one group: each of those stages
  then cuts the whole group (its own convs and their partners elsewhere).

Amounts follow ``yolor prune conv``: each conv of a unit loses ``int(amount x channels)`` of its
output channels, the least important first. A conv already cut through its coupling to an earlier
conv of the same unit is not cut again (its partner's cut was its own).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch_pruning as tp

from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.model.darknet import DarknetModel
from yolor_cli.engine.model.darknet.layers import ControlChannels, Route, ShiftChannels, Shortcut, YoloLayer
from yolor_cli.engine.prune.pruning import ChannelPruner, LayerChange, conv_of, conv_widths, convs_between, is_conv

UNIT_KINDS = ("conv", "stage")
JOINS = (Route, Shortcut, ShiftChannels, ControlChannels)


@dataclass(frozen=True)
class PruneUnit:
    """Convs pruned together by one amount: ``convs`` are module indices in module order."""

    name: str  # "conv 12", "conv 8+10", "stage 10-14"
    convs: tuple[int, ...]


def prune_units(model: DarknetModel, unit: str, *, pruner: ChannelPruner | None = None) -> list[PruneUnit]:
    """Every unit of kind ``unit`` ("conv" or "stage") in module order (see the module docstring).
    ``conv`` units need the dependency graph: pass a ``pruner`` of ``model`` to reuse its graph."""
    if unit == "conv":
        return _conv_units(model, pruner or ChannelPruner(model))
    if unit == "stage":
        return _stage_units(model)
    raise YolorError(f"unknown pruning unit {unit!r}", hint=f"choose one of {', '.join(UNIT_KINDS)}")


def coupled_convs(pruner: ChannelPruner, index: int) -> tuple[int, ...]:
    """The convs whose output channels are cut with conv ``index``'s (itself included), sorted."""
    model = pruner.model
    index_of = {conv_of(model, i): i for i in range(len(model.module_list)) if is_conv(model, i)}
    group = pruner.graph.get_pruning_group(conv_of(model, index), tp.prune_conv_out_channels, idxs=[0])
    return tuple(
        sorted(
            {
                index_of[dep.target.module]
                for dep, _ in group.items
                if dep.target.module in index_of and pruner.graph.is_out_channel_pruning_fn(dep.handler)
            }
        )
    )


def _conv_units(model: DarknetModel, pruner: ChannelPruner) -> list[PruneUnit]:
    heads = {head.conv for head in model.heads}
    seen: set[int] = set()
    units = []
    for index in convs_between(model, 0, len(model.module_list) - 1):
        if index in seen:
            continue
        group = coupled_convs(pruner, index)
        seen.update(group)
        if heads & set(group):  # cutting it would cut a head's fixed outputs
            continue
        units.append(PruneUnit(name="conv " + "+".join(map(str, group)), convs=group))
    return units


def _stage_units(model: DarknetModel) -> list[PruneUnit]:
    heads = {head.conv for head in model.heads}
    stages: list[list[int]] = [[]]
    for index, module in enumerate(model.module_list):
        if isinstance(module, (*JOINS, YoloLayer)) or index in heads:
            stages.append([])
        elif is_conv(model, index):
            stages[-1].append(index)
    return [
        PruneUnit(name=f"stage {convs[0]}" if len(convs) == 1 else f"stage {convs[0]}-{convs[-1]}", convs=tuple(convs))
        for convs in stages
        if convs
    ]


def prune_unit(pruner: ChannelPruner, unit: PruneUnit, amount: float) -> list[LayerChange]:
    """Cut every conv of ``unit`` by ``int(amount x channels)`` channels (a conv already cut through its
    coupling to an earlier one of the unit is left alone). Returns every conv whose width changed,
    coupled partners outside the unit included; empty when the amount rounds to no channel."""
    before = conv_widths(pruner.model)
    for index in unit.convs:
        if conv_of(pruner.model, index).out_channels == before[index]:
            pruner.prune_conv(index, amount)
    return [
        LayerChange(module=i, before=width, after=conv_of(pruner.model, i).out_channels)
        for i, width in before.items()
        if conv_of(pruner.model, i).out_channels != width
    ]
