"""Darknet cfg engine: parse/write cfg text, typed layer specs, layer modules and the model."""

from yolor_cli.engine.model.darknet.cfg import DarknetCfg, Section, parse_cfg, read_cfg, write_cfg
from yolor_cli.engine.model.darknet.edit import cfg_num_classes, with_channels, with_num_classes, without_layers
from yolor_cli.engine.model.darknet.model import DarknetModel, count_parameters

__all__ = [
    "DarknetCfg",
    "DarknetModel",
    "Section",
    "build_model",
    "cfg_num_classes",
    "count_parameters",
    "parse_cfg",
    "read_cfg",
    "with_channels",
    "with_num_classes",
    "without_layers",
    "write_cfg",
]


def build_model(cfg: DarknetCfg, nc: int | None = None) -> DarknetModel:
    """Build a model from a cfg, first rewriting it for ``nc`` classes when given."""
    if nc is not None and nc != cfg_num_classes(cfg):
        cfg = with_num_classes(cfg, nc)
    return DarknetModel(cfg)
