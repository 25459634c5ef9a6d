"""Set the class count of a cfg, rewriting every line that depends on it.

By hand this means ``classes=`` in each [yolo] plus ``filters=`` in each head conv *and* in the
[implicit_mul] its [control_channels] reads; missing the last gives the well-known
"expanded size of the tensor (18) must match the existing size (255)".
"""

from __future__ import annotations

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


def with_num_classes(cfg: DarknetCfg, nc: int) -> DarknetCfg:
    """A copy of ``cfg`` built for ``nc`` classes."""
    if nc < 1:
        raise CfgError(f"the class count must be at least 1, got {nc}")
    specs = [parse_layer(section, cfg.source) for section in cfg.layers]
    result = cfg.copy()
    for head in find_heads(specs, cfg.source):
        yolo = specs[head.yolo]
        assert isinstance(yolo, YoloSpec)
        outputs = str(len(yolo.mask) * (nc + 5))
        result.layers[head.yolo].options["classes"] = str(nc)
        for index in (head.conv, *head.implicits):
            result.layers[index].options["filters"] = outputs
    return result
