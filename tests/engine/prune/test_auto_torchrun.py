"""``yolor prune auto`` under torchrun, as a user starts it: ``torchrun --standalone --nproc-per-node 2``
on CPU (gloo). Rank 0 prunes, validates, writes one run folder and reports; each fine-tune is trained
by both processes; a failure on rank 0 stops the other process with its message instead of a hang."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import make_shapes_dataset
from yolor_cli.engine.model.bundled import load_cfg
from yolor_cli.engine.model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from yolor_cli.engine.model.darknet import build_model, count_parameters
from yolor_cli.engine.model.loading import load_model
from yolor_cli.engine.model.summary import count_gflops

RUN_TIMEOUT_S = 240
# The workers run yolor's own entry point with the final table on PyTorch only, as the other prune auto
# tests have it (tests/engine/prune/conftest.py): timing and quantizing on every runtime installed is
# rank 0's work after the last fine-tune, tested in test_final_table.py, and slow on a 2-core runner.
ENTRY = """\
from yolor_cli.app import main
from yolor_cli.engine.prune import auto

auto.available_runtimes = lambda: (["torch"], [])
main()
"""


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("auto_torchrun") / "voc", images=10, seed=3, val=0.3)


def _torchrun(tmp_path: Path, weights: Path, shapes: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    entry = tmp_path / "yolor_entry.py"
    entry.write_text(ENTRY)
    arguments = [
        *("prune", "auto", "-w", str(weights), "--data", str(shapes / "data.yaml"), "--target-macs", "0.5"),
        *("--steps", "1", "--epochs-per-step", "1", "--final-epochs", "1", "--max-drop", "1", "--no-distill"),
        *("--img-size", "64", "--batch-size", "4", "--workers", "0", "--device", "cpu"),
        *("--project", str(tmp_path / "runs"), "--json", *extra),
    ]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "NO_COLOR": "1"}  # 2 processes on 2 cores
    environment.pop("TORCHELASTIC_RUN_ID", None)
    return subprocess.run(
        [*command, str(entry), *arguments], capture_output=True, text=True, env=environment, timeout=RUN_TIMEOUT_S
    )


def _epochs(results: Path) -> list[int]:
    with results.open(newline="") as stream:
        return [int(row["epoch"]) for row in csv.DictReader(stream)]


@pytest.mark.slow
def test_two_processes_prune_auto_into_one_run_with_each_fine_tune_trained_by_both(
    shapes: Path, source: Path, tmp_path: Path
) -> None:
    """A fine-tune on rank 0 cannot end unless rank 1 trains it too (DDP's start and every step's
    all-reduce need both): both exiting 0 in bounded time is both training every fine-tune."""
    done = _torchrun(tmp_path, source, shapes)
    assert done.returncode == 0, done.stderr[-4000:]  # torchrun exits 0 only when both processes did
    reports = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(reports) == 1  # rank 0 alone reports
    report, project = reports[0], tmp_path / "runs"
    assert [p.name for p in project.iterdir()] == ["exp"]  # one run folder, rank 0's
    run = project / "exp"
    with (run / "steps.csv").open(newline="") as stream:
        assert [row["step"] for row in csv.DictReader(stream)] == ["0", "1"]
    for fine_tune in ("step_1", "final"):
        assert _epochs(run / fine_tune / "results.csv") == [0]  # its one epoch, once
        last = load_checkpoint(run / fine_tune / "weights" / "last.pt")
        assert last.epoch == 0 and last.optimizer_state is None  # finished and stripped, by rank 0
    pruned = load_model(weights=run / "pruned.pt").model  # pruned.pt is what rank 0 reported
    assert report["output"] == str(run / "pruned.pt") and report["steps"][-1]["step"] == 1
    assert count_parameters(pruned) == report["params_after"] < report["params_before"]
    assert round(count_gflops(pruned, 64) * 1e9 / 2) == report["macs_after"] < report["macs_before"]


@pytest.mark.slow
def test_a_failure_on_rank_0_stops_the_other_process_with_its_message(shapes: Path, tmp_path: Path) -> None:
    """Rank 0 refuses a model for 2 classes on 3-class data before the run folder exists; the other
    process, waiting for its first fine-tune, is told why and stops instead of waiting on."""
    torch.manual_seed(0)
    model = build_model(load_cfg("yolor_csp_tiny"), nc=2)
    weights = tmp_path / "two_classes.pt"
    save_checkpoint(Checkpoint(cfg=model.cfg, model_state=model.state_dict()), weights)
    done = _torchrun(tmp_path, weights, shapes)
    assert done.returncode != 0
    assert "prune auto stopped on rank 0:" in done.stderr, done.stderr[-4000:]
    assert not (tmp_path / "runs").exists() and not [line for line in done.stdout.splitlines() if line[:1] == "{"]
