"""Shared fixtures: bundled tiny cfg, deterministic weights, and the optional reference data."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

# Before torch loads: the two test workers and the commands tests start as subprocesses get one
# OpenMP thread each, so together they use the 2 cores instead of fighting over them.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch

from yolor_cli.engine.model.bundled import load_cfg
from yolor_cli.engine.model.darknet import DarknetModel, build_model

# The team's shared folder sits beside the checkout; users and some CI runs do not have it.
REFERENCE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "yolor"


def reference_path(*parts: str) -> Path:
    path = REFERENCE_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference data not available ({path})")
    return path


def fill_deterministic(model: torch.nn.Module) -> torch.nn.Module:
    """Weights from a formula, not an RNG, so golden outputs survive torch and platform changes."""
    with torch.no_grad():
        for number, (name, tensor) in enumerate(model.state_dict().items()):
            if not tensor.is_floating_point():
                continue
            index = torch.arange(tensor.numel(), dtype=torch.float64)
            values = torch.sin(index * 0.731 + number)
            if name.endswith("running_var"):
                values = 1.0 + 0.5 * values.abs()
            elif name.endswith(("BatchNorm2d.weight", "implicit")):
                values = 1.0 + 0.1 * values
            else:
                fan_in = tensor[0].numel() if tensor.ndim > 1 else 1
                values = values / math.sqrt(fan_in)
            tensor.copy_(values.view_as(tensor).to(tensor.dtype))
    return model


def make_shapes_dataset(root: Path, *, images: int, seed: int, val: float) -> Path:
    """A generated VOC folder, prepared (no test split): the data most engine tests run on."""
    from yolor_cli.engine.data.prepare import prepare_dataset
    from yolor_cli.engine.data.synth import synthesize

    synthesize(root, images=images, seed=seed)
    prepare_dataset(root, val=val, test=0.0, seed=0)
    return root


@pytest.fixture(autouse=True, scope="session")
def one_thread_per_worker() -> Iterator[None]:
    """The suite runs on two pytest-xdist workers (pyproject's addopts); each keeps torch to one
    thread, so the two never fight over the cores (tests use tiny models, which gain nothing from
    threads). A test that needs threads sets them itself."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models at 64 px gain nothing from threads, and on a busy machine they cost several times
    over; a module opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_model() -> DarknetModel:
    torch.manual_seed(0)
    return build_model(load_cfg("yolor_csp_tiny"), nc=3)
