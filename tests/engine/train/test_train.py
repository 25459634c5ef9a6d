"""Training: steps lower the loss, runs write the seed's files, resume continues exactly, errors are clear."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from tests.conftest import make_shapes_dataset
from yolor_cli.engine.config import load_data_config, load_hyp
from yolor_cli.engine.data.labels import collect_image_files, label_path_for, scan_labels
from yolor_cli.engine.data.loader import build_dataloader, build_dataset
from yolor_cli.engine.errors import DataError, YolorError
from yolor_cli.engine.model.bundled import load_cfg
from yolor_cli.engine.model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from yolor_cli.engine.model.darknet import build_model
from yolor_cli.engine.reporting import SilentReporter
from yolor_cli.engine.train import build as train_build
from yolor_cli.engine.train import plan as train_plan
from yolor_cli.engine.train.run import TrainOptions, TrainPlan, TrainRequest, plan_training, train
from yolor_cli.engine.train.trainer import Trainer, TrainingError, TrainState


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("train") / "voc", images=12, seed=2, val=0.25)


def _options(shapes: Path, tmp_path: Path, **changes: object) -> TrainOptions:
    values = {
        "data": str(shapes / "data.yaml"),
        "cfg": "yolor_csp_tiny",
        "epochs": 2,
        "batch_size": 4,
        "img_size": 64,
        "workers": 0,
        "project": str(tmp_path / "runs"),
        **changes,
    }
    return TrainOptions(**values)  # type: ignore[arg-type]


def _plan(shapes: Path, tmp_path: Path, **changes: object) -> TrainPlan:
    return plan_training(_options(shapes, tmp_path, **changes))


def _rows(run: Path) -> list[dict[str, str]]:
    with (run / "results.csv").open(newline="") as stream:
        return list(csv.DictReader(stream))


def test_steps_on_one_batch_lower_the_loss(shapes: Path) -> None:
    torch.manual_seed(0)
    data = load_data_config(shapes / "data.yaml")
    hyp = load_hyp()
    dataset = build_dataset(data, "train", img_size=64, batch_size=4)
    loader = build_dataloader(dataset, batch_size=4)
    model = build_model(load_cfg("yolor_csp_tiny"), nc=3)
    trainer = Trainer(
        model, hyp, loader, epochs=1, batch_size=64, device=torch.device("cpu"), img_size=64, reporter=SilentReporter()
    )
    trainer.warmup = trainer.warmup.__class__(iterations=0, hyp=hyp, batch_size=64)  # plain SGD steps
    images, targets, _, _ = next(iter(loader))
    state = TrainState(epoch=0, epochs=1)
    model.train()
    first = trainer.run_step(images, targets, state)[3].item()
    for _ in range(15):
        last = trainer.run_step(images, targets, state)[3].item()
    assert last < 0.8 * first
    assert trainer.ema.updates == 16


def test_a_run_writes_the_seeds_files(shapes: Path, tmp_path: Path) -> None:
    result = train(_plan(shapes, tmp_path, epochs=3, save_period=2))
    run = result.save_dir
    weights = {p.name for p in (run / "weights").iterdir()}
    assert {"last.pt", "epoch_000.pt", "epoch_002.pt", "last_000.pt", "last_001.pt", "last_002.pt"} <= weights
    # every best starts at -1: the first validated epoch improves them all
    assert {"best.pt", "best_p.pt", "best_r.pt", "best_ap50.pt", "best_ap.pt", "best_f.pt"} <= weights
    assert all(load_checkpoint(run / "weights" / name).optimizer_state is None for name in weights)  # all stripped
    assert (run / "hyp.yaml").exists() and (run / "opt.yaml").exists()
    rows = _rows(run)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2] and all(math.isfinite(float(r["total"])) for r in rows)
    final = load_checkpoint(run / "weights" / "last.pt")
    assert (
        final.optimizer_state is None
        and final.ema_state is None
        and final.names == list(load_data_config(shapes / "data.yaml").names)
    )
    assert torch.load(run / "weights" / "best.pt", weights_only=True)["format"] == "yolor-cli"


def test_resume_after_a_crash_continues_the_numbering(
    shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = train_build.ResultsHook.after_epoch

    def crash_after_epoch_1(self, trainer, state):
        original(self, trainer, state)
        if state.epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_build.ResultsHook, "after_epoch", crash_after_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        train(_plan(shapes, tmp_path, epochs=4))
    monkeypatch.setattr(train_build.ResultsHook, "after_epoch", original)
    run = tmp_path / "runs" / "exp"
    # The crash hit after results.csv but before the checkpoints of epoch 1: last.pt says epoch 0.
    assert load_checkpoint(run / "weights" / "last.pt").epoch == 0
    moved = plan_training(TrainOptions(project=str(tmp_path / "runs"), device="2,3"), resume=True)
    assert (moved.device, moved.launch) == ("2,3", True)  # a device given now wins; two GPUs: torchrun starts it
    reads = []
    monkeypatch.setattr(train_plan, "load_checkpoint", lambda path: reads.append(path) or load_checkpoint(path))
    plan = plan_training(TrainOptions(project=str(tmp_path / "runs"), epochs=99), resume=True)
    assert plan.resume is not None and plan.resume.path == run / "weights" / "last.pt"  # the newest run
    assert (plan.options.epochs, plan.device, plan.launch) == (4, "", False)  # the run's own options (auto device)
    result = train(plan)
    assert len(reads) == 1  # the checkpoint is read once, when planning, not again to train
    assert result.save_dir == run and result.epochs_run == 3
    assert [int(r["epoch"]) for r in _rows(run)] == [0, 1, 2, 3]  # epoch 1 redone, not duplicated
    with pytest.raises(YolorError) as finished:
        plan_training(TrainOptions(), resume=True, last=run / "weights" / "last.pt")
    assert finished.value.message == f"{run / 'weights' / 'last.pt'} finished all 4 epochs; nothing to resume"


def test_a_nan_loss_stops_with_a_clear_message(shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from yolor_cli.engine.train import loss as loss_module

    monkeypatch.setattr(
        loss_module.YolorLoss, "__call__", lambda self, raw, targets: (raw[0].sum() * float("nan"), torch.zeros(4))
    )
    with pytest.raises(TrainingError, match="the loss became nan") as caught:
        train(_plan(shapes, tmp_path))
    # the first epoch never finished: no last.pt was written, and the hint must not promise one
    assert not (tmp_path / "runs" / "exp" / "weights" / "last.pt").exists()
    assert caught.value.hint and "no epoch had finished, so no checkpoint was written" in caught.value.hint
    assert "last.pt" not in caught.value.hint


def test_a_nan_lr0_is_refused_before_training(shapes: Path, tmp_path: Path) -> None:
    from tests.test_cli import invoke

    hyp = tmp_path / "hyp.yaml"
    values = {**load_hyp("scratch.640").as_dict(), "lr0": ".nan"}
    hyp.write_text("".join(f"{key}: {value}\n" for key, value in values.items()))
    result = invoke(
        "train",
        "--data",
        str(shapes / "data.yaml"),
        "--cfg",
        "yolor_csp_tiny",
        "--hyp",
        str(hyp),
        "--epochs",
        "1",
        "--img-size",
        "64",
        "--project",
        str(tmp_path / "runs"),
    )
    assert result.exit_code == 1, result.output
    assert f"{hyp}: lr0 is nan; it must be a finite number above 0" in " ".join(result.stderr.split())
    assert not (tmp_path / "runs").exists()


def test_bad_data_fails_before_training(shapes: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"train: {shapes / 'train.txt'}\nval: {shapes / 'val.txt'}\nnc: 2\nnames: [a, b, c]\n")
    with pytest.raises(DataError, match="nc is 2"):
        train(_plan(shapes, tmp_path, data=str(bad)))
    two = tmp_path / "two.yaml"
    two.write_text(f"train: {shapes / 'train.txt'}\nval: {shapes / 'val.txt'}\nnames: [a, b]\n")
    scan = scan_labels(collect_image_files([shapes / "train.txt"]), nc=2)
    rows = [label_path_for(record.image).read_text().split() for record in scan.records]
    class_2 = sum(1 for words in rows for index in range(0, len(words), 5) if words[index] == "2")
    assert scan.class_out_of_range == class_2 > 0 and "class 2 is not below nc=2" in scan.first_out_of_range
    with pytest.raises(DataError) as refused:
        train(_plan(shapes, tmp_path, data=str(two)))
    assert refused.value.message == (
        f"{class_2} label rows name a class that {two} does not have (e.g. {scan.first_out_of_range})"
    )
    assert not any((tmp_path / "runs").rglob("*.pt"))


def test_weights_transfer_and_keep_a_pruned_architecture(shapes: Path, tmp_path: Path) -> None:
    cfg = load_cfg("yolor_csp_tiny")
    narrow = cfg.copy()
    narrow.layers[2].options["filters"] = "10"
    source = build_model(narrow, nc=5)
    save_checkpoint(Checkpoint(cfg=source.cfg, model_state=source.state_dict()), tmp_path / "pruned.pt")
    result = train(_plan(shapes, tmp_path, cfg=None, weights=str(tmp_path / "pruned.pt"), epochs=1))
    trained = load_checkpoint(result.save_dir / "weights" / "last.pt")
    assert trained.cfg.layers[2].options["filters"] == "10" and trained.nc == 3
    transferred, total = result.transferred
    assert 0 < transferred < total  # the 5-class heads were replaced by 3-class ones
    assert any("heads start anew" in note for note in result.notes)


def test_demo_data_is_generated_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YOLOR_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(train_build, "DEMO_IMAGES", 8)
    first = train_build.demo_data(SilentReporter())
    stamp = first.stat().st_mtime_ns
    assert load_data_config(first).names == ("circle", "rectangle", "triangle")
    assert train_build.demo_data(SilentReporter()) == first and first.stat().st_mtime_ns == stamp


def test_cli_train_and_its_errors(shapes: Path, tmp_path: Path) -> None:
    import json

    from tests.test_cli import invoke

    result = invoke(
        "train",
        "--data",
        str(shapes / "data.yaml"),
        "--cfg",
        "yolor_csp_tiny",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--img-size",
        "64",
        "--img-size",
        "96",
        "--workers",
        "0",
        "--project",
        str(tmp_path / "runs"),
        "--pt",
        "--json",
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    last_row = _rows(Path(payload["save_dir"]))[-1]
    assert payload["epochs_run"] == 1 and last_row["epoch"] == "0"
    assert {k: payload[k] for k in ("precision", "recall", "map50", "map")} == {
        k: float(last_row[k]) for k in ("precision", "recall", "map50", "map")
    }  # the final validation's metrics, as results.csv has them
    stray = invoke("train", "stray.pt", "--data", str(shapes / "data.yaml"))
    assert stray.exit_code == 1 and "Traceback" not in stray.output
    assert "unexpected argument stray.pt" in stray.stderr and "yolor train --resume LAST" in stray.stderr
    result = invoke("train", "--resume", "--project", str(tmp_path / "nothing"))
    assert result.exit_code == 1 and "no run to resume" in result.stderr
    result = invoke(
        "train",
        "--data",
        str(shapes / "data.yaml"),
        "--img-size",
        "100",
        "--project",
        str(tmp_path / "runs2"),
        "--workers",
        "0",
    )
    assert result.exit_code == 1 and "not a multiple" in " ".join(result.stderr.split())


def test_a_run_writes_plots_val_losses_and_takes_single_cls(shapes: Path, tmp_path: Path) -> None:
    result = train(_plan(shapes, tmp_path, epochs=1, single_cls=True, image_weights=True))
    run = result.save_dir
    assert {"train_batch0.jpg", "train_batch1.jpg", "labels.png", "results.png"} <= {p.name for p in run.iterdir()}
    row = _rows(run)[0]
    assert all(math.isfinite(float(row[key])) for key in ("val_box", "val_obj", "val_cls", "val_total"))
    assert float(row["val_cls"]) == 0.0  # one class: no class loss
    trained = load_checkpoint(run / "weights" / "last.pt")
    assert trained.nc == 1 and trained.names == ["item"]
    from tests.test_cli import invoke

    weights, data = str(run / "weights" / "last.pt"), str(shapes / "data.yaml")
    refused = invoke("eval", "--weights", weights, "--data", data, "--img-size", "64")  # 3 names vs 1
    assert refused.exit_code == 1 and "has nc=3 but the model was built for nc=1" in " ".join(refused.stderr.split())
    scored = invoke("eval", "--weights", weights, "--data", data, "--img-size", "64", "--single-cls", "--json")
    assert scored.exit_code == 0, scored.output


def test_options_resolve_to_the_demo_profile_only_without_data() -> None:
    demo = TrainRequest(batch_size=16).options()
    assert (demo.hyp, demo.epochs, demo.img_size, demo.batch_size) == (None, 10, 320, 16)  # hyp None: demo's own
    # the demo's measured 10-epoch recipe: Adam, no accumulation, mosaic to the end
    assert (demo.optimizer, demo.nominal_batch_size, demo.close_mosaic) == ("adam", 8, 0)
    longer = TrainRequest(epochs=300).options()  # other epochs: auto decides, as for any run
    assert (longer.optimizer, longer.nominal_batch_size, longer.close_mosaic) == ("auto", None, 10)
    chosen = TrainRequest(optimizer="auto", close_mosaic=3).options()
    assert (chosen.optimizer, chosen.close_mosaic) == ("auto", 3)
    own = TrainRequest(data=Path("data.yaml")).options()
    assert (own.hyp, own.epochs, own.img_size, own.optimizer, own.batch_size, own.nominal_batch_size) == (
        None,
        300,
        640,
        "auto",
        8,
        None,
    )
    assert TrainRequest(data=Path("data.yaml"), adam=True).options().optimizer == "adam"  # --adam is --optimizer adam
    with pytest.raises(YolorError, match="--adam means --optimizer adam"):
        TrainRequest(data=Path("data.yaml"), adam=True, optimizer="sgd")


def test_options_saved_before_optimizer_choices_resume_as_they_trained() -> None:
    old = {"hyp": "scratch.640", "epochs": 30, "nominal_batch_size": 64, "img_size": 64}
    adam = TrainOptions.from_saved({**old, "adam": True})
    assert (adam.optimizer, adam.close_mosaic, adam.recipe) == ("adam", 0, None)
    assert TrainOptions.from_saved({**old, "adam": False}).optimizer == "sgd"
    assert TrainOptions.from_saved({**old, "optimizer": "auto"}).close_mosaic == 10  # saved by this version


def test_tensorboard_scalars_when_tensorboard_is_installed(shapes: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    result = train(_plan(shapes, tmp_path, epochs=1))
    assert list(result.save_dir.glob("events.out.tfevents.*"))


def test_sparsity_adds_the_l1_gradient_of_batchnorm_scales(shapes: Path) -> None:
    data = load_data_config(shapes / "data.yaml")
    loader = build_dataloader(build_dataset(data, "train", img_size=64, batch_size=2), batch_size=2)
    images, targets, _, _ = next(iter(loader))
    grads = []
    for sparsity in (0.0, 0.01):
        torch.manual_seed(0)
        model = build_model(load_cfg("yolor_csp_tiny"), nc=3).train()
        trainer = Trainer(
            model,
            load_hyp(),
            loader,
            epochs=1,
            batch_size=2,
            nominal_batch_size=64,
            device=torch.device("cpu"),
            img_size=64,
            reporter=SilentReporter(),
            sparsity=sparsity,
        )
        trainer.run_step(images, targets, TrainState(epoch=0, epochs=1, last_step=0))  # no step: gradients stay
        grads.append((model.module_list[0].BatchNorm2d.weight.grad.clone(), model.module_list[0].BatchNorm2d.weight))
    (plain, _), (penalised, weight) = grads
    torch.testing.assert_close(penalised - plain, 0.01 * torch.sign(weight.detach()))


def test_patience_counts_only_validated_epochs_and_conflicting_options_fail(shapes: Path, tmp_path: Path) -> None:
    result = train(_plan(shapes, tmp_path, epochs=3, noval=True, patience=1))
    assert result.epochs_run == 3  # no validation before the last epoch: nothing to be patient about
    with pytest.raises(YolorError, match="cannot be combined"):
        train(_plan(shapes, tmp_path, rect=True, image_weights=True))
    with pytest.raises(YolorError, match="not a multiple"):
        train(_plan(shapes, tmp_path, test_img_size=100))  # caught before any epoch runs


def test_old_style_two_sizes_get_a_hint(shapes: Path) -> None:
    from tests.test_cli import invoke

    result = invoke("train", "--data", str(shapes / "data.yaml"), "--img-size", "640", "640")
    assert result.exit_code == 1 and "--img-size 640 --img-size 640" in " ".join(result.stderr.split())


def test_image_weights_resume_with_the_last_per_class_maps(
    shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from yolor_cli.engine.evaluate.metrics import ClassMetrics
    from yolor_cli.engine.train.trainer import ImageWeighting

    original = train_build.ResultsHook.after_epoch

    def crash_in_epoch_1(self, trainer, state):
        original(self, trainer, state)
        if state.epoch == 1:  # before epoch 1's checkpoint: last.pt holds epoch 0 and its validation
            raise KeyboardInterrupt

    real_validate = train_build.ValidationHook.after_epoch
    known = {0: [0.25, 0.5, 0.75], 1: [0.6, 0.1, 0.3]}  # per-class mAPs each validation reports

    def validate(self, trainer, state):
        real_validate(self, trainer, state)
        state.metrics.per_class = [
            ClassMetrics(cls, 1, 1, 0.5, 0.5, 0.9, value) for cls, value in enumerate(known[state.epoch])
        ]

    monkeypatch.setattr(train_build.ResultsHook, "after_epoch", crash_in_epoch_1)
    monkeypatch.setattr(train_build.ValidationHook, "after_epoch", validate)
    with pytest.raises(KeyboardInterrupt):
        train(_plan(shapes, tmp_path, epochs=3, image_weights=True))
    monkeypatch.setattr(train_build.ResultsHook, "after_epoch", original)
    monkeypatch.setattr(train_build.ValidationHook, "after_epoch", real_validate)
    saved = load_checkpoint(tmp_path / "runs" / "exp" / "weights" / "last.pt").train_options["class_maps"]
    assert saved == known[0]  # epoch 0's (its checkpoint is the last one written), not epoch 1's
    events: list[object] = []
    real_update, real_train = ImageWeighting.update, Trainer.train
    monkeypatch.setattr(
        ImageWeighting, "update", lambda self, maps: (events.append(list(maps)), real_update(self, maps))
    )
    monkeypatch.setattr(
        Trainer, "train", lambda self, *args: (events.append("training starts"), real_train(self, *args))[1]
    )
    train(plan_training(TrainOptions(project=str(tmp_path / "runs")), resume=True))
    assert events[:2] == [saved, "training starts"]  # the resumed run draws by the saved APs from the start
