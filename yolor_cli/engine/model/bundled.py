"""Bundled configs: ``--cfg yolor_csp`` resolves to ``configs/models/yolor_csp.cfg``.

The configs sit at the top of the source tree and are copied into the wheel as
``yolor_cli/configs``; both places are looked at so an editable install and a wheel behave alike.
"""

from __future__ import annotations

from pathlib import Path

from yolor_cli.engine.config import bundled_model_names, configs_dir
from yolor_cli.engine.errors import CfgError
from yolor_cli.engine.model.darknet import DarknetCfg, read_cfg


def resolve_cfg_path(name_or_path: str | Path) -> Path:
    """A path if it exists (or looks like one), else a bundled model name."""
    path = Path(name_or_path)
    if path.exists() or path.suffix == ".cfg" or len(path.parts) > 1:
        if not path.exists():
            raise CfgError(f"cfg file not found: {path}", hint=f"bundled models: {', '.join(bundled_model_names())}")
        return path
    bundled = configs_dir() / "models" / f"{path.name}.cfg"
    if not bundled.exists():
        raise CfgError(
            f"no cfg file or bundled model named {str(name_or_path)!r}",
            hint=f"bundled models: {', '.join(bundled_model_names())}",
        )
    return bundled


def load_cfg(name_or_path: str | Path) -> DarknetCfg:
    return read_cfg(resolve_cfg_path(name_or_path))
