"""``--weights`` files that are not our checkpoints: each is named for what it is, with the next step,
and none passes torch's own advice (``weights_only``, "file an issue") or its warnings to the user."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_cli import invoke
from yolor_cli.engine.model.bundled import load_cfg
from yolor_cli.engine.model.darknet import build_model

TORCH_ADVICE = ("weights_only", "file an issue", "Traceback", "internal error")


def _info(path: Path, *extra: str):
    """``yolor info --weights path``, failing the test if any warning escapes the command."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = invoke("info", "--weights", str(path), *extra)
    assert [str(w.message) for w in caught] == []
    return result


def _assert_refused(result, *phrases: str) -> str:
    text = " ".join(result.output.split())
    assert result.exit_code == 1, text
    for phrase in phrases:
        assert phrase in text
    for advice in TORCH_ADVICE:
        assert advice not in text
    return text


def test_a_plain_pickle_is_named_and_trust_pickle_is_not_offered(tmp_path: Path) -> None:
    path = tmp_path / "dict.pt"
    with path.open("wb") as stream:
        pickle.dump({"model": {"w": [1.0]}, "epoch": 3}, stream)
    text = _assert_refused(_info(path), f"{path} is a plain Python pickle (pickle.dump), not a yolor checkpoint")
    assert "--trust-pickle cannot read it either" in text
    _assert_refused(_info(path, "--trust-pickle"), "plain Python pickle")


def test_a_legacy_torch_pickle_points_to_trust_pickle(tmp_path: Path) -> None:
    state = build_model(load_cfg("yolor_csp_tiny")).state_dict()
    path = tmp_path / "legacy.pt"
    torch.save({"model": state}, path, pickle_protocol=4, _use_new_zipfile_serialization=False)
    text = _assert_refused(
        _info(path, "--cfg", "yolor_csp_tiny"),
        f"{path} is a legacy or foreign PyTorch pickle that a safe load cannot read, not a yolor checkpoint",
    )
    assert "only if you trust the file, pass --trust-pickle" in text
    trusted = _info(path, "--cfg", "yolor_csp_tiny", "--trust-pickle")
    assert trusted.exit_code == 0, trusted.output


def test_an_onnx_model_renamed_pt_points_to_detect(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["images"], ["output"])],
        "g",
        [onnx.helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, [1, 3, 64, 64])],
        [onnx.helper.make_tensor_value_info("output", onnx.TensorProto.FLOAT, [1, 3, 64, 64])],
    )
    path = tmp_path / "model.pt"
    onnx.save(onnx.helper.make_model(graph, producer_name="pytorch"), str(path))
    text = _assert_refused(_info(path), f"{path} is an ONNX model, not a checkpoint")
    assert "yolor eval and yolor detect run .onnx files" in text


@pytest.mark.parametrize("seed", [0, 17])  # torch answers 0 with its weights_only advice, 17 with an IndexError
def test_random_bytes_are_not_a_checkpoint(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "noise.pt"
    path.write_bytes(np.random.default_rng(seed).bytes(500))
    _assert_refused(_info(path), f"{path} is damaged or not a PyTorch checkpoint")
