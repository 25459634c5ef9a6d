"""The one place that rewrites a cfg: class counts, channel counts (``filters=``) and ``groups=``.

Checkpoints fit a cfg to the weights they carry, ``--nc`` re-classes a cfg, and pruning writes its
new widths back; all three come through here so the text they write follows the same rules.

Setting the class count by hand means ``classes=`` in each [yolo] plus ``filters=`` in each head
conv *and* in the [implicit_mul] its [control_channels] reads; missing the last gives the well-known
"expanded size of the tensor (18) must match the existing size (255)".
"""

from __future__ import annotations

from collections.abc import Mapping

from yolor_cli.engine.errors import CfgError
from yolor_cli.engine.model.darknet.cfg import DarknetCfg
from yolor_cli.engine.model.darknet.heads import find_heads
from yolor_cli.engine.model.darknet.specs import YoloSpec, parse_layer


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
