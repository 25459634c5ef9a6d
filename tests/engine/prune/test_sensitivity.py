"""``yolor prune sensitivity``: the units it prunes, the in-memory evaluation it scores them with
(equal to ``yolor eval``'s), and the scan as a command: files, JSON, one read of the model."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import make_shapes_dataset
from yolor_cli.engine.config import load_data_config
from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.evaluate.evaluator import evaluate_model
from yolor_cli.engine.evaluate.preloaded import PreloadedSplit, SharedPrefix, evaluate_preloaded
from yolor_cli.engine.model.checkpoint import Checkpoint, save_checkpoint
from yolor_cli.engine.model.darknet import DarknetModel
from yolor_cli.engine.model.darknet.layers import ControlChannels, Route, ShiftChannels, Shortcut
from yolor_cli.engine.prune.pruning import ChannelPruner, convs_between
from yolor_cli.engine.prune.request import SensitivityRequest
from yolor_cli.engine.prune.units import PruneUnit, prune_unit, prune_units

NAMES = ["circle", "rectangle", "triangle"]
IMG = 64
EVAL_IMG = 128  # the smallest size at which the random weights find an object here: figures to compare


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_shapes_dataset(tmp_path_factory.mktemp("sens") / "voc", images=12, seed=3, val=0.5)
    return root / "data.yaml"


@pytest.fixture
def weights(tiny_model: DarknetModel, tmp_path: Path) -> Path:
    path = tmp_path / "tiny.pt"
    save_checkpoint(Checkpoint(cfg=tiny_model.cfg, model_state=tiny_model.state_dict(), names=NAMES), path)
    return path


def test_conv_units_are_coupled_groups_once_and_leave_heads_out(tiny_model: DarknetModel) -> None:
    units = prune_units(tiny_model, "conv")
    names = [unit.name for unit in units]
    # [shortcut] 4 adds convs 1 and 3 (11: 8 and 10, ...): one unit each, never a unit per conv.
    assert {"conv 1+3", "conv 8+10", "conv 18+20", "conv 28+30"} <= set(names)
    assert not {"conv 1", "conv 3", "conv 8", "conv 10"} & set(names)
    covered = [index for unit in units for index in unit.convs]
    assert sorted(covered) == convs_between(tiny_model, 0, 10_000)  # every conv once, heads left out
    assert not set(covered) & {head.conv for head in tiny_model.heads}
    assert names == sorted(names, key=lambda name: int(name.split()[1].split("+")[0]))  # module order


def test_stage_units_are_the_convs_between_joins(tiny_model: DarknetModel) -> None:
    units = prune_units(tiny_model, "stage")
    by_name = {unit.name: unit.convs for unit in units}
    assert by_name["stage 0-3"] == (0, 1, 2, 3)  # up to [shortcut] 4
    assert by_name["stage 63-66"] == (63, 64, 65, 66)  # from [route] 62 to [route] 67
    assert by_name["stage 83"] == (83,)  # between [route] 82 and [shift_channels] 84
    joins = [
        i
        for i, m in enumerate(tiny_model.module_list)
        if isinstance(m, Route | Shortcut | ShiftChannels | ControlChannels)
    ]
    for unit in units:
        assert not [j for j in joins if unit.convs[0] < j < unit.convs[-1]], unit
    covered = sorted(index for unit in units for index in unit.convs)
    assert covered == convs_between(tiny_model, 0, 10_000)
    with pytest.raises(YolorError, match="unknown pruning unit"):
        prune_units(tiny_model, "layer")


def test_prune_unit_cuts_a_coupled_group_once(tiny_model: DarknetModel) -> None:
    pruner = ChannelPruner(copy.deepcopy(tiny_model))
    changes = prune_unit(pruner, PruneUnit("conv 1+3", (1, 3)), 0.5)
    assert {(c.module, c.before, c.after) for c in changes} == {(1, 32, 16), (3, 32, 16)}  # not 32 -> 8
    pruner = ChannelPruner(copy.deepcopy(tiny_model))
    stage = next(unit for unit in prune_units(tiny_model, "stage") if unit.name == "stage 0-3")
    changes = prune_unit(pruner, stage, 0.5)
    assert {(c.module, c.after) for c in changes} == {(0, 8), (1, 16), (2, 8), (3, 16)}
    assert prune_unit(ChannelPruner(copy.deepcopy(tiny_model)), PruneUnit("conv 0", (0,)), 0.01) == []


def _same_metrics(a, b) -> None:
    assert (a.map50, a.map, a.precision, a.recall) == (b.map50, b.map, b.precision, b.recall)
    assert [(c.map50, c.map) for c in a.per_class] == [(c.map50, c.map) for c in b.per_class]
    np.testing.assert_array_equal(a.pr_curve, b.pr_curve)


def test_preloaded_evaluation_equals_evaluate_model(tiny_model: DarknetModel, shapes: Path) -> None:
    data = load_data_config(shapes)
    split = PreloadedSplit.load(data, "val", EVAL_IMG, tiny_model.max_stride, batch_size=4)
    expected, _ = evaluate_model(tiny_model, data, img_size=EVAL_IMG, batch_size=4)
    assert expected.metrics.map50 > 0 and len(split.batches) == 2  # random weights still find something
    got = evaluate_preloaded(tiny_model, split)
    _same_metrics(got, expected.metrics)
    assert (split.images, split.instances) == (expected.images, expected.instances)
    assert len(PreloadedSplit.load(data, "val", EVAL_IMG, tiny_model.max_stride, max_images=3).batches[0].images) == 3


def test_resuming_from_the_shared_prefix_changes_no_figure(tiny_model: DarknetModel, shapes: Path) -> None:
    split = PreloadedSplit.load(load_data_config(shapes), "val", EVAL_IMG, tiny_model.max_stride, batch_size=4)
    prefix = SharedPrefix(tiny_model, split)
    tight = SharedPrefix(tiny_model, split, budget_bytes=0)  # keeps nothing: every variant runs in full
    for unit in (PruneUnit("conv 14", (14,)), PruneUnit("conv 57", (57,)), PruneUnit("conv 89", (89,))):
        pruner = ChannelPruner(copy.deepcopy(tiny_model))
        prune_unit(pruner, unit, 0.5)
        resumed = evaluate_preloaded(pruner.model, split, prefix=prefix)
        assert prefix.start == (77 if unit.convs == (89,) else unit.convs[0])  # conv 89 shrinks implicit 77
        _same_metrics(resumed, evaluate_preloaded(pruner.model, split))
        _same_metrics(resumed, evaluate_preloaded(pruner.model, split, prefix=tight))
        assert resumed.map50 > 0
    assert tight.states is None


def test_cli_scan_writes_its_files_and_reads_the_model_once(
    tiny_model: DarknetModel, weights: Path, shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_cli import invoke
    from yolor_cli.engine.data import dataset
    from yolor_cli.engine.model import loading

    loads, reads = [], []
    load_checkpoint, read_image = loading.load_checkpoint, dataset.read_image
    monkeypatch.setattr(loading, "load_checkpoint", lambda *a, **k: loads.append(a) or load_checkpoint(*a, **k))
    monkeypatch.setattr(dataset, "read_image", lambda path: reads.append(path) or read_image(path))
    common = ["-w", str(weights), "--data", str(shapes), "--img-size", str(IMG), "--max-images", "4"]
    result = invoke("prune", "sensitivity", *common, "--unit", "stage", "--amounts", "0.25,0.75", "--json")
    assert result.exit_code == 0, result.output
    assert len(loads) == 1 and len(reads) == 4  # the model file and each image are read once
    payload = json.loads(result.stdout)
    assert {"base", "trials", "safest", "output", "seconds"} <= payload.keys()
    assert {"map50", "map"} <= payload["base"].keys()
    output = tmp_path / "tiny_sensitivity"
    assert payload["output"] == str(output) and len(payload["safest"]) == 3
    assert len(payload["trials"]) + len(payload["skipped"]) == 2 * len(prune_units(tiny_model, "stage"))
    trial = payload["trials"][0]
    assert set(trial) == {
        "unit",
        "kind",
        "convs",
        "amount",
        "map50",
        "map",
        "map50_drop",
        "map_drop",
        "macs_saved",
        "params_saved",
    }
    assert trial["map_drop"] == pytest.approx(payload["base"]["map"] - trial["map"])
    assert all(t["macs_saved"] > 0 and t["params_saved"] > 0 for t in payload["trials"])
    with (output / "sensitivity.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == len(payload["trials"]) and sorted(int(r["rank"]) for r in rows) == list(range(1, len(rows) + 1))
    assert json.loads((output / "sensitivity.json").read_text())["trials"] == payload["trials"]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not (output / "sensitivity.png").exists()
    else:
        assert (output / "sensitivity.png").stat().st_size > 0
    # The folder holds only an earlier scan's files: a second scan replaces them; a table this time.
    table = invoke("prune", "sensitivity", *common, "--amounts", "0.5")
    assert table.exit_code == 0, table.output
    text = " ".join(table.stdout.split())
    assert "Safest to prune:" in text and "conv 1+3" in text and "drop / GMAC" in text
    assert all(row["amount"] == "0.5" for row in csv.DictReader((output / "sensitivity.csv").open()))
    # A folder name that reads like Rich markup is printed as it is, not styled away or an error.
    odd = tmp_path / "scan[/b][red]"
    named = invoke("prune", "sensitivity", *common, "--amounts", "0.5", "-o", str(odd))
    assert named.exit_code == 0, named.output
    assert str(odd) in " ".join(named.stdout.split()) and (odd / "sensitivity.csv").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"amounts": (0.0, 0.5)}, r"--amounts 0 is outside \(0, 1\)"),
        ({"amounts": (1.2,)}, r"--amounts 1.2 is outside \(0, 1\)"),
        ({"amounts": ()}, "--amounts is empty"),
        ({"amounts": (0.5, 0.5)}, "given more than once"),
        ({"unit": "layer"}, "--unit 'layer' is not one of conv, stage"),
        ({"method": "random"}, "--method random cannot measure sensitivity"),
        ({"method": "l3"}, "unknown pruning method 'l3'"),
    ],
)
def test_bad_requests_are_refused(options: dict, message: str) -> None:
    with pytest.raises(YolorError, match=message):
        SensitivityRequest(weights=Path("w.pt"), data=Path("d.yaml"), **options)


def test_cli_refuses_bad_options_and_foreign_output_folders(weights: Path, shapes: Path, tmp_path: Path) -> None:
    from tests.test_cli import invoke

    common = ["prune", "sensitivity", "-w", str(weights), "--data", str(shapes), "--img-size", str(IMG)]
    for options, message in (
        (["--amounts", "0.5,1.2"], "outside (0, 1)"),
        (["--amounts", "half"], "not a comma-separated list"),
        (["--method", "random"], "cannot measure sensitivity"),
    ):
        result = invoke(*common, *options)
        assert result.exit_code == 1 and message in " ".join(result.stderr.split()), result.output
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    result = invoke(*common, "-o", str(mine))
    assert result.exit_code == 1 and "already holds other files (notes.txt)" in " ".join(result.stderr.split())
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    (tmp_path / "notes.txt").write_text("a file")
    result = invoke(*common, "-o", str(tmp_path / "notes.txt" / "scan"))
    assert result.exit_code == 1 and "which is a file" in " ".join(result.stderr.split())
