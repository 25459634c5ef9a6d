"""The end of a run (the final epoch's checkpoint set, then every file stripped) is written whole:
Ctrl-C waits for it, and a run cut during it (kill -9) is finished by ``--resume``."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.conftest import make_shapes_dataset
from yolor_cli.engine.model.checkpoint import load_checkpoint
from yolor_cli.engine.train import hooks
from yolor_cli.engine.train.run import TrainOptions, TrainPlan, plan_training, train

# What a one-epoch run leaves in weights/: epoch 0 improves every best_*, is epoch_000 and the last epoch.
ONE_EPOCH_FILES = {
    "last.pt",
    "best.pt",
    "best_p.pt",
    "best_r.pt",
    "best_ap50.pt",
    "best_ap.pt",
    "best_f.pt",
    "epoch_000.pt",
    "last_000.pt",
}
CUT_AT = "best_ap50.pt"  # a file in the middle of the final set


class SimulatedKill(BaseException):
    """Stops the process's work where it is, as kill -9 would: nothing handles it."""


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("end") / "voc", images=8, seed=5, val=0.25)


def _plan(shapes: Path, tmp_path: Path, epochs: int = 1) -> TrainPlan:
    return plan_training(
        TrainOptions(
            data=str(shapes / "data.yaml"),
            cfg="yolor_csp_tiny",
            epochs=epochs,
            batch_size=4,
            img_size=64,
            workers=0,
            project=str(tmp_path / "runs"),
        )
    )


def _cut_saves_at(monkeypatch: pytest.MonkeyPatch, name: str, cut) -> None:
    """Call ``cut()`` once, when the run starts writing ``name``."""
    real_save = hooks.save_checkpoint
    cuts: list[str] = []

    def save(ckpt, path, *args, **kwargs):
        if Path(path).name == name and not cuts:
            cuts.append(name)
            cut()
        return real_save(ckpt, path, *args, **kwargs)

    monkeypatch.setattr(hooks, "save_checkpoint", save)


def _assert_finished(weights: Path) -> None:
    assert {p.name for p in weights.glob("*.pt")} == ONE_EPOCH_FILES
    for path in sorted(weights.glob("*.pt")):
        ckpt = load_checkpoint(path)
        assert (path.name, ckpt.epoch, ckpt.optimizer_state, ckpt.ema_state) == (path.name, 0, None, None)


def test_ctrl_c_during_the_end_of_run_writes_waits_for_them(
    shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    try:
        _cut_saves_at(monkeypatch, CUT_AT, lambda: os.kill(os.getpid(), signal.SIGINT))
        with pytest.raises(KeyboardInterrupt):
            train(_plan(shapes, tmp_path))
    finally:
        signal.signal(signal.SIGINT, previous)
    _assert_finished(tmp_path / "runs" / "exp" / "weights")


def test_resume_finishes_a_run_cut_during_its_end(
    shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_cli import invoke

    def kill() -> None:
        raise SimulatedKill

    _cut_saves_at(monkeypatch, CUT_AT, kill)
    with pytest.raises(SimulatedKill):
        train(_plan(shapes, tmp_path))
    monkeypatch.undo()
    weights = tmp_path / "runs" / "exp" / "weights"
    assert "best_f.pt" not in {p.name for p in weights.iterdir()}
    assert load_checkpoint(weights / "last.pt").optimizer_state is not None  # cut before the strip
    result = invoke("train", "--resume", str(weights / "last.pt"))
    assert result.exit_code == 0, result.output
    assert "had trained its last epoch (1/1)" in " ".join(result.stderr.split())
    _assert_finished(weights)
    again = invoke("train", "--resume", str(weights / "last.pt"))
    assert again.exit_code == 1 and "finished all 1 epochs; nothing to resume" in " ".join(again.stderr.split())


def test_a_failure_after_the_last_epoch_keeps_it_for_resume(
    shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anything that breaks between the last epoch and its final files (here results.png) must not
    lose the epoch: its last.pt is written as soon as the epoch is done, and --resume ends the run."""
    from tests.test_cli import invoke

    def broken_plot(*args, **kwargs) -> None:
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(hooks, "plot_results", broken_plot)
    with pytest.raises(RuntimeError, match="plotting failed"):
        train(_plan(shapes, tmp_path))
    monkeypatch.undo()
    weights = tmp_path / "runs" / "exp" / "weights"
    last = load_checkpoint(weights / "last.pt")
    assert (last.epoch, last.optimizer_state is not None) == (0, True)
    result = invoke("train", "--resume", str(weights / "last.pt"))
    assert result.exit_code == 0, result.output
    _assert_finished(weights)


def test_ctrl_c_during_an_epochs_checkpoint_set_waits_for_the_whole_set(
    shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """last.pt is written last and the set as one: a last.pt never names bests that were not written."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    plan = _plan(shapes, tmp_path, epochs=2)
    try:
        _cut_saves_at(monkeypatch, "best.pt", lambda: os.kill(os.getpid(), signal.SIGINT))
        with pytest.raises(KeyboardInterrupt):
            train(plan)
    finally:
        signal.signal(signal.SIGINT, previous)
    weights = tmp_path / "runs" / "exp" / "weights"
    assert {p.name for p in weights.glob("*.pt")} == ONE_EPOCH_FILES  # epoch 0 of 2: the same set, unstripped
    last = load_checkpoint(weights / "last.pt")
    assert (last.epoch, last.optimizer_state is not None) == (0, True)


def test_ctrl_c_while_results_csv_is_written_keeps_the_epoch_in_last_pt_too(
    shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """results.csv and the checkpoints are one record of an epoch: a Ctrl-C delivered while the
    results row is written (Ctrl-C is held there) must not stop the run before the checkpoint set."""
    real_write = hooks.atomic_write
    sent: list[Path] = []

    def write(path, writer, *args, **kwargs):
        def interrupted(stream):
            if not sent:
                sent.append(Path(path))
                os.kill(os.getpid(), signal.SIGINT)
            writer(stream)

        return real_write(path, interrupted, *args, **kwargs)

    monkeypatch.setattr(hooks, "atomic_write", write)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            train(_plan(shapes, tmp_path, epochs=2))
    finally:
        signal.signal(signal.SIGINT, previous)
    run = tmp_path / "runs" / "exp"
    assert sent == [run / "results.csv"]
    epochs = [line.split(",")[0] for line in (run / "results.csv").read_text().splitlines()[1:]]
    last = load_checkpoint(run / "weights" / "last.pt")
    assert (epochs, last.epoch, last.optimizer_state is not None) == (["0"], 0, True)
