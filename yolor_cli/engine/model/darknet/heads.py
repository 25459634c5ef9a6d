"""Where each detection head starts: the conv that feeds a [yolo] layer and its implicit layers.

The class count, the bias prior and pruning all need the same answer, so it is worked out once
here from the typed specs.
"""

from __future__ import annotations

from dataclasses import dataclass

from yolor_cli.engine.errors import CfgError
from yolor_cli.engine.model.darknet.specs import (
    ConvSpec,
    LayerSpec,
    YoloSpec,
    _ChannelOpSpec,
    _ImplicitSpec,
)


@dataclass(frozen=True)
class Head:
    """One detection level: layer indices of its [yolo], its head conv and the implicit layers
    applied between the two (whose filters must follow the head conv's)."""

    yolo: int
    conv: int
    implicits: tuple[int, ...]


def find_heads(specs: list[LayerSpec], source: str = "<cfg>") -> list[Head]:
    heads = []
    for index, spec in enumerate(specs):
        if not isinstance(spec, YoloSpec):
            continue
        implicits = []
        position = index - 1
        while position >= 0 and isinstance(specs[position], _ChannelOpSpec):
            op = specs[position]
            target = op.source if op.source >= 0 else position + op.source
            if not 0 <= target < len(specs) or not isinstance(specs[target], _ImplicitSpec):
                raise CfgError(f"{source}:{op.line}: [{op.section_type()}] before a [yolo] must read an implicit layer")
            implicits.append(target)
            position -= 1
        if position < 0 or not isinstance(specs[position], ConvSpec):
            raise CfgError(
                f"{source}:{spec.line}: [yolo] must follow a [convolutional] head "
                "(optionally through shift/control_channels)"
            )
        heads.append(Head(yolo=index, conv=position, implicits=tuple(implicits)))
    if not heads:
        raise CfgError(f"{source}: the cfg has no [yolo] layer, so it is not a detector")
    return heads
