"""Training as separate processes: DDP on CPU (gloo), a run killed with SIGKILL or stopped with
Ctrl-C and resumed, and the ``--device 0,1`` launcher."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import make_shapes_dataset
from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.model.checkpoint import load_checkpoint
from yolor_cli.engine.train import distributed
from yolor_cli.engine.train.run import TrainOptions, plan_training, train

START_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("scale") / "voc", images=12, seed=4, val=0.25)


def _train_args(shapes: Path, project: Path, epochs: int) -> list[str]:
    return [
        "train",
        "--data",
        str(shapes / "data.yaml"),
        "--cfg",
        "yolor_csp_tiny",
        "--epochs",
        str(epochs),
        "--batch-size",
        "4",
        "--img-size",
        "64",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--project",
        str(project),
    ]


def _environment() -> dict[str, str]:
    # One thread per process: two DDP processes on a 2-core runner must not oversubscribe it.
    return {**os.environ, "OMP_NUM_THREADS": "1", "NO_COLOR": "1"}


def _epochs(run: Path) -> list[int]:
    with (run / "results.csv").open(newline="") as stream:
        return [int(row["epoch"]) for row in csv.DictReader(stream)]


@pytest.mark.slow
def test_ddp_on_cpu_with_two_processes(shapes: Path, tmp_path: Path) -> None:
    project = tmp_path / "runs"
    command = distributed.torchrun_command([*_train_args(shapes, project, epochs=2), "--json"], processes=2)
    done = subprocess.run(command, capture_output=True, text=True, env=_environment(), timeout=START_TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    json_lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(json_lines) == 1  # only rank 0 reports
    assert [p.name for p in project.iterdir()] == ["exp"]  # only rank 0 made a run folder
    run = project / "exp"
    assert _epochs(run) == [0, 1]
    final = load_checkpoint(run / "weights" / "last.pt")
    assert final.epoch == 1 and final.optimizer_state is None
    assert load_checkpoint(run / "weights" / "epoch_000.pt").train_options["options"]["batch_size"] == 4


def _start(shapes: Path, project: Path, epochs: int) -> subprocess.Popen:
    # SIGINT back to its default in the child: a CI job started in the background ignores it, and
    # Python would then leave Ctrl-C ignored.
    return subprocess.Popen(
        [sys.executable, "-m", "yolor_cli", *_train_args(shapes, project, epochs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_environment(),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for_epoch(process: subprocess.Popen, run: Path, epoch: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if (run / "results.csv").exists() and epoch in _epochs(run):
            return
        if process.poll() is not None:
            pytest.fail(f"training ended early: {process.stderr.read()[-2000:]}")
        time.sleep(0.05)
    process.kill()
    pytest.fail("training did not reach the epoch in time")


def _wait_for_file(process: subprocess.Popen, path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"training ended early: {process.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"{path} did not appear in time")
        time.sleep(0.05)


@pytest.mark.slow
def test_sigkill_at_any_moment_then_resume(shapes: Path, tmp_path: Path) -> None:
    project = tmp_path / "runs"
    process = _start(shapes, project, epochs=5)
    run = project / "exp"
    _wait_for_epoch(process, run, 1)
    process.send_signal(signal.SIGKILL)  # no clean-up at all; maybe in the middle of writing checkpoints
    process.wait()
    assert process.returncode == -signal.SIGKILL
    killed_at = load_checkpoint(run / "weights" / "last.pt").epoch  # whole: saves are atomic
    assert killed_at in (0, 1, 2)
    result = train(plan_training(TrainOptions(project=str(project)), resume=True, last=run / "weights" / "last.pt"))
    assert result.save_dir == run and result.epochs_run == 5 - (killed_at + 1)
    assert _epochs(run) == [0, 1, 2, 3, 4]  # same numbering, no duplicated rows


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_with_a_usable_last_pt(shapes: Path, tmp_path: Path) -> None:
    project = tmp_path / "runs"
    process = _start(shapes, project, epochs=50)
    run = project / "exp"
    _wait_for_epoch(process, run, 0)
    _wait_for_file(process, run / "weights" / "last.pt")  # epoch 0's checkpoint
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=START_TIMEOUT_S)
    assert process.returncode == 130 and "Traceback" not in stderr and "interrupted" in stderr
    last = load_checkpoint(run / "weights" / "last.pt")
    epochs = _epochs(run)
    assert epochs == list(range(len(epochs)))
    # The last epoch whose checkpoint was written: the last row of results.csv, or the one before it
    # when Ctrl-C came between that row and its checkpoint. It resumes from there.
    assert last.epoch in (epochs[-1], epochs[-1] - 1) and last.epoch >= 0 and last.optimizer_state is not None


def test_device_list_launches_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}

    class FakeProcess:
        def __init__(self, command: list[str], env: dict[str, str]) -> None:
            seen.update(command=command, visible=env["CUDA_VISIBLE_DEVICES"])

        def wait(self) -> int:
            return 0

    for name in distributed.TORCHRUN_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(distributed, "select_device", lambda spec: None)  # pretend both GPUs exist
    monkeypatch.setattr(distributed.subprocess, "Popen", FakeProcess)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert distributed.wants_launch("2,3") and not distributed.wants_launch("0") and not distributed.wants_launch("cpu")
    assert distributed.launch(["train", "--device", "2,3"], "2,3") == 0
    assert seen["visible"] == "2,3"
    command = seen["command"]
    assert command[1:3] == ["-m", "torch.distributed.run"] and "--nproc_per_node=2" in command
    assert command[-5:] == ["-m", "yolor_cli", "train", "--device", "2,3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")  # an existing mask: --device 2,3 means GPUs 6 and 7
    distributed.launch(["train", "--device", "2,3"], "2,3")
    assert seen["visible"] == "6,7"
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert not distributed.wants_launch("2,3")  # already inside torchrun: never launch again


def test_device_list_without_cuda_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(distributed.torch.cuda, "is_available", lambda: False)
    with pytest.raises(YolorError, match="CUDA is not available"):
        distributed.launch(["train"], "0,1")
