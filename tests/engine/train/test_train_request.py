"""``yolor train``'s request: a run records absolute paths, so --resume works from any folder (#5), and
options given with --resume that the run keeps are named in a warning (#15)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import make_shapes_dataset
from tests.test_cli import invoke
from yolor_cli.engine.model.checkpoint import load_checkpoint
from yolor_cli.engine.train import build as train_build
from yolor_cli.engine.train.options import TrainOptions
from yolor_cli.engine.train.request import TrainRequest
from yolor_cli.engine.train.run import plan_request, train


def test_saved_relative_paths_resolve_in_the_folder_the_run_started_in(tmp_path: Path) -> None:
    (tmp_path / "voc").mkdir()
    (tmp_path / "voc" / "data.yaml").write_text("nc: 1\n")
    saved = {"data": "voc/data.yaml", "weights": "gone.pt", "cfg": "yolor_csp_tiny", "cwd": str(tmp_path)}
    options = TrainOptions.from_saved({**saved, "optimizer": "auto"})
    assert options.data == str(tmp_path / "voc" / "data.yaml")  # found where the run started
    assert (options.weights, options.cfg) == ("gone.pt", "yolor_csp_tiny")  # not there: left for the loader to name
    recorded = TrainOptions(data="voc/data.yaml", cfg="yolor_csp_tiny", project="runs").with_absolute_paths()
    assert Path(recorded.data).is_absolute() and Path(recorded.project).is_absolute()  # type: ignore[arg-type]
    assert recorded.cfg == "yolor_csp_tiny" and recorded.cwd == str(Path.cwd())  # a bundled name stays a name


def test_resume_works_from_another_folder_and_names_the_options_it_ignores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start, elsewhere = tmp_path / "start", tmp_path / "elsewhere"
    make_shapes_dataset(start / "voc", images=8, seed=3, val=0.25)
    elsewhere.mkdir()
    monkeypatch.chdir(start)
    original = train_build.CheckpointHook.after_epoch

    def crash_after_epoch_0(self, trainer, state):
        original(self, trainer, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_build.CheckpointHook, "after_epoch", crash_after_epoch_0)
    request = TrainRequest(
        data=Path("voc/data.yaml"), cfg="yolor_csp_tiny", epochs=2, batch_size=4, img_size=(64,), workers=0,
        project=Path("runs"), noval=True,
    )  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        train(plan_request(request))
    monkeypatch.setattr(train_build.CheckpointHook, "after_epoch", original)
    run = start / "runs" / "exp"
    opt = yaml.safe_load((run / "opt.yaml").read_text())
    assert opt["data"] == str(start / "voc" / "data.yaml") and opt["project"] == str(start / "runs")
    saved = load_checkpoint(run / "weights" / "last.pt").train_options["options"]  # what --resume reads
    assert saved["data"] == str(start / "voc" / "data.yaml") and saved["cwd"] == str(start)

    monkeypatch.chdir(elsewhere)  # voc/data.yaml does not exist here
    last = run / "weights" / "last.pt"
    result = invoke("train", "--resume", str(last), "--epochs", "5", "--data", "other.yaml", "--seed", "3", "--json")
    assert result.exit_code == 0, result.output
    said = " ".join(result.stderr.split())
    assert f"--resume continues {run} with its own options (opt.yaml); ignored: --data, --epochs, --seed" in said
    assert yaml.safe_load((run / "opt.yaml").read_text())["epochs"] == 2  # the run's own
    assert list(elsewhere.iterdir()) == []  # nothing written where the resume was started


def test_resume_without_other_options_says_nothing_about_them(tmp_path: Path) -> None:
    request = TrainRequest(resume=True, device="cpu", project=tmp_path)
    from yolor_cli.engine.options import given_options
    from yolor_cli.engine.train.request import RESUME_OWN

    assert given_options(request, ignore=RESUME_OWN) == []
