"""What ``yolor info`` is asked to do. Only the standard library here (see engine/options.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from yolor_cli.engine.options import (
    DEFAULT_IMG_SIZE,
    Request,
    cfg_option,
    img_size_option,
    option,
    trust_pickle_option,
    weights_option,
)

MAX_NC = 100_000  # far above any detection dataset's classes; bounds the heads' output channels


def nc_option() -> object:
    return option(None, "--nc", help="Number of classes; rewrites every dependent line of the cfg.", min=1, max=MAX_NC)


@dataclass(frozen=True)
class InfoRequest(Request):
    """One ``yolor info`` run: a model from ``cfg`` and/or ``weights``, summarised at ``img_size``."""

    cfg: str | None = cfg_option()
    weights: Path | None = weights_option(None)
    nc: int | None = nc_option()
    img_size: int = img_size_option(DEFAULT_IMG_SIZE)
    trust_pickle: bool = trust_pickle_option()
