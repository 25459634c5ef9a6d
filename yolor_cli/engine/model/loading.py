"""Turn the user's ``--cfg`` / ``--weights`` / ``--nc`` into a ready model.

Every command that needs a model comes through here, so the rules are the same everywhere: our
checkpoints need nothing else, official ones need ``--cfg``, and the class count follows the
weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.model.bundled import load_cfg
from yolor_cli.engine.model.checkpoint import Checkpoint, load_checkpoint, model_from_checkpoint
from yolor_cli.engine.model.darknet import DarknetModel, build_model


@dataclass
class LoadedModel:
    model: DarknetModel
    checkpoint: Checkpoint | None
    names: list[str] | None
    notes: list[str] = field(default_factory=list)

    @property
    def nc(self) -> int:
        return self.model.nc


def load_model(
    *,
    cfg: str | Path | None = None,
    weights: str | Path | None = None,
    nc: int | None = None,
    trust_pickle: bool = False,
) -> LoadedModel:
    if cfg is None and weights is None:
        raise YolorError("no model given", hint="pass --cfg (e.g. --cfg yolor_csp_tiny) or --weights FILE")
    parsed_cfg = load_cfg(cfg) if cfg is not None else None
    if weights is None:
        assert parsed_cfg is not None
        return LoadedModel(model=build_model(parsed_cfg, nc=nc), checkpoint=None, names=None)
    ckpt = load_checkpoint(weights, parsed_cfg, trust_pickle=trust_pickle)
    if nc is not None and nc != ckpt.nc:
        raise YolorError(
            f"--nc {nc} conflicts with {weights}, which was trained with {ckpt.nc} classes",
            hint="drop --nc: the class count is read from the weights",
        )
    model = model_from_checkpoint(ckpt, source=str(weights))
    return LoadedModel(model=model, checkpoint=ckpt, names=ckpt.names, notes=list(ckpt.notes))
