"""yolor tune in MLflow, against real MLflow (a SQLite store read back with MlflowClient): one run per
command, each trial a nested run tagged with its number and state, the study's figures with the trial
number as step, the tune's files, a --resume continuing the run, and a dead server costing one warning."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.conftest import make_shapes_dataset
from tests.engine.tune.test_tune import _metric_sequence, _rows, _tune_args
from yolor_cli.engine.model.checkpoint import load_checkpoint
from yolor_cli.engine.reporting import SilentReporter
from yolor_cli.engine.tracking.options import DEFAULT_STORE, URI_VARIABLE
from yolor_cli.engine.tracking.tracker import active_run_id
from yolor_cli.engine.tune.request import TuneRequest
from yolor_cli.engine.tune.run import TUNE_RECORD, tune

mlflow = pytest.importorskip("mlflow")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("tunetrack") / "voc", images=8, seed=2, val=0.25) / "data.yaml"


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The current folder is the test's (the default store is runs/mlflow.db there); no URI from outside."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(URI_VARIABLE, raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    return tmp_path


def _request(data: Path, **changes: object) -> TuneRequest:
    """The tune tests' small, fast trials (as _tune_args gives them to the command line)."""
    values: dict[str, object] = {
        "data": data,
        "cfg": "yolor_csp_tiny",
        "img_size": 64,
        "batch_size": 4,
        "workers": 0,
        "device": "cpu",
        "project": Path("runs/tune"),
    }
    return TuneRequest(**{**values, **changes})  # type: ignore[arg-type]


def _client(root: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{(root / DEFAULT_STORE).as_posix()}")


def _steps(client: mlflow.MlflowClient, run_id: str, metric: str) -> list[tuple[int, float]]:
    return sorted((point.step, round(point.value, 6)) for point in client.get_metric_history(run_id, metric))


def test_a_tune_is_one_run_with_a_nested_run_per_trial(
    data: Path, in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # trials 0 and 1 complete (best values 0.6 and 0.8), trial 2 is pruned after its first epoch (0.1),
    # then the --resume's trial 3 too (0.3, below the median 0.5 at epoch 0).
    _metric_sequence(monkeypatch, [0.5, 0.6, 0.7, 0.8, 0.1, 0.3])
    reporter = SilentReporter()
    result = tune(_request(data, trials=3, epochs=2, mlflow=True, mlflow_log_weights=True), reporter)
    assert reporter.warnings == []
    assert (result.trials_complete, result.trials_pruned, result.best_trial) == (2, 1, 1)

    client = _client(in_tmp)
    experiment = client.get_experiment_by_name("tune")  # named after the --project folder
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    parents = [run for run in runs if run.data.tags.get("yolor.command") == "tune"]
    assert len(parents) == 1  # one run per command
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.info.run_name == "exp"
    assert json.loads((in_tmp / "runs/tune/exp" / TUNE_RECORD).read_text())["mlflow_run_id"] == parent.info.run_id
    params = parent.data.params
    assert params["trials"] == "3" and params["epochs"] == "2" and params["metric"] == "map"
    assert params["space.lr0"] == "1e-05..0.1 log" and params["space.optimizer"] == "sgd,adam,adamw"
    assert float(params["base_hyp.lr0"]) == 0.01 and "mlflow" not in params
    assert parent.data.tags["yolor.study"] == "exp" and parent.data.tags["yolor.best_trial"] == "1"

    # each trial a nested run: its number and how it ended; a pruned trial is not a failed run
    children = sorted(
        (run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id),
        key=lambda run: int(run.data.tags["yolor.trial"]),
    )
    assert len(runs) == 4 and len(children) == 3
    assert [run.info.run_name for run in children] == ["trial_0", "trial_1", "trial_2"]
    assert [run.data.tags["yolor.trial_state"] for run in children] == ["complete", "complete", "pruned"]
    assert [run.info.status for run in children] == ["FINISHED"] * 3
    # the training logged itself into the trial's run: options, hyp, per-epoch figures, files (not weights)
    trial_lr0 = [float(row["lr0"]) for row in _rows(in_tmp / "runs/tune/exp/trials.csv")]
    assert [float(run.data.params["hyp.lr0"]) for run in children] == pytest.approx(trial_lr0)
    assert [run.data.params["epochs"] for run in children] == ["2"] * 3
    assert [len(_steps(client, run.info.run_id, "metrics/map")) for run in children] == [2, 2, 1]
    for run in children:
        files = {item.path for item in client.list_artifacts(run.info.run_id)}
        assert "results.csv" in files and "weights" not in files  # only the best trial's weights, on the tune's run

    # the study's figures on the tune's run, the trial number as step
    assert _steps(client, parent.info.run_id, "value") == [(0, 0.6), (1, 0.8)]  # a pruned trial has no value
    assert _steps(client, parent.info.run_id, "best_value") == [(0, 0.6), (1, 0.8), (2, 0.8)]
    assert _steps(client, parent.info.run_id, "trials_pruned") == [(0, 1.0)]
    files = {item.path for item in client.list_artifacts(parent.info.run_id)}
    assert {"best_hyp.yaml", "trials.csv", "history.png", "importance.png", "weights"} <= files
    assert [item.path for item in client.list_artifacts(parent.info.run_id, "weights")] == ["weights/best.pt"]
    # lineage: the best trial's weights name the trial's run
    best = in_tmp / "runs/tune/exp/trials/trial_1/weights/best.pt"
    assert load_checkpoint(best).mlflow_run_id == children[1].info.run_id
    assert active_run_id() is None

    # --resume continues the same MLflow run: one more nested run, no second parent, no failure over
    # params the continued run has already (--trials differs)
    again = tune(_request(data, trials=4, epochs=2, mlflow=True, mlflow_log_weights=True, resume=True), reporter)
    assert reporter.warnings == [] and again.trials_pruned == 2
    runs = client.search_runs([experiment.experiment_id])
    assert len([run for run in runs if run.data.tags.get("yolor.command") == "tune"]) == 1
    parent = client.get_run(parent.info.run_id)
    assert parent.info.status == "FINISHED" and parent.data.params["trials"] == "3"  # MLflow keeps the first
    assert _steps(client, parent.info.run_id, "best_value") == [(0, 0.6), (1, 0.8), (2, 0.8), (3, 0.8)]
    latest = [run for run in runs if run.data.tags.get("yolor.trial") == "3"]
    assert len(latest) == 1 and latest[0].data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert latest[0].data.tags["yolor.trial_state"] == "pruned" and latest[0].info.status == "FINISHED"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_dead_tracking_server_costs_a_tune_one_warning(
    data: Path, in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(URI_VARIABLE, f"http://127.0.0.1:{_free_port()}")  # nothing listens there
    reporter = SilentReporter()
    result = tune(_request(data, trials=2, epochs=1, pruner="none"), reporter)
    assert (result.trials_complete, result.trials_failed) == (2, 0)  # the tune went on, every trial trained
    assert result.best_hyp is not None and result.best_hyp.is_file()
    tracking = [w for w in reporter.warnings if "MLflow" in w]
    assert len(tracking) == 1 and tracking[0].startswith("MLflow tracking is off for the rest of this command")
    assert "mlflow_run_id" not in json.loads((in_tmp / "runs/tune/exp" / TUNE_RECORD).read_text())
    assert not (in_tmp / DEFAULT_STORE).exists()


def test_the_tune_command_takes_the_tracking_options(data: Path, in_tmp: Path) -> None:
    from typer.testing import CliRunner

    from yolor_cli.app import app

    result = CliRunner().invoke(app, _tune_args(data, in_tmp / "runs", "--mlflow-experiment", "mine"))
    assert result.exit_code == 1
    assert "--mlflow-experiment needs tracking on" in result.output
    assert not (in_tmp / "runs").exists()  # refused before a run folder is made
