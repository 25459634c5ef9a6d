"""``yolor train --teacher``: the distillation term, a pruned student distilled from its unpruned
teacher (and resumed with it), and the teachers and options that are refused."""

from __future__ import annotations

import copy
import csv
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import pytest
import torch
import yaml

from tests.conftest import make_shapes_dataset
from yolor_cli.engine.config import load_hyp
from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.model.bundled import load_cfg
from yolor_cli.engine.model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from yolor_cli.engine.model.darknet import DarknetModel, build_model
from yolor_cli.engine.prune.pruning import prune_global, rebuild
from yolor_cli.engine.prune.request import GlobalTarget
from yolor_cli.engine.reporting import SilentReporter
from yolor_cli.engine.train import build as train_build
from yolor_cli.engine.train.distill import CONFIDENT_OBJECTNESS, Distiller, check_teacher
from yolor_cli.engine.train.run import TrainOptions, plan_training, train

T = TypeVar("T")
NAMES = ["circle", "rectangle", "triangle"]  # the generated data's classes


class RecordingReporter(SilentReporter):
    """Keeps the info lines, the progress columns and the last progress values of a run."""

    def __init__(self) -> None:
        super().__init__()
        self.infos: list[str] = []
        self.fields: list[tuple[str, ...]] = []
        self.values: dict[str, str] = {}

    def track(
        self, items: Iterable[T], description: str, total: int | None = None, fields: Sequence[str] = ()
    ) -> Iterator[T]:
        if fields:
            self.fields.append(tuple(fields))
        yield from items

    def update(self, values: dict[str, str]) -> None:
        self.values.update(values)

    def info(self, message: str) -> None:
        self.infos.append(message)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("distill") / "voc", images=8, seed=4, val=0.25)


def _tiny(nc: int = 3, cfg: str = "yolor_csp_tiny") -> DarknetModel:
    torch.manual_seed(0)
    return build_model(load_cfg(cfg), nc=nc)


def _save(model: DarknetModel, path: Path, names: list[str] | None = NAMES) -> Path:
    save_checkpoint(Checkpoint(cfg=model.cfg, model_state=model.state_dict(), names=names), path)
    return path


def _maps_with_confident_cells(model: DarknetModel) -> list[torch.Tensor]:
    """Raw maps of the model's shapes where about a fifth of the cells are confident objects."""
    generator = torch.Generator().manual_seed(0)
    maps = []
    for level, layer in enumerate(model.yolo_layers):
        size = 8 >> level
        p = torch.randn(2, layer.na, size, size, layer.no, generator=generator)
        confident = torch.rand(p.shape[:-1], generator=generator) < 0.2
        p[..., 4] = torch.where(confident, torch.tensor(3.0), torch.tensor(-4.0))
        maps.append(p)
    assert any((p[..., 4].sigmoid() > CONFIDENT_OBJECTNESS).any() for p in maps)
    return maps


def test_the_distillation_term_is_zero_with_no_gradient_only_when_the_student_is_the_teacher() -> None:
    model = _tiny()
    distiller = Distiller(copy.deepcopy(model), load_hyp())
    teacher = _maps_with_confident_cells(model)
    same = [p.clone().requires_grad_() for p in teacher]
    loss, items = distiller.loss(same, teacher)
    loss.backward()
    assert loss.item() == 0.0 and items.tolist() == [0.0, 0.0, 0.0, 0.0]
    assert max(p.grad.abs().max().item() for p in same) < 1e-6
    generator = torch.Generator().manual_seed(1)
    other = [(p + 0.3 * torch.randn(p.shape, generator=generator)).requires_grad_() for p in teacher]
    loss, items = distiller.loss(other, teacher)
    loss.backward()
    box, obj, cls, total = items.tolist()
    assert min(box, obj, cls) > 0 and total == pytest.approx(box + obj + cls)
    assert loss.item() == pytest.approx(total * 2)  # scaled by the batch size, as YolorLoss
    assert all(p.grad.abs().sum() > 0 for p in other)
    # the teacher's own maps of an image: its forward runs without gradients, in fp32 out
    images = torch.rand(2, 3, 64, 64)
    maps = distiller.teacher_maps(images)
    assert [tuple(p.shape) for p in maps] == [(2, 3, 8, 8, 8), (2, 3, 4, 4, 8), (2, 3, 2, 2, 8)]
    assert all(p.dtype == torch.float32 and not p.requires_grad for p in maps)


def test_a_pruned_student_distils_from_its_unpruned_teacher_and_resumes_with_it(
    shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    teacher_model = _tiny()
    teacher = _save(teacher_model, tmp_path / "teacher.pt")
    pruned = rebuild(prune_global(copy.deepcopy(teacher_model), GlobalTarget(ratio=0.3)))
    student = _save(pruned, tmp_path / "pruned.pt")
    options = TrainOptions(
        data=str(shapes / "data.yaml"),
        weights=str(student),
        teacher=str(teacher),
        distill_weight=2.0,
        epochs=2,
        batch_size=4,
        img_size=64,
        workers=0,
        close_mosaic=0,
        project=str(tmp_path / "runs"),
    )
    original = train_build.CheckpointHook.after_epoch

    def stop_after_epoch_0(self, trainer, state):
        original(self, trainer, state)
        if state.epoch == 0:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_build.CheckpointHook, "after_epoch", stop_after_epoch_0)
    first = RecordingReporter()
    with pytest.raises(KeyboardInterrupt):
        train(plan_training(options), first)
    monkeypatch.setattr(train_build.CheckpointHook, "after_epoch", original)
    run = tmp_path / "runs" / "exp"
    assert f"distilling from the teacher {teacher}, weight 2" in first.infos
    assert any(line.startswith(f"teacher {teacher}: mAP50 ") for line in first.infos)
    assert first.fields[0][4:6] == ("total", "distill")
    assert float(first.values["distill"].split()[1]) > 0  # the pruned student differs from its teacher
    saved = yaml.safe_load((run / "opt.yaml").read_text())
    assert (saved["teacher"], saved["distill_weight"]) == (str(teacher), 2.0)

    # the teacher is needed to resume: gone, the run is refused before anything starts
    teacher.rename(tmp_path / "moved.pt")
    with pytest.raises(YolorError) as gone:
        plan_training(TrainOptions(project=str(tmp_path / "runs")), resume=True)
    assert str(teacher) in gone.value.message and "opt.yaml" in (gone.value.hint or "")
    (tmp_path / "moved.pt").rename(teacher)

    loads: list[str] = []
    real_load = Distiller.from_checkpoint.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(
        Distiller,
        "from_checkpoint",
        classmethod(lambda cls, path, **kwargs: (loads.append(str(path)), real_load(cls, path, **kwargs))[1]),
    )
    plan = plan_training(TrainOptions(project=str(tmp_path / "runs")), resume=True)
    assert (plan.options.teacher, plan.options.distill_weight) == (str(teacher), 2.0)
    result = train(plan, RecordingReporter())
    assert loads == [str(teacher)] and result.epochs_run == 1
    assert result.teacher_metrics is not None and set(result.teacher_metrics) == {"precision", "recall", "map50", "map"}
    with (run / "results.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [row["epoch"] for row in rows] == ["0", "1"] and "distill" not in rows[0]  # the columns stay
    assert {"last.pt", "best.pt"} <= {p.name for p in (run / "weights").iterdir()}
    trained = load_checkpoint(run / "weights" / "last.pt")
    assert trained.cfg.layers != teacher_model.cfg.layers and trained.names == NAMES  # still the pruned shapes
    assert trained.optimizer_state is None  # the run ended as usual


def test_a_teacher_with_other_classes_or_detection_heads_is_refused(shapes: Path, tmp_path: Path) -> None:
    other_classes = _save(_tiny(nc=2), tmp_path / "two.pt", names=["a", "b"])
    options = TrainOptions(
        data=str(shapes / "data.yaml"),
        cfg="yolor_csp_tiny",
        teacher=str(other_classes),
        epochs=1,
        batch_size=4,
        img_size=64,
        workers=0,
        project=str(tmp_path / "runs"),
    )
    with pytest.raises(YolorError) as refused:
        train(plan_training(options))
    assert refused.value.message == f"the teacher {other_classes} has 2 classes, the data 3"
    assert "same classes" in (refused.value.hint or "")
    assert not any((tmp_path / "runs").rglob("*.pt"))  # refused before any epoch

    student, hyp = _tiny(), load_hyp()

    def refusal(path: Path) -> str:
        with pytest.raises(YolorError) as error:
            Distiller.from_checkpoint(path, student=student, names=NAMES, hyp=hyp)
        return error.value.message

    renamed = _save(_tiny(), tmp_path / "renamed.pt", names=["circle", "square", "triangle"])
    assert "class 1: 'square' in the teacher, 'rectangle' in the data" in refusal(renamed)
    cfg = load_cfg("yolor_csp_tiny")
    for section in cfg.layers:
        if section.type == "yolo":
            section.options["anchors"] = section.options["anchors"].replace("6,8,", "7,9,")
    other_anchors = _save(build_model(cfg, nc=3), tmp_path / "anchors.pt")
    assert "other anchors than the student at level 0" in refusal(other_anchors)
    assert refusal(tmp_path / "absent.pt") == f"teacher weights not found: {tmp_path / 'absent.pt'}"
    noise = tmp_path / "noise.pt"
    noise.write_bytes(b"\x00not a checkpoint" * 20)
    assert refusal(noise).startswith(f"the teacher {noise} cannot be loaded on its own: ")
    # the checks themselves, on models (a yolor_p6 checkpoint would be 150 MB to write and read back)
    with pytest.raises(YolorError, match="has 4 detection levels, the student 3"):
        check_teacher(_tiny(cfg="yolor_p6"), NAMES, student, NAMES, "p6.pt")
    other_strides = _tiny()
    other_strides.yolo_layers[2].stride = 64.0
    with pytest.raises(YolorError, match=r"has strides \[8, 16, 64\], the student \[8, 16, 32\]"):
        check_teacher(other_strides, NAMES, student, NAMES, "t.pt")
    check_teacher(_tiny(), None, student, NAMES, "t.pt")  # a checkpoint without names: compared by count


def test_the_cli_refuses_a_distill_weight_without_a_teacher(shapes: Path, tmp_path: Path) -> None:
    from tests.test_cli import invoke

    data = str(shapes / "data.yaml")
    result = invoke("train", "--data", data, "--distill-weight", "2", "--project", str(tmp_path))
    assert result.exit_code == 1 and "Traceback" not in result.output
    stderr = " ".join(result.stderr.split())
    assert "--distill-weight is given without --teacher" in stderr and "--teacher runs/train" in stderr
    result = invoke("train", "--data", data, "--teacher", "t.pt", "--distill-weight", "0", "--project", str(tmp_path))
    assert result.exit_code == 1 and "--distill-weight 0.0 must be a number above 0" in " ".join(result.stderr.split())
    for infinite, words in (("inf", "is not finite"), ("nan", "is not a number")):
        result = invoke(
            "train", "--data", data, "--teacher", "t.pt", "--distill-weight", infinite, "--project", str(tmp_path)
        )
        message = " ".join(result.stderr.split())
        assert result.exit_code == 2 and f"--distill-weight {infinite} {words}" in message, message  # a usage error
    assert not any(tmp_path.iterdir())  # refused before a run folder is made
