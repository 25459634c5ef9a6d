"""Training on several nodes, as a user starts it: two torchrun agents on this host (``--nnodes 2``,
c10d rendezvous on 127.0.0.1, one CPU process each), and torchrun's elastic restart after a worker
is killed (``--max-restarts 1``), which continues the run from its last.pt unasked."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import make_shapes_dataset
from yolor_cli.engine.model.checkpoint import load_checkpoint
from yolor_cli.engine.model.loading import load_model
from yolor_cli.engine.train.distributed import RUN_MARKER

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads worker processes from /proc")

RUN_TIMEOUT_S = 150
STRIDE_WARNING = "Grad strides do not match bucket view strides"


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("nodes") / "voc", images=16, seed=5, val=0.25)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Agents:
    """Two torchrun agents, each started as its own process as on two machines, sharing a rendezvous."""

    def __init__(self, shapes: Path, project: Path, logs: Path, epochs: int, restarts: int = 0) -> None:
        port, self.logs = _free_port(), logs
        environment = {**os.environ, "OMP_NUM_THREADS": "1", "NO_COLOR": "1"}
        environment.pop("TORCHELASTIC_RUN_ID", None)
        # A store per rendezvous round: with the shared one (torch's default) a restarted worker can read the
        # dead worker's address left from the round before, when the agents count their restarts differently.
        environment["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] = "1"
        train = [
            *("train", "--data", str(shapes / "data.yaml"), "--cfg", "yolor_csp_tiny"),
            *("--epochs", str(epochs), "--batch-size", "4", "--img-size", "64", "--workers", "0"),
            *("--device", "cpu", "--project", str(project), "--close-mosaic", "0", "--json"),
        ]
        self.processes = []
        for node in range(2):
            command = [
                *(sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1"),
                *("--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", f"job{port}"),
                *("--max-restarts", str(restarts), "--monitor-interval", "0.1", "-m", "yolor_cli", *train),
            ]
            out, err = (logs / f"agent{node}.out").open("w"), (logs / f"agent{node}.err").open("w")
            self.processes.append(subprocess.Popen(command, stdout=out, stderr=err, env=environment))

    def wait(self) -> list[int]:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        try:
            return [p.wait(timeout=max(deadline - time.monotonic(), 1)) for p in self.processes]
        finally:
            self.kill()

    def kill(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    def output(self, node: int, stream: str = "err") -> str:
        return (self.logs / f"agent{node}.{stream}").read_text()

    def worker_of_rank(self, rank: int) -> int | None:
        """The pid of the training process with ``rank`` (a child of one of the agents), if running."""
        for agent in self.processes:
            children = Path(f"/proc/{agent.pid}/task/{agent.pid}/children")
            for pid in children.read_text().split() if children.exists() else []:
                try:
                    environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                except OSError:
                    continue
                if f"RANK={rank}".encode() in environment:
                    return int(pid)
        return None


def _epochs(run: Path) -> list[int]:
    with (run / "results.csv").open(newline="") as stream:
        return [int(row["epoch"]) for row in csv.DictReader(stream)]


@pytest.mark.slow
def test_two_nodes_train_one_run_without_the_grad_strides_warning(shapes: Path, tmp_path: Path) -> None:
    project = tmp_path / "runs"
    agents = Agents(shapes, project, tmp_path, epochs=2)
    codes = agents.wait()
    assert codes == [0, 0], agents.output(0)[-3000:] + agents.output(1)[-3000:]
    for node in range(2):
        assert STRIDE_WARNING not in agents.output(node)
    assert [p.name for p in project.iterdir()] == ["exp"]  # one run folder, made by rank 0
    run = project / "exp"
    assert _epochs(run) == [0, 1]  # one results.csv, one row per epoch
    reports = [json.loads(line) for n in range(2) for line in agents.output(n, "out").splitlines() if line[:1] == "{"]
    assert len(reports) == 1 and reports[0]["epochs_run"] == 2  # only rank 0 reports
    final = load_checkpoint(run / "weights" / "last.pt")
    assert final.epoch == 1 and final.optimizer_state is None
    assert load_model(weights=run / "weights" / "best.pt").model.nc == 3  # the checkpoint loads
    assert json.loads((run / RUN_MARKER).read_text())["run_id"].startswith("job")


@pytest.mark.slow
def test_a_worker_killed_mid_run_is_restarted_by_torchrun_and_the_run_continues(shapes: Path, tmp_path: Path) -> None:
    project, epochs = tmp_path / "runs", 4
    agents = Agents(shapes, project, tmp_path, epochs=epochs, restarts=1)
    run, killed = project / "exp", None
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        # Epoch 1's last.pt written: epoch 2 is under way (or its checkpoint being written).
        while killed is None and time.monotonic() < deadline:
            if any(p.poll() is not None for p in agents.processes):
                pytest.fail("an agent ended before the kill: " + agents.output(0)[-2000:] + agents.output(1)[-2000:])
            if (run / "weights" / "last.pt").exists():
                killed = agents.worker_of_rank(1)
                if killed is not None:
                    os.kill(killed, signal.SIGKILL)
            time.sleep(0.02)
    except BaseException:
        agents.kill()
        raise
    assert killed is not None, "epoch 1's last.pt did not appear in time"
    codes = agents.wait()
    logs = agents.output(0) + agents.output(1)
    assert codes == [0, 0], logs[-4000:]
    assert "restarted the group" in logs and "continues from its last.pt" in logs  # resumed, not started over
    assert [p.name for p in project.iterdir()] == ["exp"]  # the same folder, no exp2
    assert _epochs(run) == list(range(epochs))  # each epoch once: the interrupted one's row replaced
    report = next(
        json.loads(line) for n in range(2) for line in agents.output(n, "out").splitlines() if line[:1] == "{"
    )
    assert 1 <= report["epochs_run"] <= epochs - 1  # the restarted group trained only what was left
    assert load_checkpoint(run / "weights" / "last.pt").epoch == epochs - 1


def _as_torchrun_worker(monkeypatch: pytest.MonkeyPatch, run_id: str) -> None:
    for name, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": run_id}.items():
        monkeypatch.setenv(name, value)


def test_a_restarted_job_finds_its_own_run_folder_not_another_jobs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from yolor_cli.engine.train import distributed
    from yolor_cli.engine.train.options import TrainOptions
    from yolor_cli.engine.train.plan import restarted_plan

    project = tmp_path / "runs"
    for name, run_id in (("exp", "job-a"), ("exp2", "job-b"), ("exp3", "job-a")):
        (project / name).mkdir(parents=True)
        _as_torchrun_worker(monkeypatch, run_id)
        distributed.mark_run(project / name)
        os.utime(project / name / RUN_MARKER, ns=(len(name), len(name)))  # exp3 newest
    (project / "exp4").mkdir()  # a run outside torchrun: no marker
    _as_torchrun_worker(monkeypatch, "job-a")
    assert distributed.marked_runs(project) == [project / "exp3", project / "exp"]
    plan = restarted_plan(TrainOptions(project=str(project)))  # exp3 has no last.pt yet: started again there
    assert plan is not None and plan.run_dir == project / "exp3" and plan.resume is None
    assert "had no checkpoint yet" in plan.warnings[0]
    _as_torchrun_worker(monkeypatch, "job-c")
    assert restarted_plan(TrainOptions(project=str(project))) is None  # this job made nothing: a new run
    monkeypatch.delenv("WORLD_SIZE")
    assert distributed.marked_runs(project) == [] and distributed.restart_count() == 0  # not under torchrun
