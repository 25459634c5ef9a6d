"""``yolor export --output``: one format and a file name with a suffix writes exactly that name;
several formats, or a stem without a suffix, get each format's suffix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import fill_deterministic
from tests.test_cli import invoke
from yolor_cli.engine.deploy.export import output_paths
from yolor_cli.engine.model.checkpoint import Checkpoint, save_checkpoint

IMG = "64"


@pytest.fixture
def weights(tiny_model: torch.nn.Module, tmp_path: Path) -> Path:
    fill_deterministic(tiny_model)
    path = tmp_path / "tiny.pt"
    save_checkpoint(Checkpoint(cfg=tiny_model.cfg, model_state=tiny_model.state_dict(), names=["a", "b", "c"]), path)
    return path


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_one_format_with_a_named_file_writes_exactly_that_file(weights: Path, tmp_path: Path) -> None:
    target = tmp_path / "m.ts"
    result = invoke(
        "export", "-w", str(weights), "--img-size", IMG, "--format", "torchscript", "-o", str(target), "--json"
    )
    assert result.exit_code == 0, result.output
    assert [f["path"] for f in json.loads(result.stdout)["files"]] == [str(target)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ts", "tiny.pt"]
    loaded = torch.jit.load(str(target))
    assert loaded(torch.zeros(1, 3, 64, 64)).shape[-1] == 8  # 5 + 3 classes: the traced detector itself


def test_output_names_for_one_format_and_for_several(weights: Path, tmp_path: Path) -> None:
    def names(formats: list[str], output: str) -> list[str]:
        return [path.name for path in output_paths(weights, formats, tmp_path / output).values()]

    assert names(["onnx"], "model.onnx") == ["model.onnx"]
    assert names(["torchscript"], "model.torchscript") == ["model.torchscript"]
    assert names(["pt"], "deploy.bin") == ["deploy.bin"]
    assert names(["torchscript"], "model") == ["model.torchscript"]  # no suffix: the format's is added
    assert names(["onnx"], "model.v2") == ["model.v2.onnx"]  # a version is part of the stem
    assert names(["onnx"], "model.v1.5") == ["model.v1.5.onnx"]
    assert names(["onnx", "torchscript"], "m.ts") == ["m.ts.onnx", "m.ts.torchscript"]
    assert names(["onnx", "pt"], "m.onnx") == ["m.onnx", "m.pt"]
