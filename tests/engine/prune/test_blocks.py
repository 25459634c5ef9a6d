"""Depth pruning: residual blocks removed through the cfg rewriter, the references after them
renumbered, the kept tensors re-indexed, and the result an ordinary checkpoint that the Darknet format
rules, ``yolor info``, the sensitivity scan and ``prune auto`` all take."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from tests.conftest import fill_deterministic, make_shapes_dataset
from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.evaluate.preloaded import PreloadedSplit, SharedPrefix, evaluate_preloaded
from yolor_cli.engine.model.bundled import load_cfg
from yolor_cli.engine.model.checkpoint import Checkpoint, save_checkpoint
from yolor_cli.engine.model.darknet import (
    DarknetCfg,
    DarknetModel,
    build_model,
    count_parameters,
    parse_cfg,
    without_layers,
    write_cfg,
)
from yolor_cli.engine.model.loading import load_model
from yolor_cli.engine.prune import auto, sensitivity_allocation
from yolor_cli.engine.prune.blocks import block_at, remove_blocks, residual_blocks
from yolor_cli.engine.prune.pruning import conv_of, rebuild
from yolor_cli.engine.prune.request import AutoPruneRequest
from yolor_cli.engine.prune.sensitivity_allocation import PlannedCut, prune_towards
from yolor_cli.engine.prune.units import BLOCK, PruneUnit, prune_units

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = ["circle", "rectangle", "triangle"]
IMG = 64

# The keys the official YOLOR parser accepts in a layer section (utils/parse_config.py checks them),
# and the sections its model builder knows: what a cfg we write may hold to load there too.
OFFICIAL_KEYS = {
    "batch_normalize", "filters", "size", "stride", "pad", "activation", "layers", "groups", "from", "mask",
    "anchors", "classes", "num", "jitter", "ignore_thresh", "truth_thresh", "random", "stride_x", "stride_y",
    "weights_type", "weights_normalization", "scale_x_y", "beta_nms", "nms_kind", "iou_loss", "iou_normalizer",
    "cls_normalizer", "iou_thresh", "atoms", "na", "nc",
}  # fmt: skip
OFFICIAL_SECTIONS = {
    "convolutional", "route", "shortcut", "upsample", "maxpool", "yolo", "implicit_add", "implicit_mul",
    "shift_channels", "control_channels", "reorg", "silence",
}  # fmt: skip
FEATURE_MAPS = {"convolutional", "route", "shortcut", "upsample", "maxpool", "reorg", "shift_channels",
                "control_channels"}  # fmt: skip


def _official_sections(text: str) -> list[tuple[str, dict[str, str]]]:
    """The text read as the official parser reads a cfg, written independently of ours: a line starting
    with '#' is a comment, '[type]' starts a section, every other non-empty line is exactly key=value
    (no stray spaces before a comment or around a section), the first section is [net]."""
    sections: list[tuple[str, dict[str, str]]] = []
    for line in text.split("\n"):
        if not line or line.startswith("#"):
            continue
        assert line == line.strip(), f"stray whitespace: {line!r}"
        if line.startswith("["):
            assert re.fullmatch(r"\[[a-z_]+\]", line), line
            sections.append((line[1:-1], {}))
            continue
        parts = line.split("=")
        assert len(parts) == 2 and parts[0] and parts[1], f"not key=value: {line!r}"
        assert parts[0] not in sections[-1][1], f"duplicate key {parts[0]}"
        sections[-1][1][parts[0]] = parts[1]
    assert sections and sections[0][0] == "net"
    return sections[1:]


def check_official_format(text: str) -> None:
    """Sections and keys the official code knows, and every reference in range, backwards, and to a
    layer of the kind it needs: a [route] or [shortcut] reads feature maps, [shift_channels] an
    [implicit_add], [control_channels] an [implicit_mul], and a [shortcut] a map of its own width."""
    layers = _official_sections(text)
    model = DarknetModel(parse_cfg(text))  # widths, from our builder, for the shortcut rule
    for index, (kind, options) in enumerate(layers):
        assert kind in OFFICIAL_SECTIONS, kind
        assert set(options) <= OFFICIAL_KEYS, set(options) - OFFICIAL_KEYS
        key = "layers" if kind == "route" else "from" if "from" in options else None
        if key is None:
            continue
        for value in (int(part) for part in options[key].split(",")):
            target = index + value if value < 0 else value
            assert 0 <= target < index, f"layer {index} [{kind}] {key}={value} points outside 0..{index - 1}"
            wanted = {"shift_channels": {"implicit_add"}, "control_channels": {"implicit_mul"}}.get(kind, FEATURE_MAPS)
            assert layers[target][0] in wanted, f"layer {index} [{kind}] reads [{layers[target][0]}] {target}"
            if kind == "shortcut":
                assert model.layer_channels[target] == model.layer_channels[index - 1]


@pytest.fixture
def model() -> DarknetModel:
    return fill_deterministic(build_model(load_cfg("yolor_csp_tiny"), nc=3)).eval()


def _with_route(cfg: DarknetCfg, index: int, layers: str) -> DarknetCfg:
    edited = cfg.copy()
    edited.layers[index].options["layers"] = layers
    return edited


def test_tiny_has_four_removable_blocks_of_a_1x1_a_3x3_and_a_shortcut(model: DarknetModel) -> None:
    blocks = residual_blocks(model)
    assert [(b.input, b.convs, b.shortcut) for b in blocks] == [
        (1, (2, 3), 4),
        (8, (9, 10), 11),
        (18, (19, 20), 21),
        (28, (29, 30), 31),
    ]
    assert all(b.reason is None for b in blocks)
    assert [conv_of(model, i).kernel_size for i in blocks[1].convs] == [(1, 1), (3, 3)]
    assert [unit.name for unit in prune_units(model, "block")] == [b.name for b in blocks]
    assert all(unit.kind == BLOCK for unit in prune_units(model, "block"))


def test_a_block_whose_branch_outputs_zero_is_removed_without_changing_the_model(model: DarknetModel) -> None:
    block = block_at(model, 11)
    with torch.no_grad():  # the 3x3 conv's BatchNorm outputs zero, and silu(0) = 0: the branch adds nothing
        norm = model.module_list[block.convs[-1]].BatchNorm2d
        norm.weight.zero_()
        norm.bias.zero_()
    removed = remove_blocks(model, [block])
    image = torch.rand(2, 3, IMG, IMG)
    with torch.no_grad():
        (before, raw_before), (after, raw_after) = model(image), removed(image)
    assert torch.allclose(before, after, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(raw_before, raw_after))
    # An ordinary model: its cfg text reloads to the same layers, with fewer layers and parameters.
    reloaded = DarknetModel(parse_cfg(write_cfg(removed.cfg)))
    reloaded.load_state_dict(removed.state_dict())
    assert len(reloaded.module_list) == len(model.module_list) - 3
    assert count_parameters(reloaded) < count_parameters(model)
    # Every kept layer carries its tensors, moved to its new index.
    new_index = {old: old if old < 9 else old - 3 for old in range(len(model.module_list)) if old not in (9, 10, 11)}
    for old, new in new_index.items():
        mine, theirs = model.module_list[old].state_dict(), reloaded.module_list[new].state_dict()
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    check_official_format(write_cfg(removed.cfg))


def test_references_after_the_block_are_renumbered_in_their_own_form(model: DarknetModel) -> None:
    # Layer 13 reads the block's shortcut by number and layer 6 across the block by a relative step.
    cfg = _with_route(model.cfg, 13, "-1,-7,11")
    edited, new_index = without_layers(cfg, {9, 10, 11}, {11: 8})
    layer = edited.layers[new_index[13]]
    assert layer.type == "route" and layer.options["layers"] == "-1,-4,8"  # the shortcut's readers read its input
    assert edited.layers[new_index[23]].options["layers"] == "-1,13"  # absolute 16 -> 13
    assert edited.layers[new_index[21]].options["from"] == "-3"  # a relative shortcut behind the cut: as written
    assert edited.layers[new_index[52]].options["layers"] == "21"  # absolute 24 -> 21
    assert edited.layers[new_index[84]].options["from"] == "73"  # shift_channels from=76 -> 73
    assert edited.layers[new_index[86]].options["from"] == "76"  # control_channels from=79 -> 76
    assert len(edited.layers) == len(cfg.layers) - 3
    DarknetModel(parse_cfg(write_cfg(edited)))  # builds
    check_official_format(write_cfg(edited))
    # All four blocks at once, chained aliases included: still a valid cfg.
    removed = remove_blocks(build_model(cfg), residual_blocks(build_model(cfg)))
    assert len(removed.module_list) == len(cfg.layers) - 12
    check_official_format(write_cfg(removed.cfg))
    with pytest.raises(Exception, match="reads layer 10, which is removed"):
        without_layers(_with_route(cfg, 13, "-1,10"), {9, 10, 11}, {11: 8})


def test_a_block_that_removal_would_not_leave_as_identity_is_refused_with_its_reason(model: DarknetModel) -> None:
    edited = build_model(_with_route(model.cfg, 13, "-1,6,10"))  # a later layer reads the block's 3x3 conv
    block = block_at(edited, 11)
    assert block.reason == "layer 13 reads layer 10 inside it"
    assert "block 9-11" not in [unit.name for unit in prune_units(edited, "block")]
    with pytest.raises(YolorError, match="block 9-11 cannot be removed: layer 13 reads layer 10 inside it"):
        remove_blocks(edited, [block])
    cfg = model.cfg.copy()
    cfg.layers[4].options["from"] = "-2"  # the shortcut adds back layer 2, not the block's input 1
    cfg.layers[4].options["weights_type"] = "feature"
    weighted = block_at(build_model(cfg), 4)
    assert weighted.reason is not None and "weighted" in weighted.reason


def test_a_removed_block_resumes_from_the_shared_prefix_with_the_same_figures(
    model: DarknetModel, tmp_path: Path
) -> None:
    from yolor_cli.engine.config import load_data_config

    data = load_data_config(make_shapes_dataset(tmp_path / "voc", images=6, seed=3, val=0.7) / "data.yaml")
    split = PreloadedSplit.load(data, "val", 128, model.max_stride, batch_size=4)
    variant = remove_blocks(model, [block_at(model, 21)])
    prefix = SharedPrefix(model, split)
    assert prefix.first_changed(variant) <= 19
    resumed, full = evaluate_preloaded(variant, split, prefix=prefix), evaluate_preloaded(variant, split)
    assert (resumed.map50, resumed.map) == pytest.approx((full.map50, full.map), abs=1e-9)


def test_the_plan_removes_blocks_as_the_share_rises_and_maps_widths_past_them(model: DarknetModel) -> None:
    width = PruneUnit("conv 22", (22,))
    cuts = [
        PlannedCut(width, 0.5, conv_of(model, 22).out_channels),
        PlannedCut(PruneUnit("block 9-11", (9, 10), BLOCK), 1.0, 0),
        PlannedCut(PruneUnit("block 29-31", (29, 30), BLOCK), 1.0, 0),
    ]
    half = rebuild(prune_towards(model, cuts, 0.5, "l1"))
    assert len(half.module_list) == len(model.module_list) - 3  # one block of two at half the share
    assert conv_of(half, 22 - 3).out_channels == round(conv_of(model, 22).out_channels * 0.75)
    full = rebuild(prune_towards(half, cuts, 1.0, "l1", layers=len(model.module_list)))  # the step after: input indices
    assert len(full.module_list) == len(model.module_list) - 6
    assert conv_of(full, 22 - 3).out_channels == conv_of(model, 22).out_channels // 2
    check_official_format(write_cfg(full.cfg))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("blocks") / "voc", images=10, seed=3, val=0.3)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = fill_deterministic(build_model(load_cfg("yolor_csp_tiny"), nc=3))
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    save_checkpoint(Checkpoint(cfg=model.cfg, model_state=model.state_dict(), names=NAMES), path)
    return path


def test_cli_scan_lists_each_block_with_its_loss(source: Path, shapes: Path, tmp_path: Path) -> None:
    from tests.test_cli import invoke

    common = ["-w", str(source), "--data", str(shapes / "data.yaml"), "--img-size", str(IMG), "-o"]
    result = invoke("prune", "sensitivity", *common, str(tmp_path / "scan"), "--unit", "block", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    trials = payload["trials"]
    assert [t["unit"] for t in trials] == ["block 2-4", "block 9-11", "block 19-21", "block 29-31"]
    assert all(t["kind"] == "block" and t["amount"] == 1.0 and t["macs_saved"] > 0 for t in trials)
    assert all(t["map_drop"] == pytest.approx(payload["base"]["map"] - t["map"]) for t in trials)
    table = invoke("prune", "sensitivity", *common, str(tmp_path / "mixed"), "--unit", "conv+block")
    assert table.exit_code == 0, table.output
    text = " ".join(table.stdout.split())
    assert "block 9-11" in text and "conv 1+3" in text and "removed" in text
    refused = invoke("prune", "sensitivity", *common, str(tmp_path / "x"), "--unit", "blocks")
    assert refused.exit_code == 2 and "'blocks' is not one of 'conv'" in " ".join(refused.stderr.split())


def test_prune_auto_by_blocks_writes_an_ordinary_checkpoint_that_info_reads(
    source: Path, shapes: Path, tmp_path: Path
) -> None:
    from tests.test_cli import invoke

    with pytest.raises(YolorError, match="--unit block needs --allocate sensitivity"):
        AutoPruneRequest(weights=source, data=shapes, target_macs=0.9, unit="block")
    request = AutoPruneRequest(
        weights=source,
        data=shapes / "data.yaml",
        target_macs=0.9,
        steps=1,
        epochs_per_step=0,
        final_epochs=1,
        distill=False,
        allocate="sensitivity",
        unit="block",
        img_size=IMG,
        batch_size=4,
        workers=0,
        device="cpu",
        project=tmp_path / "runs",
    )
    result = auto.auto_prune(request)
    plan = json.loads((result.run_dir / sensitivity_allocation.PLAN_NAME).read_text())
    assert plan["cuts"] and all(cut["kind"] == "block" for cut in plan["cuts"])
    pruned = load_model(weights=result.output).model
    assert len(pruned.module_list) < 100 and result.final.macs < result.input.macs
    check_official_format(write_cfg(pruned.cfg))
    info = invoke("info", "-w", str(result.output), "--json")
    assert info.exit_code == 0, info.output
    assert json.loads(info.stdout)["layers"] == len(pruned.module_list)
