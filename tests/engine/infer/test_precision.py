"""Inference in bf16 on a CPU that has it: boxes decoded in float32 from exact anchors, the caller's
model untouched, the precision chosen at run time (``--half/--no-half``) and named in eval's and
detect's output. The CPU feature is monkeypatched, so every case runs whatever CPU the tests run on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import make_shapes_dataset
from tests.test_cli import invoke
from yolor_cli.engine import runtime
from yolor_cli.engine.infer import predictor as predictor_module
from yolor_cli.engine.infer.predictor import Predictor
from yolor_cli.engine.model.bundled import load_cfg
from yolor_cli.engine.model.checkpoint import Checkpoint, save_checkpoint
from yolor_cli.engine.model.darknet import DarknetModel, build_model
from yolor_cli.engine.model.darknet.layers import YoloLayer
from yolor_cli.engine.runtime import InferencePrecision

NAMES = ["circle", "rectangle", "triangle"]
IMG = 64
BF16 = InferencePrecision(torch.bfloat16, "test")
FP32 = InferencePrecision(torch.float32, "test")
# Pixels a bf16 box may differ from the fp32 one here. The random-init model keeps activations small
# (measured: 0.03 px at 256 px); a decode left in bf16 would round values of 128-256 px to whole
# pixels (0.5 px off), and fail this.
BOX_PIXEL_LIMIT = 0.25


def _bf16_conv_runs() -> bool:
    """bf16 convolutions run on any x86 CPU (emulated without the hardware); not on every platform."""
    try:
        torch.nn.functional.conv2d(torch.ones(1, 1, 3, 3, dtype=torch.bfloat16), torch.ones(1, 1, 1, 1).bfloat16())
    except RuntimeError:
        return False
    return True


needs_bf16 = pytest.mark.skipif(not _bf16_conv_runs(), reason="torch cannot run bf16 convolutions on this CPU")


def _cpu_has(monkeypatch: pytest.MonkeyPatch, flags: set[str]) -> None:
    monkeypatch.setattr(runtime, "_torch_cpu_flags", lambda: flags)


def _tiny() -> DarknetModel:
    torch.manual_seed(0)
    return build_model(load_cfg("yolor_csp_tiny"), nc=len(NAMES)).eval()


def test_anchors_stay_float32_in_a_bf16_model_and_fp16_keeps_casting_them() -> None:
    layer = YoloLayer([(459.0, 401.0), (12.0, 16.0)], nc=3, stride=32, level=2)  # yolor_csp's largest anchor
    assert layer.anchors.bfloat16().max() == 460  # bf16 steps by 2 above 256
    layer.to(torch.bfloat16)
    assert layer.anchors.dtype == torch.float32 and layer.anchors.max() == 459
    assert layer.half().anchors.dtype == torch.float16 and layer.anchors.max() == 459  # fp16 holds them exactly
    model = _tiny().to(torch.bfloat16)  # from the model down, as the predictor casts it
    assert next(model.parameters()).dtype == torch.bfloat16
    assert all(m.anchors.dtype == torch.float32 for m in model.modules() if isinstance(m, YoloLayer))


def test_a_bf16_map_is_decoded_in_float32() -> None:
    layer = _tiny().module_list[-1]
    assert isinstance(layer, YoloLayer)
    torch.manual_seed(1)
    raw = torch.randn(1, layer.na, 20, 20, layer.no).bfloat16()  # a 640-px input at stride 32: centres up to 640
    decoded = layer.decode(raw)
    assert decoded.dtype == torch.float32
    torch.testing.assert_close(decoded, layer.decode(raw.float()), rtol=0, atol=0)
    in_bf16 = layer.decode(raw.float()).bfloat16().float()  # what a decode kept in bf16 would round to
    assert (in_bf16[..., :2] - decoded[..., :2]).abs().max() >= 1.0  # a whole pixel and more near 600 px
    fp16 = layer.decode(raw.half())  # fp16 (and fp32) decode in their own type, as exported graphs do
    assert fp16.dtype == torch.float16


def _decoded_by(predictor: Predictor, monkeypatch: pytest.MonkeyPatch, images: torch.Tensor) -> torch.Tensor:
    """The decoded rows the predictor hands to NMS, for one batch."""
    seen: list[torch.Tensor] = []
    nms = predictor_module.non_max_suppression

    def spy(decoded: torch.Tensor, **kwargs: object) -> list[torch.Tensor]:
        seen.append(decoded)
        return nms(decoded, **kwargs)

    monkeypatch.setattr(predictor_module, "non_max_suppression", spy)
    image = (images[0].permute(1, 2, 0).numpy()[:, :, ::-1]).copy()
    tensor, geometry = predictor.prepare(image, 256)
    predictor(tensor[None], [geometry])
    monkeypatch.undo()
    return seen[0]


@needs_bf16
def test_the_predictor_in_bf16_finds_the_fp32_boxes(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _tiny()
    fp32 = Predictor(model, precision=FP32)
    bf16 = Predictor(model, precision=BF16)
    assert bf16.precision is BF16 and next(bf16.model.parameters()).dtype == torch.bfloat16
    assert next(model.parameters()).dtype == torch.float32 and model.training is False  # the caller's model
    images = torch.randint(0, 256, (1, 3, 256, 256), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    reference = _decoded_by(fp32, monkeypatch, images)
    decoded = _decoded_by(bf16, monkeypatch, images)
    assert decoded.dtype == torch.float32 and decoded.shape == reference.shape
    sides = reference[..., 2:4]
    assert float(sides.max()) > 100  # boxes large enough for bf16's rounding to matter
    assert float((decoded[..., :4] - reference[..., :4]).abs().max()) <= BOX_PIXEL_LIMIT
    assert float((decoded[..., 4:] - reference[..., 4:]).abs().max()) <= 1e-2  # scores


def test_half_keeps_its_meaning_fp16_on_cuda_only() -> None:
    predictor = Predictor(_tiny(), half=True)  # what validation while training passes
    assert predictor.precision is not None and predictor.precision.name == "fp32"
    assert not predictor.half and next(predictor.model.parameters()).dtype == torch.float32
    assert Predictor(_tiny()).precision.name == "fp32"  # type: ignore[union-attr]  # nothing passed: fp32


# ---- the command line -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("precision") / "voc", images=6, seed=3, val=0.5)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = _tiny()
    path = tmp_path_factory.mktemp("weights") / "w.pt"
    save_checkpoint(Checkpoint(cfg=model.cfg, model_state=model.state_dict(), names=NAMES), path)
    return path


def _eval(weights: Path, shapes: Path, *flags: str):
    return invoke("eval", "-w", str(weights), "--data", str(shapes / "data.yaml"), "--img-size", str(IMG), *flags)


@needs_bf16
def test_eval_runs_in_bf16_on_a_cpu_with_it_and_says_so(
    weights: Path, shapes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _cpu_has(monkeypatch, {"avx512_bf16"})
    auto = _eval(weights, shapes, "--device", "cpu", "--json")
    assert auto.exit_code == 0, auto.output
    payload = json.loads(auto.stdout)
    assert payload["inference_precision"] == "bf16"
    assert payload["inference_precision_reason"] == "CPU has AVX-512 BF16; --no-half for fp32"
    assert isinstance(payload["precision"], float)  # the metric keeps its key
    refused = json.loads(_eval(weights, shapes, "--device", "cpu", "--no-half", "--json").stdout)
    assert (refused["inference_precision"], refused["inference_precision_reason"]) == ("fp32", "--no-half")
    assert refused["images"] == payload["images"] == 3
    table = _eval(weights, shapes, "--device", "cpu")
    assert "Inference precision: bf16 (CPU has AVX-512 BF16; --no-half for fp32)" in " ".join(table.stdout.split())


def test_eval_on_a_cpu_without_bf16_notes_an_ignored_half(
    weights: Path, shapes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _cpu_has(monkeypatch, {"avx2"})
    auto = json.loads(_eval(weights, shapes, "--device", "cpu", "--json").stdout)
    assert auto["inference_precision"] == "fp32" and "AVX-512 BF16" in auto["inference_precision_reason"]
    asked = _eval(weights, shapes, "--device", "cpu", "--half", "--json")
    assert asked.exit_code == 0, asked.output
    assert json.loads(asked.stdout)["inference_precision"] == "fp32"
    assert "--half is ignored" in " ".join(asked.stderr.split())
    predictions = shapes / "no_detections.json"
    predictions.write_text("[]")
    scored = invoke("eval", "--data", str(shapes / "data.yaml"), "--predictions", str(predictions), "--json")
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.stdout)["inference_precision"] is None  # no model ran


def _detect(weights: Path, shapes: Path, project: Path, *flags: str):
    return invoke(
        "detect", "-w", str(weights), "--source", str(shapes / "images"), "--img-size", str(IMG),
        "--project", str(project), "--nosave", *flags,
    )  # fmt: skip


@needs_bf16
def test_detect_chooses_with_half_and_no_half(
    weights: Path, shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _cpu_has(monkeypatch, {"amx_bf16", "avx512_bf16"})
    refused = _detect(weights, shapes, tmp_path, "--device", "cpu", "--no-half", "--json")
    assert refused.exit_code == 0, refused.output
    payload = json.loads(refused.stdout)
    assert (payload["inference_precision"], payload["inference_precision_reason"]) == ("fp32", "--no-half")
    auto = json.loads(_detect(weights, shapes, tmp_path, "--device", "cpu", "--json").stdout)
    assert auto["inference_precision"] == "bf16" and "AMX-BF16" in auto["inference_precision_reason"]
    assert auto["images"] == payload["images"] == 6
    table = _detect(weights, shapes, tmp_path, "--device", "cpu")
    assert "in bf16 (CPU has AMX-BF16; --no-half for fp32)" in " ".join(table.stdout.split())


def test_an_onnx_file_runs_in_its_own_precision_and_says_half_does_not_apply(
    weights: Path, shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("onnxruntime")
    _cpu_has(monkeypatch, {"avx512_bf16"})
    onnx_file = tmp_path / "w.onnx"
    exported = invoke("export", "-w", str(weights), "--img-size", str(IMG), "-o", str(onnx_file))
    assert exported.exit_code == 0, exported.output
    result = _detect(onnx_file, shapes, tmp_path / "runs", "--half", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["inference_precision"] == "fp32" and "w.onnx" in payload["inference_precision_reason"]
    assert "--half does not apply to w.onnx" in " ".join(result.stderr.split())
    plain = _detect(onnx_file, shapes, tmp_path / "runs", "--json")
    assert "does not apply" not in plain.stderr and json.loads(plain.stdout)["inference_precision"] == "fp32"
    assert np.isfinite(payload["speed_ms"]["inference"])
