"""Latency on the runtime that deploys: timing a model on each runtime, the per-unit latency table
(measured once, cached in the run folder, re-measured for another model), allocation by mAP lost per
millisecond, the missing-extra message, and the runtime's column in steps.csv."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import make_shapes_dataset
from yolor_cli.engine.deploy import runtime_latency
from yolor_cli.engine.errors import MissingDependencyError, YolorError
from yolor_cli.engine.model.bundled import load_cfg
from yolor_cli.engine.model.darknet import DarknetModel, build_model
from yolor_cli.engine.prune import auto, latency_table, sensitivity_allocation
from yolor_cli.engine.prune.pruning import ChannelPruner, conv_widths, rebuild
from yolor_cli.engine.prune.request import AutoPruneRequest, SensitivityRequest
from yolor_cli.engine.prune.sensitivity_allocation import Level, ScanLevels, greedy_amounts, levels_in_ms
from yolor_cli.engine.prune.units import PruneUnit, prune_unit, prune_units

IMG = 64


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("lat") / "voc", images=10, seed=3, val=0.3)


def _channels_latency(model: DarknetModel, img_size: int, runtime: str) -> float:
    """A stand-in timing that follows the output channels of the convs, not the MACs."""
    return 1.0 + sum(conv_widths(model).values()) / 1000


def _counting(monkeypatch: pytest.MonkeyPatch, timing=None) -> list[str]:
    calls: list[str] = []
    real = timing or latency_table.runtime_latency_ms

    def counted(model: DarknetModel, img_size: int, runtime: str) -> float:
        calls.append(runtime)
        return real(model, img_size, runtime)

    monkeypatch.setattr(latency_table, "runtime_latency_ms", counted)
    return calls


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_a_model_is_timed_on_the_runtime_and_left_as_it_was(tiny_model: DarknetModel, runtime: str) -> None:
    norms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in tiny_model.modules())
    weights = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    ms = runtime_latency.runtime_latency_ms(tiny_model, IMG, runtime)
    assert math.isfinite(ms) and 0 < ms < 10_000
    # timed on a fused copy: the model keeps its BatchNorm layers and weights
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in tiny_model.modules()) == norms > 0
    assert all(torch.equal(v, weights[k]) for k, v in tiny_model.state_dict().items())


def test_the_table_is_measured_once_cached_in_the_folder_and_reused(
    tiny_model: DarknetModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _counting(monkeypatch)
    units = prune_units(tiny_model, "conv")[:2]
    first = latency_table.unit_latency_table(
        tiny_model, units, (0.25, 0.5), runtime="onnxruntime", img_size=IMG, folder=tmp_path
    )
    assert len(calls) == 1 + 2 * 2  # the unpruned model, then each unit at each amount
    path = tmp_path / "latency_onnxruntime_64.json"
    saved = json.loads(path.read_text())
    assert saved["cfg_hash"] == latency_table.cfg_hash(tiny_model) and saved["runtime"] == "onnxruntime"
    assert set(saved["cuts"]) == {unit.name for unit in units}
    assert all(first.ms(unit.name, amount) > 0 for unit in units for amount in (0.25, 0.5))
    # A second run (or a resumed one) reads the table back: nothing is timed again.
    calls.clear()
    again = latency_table.unit_latency_table(
        tiny_model, units, (0.25, 0.5), runtime="onnxruntime", img_size=IMG, folder=tmp_path
    )
    assert calls == [] and again == first
    # An entry missing (a measurement killed half-way) is the only one timed.
    del saved["cuts"][units[1].name]["0.5"]
    path.write_text(json.dumps(saved))
    latency_table.unit_latency_table(
        tiny_model, units, (0.25, 0.5), runtime="onnxruntime", img_size=IMG, folder=tmp_path
    )
    assert calls == ["onnxruntime"]


def test_a_table_of_another_model_is_measured_again(
    tiny_model: DarknetModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _counting(monkeypatch, _channels_latency)
    units = prune_units(tiny_model, "conv")[:1]
    latency_table.unit_latency_table(tiny_model, units, (0.5,), runtime="torch", img_size=IMG, folder=tmp_path)
    pruner = ChannelPruner(tiny_model, method="l1")
    prune_unit(pruner, prune_units(tiny_model, "conv")[3], 0.5)
    other = rebuild(pruner.model)  # another cfg: other channel counts
    assert latency_table.cfg_hash(other) != latency_table.cfg_hash(tiny_model)
    calls.clear()
    table = latency_table.unit_latency_table(other, units, (0.5,), runtime="torch", img_size=IMG, folder=tmp_path)
    assert len(calls) == 2 and table.cfg_hash == latency_table.cfg_hash(other)
    saved = json.loads((tmp_path / "latency_torch_64.json").read_text())
    assert saved["cfg_hash"] == latency_table.cfg_hash(other)  # the stale table was replaced


def test_allocation_by_milliseconds_picks_another_plan_than_by_macs() -> None:
    """``wide`` saves many MACs but little time (overhead-bound), ``deep`` the reverse; both lose the
    same mAP. Per MAC the plan cuts ``wide``; per millisecond it cuts ``deep``."""
    scan = ScanLevels(
        levels={
            "wide": [Level(0, 0, 0), Level(0.25, 0.01, 1000), Level(0.5, 0.02, 2000)],
            "deep": [Level(0, 0, 0), Level(0.25, 0.01, 100), Level(0.5, 0.02, 200)],
        },
        units={"wide": PruneUnit("wide", (1,)), "deep": PruneUnit("deep", (2,))},
        base_macs=10_000,
    )
    table = latency_table.LatencyTable(
        "openvino",
        IMG,
        "x",
        base_ms=10.0,
        cuts={"wide": {"0.25": 9.9, "0.5": 9.8}, "deep": {"0.25": 8.0, "0.5": 6.0}},
    )
    assert greedy_amounts(scan.levels, 1000) == {"wide": 0.25}
    in_ms = levels_in_ms(scan, table)
    assert [level.saved for level in in_ms["deep"]] == pytest.approx([0.0, 2.0, 4.0])
    assert greedy_amounts(in_ms, 2.0) == {"deep": 0.25}
    assert greedy_amounts(in_ms, 4.0) == {"deep": 0.5}
    # A cut timed slower than the model saves nothing, and never less than the level below it.
    noisy = latency_table.LatencyTable("openvino", IMG, "x", 10.0, {"wide": {"0.25": 10.5, "0.5": 9.0}, "deep": {}})
    assert [level.saved for level in levels_in_ms(scan, noisy)["wide"]] == pytest.approx([0.0, 0.0, 1.0])


def test_a_runtime_whose_extra_is_missing_is_named_with_its_extra(
    source: Path, shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_cli import invoke

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    with pytest.raises(MissingDependencyError) as raised:
        runtime_latency.check_runtime("onnxruntime")
    assert "onnxruntime" in raised.value.message and "yolor-cli[export]" in str(raised.value.hint)
    scan = invoke(
        "prune", "sensitivity", "-w", str(source), "--data", str(shapes / "data.yaml"), "--runtime", "onnxruntime"
    )
    assert scan.exit_code == 1 and "yolor-cli[export]" in scan.stderr
    assert "--runtime onnxruntime needs the Python package onnxruntime" in " ".join(scan.stderr.split())
    assert not (tmp_path / "runs").exists()
    with pytest.raises(YolorError, match="--runtime 'tensorrt' is not one of torch, onnxruntime"):
        SensitivityRequest(weights=source, data=shapes / "data.yaml", runtime="tensorrt")
    with pytest.raises(YolorError, match="--runtime 'gpu' is not one of"):
        AutoPruneRequest(weights=source, data=shapes / "data.yaml", target_macs=0.5, runtime="gpu")


def _request(shapes: Path, source: Path, tmp_path: Path, **changes: object) -> AutoPruneRequest:
    values = {
        "weights": source,
        "data": shapes / "data.yaml",
        "target_macs": 0.5,
        "steps": 1,
        "epochs_per_step": 0,
        "final_epochs": 0,
        "distill": False,
        "img_size": IMG,
        "batch_size": 4,
        "workers": 0,
        "device": "cpu",
        "project": tmp_path / "runs",
        **changes,
    }
    return AutoPruneRequest(**values)  # type: ignore[arg-type]


def test_steps_csv_has_the_runtime_latency_column(shapes: Path, source: Path, tmp_path: Path) -> None:
    result = auto.auto_prune(_request(shapes, source, tmp_path, runtime="onnxruntime"))
    with (result.run_dir / "steps.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    header = list(rows[0])
    assert header.index("latency_ms_onnxruntime") == header.index("latency_ms") + 1
    assert len(rows) == 2 and all(float(row["latency_ms_onnxruntime"]) > 0 for row in rows)
    assert result.final.runtime_ms["onnxruntime"] == pytest.approx(float(rows[-1]["latency_ms_onnxruntime"]), abs=1e-3)
    # A torch run keeps today's columns: latency_ms is PyTorch's.
    torch_run = auto.auto_prune(_request(shapes, source, tmp_path, name="torch"))
    with (torch_run.run_dir / "steps.csv").open(newline="") as stream:
        assert not any(column.startswith("latency_ms_") for column in next(csv.reader(stream)))


def test_a_latency_target_is_planned_per_millisecond_from_the_cached_table(
    shapes: Path, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _counting(monkeypatch, _channels_latency)
    monkeypatch.setattr(sensitivity_allocation, "runtime_latency_ms", _channels_latency)
    monkeypatch.setattr(auto, "latency_ms", lambda model, size: _channels_latency(model, size, "torch"))
    before = _channels_latency(build_model(load_cfg("yolor_csp_tiny"), nc=3), IMG, "torch")
    request = _request(
        shapes, source, tmp_path, target_macs=None, target_latency_ms=before - 0.3, allocate="sensitivity", steps=2
    )
    result = auto.auto_prune(request)
    run = result.run_dir
    plan = json.loads((run / "allocation.json").read_text())
    assert plan["cost"] == "ms" and plan["planned_ms"] <= request.target_latency_ms * 1.02
    assert (run / "latency_torch_64.json").exists() and len(calls) > 1
    state = json.loads((run / "auto.json").read_text())
    assert state["target_fraction"] == pytest.approx(plan["macs_fraction"])  # the steps aim at the plan's MACs
    assert result.final.latency_ms <= request.target_latency_ms * 1.05
    assert any("per millisecond on torch" in note for note in result.notes)
    # Resumed: the table and the plan are read back, nothing is timed again.
    calls.clear()
    auto.auto_prune(dataclasses.replace(request, resume=True, name=run.name))
    assert calls == []


def test_a_scan_with_a_runtime_reports_each_cuts_time_and_reuses_its_table(
    source: Path, shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_cli import invoke

    calls = _counting(monkeypatch, _channels_latency)
    output = tmp_path / "scan"
    common = ["-w", str(source), "--data", str(shapes / "data.yaml"), "--img-size", str(IMG), "--max-images", "2"]
    args = [*common, "--unit", "stage", "--amounts", "0.5", "--runtime", "torch", "--output", str(output), "--json"]
    result = invoke("prune", "sensitivity", *args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["runtime"] == "torch" and payload["base"]["latency_ms"] > 0
    trial = payload["trials"][0]
    assert trial["latency_saved_ms"] == pytest.approx(payload["base"]["latency_ms"] - trial["latency_ms"])
    with (output / "sensitivity.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert all(float(row["latency_saved_ms"]) > 0 and row["map_drop_per_ms"] != "" for row in rows)
    assert (output / "latency_torch_64.json").exists() and len(calls) == 1 + len(payload["trials"])
    # The same scan again (the folder holds its files and the table): nothing is timed again.
    calls.clear()
    again = invoke("prune", "sensitivity", *args)
    assert again.exit_code == 0, again.output
    assert calls == [] and json.loads(again.stdout)["trials"] == payload["trials"]


def test_round_to_leaves_each_planned_width_a_multiple(tiny_model: DarknetModel) -> None:
    units = [u for u in prune_units(tiny_model, "conv") if conv_widths(tiny_model)[u.convs[0]] >= 32][:3]
    cuts = [sensitivity_allocation.PlannedCut(unit, 0.4, conv_widths(tiny_model)[unit.convs[0]]) for unit in units]
    plain = sensitivity_allocation.prune_towards(tiny_model, cuts, 1.0, "l1")
    rounded = sensitivity_allocation.prune_towards(tiny_model, cuts, 1.0, "l1", round_to=8)
    plain_widths = [conv_widths(plain)[unit.convs[0]] for unit in units]
    widths = [conv_widths(rounded)[unit.convs[0]] for unit in units]
    assert all(width % 8 == 0 for width in widths) and any(width % 8 for width in plain_widths)
    assert all(abs(width - plain) <= 4 for width, plain in zip(widths, plain_widths))
    assert sensitivity_allocation.rounded_width(3, 8) == 8 and sensitivity_allocation.rounded_width(21, 8) == 24
    with pytest.raises(YolorError):
        AutoPruneRequest(weights=Path("w.pt"), data=Path("d.yaml"), target_macs=0.5, round_to=0)
