"""Tracking in MLflow, against real MLflow: a SQLite store read back with MlflowClient, lineage through the
checkpoints, a tracking server over HTTP, and a store that is down costing one warning and nothing else."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.conftest import make_shapes_dataset
from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from yolor_cli.engine.reporting import SilentReporter
from yolor_cli.engine.tracking.options import DEFAULT_STORE, URI_VARIABLE, tracking_settings
from yolor_cli.engine.tracking.tracker import INPUT_RUN_TAG, active_run_id, start_tracking
from yolor_cli.engine.train.run import TrainRequest, plan_request, train

mlflow = pytest.importorskip("mlflow")
pytestmark = pytest.mark.usefixtures("one_thread")

SERVER_START_S = 60  # mlflow server starts its workers and migrates a new database in a few seconds
DOWN_RUN_BOUND_S = 60  # a 1-epoch 64 px run with a dead store: the store must add seconds, not minutes


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("track") / "voc", images=12, seed=2, val=0.25)


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The current folder is the test's (the default store is runs/mlflow.db there); no URI from outside."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(URI_VARIABLE, raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    return tmp_path


def _train(shapes: Path, **changes: object) -> tuple[Path, SilentReporter]:
    values: dict[str, object] = {
        "data": shapes / "data.yaml",
        "cfg": "yolor_csp_tiny",
        "epochs": 2,
        "batch_size": 4,
        "img_size": (64,),
        "workers": 0,
        "device": "cpu",
        **changes,
    }
    reporter = SilentReporter()
    result = train(plan_request(TrainRequest(**values)), reporter)  # type: ignore[arg-type]
    return result.save_dir, reporter


def _client(root: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{(root / DEFAULT_STORE).as_posix()}")


def _only_run(client: mlflow.MlflowClient, experiment: str) -> mlflow.entities.Run:
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment}"
    runs = client.search_runs([found.experiment_id])
    assert len(runs) == 1
    return runs[0]


def test_a_train_run_is_read_back_from_the_sqlite_store(shapes: Path, in_tmp: Path) -> None:
    save_dir, reporter = _train(shapes, mlflow=True, mlflow_log_weights=True, project=Path("runs/train"))
    assert reporter.warnings == []
    client = _client(in_tmp)
    run = _only_run(client, "train")  # the experiment is named after the --project folder
    assert run.info.status == "FINISHED"
    assert run.info.run_name == save_dir.name == "exp"
    params = run.data.params
    assert params["epochs"] == "2" and params["img_size"] == "64" and params["cfg"] == "yolor_csp_tiny"
    assert float(params["hyp.lr0"]) > 0 and "hyp.mosaic" in params
    assert params["recipe.optimizer"] == params["optimizer"]  # the resolved recipe, not "auto"
    assert run.data.tags["yolor.cfg"] == "yolor_csp_tiny"
    assert run.data.tags["yolor.data"] == str((shapes / "data.yaml").resolve())
    assert INPUT_RUN_TAG not in run.data.tags  # trained from scratch: no input run
    for metric in ("metrics/map", "metrics/map50", "metrics/precision", "metrics/recall", "train/box_loss", "x/lr0"):
        history = client.get_metric_history(run.info.run_id, metric)
        assert sorted(point.step for point in history) == [0, 1], metric  # the epoch is the step
    results = (save_dir / "results.csv").read_text().splitlines()
    last_map = float(results[-1].split(",")[results[0].split(",").index("map")])
    assert client.get_metric_history(run.info.run_id, "metrics/map")[-1].value == pytest.approx(last_map, rel=1e-6)
    files = {item.path for item in client.list_artifacts(run.info.run_id)}
    assert {"results.csv", "opt.yaml", "hyp.yaml", "weights"} <= files
    assert [item.path for item in client.list_artifacts(run.info.run_id, "weights")] == ["weights/best.pt"]
    # the checkpoints record the run: the next command's run names it
    assert load_checkpoint(save_dir / "weights" / "best.pt").mlflow_run_id == run.info.run_id
    assert load_checkpoint(save_dir / "weights" / "last.pt").mlflow_run_id == run.info.run_id
    assert active_run_id() is None  # ended with the command
    assert (in_tmp / "runs" / "mlartifacts").is_dir()  # the run files stay under runs/, not ./mlruns
    assert not (in_tmp / "mlruns").exists()


def test_train_prune_auto_export_read_as_one_lineage(
    shapes: Path, in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from yolor_cli.engine.deploy.export import export
    from yolor_cli.engine.deploy.request import ExportRequest
    from yolor_cli.engine.prune import auto
    from yolor_cli.engine.prune.request import AutoPruneRequest

    monkeypatch.setattr(auto, "available_runtimes", lambda: (["torch"], []))  # the final table on PyTorch only
    save_dir, _ = _train(shapes, mlflow=True, epochs=1, project=Path("runs/train"))
    client = _client(in_tmp)
    trained = _only_run(client, "train").info.run_id
    reporter = SilentReporter()
    pruned = auto.auto_prune(
        AutoPruneRequest(
            weights=save_dir / "weights" / "last.pt",
            data=shapes / "data.yaml",
            target_macs=0.7,
            steps=1,
            epochs_per_step=1,
            final_epochs=0,
            distill=False,
            img_size=64,
            batch_size=4,
            workers=0,
            device="cpu",
            project=Path("runs/prune"),
            mlflow=True,
        ),
        reporter,
    )
    assert reporter.warnings == []
    experiment = client.get_experiment_by_name("prune")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    parent = next(run for run in runs if run.data.tags.get("yolor.command") == "prune auto")
    assert parent.data.tags[INPUT_RUN_TAG] == trained  # prune auto names the training it pruned
    assert parent.data.params["target_macs"] == "0.7"
    assert [point.step for point in client.get_metric_history(parent.info.run_id, "macs_fraction")] == [0, 1]
    assert "steps.csv" in {item.path for item in client.list_artifacts(parent.info.run_id)}
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert [run.info.run_name for run in children] == ["step_1"]  # the fine-tune, nested
    assert len(client.get_metric_history(children[0].info.run_id, "train/total_loss")) == 1
    assert load_checkpoint(pruned.output).mlflow_run_id == parent.info.run_id

    result = export(ExportRequest(weights=pruned.output, formats="pt", img_size=64, mlflow=True))
    exported = _only_run(client, "export")
    assert exported.data.tags[INPUT_RUN_TAG] == parent.info.run_id  # train -> prune -> export
    assert exported.data.tags["yolor.command"] == "export"
    assert load_checkpoint(result.files[0].path).mlflow_run_id == exported.info.run_id


def test_train_prune_global_export_read_as_one_lineage(shapes: Path, in_tmp: Path) -> None:
    from yolor_cli.engine.deploy.export import export
    from yolor_cli.engine.deploy.request import ExportRequest
    from yolor_cli.engine.prune.request import GlobalTarget, PruneRequest
    from yolor_cli.engine.prune.run import prune

    save_dir, _ = _train(shapes, mlflow=True, epochs=1, project=Path("runs/train"))
    client = _client(in_tmp)
    trained = _only_run(client, "train").info.run_id
    reporter = SilentReporter()
    weights = save_dir / "weights" / "last.pt"
    request = PruneRequest(weights, GlobalTarget(ratio=0.3), img_size=64, latency=False, mlflow=True)
    pruned = prune(request, reporter)
    assert reporter.warnings == [] and pruned.output is not None
    run = _only_run(client, "prune")  # prune auto's default experiment too
    assert run.info.status == "FINISHED"
    assert run.data.tags["yolor.command"] == "prune global"
    assert run.data.tags[INPUT_RUN_TAG] == trained  # the training it pruned
    assert run.data.params["target.ratio"] == "0.3" and run.data.params["method"] == "l1"
    history = client.get_metric_history(run.info.run_id, "after/params")
    assert [point.value for point in history] == [pruned.after.params]
    assert pruned.after.params < pruned.before.params
    assert 0 < client.get_metric_history(run.info.run_id, "macs_fraction")[0].value < 1
    assert client.list_artifacts(run.info.run_id) == []  # no weights without --mlflow-log-weights
    assert load_checkpoint(pruned.output).mlflow_run_id == run.info.run_id  # the pruned file names its run

    result = export(ExportRequest(weights=pruned.output, formats="pt", img_size=64, mlflow=True))
    exported = _only_run(client, "export")
    assert exported.data.tags[INPUT_RUN_TAG] == run.info.run_id  # train -> prune global -> export
    assert load_checkpoint(result.files[0].path).mlflow_run_id == exported.info.run_id


def test_prune_auto_resume_continues_its_mlflow_run(
    shapes: Path, in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from yolor_cli.engine.prune import auto
    from yolor_cli.engine.prune.request import AutoPruneRequest
    from yolor_cli.engine.prune.steps import AutoState

    monkeypatch.setattr(auto, "available_runtimes", lambda: (["torch"], []))  # the final table on PyTorch only
    save_dir, _ = _train(shapes, epochs=1, project=Path("runs/train"))
    finish = auto.AutoRun.finish

    def interrupted(run: auto.AutoRun) -> None:  # Ctrl-C once step 1 is fine-tuned and recorded
        raise KeyboardInterrupt

    monkeypatch.setattr(auto.AutoRun, "finish", interrupted)
    common = {"device": "cpu", "workers": 0, "project": Path("runs/prune"), "mlflow": True}
    with pytest.raises(KeyboardInterrupt):
        auto.auto_prune(
            AutoPruneRequest(
                weights=save_dir / "weights" / "last.pt",
                data=shapes / "data.yaml",
                target_macs=0.7,
                steps=1,
                epochs_per_step=1,
                final_epochs=0,
                distill=False,
                img_size=64,
                batch_size=4,
                **common,  # type: ignore[arg-type]
            )
        )
    client = _client(in_tmp)
    experiment = client.get_experiment_by_name("prune")
    assert experiment is not None
    parents = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("yolor.command")]
    assert len(parents) == 1 and parents[0].info.status == "KILLED"
    first = parents[0].info.run_id
    assert AutoState.load(in_tmp / "runs/prune/exp").mlflow_run_id == first

    monkeypatch.setattr(auto.AutoRun, "finish", finish)
    reporter = SilentReporter()
    result = auto.auto_prune(AutoPruneRequest(name="exp", resume=True, **common), reporter)  # type: ignore[arg-type]
    assert reporter.warnings == []
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("yolor.command")]  # the fine-tunes are nested, untagged
    assert [r.info.run_id for r in parents] == [first]  # the same run, taken up again
    assert parents[0].info.status == "FINISHED"
    assert [point.step for point in client.get_metric_history(first, "macs_fraction")] == [0, 1]  # no second step 0
    assert len(client.get_metric_history(first, "final/map")) == 1
    assert [r.info.run_name for r in runs if r.data.tags.get("mlflow.parentRunId") == first] == ["step_1"]
    assert load_checkpoint(result.output).mlflow_run_id == first


def test_an_old_checkpoint_without_a_run_id_still_loads(tmp_path: Path, tiny_model: torch.nn.Module) -> None:
    path = tmp_path / "old.pt"
    save_checkpoint(Checkpoint(cfg=tiny_model.cfg, model_state=tiny_model.state_dict()), path)
    raw = torch.load(path, weights_only=True)
    del raw["mlflow_run_id"]  # as files written before tracking existed
    torch.save(raw, path)
    assert load_checkpoint(path).mlflow_run_id is None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_dead_tracking_server_costs_one_warning_and_no_time(
    shapes: Path, in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(URI_VARIABLE, f"http://127.0.0.1:{_free_port()}")  # nothing listens there
    start = time.monotonic()
    save_dir, reporter = _train(shapes, epochs=1, project=Path("runs/train"))  # on through the variable alone
    elapsed = time.monotonic() - start
    assert (save_dir / "weights" / "best.pt").exists() and (save_dir / "results.csv").exists()
    assert len(reporter.warnings) == 1
    assert reporter.warnings[0].startswith("MLflow tracking is off for the rest of this command")
    assert "127.0.0.1" in reporter.warnings[0]
    assert elapsed < DOWN_RUN_BOUND_S
    assert load_checkpoint(save_dir / "weights" / "best.pt").mlflow_run_id is None


def test_the_cli_with_a_dead_server_exits_0_with_one_warning(shapes: Path, in_tmp: Path) -> None:
    env = {**os.environ, URI_VARIABLE: f"http://127.0.0.1:{_free_port()}", "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[3]), env.get("PYTHONPATH")]))
    command = [
        sys.executable,
        "-m",
        "yolor_cli",
        "train",
        "--data",
        str(shapes / "data.yaml"),
        "--cfg",
        "yolor_csp_tiny",
    ]
    command += ["--epochs", "1", "--batch-size", "4", "--img-size", "64", "--workers", "0", "--device", "cpu", "--json"]
    start = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=in_tmp)
    assert done.returncode == 0, done.stderr[-2000:]
    assert time.monotonic() - start < DOWN_RUN_BOUND_S + 30  # plus the interpreter's and torch's start
    assert done.stderr.count("MLflow tracking is off") == 1
    assert "Traceback" not in done.stderr
    assert done.stdout.strip().startswith("{") and '"epochs_run": 1' in done.stdout  # --json stays one object


def test_mlflow_tracking_uri_is_honoured(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = in_tmp / "elsewhere.db"
    monkeypatch.setenv(URI_VARIABLE, f"sqlite:///{store}")
    settings = tracking_settings(mlflow=False, experiment=None, log_weights=False, default_experiment="train")
    assert settings is not None and settings.uri == f"sqlite:///{store}" and not settings.explicit
    with start_tracking(settings, SilentReporter(), command="test") as tracker:
        tracker.metrics({"m": 1.5}, step=3)
        run_id = tracker.run_id
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store}")
    assert [(p.step, p.value) for p in client.get_metric_history(run_id, "m")] == [(3, 1.5)]
    assert not (in_tmp / DEFAULT_STORE).exists()  # the default store is not touched


def test_tracking_options_without_tracking_are_refused(in_tmp: Path) -> None:
    assert tracking_settings(mlflow=False, experiment=None, log_weights=False, default_experiment="x") is None
    with pytest.raises(YolorError, match="--mlflow-experiment needs tracking on"):
        tracking_settings(mlflow=False, experiment="mine", log_weights=False, default_experiment="x")
    with pytest.raises(YolorError, match="--mlflow-experiment is empty"):
        TrainRequest(mlflow=True, mlflow_experiment=" ")


def test_a_child_run_nests_and_an_experiment_option_names_the_experiment(in_tmp: Path) -> None:
    settings = tracking_settings(mlflow=True, experiment="mine", log_weights=False, default_experiment="train")
    with start_tracking(settings, SilentReporter(), command="tune") as parent:
        with parent.child("trial_0") as child:
            assert active_run_id() == child.run_id
            child.metrics({"value": 0.25}, step=1)
        assert active_run_id() == parent.run_id
    client = _client(in_tmp)
    experiment = client.get_experiment_by_name("mine")
    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    assert runs["trial_0"].data.tags["mlflow.parentRunId"] == parent.run_id
    assert runs["trial_0"].info.status == "FINISHED"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """``mlflow server`` on a free port of 127.0.0.1 with its own SQLite store, killed after the test."""
    port = _free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "art"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline:
            assert process.poll() is None, "mlflow server exited"
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"mlflow server did not listen within {SERVER_START_S} s")
        yield uri
    finally:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


@pytest.mark.slow
def test_a_run_logs_to_an_mlflow_server_over_http(
    shapes: Path, in_tmp: Path, server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(URI_VARIABLE, server)
    save_dir, reporter = _train(shapes, epochs=1, project=Path("runs/train"), mlflow_experiment="http")
    assert reporter.warnings == []
    client = mlflow.MlflowClient(tracking_uri=server)
    run = _only_run(client, "http")
    assert run.info.status == "FINISHED"
    assert [point.step for point in client.get_metric_history(run.info.run_id, "train/total_loss")] == [0]
    assert "results.csv" in {item.path for item in client.list_artifacts(run.info.run_id)}  # through the server
    assert load_checkpoint(save_dir / "weights" / "best.pt").mlflow_run_id == run.info.run_id
    assert not (in_tmp / DEFAULT_STORE).exists()
