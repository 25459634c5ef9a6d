"""What the pruning tests share: a tiny checkpoint, one torch thread, a kill -9 stand-in, and prune
auto's final table on PyTorch only unless a test asks for more."""

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


@pytest.fixture(autouse=True)
def torch_only_final_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """The final table times each model on every runtime installed (an export and a quantization each);
    a prune auto test about something else keeps PyTorch's latencies, which the run has measured already.
    tests/engine/prune/test_final_table.py overrides this fixture and tests the other runtimes."""
    from yolor_cli.engine.prune import auto

    monkeypatch.setattr(auto, "available_runtimes", lambda: (["torch"], []))
