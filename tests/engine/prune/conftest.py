"""What the pruning tests share: a tiny trained-shape checkpoint, one torch thread, a kill -9 stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from yolor_cli.engine.model.bundled import load_cfg
from yolor_cli.engine.model.checkpoint import Checkpoint, save_checkpoint
from yolor_cli.engine.model.darknet import build_model


class SimulatedKill(BaseException):
    """Stops the run where it is, as kill -9 would: no handler (the trainer's Ctrl-C one included) sees it."""


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """A 64 px tiny model gains nothing from threads, and on a busy machine they cost several times over."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained yolor_csp_tiny for 3 classes, saved as an ordinary checkpoint (seed 0)."""
    torch.manual_seed(0)
    model = build_model(load_cfg("yolor_csp_tiny"), nc=3)
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    save_checkpoint(Checkpoint(cfg=model.cfg, model_state=model.state_dict()), path)
    return path
