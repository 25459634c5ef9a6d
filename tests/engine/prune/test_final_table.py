"""``yolor prune auto``'s final table: the input, the reference (--reference), the pruned model and the
pruned model in INT8, with params, GFLOPs, latency on each runtime installed, mAP50 and mAP50-95; the
reference trained as long as the run and never twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import make_shapes_dataset
from tests.engine.prune.conftest import SimulatedKill
from tests.engine.prune.test_auto import _cli_args, _counting_trains, _csv, _request
from yolor_cli.engine.deploy.request import LATENCY_RUNTIMES
from yolor_cli.engine.errors import MissingDependencyError, YolorError
from yolor_cli.engine.prune import auto, final_table
from yolor_cli.engine.prune.request import AutoPruneRequest

ROW_KEYS = {"model", "params", "gflops", "latency_ms", "map50", "map"}


@pytest.fixture(autouse=True)
def torch_only_final_table() -> None:
    """Overrides the prune tests' fixture: here the final table times every runtime installed."""


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("table") / "voc", images=10, seed=3, val=0.3)


def _only_torch_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every runtime but PyTorch as if its extra were missing."""
    real_check = final_table.check_runtime

    def check(runtime: str) -> None:
        if runtime != "torch":
            raise MissingDependencyError(f"{runtime} is missing", hint="pip install 'yolor-cli[x]'")
        real_check(runtime)

    monkeypatch.setattr(final_table, "check_runtime", check)


def test_cli_table_has_every_row_and_runtime(
    shapes: Path, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from tests.test_cli import invoke

    calls = _counting_trains(monkeypatch)
    args = _cli_args(shapes, source, tmp_path, "--target-macs", "0.5", "--steps", "1", "--distill")
    result = invoke(*args, "--reference", "--calib-images", "4", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["epochs"] == 2 and calls == [("step_1", None), ("final", None), ("reference", None)]
    # PyTorch's scalars as before; each runtime's figures beside them
    timed = payload["latency_ms_runtimes"]
    assert set(timed) == {"before", "after"}
    assert all(list(timed[key]) == list(LATENCY_RUNTIMES) for key in timed)
    assert all(ms > 0 for key in timed for ms in timed[key].values())
    assert timed["before"]["torch"] == round(payload["latency_ms_before"], 3)
    assert timed["after"]["torch"] == round(payload["latency_ms_after"], 3)
    rows = {row["model"]: row for row in payload["final_table"]}
    assert list(rows) == ["input", "reference", "pruned", "pruned + INT8"]
    assert all(set(row) == ROW_KEYS for row in rows.values())
    assert rows["input"]["params"] == rows["reference"]["params"] == payload["params_before"]
    assert rows["pruned"]["params"] == rows["pruned + INT8"]["params"] == payload["params_after"]
    assert rows["pruned"]["gflops"] == pytest.approx(2 * payload["macs_after"] / 1e9, abs=1e-6)
    assert rows["input"]["latency_ms"] == rows["reference"]["latency_ms"] == timed["before"]
    assert rows["pruned"]["latency_ms"] == timed["after"]
    assert rows["pruned + INT8"]["latency_ms"] == {"openvino-int8": timed["after"]["openvino-int8"]}
    assert (rows["input"]["map"], rows["pruned"]["map"]) == (payload["map_before"], payload["map_after"])
    assert all(0 <= row[key] <= 1 for row in rows.values() for key in ("map50", "map"))
    run = tmp_path / "runs" / "exp"
    assert (run / "pruned_int8_openvino_model" / "pruned_int8.xml").exists()
    # The reference: the input, as long as the run's training, without the teacher the steps had.
    options = yaml.safe_load((run / "reference" / "opt.yaml").read_text())
    assert options["epochs"] == payload["epochs"] and options["weights"] == str(source.resolve())
    assert options["teacher"] is None and yaml.safe_load((run / "step_1" / "opt.yaml").read_text())["teacher"]
    assert len(_csv(run / "reference" / "results.csv")) == payload["epochs"]
    # A finished run resumes to its report, the table included, without training or timing anything.
    calls.clear()
    monkeypatch.setattr(final_table, "runtime_latency_ms", None)  # would fail if called
    shown = invoke("prune", "auto", "--resume", "--project", str(tmp_path / "runs"), "--name", "exp")
    assert shown.exit_code == 0, shown.output
    assert calls == []
    text = shown.stdout
    assert "Final table" in text and all(f"{runtime} ms" in text for runtime in LATENCY_RUNTIMES)
    assert all(f"\n│ {name} " in text for name in ("input", "reference", "pruned", "pruned + INT8"))


def test_without_reference_or_extras_the_table_has_input_and_pruned(
    shapes: Path, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _only_torch_installed(monkeypatch)
    calls = _counting_trains(monkeypatch)
    result = auto.auto_prune(_request(shapes, source, tmp_path, steps=1, final_epochs=0))
    assert calls == [("step_1", None)]  # no reference without --reference
    table = result.table
    assert table is not None and table.runtimes == ["torch"]
    assert [row.model for row in table.rows] == ["input", "pruned"]
    before, after = table.rows
    assert before.latency_ms == {"torch": result.input.latency_ms} and after.latency_ms == {
        "torch": result.final.latency_ms
    }
    assert (before.params, after.params) == (result.input.params, result.final.params)
    assert (after.map50, after.map) == (result.final.map50, result.final.map)
    for runtime in ("onnxruntime", "openvino", "openvino-int8"):
        assert any(f"no {runtime} latency: {runtime} is missing" in note for note in result.notes)
    assert any("no pruned + INT8 row" in note and "yolor-cli[openvino]" in note for note in result.notes)
    assert not (result.run_dir / "pruned_int8_openvino_model").exists()
    saved = json.loads((result.run_dir / "auto.json").read_text())["table"]
    assert [row["model"] for row in saved["rows"]] == ["input", "pruned"]


def test_a_run_that_trained_nothing_has_the_input_as_its_reference(
    shapes: Path, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _only_torch_installed(monkeypatch)
    calls = _counting_trains(monkeypatch)
    request = _request(shapes, source, tmp_path, steps=1, epochs_per_step=0, final_epochs=0, reference=True)
    result = auto.auto_prune(request)
    assert calls == [] and result.epochs == 0 and not (result.run_dir / "reference").exists()
    assert result.table is not None
    reference = result.table.row("reference")
    assert reference is not None and (reference.map50, reference.map) == (result.input.map50, result.input.map)
    assert any("the reference is the input as it is" in note for note in result.notes)


def test_a_resumed_run_does_not_train_the_reference_again(
    shapes: Path, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _only_torch_installed(monkeypatch)
    calls = _counting_trains(monkeypatch)
    real_latencies = auto.latencies
    timed: list[int] = []

    def killed_after_the_reference(model, *args, **kwargs):
        timed.append(1)
        if len(timed) == 2:  # the pruned model's, after the reference trained: kill -9
            raise SimulatedKill
        return real_latencies(model, *args, **kwargs)

    monkeypatch.setattr(auto, "latencies", killed_after_the_reference)
    request = _request(shapes, source, tmp_path, steps=1, epochs_per_step=1, final_epochs=1, reference=True)
    with pytest.raises(SimulatedKill):
        auto.auto_prune(request)
    assert calls == [("step_1", None), ("final", None), ("reference", None)]
    run = tmp_path / "runs" / "exp"
    trained = (run / "reference" / "weights" / "last.pt").stat().st_mtime_ns
    assert json.loads((run / "auto.json").read_text())["table"] is None
    calls.clear()
    result = auto.auto_prune(AutoPruneRequest(project=tmp_path / "runs", name="exp", resume=True, device="cpu"))
    assert calls == [] and (run / "reference" / "weights" / "last.pt").stat().st_mtime_ns == trained
    assert result.epochs == 2 and len(_csv(run / "reference" / "results.csv")) == 2
    assert result.table is not None and [row.model for row in result.table.rows] == ["input", "reference", "pruned"]


def test_a_quantizer_failure_costs_the_int8_row_not_the_run(
    shapes: Path, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auto, "available_runtimes", lambda: (["torch", "openvino-int8"], []))
    monkeypatch.setattr(final_table, "runtime_latency_ms", lambda model, size, runtime: 1.5)

    def failing(*args: object) -> None:
        raise YolorError("NNCF could not quantize the model: boom")

    monkeypatch.setattr(auto, "int8_scores", failing)
    result = auto.auto_prune(_request(shapes, source, tmp_path, steps=1, epochs_per_step=0, final_epochs=0))
    assert result.table is not None and [row.model for row in result.table.rows] == ["input", "pruned"]
    assert result.table.rows[1].latency_ms == {"torch": result.final.latency_ms, "openvino-int8": 1.5}
    assert any("no pruned + INT8 row: NNCF could not quantize the model: boom" in note for note in result.notes)
    assert (result.run_dir / "pruned.pt").exists()
