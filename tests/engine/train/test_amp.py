"""Mixed precision in training: the forward runs in bf16 on a CPU that has it, the loss, weights,
optimiser state, EMA and checkpoints stay fp32, and ``--amp/--no-amp`` is said, recorded and resumed."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from tests.conftest import make_shapes_dataset
from yolor_cli.engine import runtime
from yolor_cli.engine.config import load_data_config, load_hyp
from yolor_cli.engine.data.loader import build_dataloader, build_dataset
from yolor_cli.engine.model.bundled import load_cfg
from yolor_cli.engine.model.checkpoint import load_checkpoint
from yolor_cli.engine.model.darknet import build_model
from yolor_cli.engine.reporting import SilentReporter
from yolor_cli.engine.runtime import AmpMode, resolve_amp
from yolor_cli.engine.train import build as train_build
from yolor_cli.engine.train import run as train_run
from yolor_cli.engine.train.run import TrainOptions, plan_training, train
from yolor_cli.engine.train.trainer import Trainer, TrainState

CPU = torch.device("cpu")
BF16 = AmpMode(torch.bfloat16, False, "test")
FP32 = AmpMode(None, False, "test")
# bf16 keeps 8 bits of mantissa (relative step 2**-8 = 0.4 %); summed over a forward pass the loss of
# this test's batch moves by 0.3 % (measured), so 3 % is a loose bound that still catches a broken forward.
BF16_LOSS_TOLERANCE = 0.03


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("amp") / "voc", images=8, seed=3, val=0.25)


@pytest.fixture
def bf16_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU with AVX-512 BF16, whatever this one has (bf16 also runs, emulated and slower, without it)."""
    monkeypatch.setattr(runtime, "_torch_cpu_flags", lambda: {"avx512_bf16"})


def _step(shapes: Path, amp: AmpMode) -> tuple[Trainer, list[torch.dtype], torch.Tensor]:
    """One optimiser step on one batch from the same weights; returns the dtypes the convolutions output."""
    data = load_data_config(shapes / "data.yaml")
    loader = build_dataloader(build_dataset(data, "train", img_size=64, batch_size=4), batch_size=4)
    torch.manual_seed(0)
    model = build_model(load_cfg("yolor_csp_tiny"), nc=3).train()
    trainer = Trainer(
        model, load_hyp(), loader, epochs=1, batch_size=4, nominal_batch_size=4, device=CPU, img_size=64,
        reporter=SilentReporter(), amp=amp,
    )  # fmt: skip
    trainer.warmup = trainer.warmup.__class__(iterations=0, hyp=load_hyp(), batch_size=4, nominal_batch_size=4)
    dtypes: list[torch.dtype] = []
    for conv in (m for m in model.modules() if isinstance(m, nn.Conv2d)):
        conv.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    torch.manual_seed(0)
    images, targets, _, _ = next(iter(loader))
    items = trainer.run_step(images, targets, TrainState(epoch=0, epochs=1))
    return trainer, dtypes, items


def test_bf16_runs_the_forward_in_bf16_and_keeps_everything_else_fp32(shapes: Path) -> None:
    trainer, dtypes, items = _step(shapes, BF16)
    assert dtypes and set(dtypes) == {torch.bfloat16}  # autocast reached every convolution
    assert items.dtype == torch.float32 and torch.isfinite(items).all()
    assert trainer.ema.updates == 1 and not trainer.scaler.is_enabled()
    for name, tensor in [*trainer.model.state_dict().items(), *trainer.ema.ema.state_dict().items()]:
        assert not tensor.is_floating_point() or tensor.dtype == torch.float32, name
    moments = [v for s in trainer.optimizer.state.values() for v in s.values() if torch.is_tensor(v) and v.numel() > 1]
    assert moments and {v.dtype for v in moments} == {torch.float32}
    _, fp32_dtypes, fp32_items = _step(shapes, FP32)
    assert set(fp32_dtypes) == {torch.float32}
    assert math.isclose(items[3].item(), fp32_items[3].item(), rel_tol=BF16_LOSS_TOLERANCE)


def test_the_trainer_defaults_to_the_devices_automatic_mode(bf16_cpu: None) -> None:
    trainer = Trainer(
        build_model(load_cfg("yolor_csp_tiny"), nc=3), load_hyp(), [None], epochs=1, batch_size=4, device=CPU,
        img_size=64, reporter=SilentReporter(),
    )  # fmt: skip
    assert trainer.amp == resolve_amp(CPU) and not trainer.amp.enabled  # bf16 on a CPU is opt-in
    assert not trainer.scaler.is_enabled()


def _cli_train(shapes: Path, project: Path, *flags: str):
    from tests.test_cli import invoke

    return invoke(
        "train", "--data", str(shapes / "data.yaml"), "--cfg", "yolor_csp_tiny", "--epochs", "1",
        "--batch-size", "4", "--img-size", "64", "--workers", "0", "--project", str(project), *flags,
    )  # fmt: skip


def _finished_run(result) -> Path:
    assert result.exit_code == 0, result.output
    run = Path(result.stdout.split("Results in")[-1].split("\n")[0].strip())  # the line before "Report:"
    with (run / "results.csv").open(newline="") as stream:
        last = list(csv.DictReader(stream))[-1]
    assert math.isfinite(float(last["total"])) and float(last["total"]) > 0
    for name in ("last.pt", "best.pt"):
        ckpt = load_checkpoint(run / "weights" / name)
        floats = {t.dtype for t in ckpt.best_state().values() if t.is_floating_point()}
        assert floats == {torch.float32}, name
    return run


def _opt_amp(run: Path) -> tuple[object, object]:
    """opt.yaml's request (--amp, --no-amp, neither) and the mode the run trained with."""
    saved = yaml.safe_load((run / "opt.yaml").read_text())
    return saved["amp"], saved["amp_mode"]


def test_cli_amp_and_no_amp_both_train_say_so_and_record_it(shapes: Path, tmp_path: Path, bf16_cpu: None) -> None:
    on = _cli_train(shapes, tmp_path / "on", "--amp")
    assert "AMP: bf16 autocast (CPU has AVX-512 BF16)" in on.stderr
    assert _opt_amp(_finished_run(on)) == (True, "bf16")
    off = _cli_train(shapes, tmp_path / "off", "--no-amp")
    assert "AMP off: --no-amp" in off.stderr and "AMP: bf16" not in off.stderr
    assert _opt_amp(_finished_run(off)) == (False, "off")
    default = _cli_train(shapes, tmp_path / "default")
    assert "AMP off: bf16 on a CPU is opt-in; --amp turns it on" in " ".join(default.stderr.split())
    assert _opt_amp(_finished_run(default)) == (None, "off")  # a resume on CUDA resolves None to fp16 there


def test_amp_on_a_cpu_without_bf16_is_a_note_not_an_error(
    shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "_torch_cpu_flags", lambda: {"avx2"})
    result = _cli_train(shapes, tmp_path, "--amp")
    stderr = " ".join(result.stderr.split())
    assert "AMP off: this CPU has neither AMX-BF16 nor AVX-512 BF16" in stderr
    assert "Note: --amp is off on this machine" in stderr and "training in fp32" in stderr
    assert _opt_amp(_finished_run(result)) == (True, "off")  # asked for; a CPU with bf16 would use it


def test_a_resumed_run_keeps_its_amp_setting_unless_one_is_given(
    shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bf16_cpu: None
) -> None:
    original = train_build.CheckpointHook.after_epoch

    def crash_after_epoch_0(self, trainer, state):
        original(self, trainer, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_build.CheckpointHook, "after_epoch", crash_after_epoch_0)
    options = TrainOptions(
        data=str(shapes / "data.yaml"), cfg="yolor_csp_tiny", epochs=2, batch_size=4, img_size=64, workers=0,
        project=str(tmp_path), noval=True, amp=True,
    )  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        train(plan_training(options))
    monkeypatch.setattr(train_build.CheckpointHook, "after_epoch", original)
    last = tmp_path / "exp" / "weights" / "last.pt"
    assert plan_training(TrainOptions(amp=False), resume=True, last=last).options.amp is False  # given now: wins
    said: list[str] = []
    reporter = SilentReporter()
    reporter.info = said.append  # type: ignore[method-assign]
    train(plan_training(TrainOptions(), resume=True, last=last), reporter)  # no flag: the run's own setting
    assert "AMP: bf16 autocast (CPU has AVX-512 BF16; the resumed run's --amp)" in said  # the default is off
    assert _opt_amp(tmp_path / "exp") == (True, "bf16")


def test_a_resumed_run_resolves_its_request_on_the_device_it_lands_on() -> None:
    """An fp16 CUDA run without --amp, resumed on a bf16 CPU, trains in fp32 there: bf16 stays opt-in."""

    def point(saved: TrainOptions) -> train_run.ResumePoint:
        return train_run.ResumePoint(Path("last.pt"), checkpoint=None, options=saved, start_epoch=1, bests={})  # type: ignore[arg-type]

    notes: list[str] = []
    options, amp = train_build.amp(TrainOptions(), torch.device("cpu"), notes, point(TrainOptions(amp_mode="fp16")))
    assert (options.amp, options.amp_mode, amp.enabled) == (None, "off", False)
    options, amp = train_build.amp(TrainOptions(), torch.device("cpu"), notes, point(TrainOptions(amp=False)))
    assert (options.amp, amp.describe()) == (False, "AMP off: the resumed run's --no-amp")
