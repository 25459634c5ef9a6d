"""--close-mosaic: the last epochs train without mosaic and mixup, in loader workers too, after a resume too."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import make_shapes_dataset
from yolor_cli.engine.config import load_data_config, load_hyp
from yolor_cli.engine.data.loader import build_dataloader, build_dataset
from yolor_cli.engine.model.checkpoint import load_checkpoint
from yolor_cli.engine.reporting import SilentReporter
from yolor_cli.engine.train import build as train_build
from yolor_cli.engine.train.hooks import closing_epochs
from yolor_cli.engine.train.run import TrainOptions, plan_training, train


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("close") / "voc", images=12, seed=3, val=0.25)


def _mosaic_batches(loader) -> list[bool]:
    """Per batch: whether any sample is a mosaic (mosaics have no geometry back to one source image)."""
    return [any(geometry is None for geometry in geometries) for _, _, _, geometries in loader]


def test_the_switch_reaches_persistent_workers(shapes: Path) -> None:
    hyp = load_hyp()  # mosaic probability 1: every training sample is a mosaic while the switch is on
    dataset = build_dataset(
        load_data_config(shapes / "data.yaml"), "train", img_size=64, batch_size=2, hyp=hyp, augment=True
    )
    loader = build_dataloader(dataset, batch_size=2, workers=2, shuffle=True)
    assert loader.persistent_workers
    assert all(_mosaic_batches(loader))  # the workers start here and keep their copy of the dataset
    dataset.set_mosaic(False)
    assert not any(_mosaic_batches(loader))  # same workers, no mosaic
    dataset.set_mosaic(True)
    assert all(_mosaic_batches(loader))


def test_datasets_without_mosaic_refuse_the_switch(shapes: Path) -> None:
    data = load_data_config(shapes / "data.yaml")
    evaluation = build_dataset(data, "val", img_size=64, batch_size=2)
    assert not evaluation.mosaic
    with pytest.raises(ValueError, match="no mosaics"):
        evaluation.set_mosaic(False)


class _Probe:
    """Stands in for the run's loader and records, per epoch, whether each batch held a mosaic."""

    def __init__(self, loader) -> None:
        self.loader, self.sampler, self.epochs = loader, loader.sampler, []

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        batches: list[bool] = []
        self.epochs.append(batches)
        for batch in self.loader:
            batches.append(any(geometry is None for geometry in batch[3]))
            yield batch


class _Lines(SilentReporter):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def info(self, message: str) -> None:
        self.lines.append(message)


def test_a_run_closes_mosaic_records_its_recipe_and_resumes_both(
    shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    probes: list[_Probe] = []
    build_loader = train_build.loader
    monkeypatch.setattr(train_build, "loader", lambda *a: probes.append(_Probe(build_loader(*a))) or probes[-1])
    original = train_build.ResultsHook.after_epoch

    def crash_after_epoch_2(self, trainer, state):
        original(self, trainer, state)
        if state.epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_build.ResultsHook, "after_epoch", crash_after_epoch_2)
    options = TrainOptions(
        data=str(shapes / "data.yaml"),
        cfg="yolor_csp_tiny",
        epochs=4,
        batch_size=4,
        img_size=64,
        workers=2,
        close_mosaic=2,
        project=str(tmp_path / "runs"),
        noval=True,
    )
    reporter = _Lines()
    with pytest.raises(KeyboardInterrupt):
        train(plan_training(options), reporter)
    monkeypatch.setattr(train_build.ResultsHook, "after_epoch", original)
    assert probes[0].loader.num_workers == 2 and probes[0].loader.persistent_workers
    assert [all(epoch) for epoch in probes[0].epochs] == [True, True, False]  # epochs 3-4 are closed
    assert not any(probes[0].epochs[2])
    header = "optimizer auto → AdamW lr 0.002, no accumulation, scale 0.5: 12 iterations, warmup 6"  # 4 x 3 batches
    assert header in reporter.lines and "closing mosaic: epochs 3-4 train without mosaic and mixup" in reporter.lines
    run = tmp_path / "runs" / "exp"
    saved = yaml.safe_load((run / "opt.yaml").read_text())
    assert (saved["optimizer"], saved["nominal_batch_size"], saved["close_mosaic"]) == ("adamw", 4, 2)
    assert saved["recipe"]["lr0"] == 0.002 and saved["recipe"]["auto"] is True
    trained = yaml.safe_load((run / "hyp.yaml").read_text())  # the hyp the run trained with
    assert (trained["lr0"], trained["scale"]) == (0.002, 0.5)
    assert load_checkpoint(run / "weights" / "last.pt").epoch == 1  # the crash came before epoch 2's checkpoint

    plan = plan_training(TrainOptions(project=str(tmp_path / "runs")), resume=True)
    assert plan.options.recipe is not None and plan.options.recipe.header() == header  # repeated, not decided again
    reporter = _Lines()
    train(plan, reporter)
    assert header in reporter.lines
    assert [any(epoch) for epoch in probes[1].epochs] == [False, False]  # resumed into the closed phase


def test_short_runs_close_at_most_half_their_epochs() -> None:
    assert [closing_epochs(10, epochs) for epochs in (1, 5, 10, 20, 30, 300)] == [0, 2, 5, 10, 10, 10]
    assert closing_epochs(0, 30) == 0
