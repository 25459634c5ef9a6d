"""Gradual pruning inside one training run: the schedule, a mid-run cut (model, EMA and optimizer in step),
resume after a kill between two cuts, the --max-drop guard, and ``yolor train --prune-to`` end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tests.conftest import make_shapes_dataset
from tests.engine.prune.conftest import SimulatedKill
from yolor_cli.app import app
from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.evaluate.metrics import Metrics
from yolor_cli.engine.model.checkpoint import load_checkpoint, model_from_checkpoint
from yolor_cli.engine.model.darknet import build_model
from yolor_cli.engine.model.summary import ConvMacs
from yolor_cli.engine.prune import gradual
from yolor_cli.engine.train import hooks
from yolor_cli.engine.train.run import TrainOptions, plan_training
from yolor_cli.engine.train.run import train as plain_train


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("gradual") / "voc", images=12, seed=5, val=0.25)


def _options(shapes: Path, source: Path, tmp_path: Path, **changes: object) -> TrainOptions:
    values: dict[str, object] = {
        "data": str(shapes / "data.yaml"),
        "weights": str(source),
        "epochs": 2,
        "batch_size": 2,
        "img_size": 64,
        "workers": 0,
        "device": "cpu",
        "optimizer": "sgd",
        "nominal_batch_size": 2,
        "project": str(tmp_path / "runs"),
        "name": "exp",
        "noval": True,
        "prune_to": 0.5,
        **changes,
    }
    return TrainOptions(**values)  # type: ignore[arg-type]


def _is_norm(module: torch.nn.Module) -> bool:
    return isinstance(module, torch.nn.BatchNorm2d)


def _macs(model: torch.nn.Module) -> float:
    return ConvMacs(model)()


# ---- the schedule ------------------------------------------------------------------------------------


def test_the_schedule_is_zhu_and_gupta_cubic_monotone_and_ends_on_the_target() -> None:
    values = [gradual.kept_fraction(t, target=0.4, end=100) for t in range(0, 121)]
    assert values[0] == 1.0 and values[100] == pytest.approx(0.4) and values[120] == pytest.approx(0.4)
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert values[50] == pytest.approx(0.4 + 0.6 * 0.5**3)  # s_t = F + (1 - F)(1 - t / (n dt))^3
    # the slices shrink: the first cut is the largest
    drops = [a - b for a, b in zip(values[:100], values[1:101])]
    assert drops[0] == max(drops) and drops[-1] == min(drops)

    cuts = gradual.cut_schedule(0.5, 1000)
    assert len(cuts) == gradual.MAX_CUTS
    assert cuts[-1].iteration == 500 and cuts[-1].fraction == 0.5  # the end of the cut phase: half the run
    assert [c.iteration for c in cuts] == sorted({c.iteration for c in cuts})
    assert all(a.fraction > b.fraction for a, b in zip(cuts, cuts[1:]))
    short = gradual.cut_schedule(0.5, 8)  # a tiny run: one cut per iteration of its first half
    assert [c.iteration for c in short] == [1, 2, 3, 4] and short[-1].fraction == 0.5
    after_warmup = gradual.cut_schedule(0.5, 1000, start=129)  # t0: the cuts begin when the warmup ends
    assert len(after_warmup) == gradual.MAX_CUTS and after_warmup[0].iteration > 129
    assert after_warmup[-1].iteration == 500 and after_warmup[-1].fraction == 0.5
    assert [c.fraction for c in after_warmup] == [c.fraction for c in cuts]  # the same cubic, compressed
    late = gradual.cut_schedule(0.5, 1000, start=900)  # past the cut phase: one cut at its end
    assert [(c.iteration, c.fraction) for c in late] == [(500, 0.5)]


def test_a_run_starts_cutting_when_its_warmup_ends(
    shapes: Path, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    real = gradual.GradualPruning.before_epoch

    def warmup_seen(self, trainer, state):
        seen.append(trainer.warmup.iterations)
        real(self, trainer, state)

    monkeypatch.setattr(gradual.GradualPruning, "before_epoch", warmup_seen)
    gradual.train(plan_training(_options(shapes, source, tmp_path, epochs=4)))
    state = gradual.saved_state(load_checkpoint(tmp_path / "runs" / "exp" / "weights" / "last.pt").train_options)
    assert state is not None and state.finished
    iterations = state.cuts[-1]["iteration"] * 2  # the cut phase is the first half
    start = min(seen[0], round(gradual.CUT_PHASE * iterations / 2))
    assert start > 0 and state.done[0]["iteration"] > start


# ---- one cut in the middle of a run ------------------------------------------------------------------


def test_a_mid_run_cut_prunes_model_ema_and_optimizer_state_alike(
    shapes: Path, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, object] = {}
    real_cut = gradual.cut_trainer

    def inspected_cut(trainer, keep_macs, method, images=None):
        before = {
            "momentum": {p.shape for p in trainer.optimizer.state if "momentum_buffer" in trainer.optimizer.state[p]},
            "lrs": [g["lr"] for g in trainer.optimizer.param_groups],
            "initial": [g["initial_lr"] for g in trainer.optimizer.param_groups],
            "scale": trainer.scaler.get_scale() if trainer.scaler.is_enabled() else None,
            "optimizer": trainer.optimizer,
            "updates": trainer.ema.updates,
        }
        reached = real_cut(trainer, keep_macs, method, images)
        if "after" not in seen:  # the first cut after at least one optimizer step
            model, ema, optimizer = trainer.model, trainer.ema.ema, trainer.optimizer
            seen["after"] = True
            seen["before"] = before
            seen["model_shapes"] = {n: p.shape for n, p in model.named_parameters()}
            seen["ema_shapes"] = {n: p.shape for n, p in ema.named_parameters()}
            seen["optimizer_params"] = [p for g in optimizer.param_groups for p in g["params"]]
            seen["model_params"] = list(model.parameters())
            seen["momentum"] = {id(p): optimizer.state[p].get("momentum_buffer") for p in model.parameters()}
            seen["shapes"] = {id(p): p.shape for p in model.parameters()}
            seen["lrs"] = [g["lr"] for g in optimizer.param_groups]
            seen["initial"] = [g["initial_lr"] for g in optimizer.param_groups]
            seen["same_optimizer"] = optimizer is before["optimizer"]
            seen["updates"] = trainer.ema.updates
            seen["macs"] = (_macs(model), _macs(ema), keep_macs)
            seen["training"] = model.training
            seen["batch"] = images is not None
            counts = [int(m.num_batches_tracked) for net in (model, ema) for m in net.modules() if _is_norm(m)]
            seen["norms_fresh"] = bool(counts) and set(counts) == {1}  # statistics of exactly the one batch
        return reached

    monkeypatch.setattr(gradual, "cut_trainer", inspected_cut)
    plan = plan_training(_options(shapes, source, tmp_path, epochs=2))
    gradual.train(plan)

    assert seen["model_shapes"] == seen["ema_shapes"]
    in_optimizer, in_model = seen["optimizer_params"], seen["model_params"]
    assert len(in_optimizer) == len(in_model) and {id(p) for p in in_optimizer} == {id(p) for p in in_model}  # type: ignore[arg-type]
    momentum = seen["momentum"]
    assert momentum and all(b is not None for b in momentum.values())  # type: ignore[union-attr]
    assert all(momentum[key].shape == shape for key, shape in seen["shapes"].items())  # type: ignore[index]
    assert seen["same_optimizer"] and seen["lrs"] == seen["before"]["lrs"]  # type: ignore[index]
    assert seen["initial"] == seen["before"]["initial"]  # type: ignore[index]
    assert seen["updates"] == seen["before"]["updates"] and seen["updates"] > 0  # type: ignore[index]
    model_macs, ema_macs, wanted = seen["macs"]  # type: ignore[misc]
    assert model_macs == ema_macs <= wanted
    assert seen["training"]
    # BatchNorm statistics re-estimated on the batch being trained, in the model and its EMA alike
    assert seen["batch"] and seen["norms_fresh"]


def test_sliced_momentum_keeps_the_values_of_the_kept_channels(tiny_model: torch.nn.Module) -> None:
    """The buffers follow their channels: a buffer equal to its weight stays equal to the pruned weight."""
    from yolor_cli.engine.prune.pruning import rebuild

    model = tiny_model
    ema = build_model(model.cfg)
    ema.load_state_dict(model.state_dict())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for parameter in model.parameters():
        optimizer.state[parameter]["momentum_buffer"] = parameter.detach().clone() * 2
    ema.requires_grad_(True)
    shadows = gradual._optimizer_shadows(model, optimizer)
    history = gradual.prune_ranked(ema.eval(), 0.6 * _macs(ema), "l1")
    gradual.replay(model, history)
    gradual.replay(shadows["momentum_buffer"], history)
    pruned, shadow = rebuild(model), rebuild(shadows["momentum_buffer"])
    assert _macs(pruned) <= 0.6 * _macs(build_model(model.cfg))
    for (name, weight), (_, buffer) in zip(pruned.named_parameters(), shadow.named_parameters()):
        assert torch.equal(buffer, weight * 2), name
    assert {n: p.shape for n, p in rebuild(ema).named_parameters()} == {
        n: p.shape for n, p in pruned.named_parameters()
    }


# ---- resume ------------------------------------------------------------------------------------------


def test_resume_after_a_kill_between_two_cuts_continues_at_the_shapes_and_schedule_point(
    shapes: Path, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = _options(shapes, source, tmp_path, epochs=4)
    real_after_epoch = hooks.CheckpointHook.after_epoch

    def killed_after_epoch_2(self, trainer, state):
        real_after_epoch(self, trainer, state)
        if state.epoch == 1:
            raise SimulatedKill  # after epoch 2's last.pt (its cuts made), before the last cut in epoch 3

    monkeypatch.setattr(hooks.CheckpointHook, "after_epoch", killed_after_epoch_2)
    with pytest.raises(SimulatedKill):
        gradual.train(plan_training(options))
    monkeypatch.setattr(hooks.CheckpointHook, "after_epoch", real_after_epoch)
    last = tmp_path / "runs" / "exp" / "weights" / "last.pt"
    saved = load_checkpoint(last)
    state = gradual.saved_state(saved.train_options)
    assert state is not None and 0 < len(state.done) < len(state.cuts)  # killed between two cuts
    after_epoch_2 = model_from_checkpoint(saved)  # built at the checkpoint's (pruned) shapes
    assert _macs(after_epoch_2) / state.base_macs == pytest.approx(state.reached)
    assert _macs(after_epoch_2) < _macs(build_model(load_checkpoint(source).cfg))

    cuts_made: list[int] = []
    real_cut = gradual.cut_trainer

    def counted_cut(trainer, keep_macs, method, images=None):
        cuts_made.append(len(trainer.loader))
        return real_cut(trainer, keep_macs, method, images)

    monkeypatch.setattr(gradual, "cut_trainer", counted_cut)
    resumed = plan_training(TrainOptions(device="cpu"), resume=True, last=last)
    assert resumed.resume is not None and resumed.resume.start_epoch == 2
    gradual.train(resumed)
    final = gradual.saved_state(load_checkpoint(last).train_options)
    assert final is not None and final.finished and final.stopped is None
    assert len(cuts_made) == len(state.cuts) - len(state.done)  # only the cuts still due
    assert [cut["iteration"] for cut in final.done] == [cut["iteration"] for cut in final.cuts]
    model = model_from_checkpoint(load_checkpoint(last))
    assert _macs(model) / final.base_macs == pytest.approx(final.reached) and final.reached <= 0.5


def test_plain_train_refuses_a_prune_to_run_without_the_hook(shapes: Path, source: Path, tmp_path: Path) -> None:
    with pytest.raises(YolorError, match="gradual-pruning hook"):
        plain_train(plan_training(_options(shapes, source, tmp_path)))


# ---- the guard ---------------------------------------------------------------------------------------


def _validations(monkeypatch: pytest.MonkeyPatch, maps: list[float]) -> None:
    """Every validation of the run reads the next of ``maps`` (the last one from then on)."""

    def scripted(self, trainer, state):
        value = maps[min(state.epoch, len(maps) - 1)]
        state.metrics = Metrics(
            precision=value, recall=value, f1=value, map50=value, map=value, per_class=[], metric="coco"
        )
        state.fitness = value
        state.val_losses = np.zeros(4)

    monkeypatch.setattr(hooks.ValidationHook, "after_epoch", scripted)


def test_the_guard_stops_the_cuts_and_keeps_the_widths(
    shapes: Path, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _validations(monkeypatch, [0.3, 0.1])  # epoch 1 (before any cut) at the input's level, then a fall
    options = _options(shapes, source, tmp_path, epochs=4, noval=False)
    plain_train(plan_training(options), hooks=gradual.gradual_hooks(reference_map=0.3, max_drop=0.05))
    last = tmp_path / "runs" / "exp" / "weights" / "last.pt"
    state = gradual.saved_state(load_checkpoint(last).train_options)
    assert state is not None and state.stopped is not None and state.start_map == pytest.approx(0.3)
    assert state.stopped["epoch"] == 1 and state.stopped["map"] == pytest.approx(0.1)
    assert 0 < len(state.done) < len(state.cuts)  # the cuts of epoch 2 only
    assert all(cut["epoch"] == 1 for cut in state.done)
    model = model_from_checkpoint(load_checkpoint(last))
    assert _macs(model) / state.base_macs == pytest.approx(state.stopped["fraction"])
    assert state.done[-1]["wanted"] > state.cuts[-1]["fraction"]  # the last cut (to the target) not made
    assert "below 0.3000 (the input's mAP50-95)" in gradual.stop_note(state)


def test_the_guard_does_not_blame_the_warmups_dip_on_the_cuts(
    shapes: Path, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A new run's warmup pulls a trained model far below the input before any cut (0.3 -> 0.1); the
    # cuts then hold that level: the guard measures them from 0.1 and lets all of them through.
    _validations(monkeypatch, [0.1, 0.09])
    options = _options(shapes, source, tmp_path, epochs=4, noval=False)
    plain_train(plan_training(options), hooks=gradual.gradual_hooks(reference_map=0.3, max_drop=0.05))
    state = gradual.saved_state(load_checkpoint(tmp_path / "runs" / "exp" / "weights" / "last.pt").train_options)
    assert state is not None and state.finished and state.stopped is None
    assert state.start_map == pytest.approx(0.1) and state.yardstick == pytest.approx(0.1)
    assert state.reached <= 0.5


# ---- yolor train --prune-to, end to end --------------------------------------------------------------


def test_train_prune_to_writes_a_smaller_checkpoint_that_reloads(shapes: Path, source: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    project = tmp_path / "runs"
    args = [
        "train",
        "--data",
        str(shapes / "data.yaml"),
        "-w",
        str(source),
        "--epochs",
        "2",
        "--batch-size",
        "2",
        "--img-size",
        "64",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--noval",
        "--project",
        str(project),
        "--prune-to",
        "0.5",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    best = project / "exp" / "weights" / "last.pt"
    model = model_from_checkpoint(load_checkpoint(best))
    assert _macs(model) <= 0.5 * _macs(build_model(load_checkpoint(source).cfg))
    info = runner.invoke(app, ["info", "-w", str(best), "--img-size", "64", "--json"])
    assert info.exit_code == 0, info.output
    assert load_checkpoint(source).cfg != model.cfg  # the pruned widths are in the cfg it reloads from
    bad = runner.invoke(app, [*args[:-1], "1.0"])
    assert bad.exit_code != 0 and "--prune-to 1 is outside (0, 1)" in bad.output


# ---- yolor prune auto --schedule gradual -------------------------------------------------------------


def test_prune_auto_gradual_is_one_training_run_of_the_steps_epochs(
    shapes: Path, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from tests.test_cli import invoke
    from yolor_cli.engine.prune import auto

    trains: list[str] = []
    real_train = auto.train

    def counted(plan, reporter=None, hooks=None, tracker=None):
        trains.append(plan.options.name)
        return real_train(plan, reporter, hooks=hooks, tracker=tracker)

    monkeypatch.setattr(auto, "train", counted)
    args = [
        "prune", "auto", "-w", str(source), "--data", str(shapes / "data.yaml"), "--target-macs", "0.5",
        "--schedule", "gradual", "--steps", "2", "--epochs-per-step", "1", "--final-epochs", "1", "--no-distill",
        "--max-drop", "1", "--img-size", "64", "--batch-size", "2", "--workers", "0", "--device", "cpu",
        "--project", str(tmp_path / "runs"), "--json",
    ]  # fmt: skip
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["schedule"] == "gradual" and payload["epochs"] == 3  # 2 x 1 + 1, in one run
    assert trains == ["gradual"]
    run = tmp_path / "runs" / "exp"
    last = load_checkpoint(run / "gradual" / "weights" / "last.pt")
    assert last.epoch == 2 and gradual.saved_state(last.train_options).finished  # type: ignore[union-attr]
    assert payload["macs_after"] <= 0.5 * payload["macs_before"] * 1.0001
    assert payload["output"] == str(run / "pruned.pt") and (run / "pruned.pt").is_file()
    bad = invoke(*args[:-1], "--allocate", "sensitivity")
    assert bad.exit_code != 0 and "--allocate sensitivity works with --schedule steps" in " ".join(bad.output.split())
