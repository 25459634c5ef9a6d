"""--close-mosaic: the last epochs train without mosaic and mixup, in loader workers too, after a resume too."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import make_shapes_dataset
from yolor_cli.engine.config import load_data_config, load_hyp
from yolor_cli.engine.data.loader import build_dataloader, build_dataset


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
