"""``yolor prune auto``: steps towards the target with the normal trainer between them, the files a run
leaves, the --max-drop guard, latency targets, and resuming after Ctrl-C or a kill without redoing
finished work."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import make_shapes_dataset
from tests.engine.prune.conftest import SimulatedKill
from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.model.bundled import load_cfg
from yolor_cli.engine.model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from yolor_cli.engine.model.darknet import build_model, count_parameters
from yolor_cli.engine.model.loading import load_model
from yolor_cli.engine.model.summary import count_gflops
from yolor_cli.engine.prune import auto, sensitivity_allocation
from yolor_cli.engine.prune.allocate import Allocator
from yolor_cli.engine.prune.request import AutoPruneRequest
from yolor_cli.engine.prune.steps import CSV_COLUMNS
from yolor_cli.engine.train import hooks

JSON_KEYS = {
    "params_before",
    "params_after",
    "macs_before",
    "macs_after",
    "latency_ms_before",
    "latency_ms_after",
    "map_before",
    "map_after",
    "map50_before",
    "map50_after",
    "steps",
    "schedule",
    "epochs",
    "latency_ms_runtimes",
    "final_table",
    "output",
    "report",
    "largest_changes",
}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("auto") / "voc", images=10, seed=3, val=0.3)


def _request(shapes: Path, source: Path, tmp_path: Path, **changes: object) -> AutoPruneRequest:
    values = {
        "weights": source,
        "data": shapes / "data.yaml",
        "target_macs": 0.5,
        "steps": 2,
        "epochs_per_step": 1,
        "final_epochs": 1,
        "distill": False,
        "img_size": 64,
        "batch_size": 4,
        "workers": 0,
        "device": "cpu",
        "project": tmp_path / "runs",
        **changes,
    }
    return AutoPruneRequest(**values)  # type: ignore[arg-type]


def _cli_args(shapes: Path, source: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [
        "prune",
        "auto",
        "-w",
        str(source),
        "--data",
        str(shapes / "data.yaml"),
        "--steps",
        "2",
        "--epochs-per-step",
        "1",
        "--final-epochs",
        "1",
        "--no-distill",
        "--img-size",
        "64",
        "--batch-size",
        "4",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--project",
        str(tmp_path / "runs"),
        *extra,
    ]


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as stream:
        return list(csv.DictReader(stream))


def _counting_trains(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int | None]]:
    """Each training auto starts, as (run folder name, epoch it resumes at or None for a new one)."""
    calls: list[tuple[str, int | None]] = []
    real_train = auto.train

    def train(plan, reporter=None, hooks=None, tracker=None):
        point = plan.resume
        calls.append((point.save_dir.name, point.start_epoch) if point else (plan.options.name, None))
        return real_train(plan, reporter, hooks=hooks, tracker=tracker)

    monkeypatch.setattr(auto, "train", train)
    return calls


def _scripted_maps(monkeypatch: pytest.MonkeyPatch, maps: list[float]) -> list[float]:
    """Validation returns these mAP50-95 values in turn (mAP50 = the same + 0.2); returns what is left."""
    left = list(maps)
    monkeypatch.setattr(auto, "validate", lambda *args: (left[0] + 0.2, left.pop(0)))
    return left


def test_cli_run_writes_the_steps_models_and_json(
    shapes: Path, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_cli import invoke

    calls = _counting_trains(monkeypatch)
    result = invoke(*_cli_args(shapes, source, tmp_path, "--target-macs", "0.5", "--json"))
    assert result.exit_code == 0, result.output
    assert calls == [("step_1", None), ("step_2", None), ("final", None)]  # the normal trainer, once each
    payload = json.loads(result.stdout)
    assert set(payload) == JSON_KEYS
    assert payload["schedule"] == "steps" and payload["epochs"] == 3  # two steps of 1 epoch, the final one
    # the final table (on PyTorch only here: tests/engine/prune/conftest.py), no reference without --reference
    assert [row["model"] for row in payload["final_table"]] == ["input", "pruned"]
    assert payload["latency_ms_runtimes"] == {
        "before": {"torch": round(payload["latency_ms_before"], 3)},
        "after": {"torch": round(payload["latency_ms_after"], 3)},
    }
    run = tmp_path / "runs" / "exp"
    assert payload["output"] == str(run / "pruned.pt")
    rows = payload["steps"]
    assert [row["step"] for row in rows] == [0, 1, 2] and all(set(row) == set(CSV_COLUMNS) for row in rows)
    assert [int(row["macs"]) for row in _csv(run / "steps.csv")] == [row["macs"] for row in rows]
    # Step k of 2 brings the model to 1 - k * 0.5 / 2 of the input's MACs (the search lands within 5 %).
    for row, share in zip(rows[1:], (0.75, 0.5)):
        assert abs(row["macs"] / payload["macs_before"] / share - 1) <= 0.05
    assert rows[0]["params"] == payload["params_before"] and rows[0]["map"] == payload["map_before"]
    for step in (1, 2):  # each step's fine-tuned model is an ordinary stripped checkpoint of its pruned shape
        ckpt = load_checkpoint(run / f"step_{step}.pt")
        assert ckpt.optimizer_state is None and ckpt.ema_state is None and ckpt.train_options is None
        assert count_parameters(load_model(weights=run / f"step_{step}.pt").model) == rows[step]["params"]
        assert (run / f"step_{step}" / "weights" / "last.pt").exists()
    pruned = load_model(weights=run / "pruned.pt").model
    assert count_parameters(pruned) == payload["params_after"] == rows[2]["params"]
    assert round(count_gflops(pruned, 64) * 1e9 / 2) == payload["macs_after"]
    assert yaml.safe_load((run / "final" / "opt.yaml").read_text())["weights"] == str(run / "step_2.pt")
    assert (run / "steps.png").stat().st_size > 0
    # the val images pruning changed most, worst first, kept in auto.json (a resume shows them again)
    changes = payload["largest_changes"]
    assert len(changes) <= 3 and [c["change"] for c in changes] == sorted(c["change"] for c in changes)
    assert all(set(c) == {"image", "a", "b", "change"} and c["a"] != c["b"] for c in changes)
    assert json.loads((run / "auto.json").read_text())["changes"] == changes
    # A finished run resumes to its report, without any work; options given now are named, not used.
    calls.clear()
    again = invoke("prune", "auto", "--resume", "--project", str(tmp_path / "runs"), "--name", "exp", "--steps", "5")
    assert again.exit_code == 0, again.output
    assert calls == [] and "Steps" in again.stdout and "pruned.pt" in again.stdout
    assert "ignored: --steps" in " ".join(again.stderr.split())


def test_resume_after_ctrl_c_mid_fine_tune_redoes_no_finished_work(
    shapes: Path, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_after_epoch = hooks.ResultsHook.after_epoch

    def ctrl_c_in_step_2_epoch_1(self, trainer, state):
        real_after_epoch(self, trainer, state)
        if self.path.parent.name == "step_2" and state.epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(hooks.ResultsHook, "after_epoch", ctrl_c_in_step_2_epoch_1)
    request = _request(shapes, source, tmp_path, epochs_per_step=2)
    with pytest.raises(KeyboardInterrupt):
        auto.auto_prune(request)
    monkeypatch.setattr(hooks.ResultsHook, "after_epoch", real_after_epoch)
    run = tmp_path / "runs" / "exp"
    assert load_checkpoint(run / "step_2" / "weights" / "last.pt").epoch == 0  # epoch 1 did not save
    assert not (run / "step_2.pt").exists() and not (run / "pruned.pt").exists()
    finished = {name: (run / name).stat().st_mtime_ns for name in ("step_1_pruned.pt", "step_1.pt", "step_2_pruned.pt")}
    calls = _counting_trains(monkeypatch)
    result = auto.auto_prune(AutoPruneRequest(project=tmp_path / "runs", name="exp", resume=True, device="cpu"))
    assert calls == [("step_2", 1), ("final", None)]  # step 2 continues at epoch 1 through the trainer's resume
    assert {name: (run / name).stat().st_mtime_ns for name in finished} == finished
    assert [int(row["epoch"]) for row in _csv(run / "step_2" / "results.csv")] == [0, 1]
    assert [int(row["step"]) for row in _csv(run / "steps.csv")] == [0, 1, 2]
    assert result.output == run / "pruned.pt" and result.final.macs == result.steps[-1].macs


def test_a_kill_between_phases_resumes_where_it_stopped(
    shapes: Path, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 just as step 2's pruned model is written: step 1 is whole and is not pruned again."""
    real_save = auto.save_checkpoint

    def kill_at_step_2(ckpt, path, *args, **kwargs):
        if Path(path).name == "step_2_pruned.pt":
            raise SimulatedKill
        return real_save(ckpt, path, *args, **kwargs)

    monkeypatch.setattr(auto, "save_checkpoint", kill_at_step_2)
    request = _request(shapes, source, tmp_path, epochs_per_step=0, final_epochs=0)
    with pytest.raises(SimulatedKill):
        auto.auto_prune(request)
    monkeypatch.setattr(auto, "save_checkpoint", real_save)
    run = tmp_path / "runs" / "exp"
    step_1 = (run / "step_1.pt").stat().st_mtime_ns
    pruned_steps: list[float] = []
    real_prune = auto.ALLOCATORS["global"].prune
    monkeypatch.setitem(
        auto.ALLOCATORS,
        "global",
        Allocator(
            auto.ALLOCATORS["global"].check,
            lambda model, relative, context: pruned_steps.append(relative) or real_prune(model, relative, context),
        ),
    )
    result = auto.auto_prune(AutoPruneRequest(project=tmp_path / "runs", name="exp", resume=True, device="cpu"))
    assert len(pruned_steps) == 1 and (run / "step_1.pt").stat().st_mtime_ns == step_1
    assert [record.step for record in result.steps] == [1, 2] and (run / "pruned.pt").exists()
    # 0 epochs: each step's model is its pruned one, so its figures after "fine-tuning" are those after pruning
    assert all(record.map == record.map_pruned for record in result.steps)


def test_max_drop_stops_and_keeps_the_last_step_within_it(
    shapes: Path, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # input 0.5; step 1 0.4 (a fall of 0.1, allowed); step 2 0.3 (0.2, more than 0.15); the final fine-tune 0.45
    left = _scripted_maps(monkeypatch, [0.5, 0.4, 0.3, 0.45])
    calls = _counting_trains(monkeypatch)
    request = _request(shapes, source, tmp_path, steps=3, epochs_per_step=0, final_epochs=1, max_drop=0.15)
    result = auto.auto_prune(request)
    run = result.run_dir
    assert left == [] and calls == [("final", None)]
    assert not (run / "step_3_pruned.pt").exists()  # the run stopped after step 2
    assert (run / "step_2.pt").exists()  # every step's model is kept on disk, but not chosen
    assert yaml.safe_load((run / "final" / "opt.yaml").read_text())["weights"] == str(run / "step_1.pt")
    assert (result.final.step, result.final.macs, result.final.map) == (1, result.steps[0].macs, 0.45)
    assert count_parameters(load_model(weights=run / "pruned.pt").model) == result.steps[0].params
    assert any("step 2 fell to mAP50-95 0.3000" in note and "kept step 1" in note for note in result.notes)


def test_a_first_step_past_max_drop_keeps_nothing(
    shapes: Path, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _scripted_maps(monkeypatch, [0.5, 0.3])
    request = _request(shapes, source, tmp_path, epochs_per_step=0, final_epochs=0)
    with pytest.raises(YolorError, match=r"mAP50-95 0.5000 -> 0.3000 .* --max-drop 0.01") as caught:
        auto.auto_prune(request)
    assert "no pruned.pt" in caught.value.message and "--max-drop" in (caught.value.hint or "")
    run = tmp_path / "runs" / "exp"
    assert not (run / "pruned.pt").exists() and not (run / "step_2_pruned.pt").exists()
    with pytest.raises(YolorError, match="step 1 already falls too far"):  # resuming does not change the verdict
        auto.auto_prune(AutoPruneRequest(project=tmp_path / "runs", name="exp", resume=True))


def test_latency_targets_become_macs_targets(
    shapes: Path, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A latency that is exactly proportional to the MACs: the run lands on the target.
    monkeypatch.setattr(auto, "latency_ms", lambda model, size: count_gflops(model, size) * 1000)
    before = count_gflops(load_model(weights=source).model, 64) * 1000
    request = _request(shapes, source, tmp_path, target_macs=None, target_latency_ms=0.6 * before)
    result = auto.auto_prune(dataclasses.replace(request, epochs_per_step=0, final_epochs=0, name="prop"))
    assert abs(result.final.macs / result.input.macs / 0.6 - 1) <= 0.05
    assert any("aim at 0.600 of its MACs" in note for note in result.notes)
    with pytest.raises(YolorError, match="is not below the input model's"):
        auto.auto_prune(dataclasses.replace(request, target_latency_ms=before * 1.01, name="slow"))
    assert not (tmp_path / "runs" / "slow").exists()  # refused before any folder
    # A latency that does not follow the MACs: the run ends and says so, with both figures.
    monkeypatch.setattr(auto, "latency_ms", lambda model, size: 10.0)
    flat = dataclasses.replace(request, target_latency_ms=5.0, epochs_per_step=0, final_epochs=0, name="flat")
    result = auto.auto_prune(flat)
    assert any("measures 10.0 ms, still above --target-latency-ms 5.0" in note for note in result.notes)


def test_distillation_reaches_each_fine_tune(shapes: Path, source: Path, tmp_path: Path) -> None:
    result = auto.auto_prune(_request(shapes, source, tmp_path, steps=1, final_epochs=0, distill=True))
    assert yaml.safe_load((result.run_dir / "step_1" / "opt.yaml").read_text())["teacher"] == str(source)
    # An input read with --cfg is kept as an ordinary checkpoint, which the trainer loads as a teacher unaided.
    request = _request(shapes, source, tmp_path, steps=1, epochs_per_step=0, distill=True, cfg="yolor_csp_tiny")
    result = auto.auto_prune(dataclasses.replace(request, name="with_cfg"))
    teacher = result.run_dir / "teacher.pt"
    assert yaml.safe_load((result.run_dir / "final" / "opt.yaml").read_text())["teacher"] == str(teacher)
    assert count_parameters(load_model(weights=teacher).model) == result.input.params


def test_a_teacher_named_otherwise_than_the_data_is_refused_first(shapes: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(load_cfg("yolor_csp_tiny"), nc=3)
    names = ["x", "y", "z"]
    named = save_checkpoint(Checkpoint(cfg=model.cfg, model_state=model.state_dict(), names=names), tmp_path / "n.pt")
    with pytest.raises(YolorError, match="names its classes otherwise than the data"):
        auto.auto_prune(_request(shapes, named, tmp_path, distill=True))
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"target_macs": None}, "exactly one of --target-macs and --target-latency-ms"),
        ({"target_latency_ms": 5.0}, "exactly one of --target-macs and --target-latency-ms"),
        ({"target_macs": 1.5}, r"--target-macs 1.5 is outside \(0, 1\)"),
        ({"steps": 0}, "--steps 0 is below 1"),
        ({"epochs_per_step": -1}, "--epochs-per-step -1 is negative"),
        ({"final_epochs": -2}, "--final-epochs -2 is negative"),
        ({"max_drop": -0.1}, "--max-drop -0.1 is negative"),
        ({"calib_images": 0}, "--calib-images 0 is below 1"),
        ({"max_drop": float("nan")}, "--max-drop nan is not a number"),
        ({"target_macs": None, "target_latency_ms": float("nan")}, "--target-latency-ms nan is not a number"),
        ({"allocate": "layers"}, "--allocate 'layers' is not one of global, sensitivity"),
        ({"method": "random"}, "--method 'random' is not one prune auto ranks by"),
        ({"weights": None}, "prune auto needs --weights"),
        ({"data": None, "weights": None}, "prune auto needs --weights and --data"),
    ],
)
def test_requests_are_checked_when_built(
    shapes: Path, source: Path, tmp_path: Path, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(YolorError, match=message):
        _request(shapes, source, tmp_path, **changes)


def test_cli_errors_come_before_any_work(shapes: Path, source: Path, tmp_path: Path) -> None:
    from tests.test_cli import invoke

    result = invoke(*_cli_args(shapes, source, tmp_path, "--target-macs", "1.5"))
    assert result.exit_code == 1 and "--target-macs 1.5 is outside (0, 1)" in " ".join(result.stderr.split())
    assert not (tmp_path / "runs").exists()
    result = invoke(*_cli_args(shapes, source, tmp_path, "--target-macs", "0.5", "--target-latency-ms", "3"))
    assert result.exit_code == 1 and "exactly one of --target-macs and --target-latency-ms" in result.stderr
    result = invoke("prune", "auto", "--resume", "--project", str(tmp_path / "runs"), "--name", "nothing")
    assert result.exit_code == 1 and "no prune auto run to resume" in result.stderr
    (tmp_path / "runs" / "taken").mkdir(parents=True)
    (tmp_path / "runs" / "taken" / "auto.json").write_text("{}")
    args = _cli_args(shapes, source, tmp_path, "--target-macs", "0.5", "--name", "taken", "--exist-ok")
    result = invoke(*args)
    assert result.exit_code == 1 and "holds a prune auto run already" in result.stderr
    result = invoke("prune", "auto", "--resume", "--project", str(tmp_path / "runs"), "--name", "taken")
    assert result.exit_code == 1 and "auto.json is damaged" in " ".join(result.stderr.split())


def test_sensitivity_allocation_scans_once_and_lands_each_step_on_its_share(
    shapes: Path, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scans: list[Path] = []
    real_scan = sensitivity_allocation.run_sensitivity

    def counting_scan(request, reporter=None):
        scans.append(request.output)
        return real_scan(request, reporter)

    monkeypatch.setattr(sensitivity_allocation, "run_sensitivity", counting_scan)
    # 96 px, not the 64 px probe that ConvMacs counts at: the plan must not mix the two MACs units
    request = _request(shapes, source, tmp_path, allocate="sensitivity", final_epochs=0, img_size=96)
    result = auto.auto_prune(request)
    run = tmp_path / "runs" / "exp"
    assert scans == [run / "sensitivity"]  # one scan of the input for the whole run
    assert (run / "sensitivity" / "sensitivity.json").exists() and (run / "allocation.json").exists()
    plan = json.loads((run / "allocation.json").read_text())
    assert len(plan["cuts"]) > 1 and all(0 < cut["amount"] <= sensitivity_allocation.MAX_AMOUNT for cut in plan["cuts"])
    assert plan["scale"] < sensitivity_allocation.SCALE_LIMIT  # the plan itself reaches the target
    for record, share in zip(result.steps, (0.75, 0.5)):
        assert abs(record.macs / result.input.macs / share - 1) <= 0.05
    # A resumed run reads its plan back: no second scan, the plan file untouched.
    written = (run / "allocation.json").stat().st_mtime_ns
    auto.auto_prune(dataclasses.replace(request, resume=True))
    assert scans == [run / "sensitivity"] and (run / "allocation.json").stat().st_mtime_ns == written


def test_greedy_amounts_spend_the_budget_on_the_cheapest_loss_per_mac() -> None:
    Level = sensitivity_allocation.Level
    levels = {
        "cheap": [Level(0, 0, 0), Level(0.25, 0.0, 100), Level(0.5, 0.01, 200), Level(0.75, 0.5, 300)],
        "dear": [Level(0, 0, 0), Level(0.25, 0.2, 100), Level(0.5, 0.3, 200), Level(0.75, 0.4, 300)],
    }
    assert sensitivity_allocation.greedy_amounts(levels, 150) == {"cheap": 0.5}
    # The cheap unit's last level costs more per MAC than the dear unit's first: the dear one goes first.
    assert sensitivity_allocation.greedy_amounts(levels, 300) == {"cheap": 0.5, "dear": 0.25}
    everything = sensitivity_allocation.greedy_amounts(levels, 10**6)
    assert everything == {"cheap": 0.75, "dear": 0.75}  # a budget beyond the scan uses every level


def test_the_final_fine_tune_is_guarded_too(
    shapes: Path, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # input 0.5; steps 0.45 and 0.42 (within 0.1); the final fine-tune 0.3 (0.2 below): step 2's model is kept
    _scripted_maps(monkeypatch, [0.5, 0.45, 0.42, 0.3])
    request = _request(shapes, source, tmp_path, epochs_per_step=0, final_epochs=1, max_drop=0.1)
    result = auto.auto_prune(request)
    run = result.run_dir
    assert (result.final.step, result.final.map) == (2, 0.42)
    kept, written = load_checkpoint(run / "step_2.pt"), load_checkpoint(run / "pruned.pt")
    assert all(torch.equal(kept.model_state[k], v) for k, v in written.model_state.items())
    assert any("the final fine-tune fell to mAP50-95 0.3000" in note for note in result.notes)


def test_a_kill_while_the_input_is_validated_leaves_no_run_folder(
    shapes: Path, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def killed(*args: object) -> None:
        raise SimulatedKill

    monkeypatch.setattr(auto, "validate", killed)
    with pytest.raises(SimulatedKill):
        auto.auto_prune(_request(shapes, source, tmp_path))
    assert not (tmp_path / "runs").exists()  # nothing half made: the next start is a clean one


def test_resume_without_a_name_takes_the_newest_unfinished_run(
    shapes: Path, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _scripted_maps(monkeypatch, [0.5, 0.5, 0.5, 0.5] * 2)
    finished = auto.auto_prune(_request(shapes, source, tmp_path, epochs_per_step=0, final_epochs=0))
    real_tune = auto.AutoRun._tune

    def killed_in_step_2(self, record):
        if record.step == 2:
            raise SimulatedKill
        real_tune(self, record)

    monkeypatch.setattr(auto.AutoRun, "_tune", killed_in_step_2)
    with pytest.raises(SimulatedKill):
        auto.auto_prune(_request(shapes, source, tmp_path, epochs_per_step=0, final_epochs=0))
    monkeypatch.setattr(auto.AutoRun, "_tune", real_tune)
    resumed = auto.auto_prune(AutoPruneRequest(project=tmp_path / "runs", resume=True))
    assert finished.run_dir.name == "exp" and resumed.run_dir.name == "exp2"
    assert (resumed.run_dir / "pruned.pt").exists()
    again = auto.auto_prune(AutoPruneRequest(project=tmp_path / "runs", name="exp", resume=True))
    assert any("had finished: nothing was done" in note for note in again.notes)


def _started_relative_then_killed(shapes: Path, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A run started from ``tmp_path/start`` with relative --weights, --data and --project, killed as
    step 2's pruned model is written; returns its folder."""
    import os
    import shutil

    start = tmp_path / "start"
    start.mkdir()
    shutil.copy(source, start / "tiny.pt")
    monkeypatch.chdir(start)
    real_save = auto.save_checkpoint

    def kill_at_step_2(ckpt, path, *args, **kwargs):
        if Path(path).name == "step_2_pruned.pt":
            raise SimulatedKill
        return real_save(ckpt, path, *args, **kwargs)

    monkeypatch.setattr(auto, "save_checkpoint", kill_at_step_2)
    data = Path(os.path.relpath(shapes / "data.yaml", start))
    request = _request(
        shapes,
        source,
        tmp_path,
        weights=Path("tiny.pt"),
        data=data,
        project=Path("runs"),
        epochs_per_step=0,
        final_epochs=0,
    )
    with pytest.raises(SimulatedKill):
        auto.auto_prune(request)
    monkeypatch.setattr(auto, "save_checkpoint", real_save)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return start / "runs" / "exp"


def test_resume_works_from_another_folder(
    shapes: Path, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _started_relative_then_killed(shapes, source, tmp_path, monkeypatch)
    saved = json.loads((run / "auto.json").read_text())["request"]
    assert all(Path(saved[key]).is_absolute() for key in ("weights", "data", "project"))
    result = auto.auto_prune(AutoPruneRequest(project=run.parent, name="exp", resume=True, device="cpu"))
    assert [record.step for record in result.steps] == [1, 2] and (run / "pruned.pt").exists()


def test_resume_finds_the_relative_paths_of_an_older_run_from_another_folder(
    shapes: Path, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """auto.json files written before paths were stored absolute: found from where the run was started."""
    import os

    from tests.test_cli import invoke

    run = _started_relative_then_killed(shapes, source, tmp_path, monkeypatch)
    state = json.loads((run / "auto.json").read_text())
    start = tmp_path / "start"
    state["request"].update(weights="tiny.pt", data=os.path.relpath(shapes / "data.yaml", start), project="runs")
    (run / "auto.json").write_text(json.dumps(state))
    resumed = invoke(
        "prune", "auto", "--resume", "--project", str(run.parent), "--name", "exp", "-w", "../start/tiny.pt"
    )
    assert resumed.exit_code == 0, resumed.output
    assert "ignored" not in resumed.stderr  # the run's own weights, named from here: nothing ignored
    assert (run / "pruned.pt").exists()


def test_under_torchrun_gradual_is_refused_before_any_work(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """--schedule gradual cuts the model inside the training, which DDP cannot follow: every torchrun
    process refuses it alike, before joining the group or writing anything (a resumed gradual run, whose
    schedule only rank 0 reads, is refused by the group before its fine-tune is sent)."""
    from yolor_cli.engine.prune.auto_group import FineTuneGroup
    from yolor_cli.engine.train import distributed
    from yolor_cli.engine.train.run import TrainOptions, TrainPlan

    for name, value in {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(name, value)
    request = AutoPruneRequest(
        weights=tmp_path / "w.pt",
        data=tmp_path / "data.yaml",
        target_macs=0.5,
        schedule="gradual",
        project=tmp_path / "runs",
    )
    with pytest.raises(YolorError, match="--schedule gradual does not run under torchrun") as raised:
        auto.auto_prune(request)
    assert "--schedule steps" in (raised.value.hint or "") and not (tmp_path / "runs").exists()
    assert not distributed.joined()
    group = FineTuneGroup(distributed.DistributedContext(rank=0, local_rank=0, world_size=2))
    with pytest.raises(YolorError, match="gradual"), group.fine_tune(TrainPlan(TrainOptions(prune_to=0.5))):
        pytest.fail("the fine-tune must not start")
    assert group.listening  # nothing was sent: the others still wait, and are told of the failure
