"""What a sensitivity scan prunes at a time: a *unit* of convs, cut together by one amount.

Three kinds, all leaving the detection-head convs whole (they keep their 3 * (5 + nc) outputs):

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
- ``block``: one residual block removed whole (its convs and its [shortcut]; see
  :mod:`yolor_cli.engine.prune.blocks`). A block has one amount, :data:`BLOCK_AMOUNT`: removed.
  Only blocks that can be removed are units. Kinds combine: ``conv+block`` scans both, so that an
  allocation can weigh width against depth by the same measure.

Amounts follow ``yolor prune conv``: each conv of a unit loses ``int(amount x channels)`` of its
output channels, the least important first. A conv already cut through its coupling to an earlier
conv of the same unit is not cut again (its partner's cut was its own).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch_pruning as tp

from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.model.darknet import DarknetModel
from yolor_cli.engine.model.darknet.layers import ControlChannels, Route, ShiftChannels, Shortcut, YoloLayer
from yolor_cli.engine.prune.blocks import block_at, removable_blocks, remove_blocks
from yolor_cli.engine.prune.pruning import ChannelPruner, LayerChange, conv_of, conv_widths, convs_between, is_conv

UNIT_KINDS = ("conv", "stage", "block")
JOINS = (Route, Shortcut, ShiftChannels, ControlChannels)
CHANNELS, BLOCK = "channels", "block"  # what a unit cuts: output channels, or a whole residual block
BLOCK_AMOUNT = 1.0  # a block's one amount: all of it goes


@dataclass(frozen=True)
class PruneUnit:
    """Convs pruned together by one amount: ``convs`` are module indices in module order. A ``block``
    unit's convs are a residual block's, its [shortcut] the module after the last."""

    name: str  # "conv 12", "conv 8+10", "stage 10-14", "block 9-11"
    convs: tuple[int, ...]
    kind: str = CHANNELS

    @property
    def shortcut(self) -> int:
        """A block unit's [shortcut]."""
        assert self.kind == BLOCK
        return self.convs[-1] + 1

    @property
    def layers(self) -> tuple[int, ...]:
        """The modules the unit changes (a block's removes)."""
        return (*self.convs, self.shortcut) if self.kind == BLOCK else self.convs


def unit_kinds(unit: str) -> tuple[str, ...]:
    """``conv+block`` as ("conv", "block"); each part checked."""
    kinds = tuple(unit.split("+"))
    for kind in kinds:
        if kind not in UNIT_KINDS:
            raise YolorError(f"unknown pruning unit {kind!r}", hint=f"choose from {', '.join(UNIT_KINDS)}")
    return kinds


def prune_units(model: DarknetModel, unit: str, *, pruner: ChannelPruner | None = None) -> list[PruneUnit]:
    """Every unit of kind ``unit`` ("conv", "stage", "block", or kinds joined by "+") in module order
    within each kind (see the module docstring). ``conv`` units need the dependency graph: pass a
    ``pruner`` of ``model`` to reuse its graph."""
    units: list[PruneUnit] = []
    for kind in unit_kinds(unit):
        if kind == "conv":
            units += _conv_units(model, pruner or ChannelPruner(model))
        elif kind == "stage":
            units += _stage_units(model)
        else:
            units += [PruneUnit(block.name, block.convs, BLOCK) for block in removable_blocks(model)]
    return units


def unit_amounts(unit: PruneUnit, amounts: tuple[float, ...]) -> tuple[float, ...]:
    """The amounts a scan tries on ``unit``: a block is removed or not."""
    return (BLOCK_AMOUNT,) if unit.kind == BLOCK else amounts


def pruned_variant(model: DarknetModel, unit: PruneUnit, amount: float, method: str) -> DarknetModel | None:
    """A new model: ``model`` with ``unit`` cut by ``amount`` (a block: removed); ``model`` is left as it
    was. None when the amount rounds to no channel."""
    if unit.kind == BLOCK:
        return remove_blocks(model, [block_at(model, unit.shortcut)])
    pruner = ChannelPruner(copy.deepcopy(model), method=method)
    return pruner.model if prune_unit(pruner, unit, amount) else None


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
    assert unit.kind == CHANNELS, "a block is removed with pruned_variant or blocks.remove_blocks"
    before = conv_widths(pruner.model)
    for index in unit.convs:
        if conv_of(pruner.model, index).out_channels == before[index]:
            pruner.prune_conv(index, amount)
    return [
        LayerChange(module=i, before=width, after=conv_of(pruner.model, i).out_channels)
        for i, width in before.items()
        if conv_of(pruner.model, i).out_channels != width
    ]
