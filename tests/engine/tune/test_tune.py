"""yolor tune: the search space and its checks, a study whose pruner stops a trial, best_hyp.yaml read back
by yolor train, resume, a stale trial failed, and two processes sharing one storage."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import make_shapes_dataset
from yolor_cli.app import app
from yolor_cli.engine.config import load_hyp
from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.train.recipe import AUTO_ADAMW_LR, AUTO_SHORT_SCALE
from yolor_cli.engine.tune import study as studies
from yolor_cli.engine.tune import trial as trials
from yolor_cli.engine.tune.request import TuneRequest
from yolor_cli.engine.tune.space import DEFAULT_RANGES, Range, load_space

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("tune") / "voc", images=8, seed=2, val=0.25) / "data.yaml"


def _tune_args(data: Path, project: Path, *extra: str) -> list[str]:
    return [
        "tune",
        "--data",
        str(data),
        "--cfg",
        "yolor_csp_tiny",
        "--img-size",
        "64",
        "--batch-size",
        "4",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--project",
        str(project),
        *extra,
    ]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as stream:
        return list(csv.DictReader(stream))


# ---- the search space ------------------------------------------------------------------------------


def test_default_space_is_the_official_evolve_table() -> None:
    space = load_space(None)
    assert space.ranges["lr0"] == Range(1e-5, 1e-1, log=True)
    assert space.ranges["momentum"] == Range(0.6, 0.98)
    assert space.ranges["shear"] == Range(0.0, 10.0)
    assert "fliplr" in space.ranges  # kept fixed by the official evolve, searched here as the issue asks
    assert not {"iou_t", "fl_gamma", "perspective"} & set(space.ranges)  # gain 0 there: fixed here
    assert space.optimizers == ("sgd", "adam", "adamw")
    assert space.inside(load_hyp("scratch.640").as_dict())  # the base hyp is tried first


def test_a_space_file_narrows_and_fixes_keys(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text("lr0: [1.0e-3, 1.0e-2]\nmosaic: 1.0\niou_t: {low: 0.1, high: 0.3}\noptimizer: adam\n")
    space = load_space(path)
    assert space.ranges["lr0"] == Range(1e-3, 1e-2, log=True)  # lr0 keeps its log scale
    assert space.ranges["iou_t"] == Range(0.1, 0.3)  # a key the default keeps fixed can be searched
    assert space.fixed == {"mosaic": 1.0}
    assert "mosaic" not in space.ranges and space.optimizers == ("adam",)
    assert len(space.ranges) == len(DEFAULT_RANGES)  # others searched in their default ranges

    path.write_text("others: fixed\nlr0: [1.0e-3, 1.0e-2]\n")
    only = load_space(path)
    assert set(only.ranges) == {"lr0"} and only.optimizers == ("sgd",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lr: [0.001, 0.01]\n", "unknown key lr"),
        ("lr0: [0.01, 0.001]\n", "lr0: low 0.01 is above high 0.001"),
        (
            "scale: [0.5, 1.2]\n",
            "scale: the range [0.5, 1.2] reaches outside what training accepts (a number from 0 to below 1)",
        ),
        ("momentum: 1.5\n", "momentum: 1.5 is outside what training accepts"),
        ("hsv_h: {low: 0, high: 0.1, log: true}\n", "hsv_h: a log-scale range needs a low above 0"),
        ("optimizer: [sgd, lion]\n", "optimizer: 'lion' is not one of sgd, adam, adamw"),
        ("others: fixed\nmosaic: 1.0\n", "fixes every key: there is nothing to search"),
        ("- lr0\n", "is not a mapping of hyperparameters to ranges"),
    ],
)
def test_a_bad_space_file_is_one_message(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(YolorError) as caught:
        load_space(path)
    assert message in caught.value.message


def test_a_bad_space_file_stops_before_any_training(data: Path, tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("lr: 0.01\nbox: [0.2, 0.02]\n")
    result = runner.invoke(app, _tune_args(data, tmp_path / "runs", "--space", str(space)))
    assert result.exit_code == 1
    assert "unknown key lr; box: low 0.2 is above high 0.02" in " ".join(result.output.split())
    assert not (tmp_path / "runs").exists()  # no run folder, no study, no trial


def test_requests_refuse_what_a_trial_cannot_do(data: Path) -> None:
    with pytest.raises(YolorError, match="one yolor tune per GPU"):
        TuneRequest(data=data, device="0,1")
    with pytest.raises(YolorError, match="--timeout 0 is not above 0 minutes"):
        TuneRequest(data=data, timeout=0.0)


def test_pruners_and_samplers_are_optunas() -> None:
    assert isinstance(studies.make_pruner(optuna, "median", 9), optuna.pruners.MedianPruner)
    assert isinstance(studies.make_pruner(optuna, "hyperband", 9), optuna.pruners.HyperbandPruner)
    assert isinstance(studies.make_pruner(optuna, "none", 9), optuna.pruners.NopPruner)
    assert isinstance(studies.make_sampler(optuna, "random", 0), optuna.samplers.RandomSampler)
    assert isinstance(studies.make_sampler(optuna, "tpe", 0), optuna.samplers.TPESampler)
    assert studies.trial_seed(0, 1) != studies.trial_seed(1, 1) != studies.trial_seed(0, 2)


# ---- studies --------------------------------------------------------------------------------------


def _metric_sequence(monkeypatch: pytest.MonkeyPatch, values: list[float]) -> None:
    """Each validated epoch reports the next of ``values`` instead of the tiny model's near-zero mAP,
    so the median pruner's decision is certain; the pruning itself is Optuna's."""
    sequence = iter(values)
    monkeypatch.setattr(trials, "metric_value", lambda metrics, metric: next(sequence))


def test_three_trials_the_pruner_stops_one_and_best_hyp_trains(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # trial 0 (the base hyp) 0.5 then 0.6, trial 1 0.7 then 0.8; trial 2 reports 0.1 after its first
    # epoch, below the median (0.6) of the two earlier trials at that epoch: pruned there.
    _metric_sequence(monkeypatch, [0.5, 0.6, 0.7, 0.8, 0.1])
    result = runner.invoke(app, _tune_args(data, tmp_path / "runs", "--trials", "3", "--epochs", "2", "--json"))
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(payload) == {
        "best_value",
        "best_params",
        "best_trial",
        "trials_complete",
        "trials_pruned",
        "trials_failed",
        "epochs_run",
        "storage",
        "study",
    }
    assert (payload["trials_complete"], payload["trials_pruned"], payload["trials_failed"]) == (2, 1, 0)
    assert payload["best_trial"] == 1 and payload["best_value"] == pytest.approx(0.8)
    assert payload["epochs_run"] == 2 + 2 + 1
    assert payload["study"] == "exp"
    run = tmp_path / "runs" / "exp"
    assert payload["storage"] == f"sqlite:///{(run / 'study.db').resolve()}"

    rows = _rows(run / "trials.csv")
    assert [(r["number"], r["state"], r["epochs_run"]) for r in rows] == [
        ("0", "complete", "2"),
        ("1", "complete", "2"),
        ("2", "pruned", "1"),
    ]
    # the first trial is what `yolor train` does by default for this run: --optimizer auto's short-run AdamW
    assert rows[0]["optimizer"] == "adamw" and float(rows[0]["lr0"]) == AUTO_ADAMW_LR
    assert float(rows[0]["scale"]) == AUTO_SHORT_SCALE and float(rows[0]["mosaic"]) == load_hyp("scratch.640").mosaic
    assert len(_rows(run / "trials" / "trial_2" / "results.csv")) == 1  # stopped after its first epoch
    # Disk: each trial keeps its records; only the best one keeps weights, best.pt and last.pt.
    for number in range(3):
        folder = run / "trials" / f"trial_{number}"
        assert (folder / "results.csv").is_file() and (folder / "opt.yaml").is_file()
        assert (folder / "hyp.yaml").is_file()
    assert sorted(p.name for p in (run / "trials" / "trial_1" / "weights").iterdir()) == ["best.pt", "last.pt"]
    assert not (run / "trials" / "trial_0" / "weights").exists()
    assert not (run / "trials" / "trial_2" / "weights").exists()
    assert (run / "history.png").stat().st_size > 0 and (run / "importance.png").stat().st_size > 0

    # best_hyp.yaml is a hyp file as it is: the best trial's values, and yolor train takes it.
    best = load_hyp(run / "best_hyp.yaml")
    params = payload["best_params"]
    assert best.lr0 == pytest.approx(params["lr0"]) and best.mosaic == pytest.approx(params["mosaic"])
    assert best.iou_t == load_hyp("scratch.640").iou_t  # not searched: the base hyp's
    train = runner.invoke(
        app,
        [
            "train",
            "--data",
            str(data),
            "--hyp",
            str(run / "best_hyp.yaml"),
            "--optimizer",
            params["optimizer"],
            "--epochs",
            "1",
            "--img-size",
            "64",
            "--batch-size",
            "4",
            "--workers",
            "0",
            "--device",
            "cpu",
            "--project",
            str(tmp_path / "train"),
        ],
    )
    assert train.exit_code == 0, train.output
    trained = yaml.safe_load((tmp_path / "train" / "exp" / "hyp.yaml").read_text())
    assert trained == pytest.approx(best.as_dict())


def test_resume_adds_trials_and_fails_a_stale_one(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(studies, "HEARTBEAT_SECONDS", 1)
    monkeypatch.setattr(studies, "GRACE_SECONDS", 1)
    space = tmp_path / "space.yaml"
    space.write_text("others: fixed\nlr0: [1.0e-3, 1.0e-2]\noptimizer: adam\n")
    args = _tune_args(data, tmp_path / "runs", "--epochs", "1", "--space", str(space), "--pruner", "none", "--json")
    first = runner.invoke(app, [*args, "--trials", "1"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout.strip().splitlines()[-1])["trials_complete"] == 1

    # A process killed mid-trial leaves it RUNNING with an old heartbeat.
    run = tmp_path / "runs" / "exp"
    storage = optuna.storages.RDBStorage(f"sqlite:///{run / 'study.db'}", heartbeat_interval=1, grace_period=1)
    study = optuna.load_study(study_name="exp", storage=storage)
    dead = study.ask()
    dead.suggest_float("lr0", 1e-3, 1e-2, log=True)
    storage.record_heartbeat(dead._trial_id)
    time.sleep(2.5)  # well past the grace period, also on a loaded machine

    second = runner.invoke(app, [*args, "--trials", "2", "--resume"])
    assert second.exit_code == 0, second.output
    payload = json.loads(second.stdout.strip().splitlines()[-1])
    assert (payload["trials_complete"], payload["trials_failed"]) == (2, 1)
    assert not (tmp_path / "runs" / "exp2").exists()  # the same run folder, the same study
    states = {t.number: t.state.name for t in optuna.load_study(study_name="exp", storage=storage).trials}
    assert states == {0: "COMPLETE", 1: "FAIL", 2: "COMPLETE"}
    assert (run / "trials" / "trial_2" / "results.csv").is_file()


def test_joining_a_study_of_other_settings_is_refused(data: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    storage = studies.open_storage(optuna, url)
    studies.open_study(optuna, storage, "s", {"epochs": 1}, sampler=None, pruner=None)
    with pytest.raises(YolorError, match="was tuned with other epochs"):
        studies.open_study(optuna, storage, "s", {"epochs": 2}, sampler=None, pruner=None)


@pytest.mark.slow
def test_two_processes_on_one_storage_share_the_trials(data: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    space = tmp_path / "space.yaml"
    space.write_text("others: fixed\nlr0: [1.0e-3, 1.0e-2]\noptimizer: adam\n")
    args = _tune_args(data, tmp_path / "runs", "--epochs", "1", "--trials", "4", "--storage", url)
    args += ["--study", "shared", "--space", str(space), "--pruner", "none", "--json"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "yolor_cli", *args, "--name", name],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    outputs = [process.communicate(timeout=300) for process in processes]
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr
    study = optuna.load_study(study_name="shared", storage=url)
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 4 and len({t.number for t in finished}) == 4
    assert len({t.params["lr0"] for t in finished}) == 4  # distinct values: each process draws its own
    assert not [t for t in study.trials if t.state.name == "RUNNING"]
    # Both processes trained: each trial's folder lies under the run folder of the process that ran it.
    owners = {Path(t.user_attrs["run_dir"]).parent.parent.name for t in finished}
    assert owners == {"a", "b"}


def test_a_storage_that_does_not_work_is_one_message_without_its_password(data: Path, tmp_path: Path) -> None:
    url = "postgresql://tuner:s3cret@127.0.0.1:1/studies"  # no driver, or nothing listening on port 1
    result = runner.invoke(app, _tune_args(data, tmp_path / "runs", "--storage", url))
    assert result.exit_code == 1
    assert "postgresql://tuner:***@127.0.0.1:1/studies" in result.output
    assert "s3cret" not in result.output
    assert not (tmp_path / "runs").exists()


def test_dropping_weights_another_process_dropped_first_is_no_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from yolor_cli.engine.tune import trial as trials

    tune = tmp_path / "tune"
    (tune / "tune.json").parent.mkdir()
    (tune / "tune.json").write_text("{}")
    run = tune / trials.TRIALS_DIR / "trial_2"
    (run / "weights").mkdir(parents=True)
    (run / "opt.yaml").write_text("epochs: 1\n")
    for name in ("best.pt", "last.pt"):
        (run / "weights" / name).write_bytes(b"x")
    (run / "weights" / "notes.txt").write_text("mine")  # not a checkpoint name: never ours to delete
    real_unlink = Path.unlink

    def raced(path: Path, missing_ok: bool = False) -> None:  # the other process deleted best.pt just before
        if path.name == "best.pt":
            real_unlink(path)
            raise FileNotFoundError(path)
        real_unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", raced)
    assert trials.drop_weights(run) == 1  # last.pt; best.pt was gone already
    assert sorted(p.name for p in (run / "weights").iterdir()) == ["notes.txt"]
    monkeypatch.undo()
    (run / "weights" / "notes.txt").unlink()
    (run / "weights").rmdir()  # the whole folder gone too (the other process emptied it first)
    assert trials.drop_weights(run) == 0
