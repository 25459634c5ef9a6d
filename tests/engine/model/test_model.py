"""The model: official parameter counts and state_dict layout, forward contracts, devices, fusing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from tests.conftest import REFERENCE_DIR, fill_deterministic, reference_path
from yolor_cli.engine.model.bundled import load_cfg
from yolor_cli.engine.model.darknet import DarknetModel, build_model, count_parameters
from yolor_cli.engine.model.summary import count_gflops

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "tiny_forward.json"

# Measured with the official models/models.py (Darknet) on the official cfgs.
OFFICIAL_PARAMS = {
    ("yolor_csp", 80): 52_923_994,
    ("yolor_csp", 1): 52_497_868,
    ("yolor_csp_x", 80): 99_754_058,
    ("yolor_p6", 80): 37_265_016,
    ("yolor_w6", 80): 79_873_400,
    ("yolov4_csp", 80): 52_921_437,
}


def _meta_model(cfg_name_or_path, nc: int | None = None) -> DarknetModel:
    """Building on the meta device allocates nothing, so even 100M-parameter models count instantly."""
    with torch.device("meta"):
        return build_model(load_cfg(cfg_name_or_path), nc=nc)


@pytest.mark.parametrize(("name", "nc"), list(OFFICIAL_PARAMS))
def test_bundled_cfgs_have_the_official_parameter_counts(name: str, nc: int) -> None:
    assert count_parameters(_meta_model(name, nc)) == OFFICIAL_PARAMS[(name, nc)]


@pytest.mark.parametrize(("name", "nc"), list(OFFICIAL_PARAMS))
def test_reference_cfgs_have_the_official_parameter_counts(name: str, nc: int) -> None:
    path = reference_path("main", f"{name}.cfg")
    assert count_parameters(_meta_model(path, nc)) == OFFICIAL_PARAMS[(name, nc)]


def _reference_names() -> list[str]:
    folder = REFERENCE_DIR / "main"
    return sorted(p.stem for p in folder.glob("*.cfg")) if folder.exists() else ["<absent>"]


@pytest.mark.parametrize("name", _reference_names())
def test_every_reference_cfg_builds_and_runs(name: str) -> None:
    model = _meta_model(reference_path("main", f"{name}.cfg")).eval()
    assert count_parameters(model) > 0 and model.strides[:3] == [8.0, 16.0, 32.0]
    decoded, _ = model(torch.empty(1, 3, 128 * 2, 128 * 2, device="meta"))
    assert decoded.shape[-1] == 85


@pytest.mark.parametrize("name", ["yolor_csp", "yolor_p6"])
def test_state_dict_keys_and_shapes_match_the_official_model(name: str) -> None:
    listing = reference_path("statedict", f"{name}_nc80.txt").read_text().splitlines()
    model = _meta_model(name)
    ours = [f"{key} {tuple(value.shape)} {value.dtype}" for key, value in model.state_dict().items()]
    assert ours == listing


def test_tiny_cfg_is_small_enough_for_a_cpu() -> None:
    model = build_model(load_cfg("yolor_csp_tiny"))
    assert count_parameters(model) <= 2_000_000
    assert count_gflops(model, 320) <= 3.0
    assert [type(m).__name__ for m in model.module_list if "Implicit" in type(m).__name__]
    assert model.strides == [8.0, 16.0, 32.0]


def test_gflops_match_a_full_size_count(tiny_model: DarknetModel) -> None:
    """The count runs on a small probe image and scales by area; check it against a real 320 count."""
    from torch.utils.flop_counter import FlopCounterMode

    tiny_model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        tiny_model(torch.zeros(1, 3, 320, 320))
    assert count_gflops(tiny_model, 320) == pytest.approx(counter.get_total_flops() / 1e9, rel=1e-9)


def test_train_mode_returns_raw_maps(tiny_model: DarknetModel) -> None:
    tiny_model.train()
    levels = tiny_model(torch.rand(2, 3, 128, 96))
    assert [tuple(p.shape) for p in levels] == [(2, 3, 16, 12, 8), (2, 3, 8, 6, 8), (2, 3, 4, 3, 8)]


def test_eval_mode_decodes_boxes_in_input_pixels(tiny_model: DarknetModel) -> None:
    tiny_model.eval()
    with torch.no_grad():
        decoded, raw = tiny_model(torch.rand(1, 3, 128, 128))
    assert decoded.shape == (1, 3 * (16 * 16 + 8 * 8 + 4 * 4), 8)
    assert len(raw) == 3 and raw[0].shape == (1, 3, 16, 16, 8)
    # Centres lie within the grid's reach (-0.5 .. n + 0.5 cells), scores are probabilities.
    assert decoded[..., :2].min() >= -0.5 * 32 and decoded[..., :2].max() <= 128 + 0.5 * 32
    assert decoded[..., 4:].min() >= 0 and decoded[..., 4:].max() <= 1
    # The first level's first cell and anchor decodes from its raw values exactly as YOLOR does.
    p = raw[0][0, 0, 0, 0].sigmoid()
    anchor = tiny_model.yolo_layers[0].anchors.view(-1, 2)[0]
    expected_xy = (p[:2] * 2 - 0.5) * 8
    expected_wh = (p[2:4] * 2) ** 2 * anchor
    torch.testing.assert_close(decoded[0, 0, :4], torch.cat((expected_xy, expected_wh)))


def test_train_then_eval_at_the_same_size(tiny_model: DarknetModel) -> None:
    """The official layer skips building its grid in train mode and then fails in eval."""
    x = torch.rand(1, 3, 64, 64)
    tiny_model.train()
    tiny_model(x)
    tiny_model.eval()
    with torch.no_grad():
        decoded, _ = tiny_model(x)
    assert torch.isfinite(decoded).all()


def test_grids_and_anchors_follow_the_input_device_and_dtype(tiny_model: DarknetModel) -> None:
    """The YOLO-layer device bug users patch by hand: anchors move with .to(), grids are built
    on the input's device. The meta device stands in for a GPU on CPU-only machines."""
    tiny_model.eval()
    meta = tiny_model.to("meta")
    assert all(layer.anchors.device.type == "meta" for layer in meta.yolo_layers)
    decoded, _ = meta(torch.empty(1, 3, 64, 64, device="meta"))
    assert decoded.device.type == "meta"
    double = build_model(load_cfg("yolor_csp_tiny"), nc=3).double().eval()
    with torch.no_grad():
        decoded, _ = double(torch.rand(1, 3, 64, 64, dtype=torch.float64))
    assert decoded.dtype == torch.float64


def test_fused_model_matches_unfused(tiny_model: DarknetModel) -> None:
    fill_deterministic(tiny_model).eval()
    x = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, _ = tiny_model(x)
        tiny_model.fuse()
        fused, _ = tiny_model(x)
    assert not any("BatchNorm2d" in name for name, _ in tiny_model.named_modules())
    torch.testing.assert_close(fused, expected, rtol=1e-4, atol=1e-3)


def _golden_output() -> dict:
    model = fill_deterministic(build_model(load_cfg("yolor_csp_tiny"), nc=2)).eval()
    x = (torch.arange(3 * 64 * 64, dtype=torch.float32).view(1, 3, 64, 64) % 251) / 250
    with torch.no_grad():
        decoded, _ = model(x)
    return {"shape": list(decoded.shape), "rows": decoded[0, ::37].tolist(), "sum": decoded.double().sum().item()}


def test_golden_forward_of_the_tiny_cfg() -> None:
    """Set YOLOR_UPDATE_GOLDEN=1 to rewrite the file after a deliberate change of the forward pass."""
    actual = _golden_output()
    if os.environ.get("YOLOR_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(json.dumps(actual, indent=1) + "\n")
    expected = json.loads(GOLDEN.read_text())
    assert actual["shape"] == expected["shape"]
    torch.testing.assert_close(torch.tensor(actual["rows"]), torch.tensor(expected["rows"]), rtol=1e-4, atol=1e-4)
    assert actual["sum"] == pytest.approx(expected["sum"], rel=1e-5)
