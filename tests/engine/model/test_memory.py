"""A batch that cannot fit is refused before it is allocated (survey defect 10: `benchmark --batch
100000` was killed by the kernel after allocating 22 GB)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import make_shapes_dataset
from tests.test_cli import invoke
from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.model import memory
from yolor_cli.engine.model.checkpoint import Checkpoint, save_checkpoint
from yolor_cli.engine.model.darknet import DarknetModel

GIB = 1 << 30


def test_the_largest_layer_grows_with_the_image_area(tiny_model: DarknetModel) -> None:
    small, large = memory.largest_layer_bytes(tiny_model, 320), memory.largest_layer_bytes(tiny_model, 640)
    assert large == pytest.approx(4 * small, rel=1e-6)
    # yolor_csp_tiny's largest pair is its first conv: a 3-channel 640 px input and 16 channels at
    # stride 2 (320 px), both alive at once in any forward.
    assert large == (3 * 640 * 640 + 16 * 320 * 320) * 4


def test_a_batch_larger_than_the_free_memory_is_refused(
    tiny_model: DarknetModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda device: 4 * GIB)
    memory.check_batch_fits(tiny_model, batch=8, img_size=640, device=torch.device("cpu"))
    with pytest.raises(YolorError, match=r"--batch 100000 at --img-size 640 needs at least \d+\.\d GiB") as caught:
        memory.check_batch_fits(
            tiny_model, batch=100000, img_size=640, device=torch.device("cpu"), batch_option="--batch"
        )
    assert "4.0 GiB is free on cpu" in caught.value.message and "lower --batch" in (caught.value.hint or "")


def test_the_host_memory_is_read(tiny_model: DarknetModel) -> None:
    free = memory.available_bytes(torch.device("cpu"))
    assert free is None or free > 0


def test_eval_and_benchmark_refuse_before_any_work(
    tmp_path: Path, tiny_model: DarknetModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_shapes_dataset(tmp_path / "voc", images=4, seed=0, val=0.5)
    weights = tmp_path / "w.pt"
    save_checkpoint(Checkpoint(cfg=tiny_model.cfg, model_state=tiny_model.state_dict(), names=None), weights)
    monkeypatch.setattr(memory, "available_bytes", lambda device: GIB)
    data = str(root / "data.yaml")
    for args in (
        ("eval", "--weights", str(weights), "--data", data, "--batch-size", "1024", "--project", str(tmp_path / "e")),
        ("benchmark", "--weights", str(weights), "--data", data, "--batch", "1024", "-o", str(tmp_path / "b")),
    ):
        result = invoke(*args)
        message = " ".join(result.stderr.split())
        assert result.exit_code == 1 and "needs at least" in message and "GiB is free on cpu" in message, message
    assert not (tmp_path / "e").exists() and not (tmp_path / "b").exists()
