"""Depth pruning: whole residual blocks removed, the layers after them renumbered.

A residual block is the plain run of convolutions between a layer and the ``[shortcut]`` that adds
that layer back (YOLOR's CSP stages: a 1x1 conv, a 3x3 conv, ``[shortcut] from=-3``). Its output is
``x + f(x)``, so removing it leaves ``x``: the model's function changes only by ``f(x)``, and a
block whose branch outputs zero is removed without changing any output. That holds only when the
shortcut adds back exactly the block's input, unweighted, at the same width and size, and nothing
outside the block reads the layers inside it; every other [shortcut] is listed with the reason it
cannot be removed.

The cfg is rewritten by :func:`yolor_cli.engine.model.darknet.edit.without_layers` (the one cfg
rewriter): readers of the shortcut read the block's input instead, later references are renumbered.
The kept layers' tensors move to their new module indices, so the result is an ordinary model:
cfg text plus a state_dict, rebuilt from that cfg.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch

from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.model.darknet import DarknetModel, build_model, without_layers
from yolor_cli.engine.model.darknet.layers import FeatureLayer, Shortcut
from yolor_cli.engine.prune.pruning import conv_of, is_conv, pruned_cfg

MODULE_KEY = re.compile(r"^module_list\.(\d+)\.(.*)$")


@dataclass(frozen=True)
class ResidualBlock:
    """The convs ``convs`` between layer ``input`` and the [shortcut] at ``shortcut`` that adds it back.
    ``reason`` says why the block cannot be removed (None: it can)."""

    input: int
    convs: tuple[int, ...]
    shortcut: int
    reason: str | None = None

    @property
    def name(self) -> str:
        return f"block {self.convs[0]}-{self.shortcut}" if self.convs else f"block {self.shortcut}"

    @property
    def layers(self) -> tuple[int, ...]:
        """The module indices removing the block removes."""
        return (*self.convs, self.shortcut)


def residual_blocks(model: DarknetModel) -> list[ResidualBlock]:
    """Every [shortcut] of ``model`` as a block, in module order, each with the reason it cannot be
    removed or None."""
    readers: dict[int, list[int]] = {}
    for index, module in enumerate(model.module_list):
        if isinstance(module, FeatureLayer):
            for source in module.sources:
                readers.setdefault(source, []).append(index)
    blocks = []
    for index, module in enumerate(model.module_list):
        if isinstance(module, Shortcut):
            blocks.append(_block(model, index, module, readers))
    return blocks


def _block(model: DarknetModel, index: int, shortcut: Shortcut, readers: Mapping[int, list[int]]) -> ResidualBlock:
    sources = shortcut.sources
    if len(sources) != 1:
        return ResidualBlock(index - 1, (), index, f"its [shortcut] adds {len(sources)} layers, not one block input")
    start = sources[0]
    inner = tuple(range(start + 1, index))
    block = ResidualBlock(start, inner, index)

    def refused(reason: str) -> ResidualBlock:
        return ResidualBlock(start, inner, index, reason)

    if not inner:
        return refused(f"its [shortcut] adds layer {start}, the layer just before it, to itself: there is no branch")
    if shortcut.weighted:
        return refused("its [shortcut] is weighted (weights_type=): without the branch it would scale its input")
    for position in inner:
        if not is_conv(model, position):
            return refused(
                f"layer {position} inside it is a [{model.cfg.layers[position].type}], so from= (layer {start}) "
                "is not the input of a plain chain of convolutions"
            )
        if conv_of(model, position).stride != (1, 1):
            return refused(f"conv {position} inside it has stride {conv_of(model, position).stride[0]}")
    if model.layer_channels[start] != model.layer_channels[index - 1]:
        return refused(
            f"its [shortcut] adds {model.layer_channels[start]} channels to {model.layer_channels[index - 1]}"
        )
    heads = {head.conv for head in model.heads}
    for position in inner:
        if position in heads:
            return refused(f"conv {position} inside it is a detection head")
        outside = [reader for reader in readers.get(position, []) if reader != index]
        if outside:
            return refused(f"layer {outside[0]} reads layer {position} inside it")
    return block


def removable_blocks(model: DarknetModel) -> list[ResidualBlock]:
    return [block for block in residual_blocks(model) if block.reason is None]


def check_removable_blocks(model: DarknetModel) -> None:
    """Refuse, before any slow work, a model none of whose blocks can be removed, with the reasons."""
    blocks = residual_blocks(model)
    if any(block.reason is None for block in blocks):
        return
    reasons = "; ".join(f"{block.name}: {block.reason}" for block in blocks[:3])
    raise YolorError(
        "the model has no residual block that can be removed" + (f" ({reasons})" if blocks else " (no [shortcut])"),
        hint="prune its widths with --unit conv",
    )


def block_at(model: DarknetModel, shortcut: int) -> ResidualBlock:
    """The block of ``model`` that ends in the [shortcut] at module ``shortcut``."""
    for block in residual_blocks(model):
        if block.shortcut == shortcut:
            return block
    raise YolorError(
        f"module {shortcut} is not a [shortcut] of the model, so no residual block ends there",
        hint="see the blocks with yolor prune sensitivity --unit block",
    )


def remove_blocks(model: DarknetModel, blocks: Iterable[ResidualBlock]) -> DarknetModel:
    """A new model: ``model`` without ``blocks`` (each checked against the model's own blocks; one that
    cannot be removed is refused with its reason), its kept tensors moved to their new indices."""
    chosen = list(blocks)
    own = {block.shortcut: block for block in residual_blocks(model)}
    for block in chosen:
        found = own.get(block.shortcut)
        if found is None or found.layers != block.layers:
            raise YolorError(f"{block.name} is not a residual block of the model", hint="list them with --unit block")
        if found.reason is not None:
            raise YolorError(f"{found.name} cannot be removed: {found.reason}")
    removed = {layer for block in chosen for layer in block.layers}
    cfg, new_index = without_layers(
        pruned_cfg(model), removed, {block.shortcut: own[block.shortcut].input for block in chosen}
    )
    fresh = build_model(cfg)
    fresh.load_state_dict(reindexed(model.state_dict(), new_index))
    parameter = next(model.parameters(), None)
    if parameter is not None:
        fresh.to(parameter.device)
    return fresh.train(model.training)


def reindexed(state: Mapping[str, torch.Tensor], new_index: Mapping[int, int]) -> dict[str, torch.Tensor]:
    """A state_dict with each ``module_list.I.`` key moved to ``new_index[I]``, removed modules' dropped."""
    moved: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        match = MODULE_KEY.match(key)
        if match is None:
            moved[key] = tensor
        elif int(match.group(1)) in new_index:
            moved[f"module_list.{new_index[int(match.group(1))]}.{match.group(2)}"] = tensor
    return moved
