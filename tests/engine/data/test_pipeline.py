"""data.yaml, the label cache and the training dataset/loader on generated data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import make_shapes_dataset
from yolor_cli.engine.config import load_data_config, load_hyp
from yolor_cli.engine.data import labels as labels_module
from yolor_cli.engine.data.labels import cache_path_for, collect_image_files, label_path_for, scan_labels
from yolor_cli.engine.data.loader import build_dataloader, build_dataset
from yolor_cli.engine.data.prepare import prepare_dataset
from yolor_cli.engine.data.synth import synthesize
from yolor_cli.engine.errors import DataError, YolorError


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("shapes") / "voc", images=24, seed=1, val=0.25)


def test_label_paths_follow_the_image_folder() -> None:
    assert label_path_for(Path("/d/images/a/b.JPG")) == Path("/d/labels/a/b.txt")
    assert label_path_for(Path("/d/JPEGImages/b.png")) == Path("/d/labels/b.txt")
    assert label_path_for(Path("/d/pics/b.png")) == Path("/d/pics/b.txt")


def test_image_sources_are_lists_folders_or_files(shapes: Path) -> None:
    from_list = collect_image_files([shapes / "train.txt"])
    from_folder = collect_image_files([shapes / "images"])
    assert len(from_folder) == 24 and set(from_list) < set(from_folder)
    assert collect_image_files([from_folder[0], from_folder[0]]) == [from_folder[0]]
    with pytest.raises(DataError, match="not found"):
        collect_image_files([shapes / "missing.txt"])


def test_data_yaml_loads_and_bad_ones_fail_clearly(shapes: Path, tmp_path: Path) -> None:
    data = load_data_config(shapes / "data.yaml")
    assert data.nc == 3 and data.names == ("circle", "rectangle", "triangle") and data.test == ()
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"train: {shapes / 'train.txt'}\nnc: 2\nnames: [a, b, c]\n")
    with pytest.raises(DataError, match="nc is 2 but names lists 3"):
        load_data_config(bad)
    bad.write_text("train: nowhere.txt\nnames: [a]\n")
    with pytest.raises(DataError, match="missing path"):
        load_data_config(bad)
    bad.write_text(f"train: [{shapes / 'train.txt'}, {shapes / 'images'}]\nnames: [a]\nepochs: 3\n")
    with pytest.raises(DataError, match="unknown key epochs"):
        load_data_config(bad)


def test_bundled_hyperparameters_load_and_typos_fail(tmp_path: Path) -> None:
    assert load_hyp().mosaic == 1.0 and load_hyp("finetune.1280").mixup == 0.2
    path = tmp_path / "hyp.yaml"
    path.write_text("\n".join(f"{k}: {v}" for k, v in load_hyp().as_dict().items()) + "\nmosiac: 1.0\n")
    with pytest.raises(YolorError, match="unknown: mosiac"):
        load_hyp(path)


def test_a_folder_named_like_a_bundled_hyp_does_not_shadow_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").mkdir()  # e.g. the folder `yolor dataset synth --out demo` makes
    assert load_hyp("demo").lr0 == 0.002


def test_label_cache_is_versioned_json_and_rechecks_only_changed_files(
    shapes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = collect_image_files([shapes / "images"])
    cache = cache_path_for(images)
    cache.unlink(missing_ok=True)
    first = scan_labels(images, nc=3)
    content = json.loads(cache.read_text())
    assert content["version"] == labels_module.CACHE_VERSION and len(content["entries"]) == 24

    checked: list[Path] = []
    original = labels_module._check
    monkeypatch.setattr(labels_module, "_check", lambda image, label: checked.append(image) or original(image, label))
    again = scan_labels(images, nc=3)
    assert checked == [] and [r.image for r in again.records] == [r.image for r in first.records]

    label = label_path_for(images[0])
    label.write_text(label.read_text() + "0 0.5 0.5 0.1 0.1\n")
    scan_labels(images, nc=3)
    assert checked == [images[0]]
    cache.write_text("{not json")  # a damaged cache is rebuilt, never trusted
    assert len(scan_labels(images, nc=3).records) == 24


def test_bad_rows_and_corrupt_images_are_skipped_with_warnings(tmp_path: Path) -> None:
    root = tmp_path / "d"
    synthesize(root, images=3, seed=2)
    prepare_dataset(root, val=0.0, test=0.0)
    images = collect_image_files([root / "images"])
    label = label_path_for(images[0])
    label.write_text(
        "0 0.5 0.5 0.2 0.2\n1 0.5 0.5\n7 0.5 0.5 0.2 0.2\n0 1.5 0.5 0.2 0.2\nx 1 1 1 1\n0 0.5 0.5 0.2 0.2\n"
    )
    images[1].write_bytes(b"broken")
    scan = scan_labels(images, nc=3)
    assert len(scan.records) == 2
    np.testing.assert_allclose(scan.records[0].labels, [[0, 0.5, 0.5, 0.2, 0.2]])  # duplicate removed
    assert scan.duplicates_removed == 1
    text = "\n".join(scan.warnings)
    assert f"{label}:2: expected 5 columns" in text and f"{label}:4: coordinates outside" in text
    assert f"{label}:5: non-numeric" in text and "class 7 is not below nc=3" in text
    assert f"{images[1]}: corrupt image" in text


def test_training_samples_are_consistent(shapes: Path) -> None:
    data = load_data_config(shapes / "data.yaml")
    hyp = load_hyp()
    dataset = build_dataset(data, "train", img_size=160, batch_size=4, hyp=hyp, augment=True, seed=0)
    for index in range(len(dataset)):
        sample = dataset[index]
        assert sample.image.shape == (3, 160, 160) and sample.image.dtype == torch.uint8
        boxes = sample.targets[:, 2:]
        assert ((boxes >= 0) & (boxes <= 1)).all() and (boxes[:, 2:] > 0).all()
        assert ((sample.targets[:, 1] >= 0) & (sample.targets[:, 1] < 3)).all()


def test_rectangular_eval_batches_and_geometry(shapes: Path) -> None:
    data = load_data_config(shapes / "data.yaml")
    dataset = build_dataset(data, "val", img_size=160, batch_size=2, rect=True)
    aspects = [r.height / r.width for r in dataset.records]
    assert aspects == sorted(aspects)
    loader = build_dataloader(dataset, batch_size=2)
    for images, _targets, paths, geometries in loader:
        assert images.shape[2] % 32 == 0 and images.shape[3] % 32 == 0 and max(images.shape[2:]) <= 160
        for geometry, path in zip(geometries, paths):
            assert geometry.target == tuple(images.shape[2:])
            record = next(r for r in dataset.records if str(r.image) == path)
            assert geometry.source == (record.height, record.width)


def test_loader_is_reproducible_and_collates_batch_indices(shapes: Path) -> None:
    data = load_data_config(shapes / "data.yaml")

    def first_batches(workers: int) -> list[torch.Tensor]:
        dataset = build_dataset(data, "train", img_size=96, batch_size=4, hyp=load_hyp(), augment=True, seed=0)
        loader = build_dataloader(dataset, batch_size=4, workers=workers, shuffle=True, seed=3)
        return [targets for _, targets, _, _ in loader][:3]

    once, twice = first_batches(0), first_batches(0)
    assert all(torch.equal(a, b) for a, b in zip(once, twice))
    assert set(once[0][:, 0].tolist()) <= {0, 1, 2, 3}
    with_workers, again_with_workers = first_batches(2), first_batches(2)
    assert all(torch.equal(a, b) for a, b in zip(with_workers, again_with_workers))


def test_cached_images_give_the_same_samples(shapes: Path) -> None:
    data = load_data_config(shapes / "data.yaml")
    plain = build_dataset(data, "val", img_size=128, batch_size=2)
    cached = build_dataset(data, "val", img_size=128, batch_size=2, cache_images=True)
    assert cached.cached_bytes > 0
    for index in range(len(plain)):
        assert torch.equal(plain[index].image, cached[index].image)
        np.testing.assert_array_equal(plain[index].targets, cached[index].targets)
