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


# The detection levels the loss balances objectness for (train/loss.py LEVEL_BALANCE): P3-P5 as in
# yolor_csp, P3-P6 as in yolor_p6, up to P3-P7. Other counts are refused when the model is built.
DETECTION_LEVELS = range(3, 6)


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


def check_level_count(heads: list[Head], specs: list[LayerSpec], source: str = "<cfg>") -> None:
    """Refuse a level count training cannot balance, at the [yolo] to add or remove."""
    if len(heads) in DETECTION_LEVELS:
        return
    first, last = DETECTION_LEVELS[0], DETECTION_LEVELS[-1]
    culprit = heads[0] if len(heads) < first else heads[last]  # the first [yolo], or the first extra one
    raise CfgError(
        f"{source}:{specs[culprit.yolo].line}: the cfg has {len(heads)} [yolo] layers; yolor supports "
        f"{first} to {last} detection levels",
        hint=f"the loss balances objectness over {first} to {last} levels: "
        + ("add [yolo] heads" if len(heads) < first else "remove the extra [yolo] heads"),
    )
