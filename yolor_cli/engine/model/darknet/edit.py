"""The one place that rewrites a cfg: class counts, channel counts (``filters=``), ``groups=``, and
layers removed with every reference to the layers after them renumbered.

Checkpoints fit a cfg to the weights they carry, ``--nc`` re-classes a cfg, pruning writes its new
widths back and depth pruning removes whole residual blocks; all of them come through here so the
text they write follows the same rules.

Setting the class count by hand means ``classes=`` in each [yolo] plus ``filters=`` in each head
conv *and* in the [implicit_mul] its [control_channels] reads; missing the last gives the well-known
"expanded size of the tensor (18) must match the existing size (255)".
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping

from yolor_cli.engine.errors import CfgError
from yolor_cli.engine.model.darknet.cfg import DarknetCfg
from yolor_cli.engine.model.darknet.heads import find_heads
from yolor_cli.engine.model.darknet.specs import (
    LayerSpec,
    RouteSpec,
    ShortcutSpec,
    YoloSpec,
    _ChannelOpSpec,
    _ImplicitSpec,
    parse_layer,
)


def cfg_num_classes(cfg: DarknetCfg) -> int:
    """The class count of a cfg; all [yolo] layers must agree."""
    specs = [parse_layer(section, cfg.source) for section in cfg.layers]
    counts = {spec.classes for spec in specs if isinstance(spec, YoloSpec)}
    if len(counts) != 1:
        raise CfgError(
            f"{cfg.source}: the [yolo] layers disagree on classes= ({sorted(counts)})"
            if counts
            else f"{cfg.source}: the cfg has no [yolo] layer"
        )
    return counts.pop()


def with_channels(cfg: DarknetCfg, filters: Mapping[int, int], groups: Mapping[int, int] | None = None) -> DarknetCfg:
    """A copy of ``cfg`` with ``filters=`` of the layers in ``filters`` (a conv's output channels, an
    implicit layer's width) and ``groups=`` of the convs in ``groups`` set. A conv's ``groups=`` is
    written when it is not 1 or the section already has one: a depthwise conv loses groups with its
    channels, and a plain conv's text stays as it was."""
    result = cfg.copy()
    for index, count in filters.items():
        result.layers[index].options["filters"] = str(count)
    for index, count in (groups or {}).items():
        options = result.layers[index].options
        if count != 1 or "groups" in options:
            options["groups"] = str(count)
    return result


def with_num_classes(cfg: DarknetCfg, nc: int) -> DarknetCfg:
    """A copy of ``cfg`` built for ``nc`` classes."""
    if nc < 1:
        raise CfgError(f"the class count must be at least 1, got {nc}")
    specs = [parse_layer(section, cfg.source) for section in cfg.layers]
    heads = find_heads(specs, cfg.source)
    outputs: dict[int, int] = {}
    for head in heads:
        yolo = specs[head.yolo]
        assert isinstance(yolo, YoloSpec)
        outputs.update(dict.fromkeys((head.conv, *head.implicits), len(yolo.mask) * (nc + 5)))
    result = with_channels(cfg, outputs)
    for head in heads:
        result.layers[head.yolo].options["classes"] = str(nc)
    return result


def reference_key(spec: LayerSpec) -> str | None:
    """The key holding the layers a section reads besides the previous one (``layers=`` of a [route],
    ``from=`` of a [shortcut], [shift_channels] and [control_channels]), or None."""
    if isinstance(spec, RouteSpec):
        return "layers"
    if isinstance(spec, (ShortcutSpec, _ChannelOpSpec)):
        return "from"
    return None


def reads_previous(spec: LayerSpec) -> bool:
    """Whether a layer takes the previous layer's output as its input (all but [route], which names
    every input, and the implicit layers, which read none)."""
    return not isinstance(spec, (RouteSpec, _ImplicitSpec))


def without_layers(
    cfg: DarknetCfg, removed: Iterable[int], aliases: Mapping[int, int] | None = None
) -> tuple[DarknetCfg, dict[int, int]]:
    """A copy of ``cfg`` without the layers ``removed`` (indices of ``cfg.layers``), and where each kept
    layer went (old index -> new index).

    Every reference of a kept layer is renumbered in the form it was written: a relative one
    (``from=-3``) stays relative, an absolute one (``layers=24``) stays absolute. A reference to a
    removed layer is redirected to ``aliases[layer]`` (followed again while it names a removed layer),
    which is how a removed residual block hands its shortcut's readers its input; a reference to a
    removed layer without an alias is refused, as is a layer whose implicit input (the layer before
    it) is removed and would not be replaced by what is now the layer before it."""
    gone = set(removed)
    aliases = dict(aliases or {})
    count = len(cfg.layers)
    outside = sorted(index for index in gone if not 0 <= index < count)
    if outside:
        raise CfgError(f"{cfg.source}: cannot remove layers {outside}: the cfg has layers 0..{count - 1}")
    kept = [index for index in range(count) if index not in gone]
    new_index = {old: new for new, old in enumerate(kept)}
    specs = [parse_layer(section, cfg.source) for section in cfg.layers]

    def resolve(target: int, reader: int) -> int:
        seen: set[int] = set()
        while target in gone:
            if target not in aliases or target in seen:
                raise CfgError(
                    f"{cfg.source}: layer {reader} ([{cfg.layers[reader].type}]) reads layer {target}, "
                    "which is removed and stands for no kept layer"
                )
            seen.add(target)
            target = aliases[target]
        return target

    result = DarknetCfg(net=copy.deepcopy(cfg.net), layers=[], source=cfg.source)
    previous_kept = -1  # the input image before layer 0
    for old in kept:
        section = copy.deepcopy(cfg.layers[old])
        spec = specs[old]
        if reads_previous(spec) and old - 1 in gone and resolve(old - 1, old) != previous_kept:
            raise CfgError(
                f"{cfg.source}: layer {old} ([{section.type}]) reads layer {old - 1}, which is removed, and "
                f"would read layer {previous_kept} instead"
            )
        key = reference_key(spec)
        if key is not None:
            written = [int(part) for part in section.options[key].split(",") if part.strip()]
            renumbered = []
            for value in written:
                target = new_index[resolve(old + value if value < 0 else value, old)]
                renumbered.append(target - new_index[old] if value < 0 else target)
            if renumbered != written:
                section.options[key] = ",".join(map(str, renumbered))
        result.layers.append(section)
        previous_kept = old
    return result, new_index
