"""The AMP mode a run gets (fp16 with a scaler on CUDA, bf16 on a CPU with bf16 hardware, else fp32),
and the precision inference runs in."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from yolor_cli.engine import runtime
from yolor_cli.engine.runtime import cpu_bf16_feature, resolve_amp, resolve_inference_precision

CPU = torch.device("cpu")


def _torch_sees(monkeypatch: pytest.MonkeyPatch, flags: set[str] | None) -> None:
    monkeypatch.setattr(runtime, "_torch_cpu_flags", lambda: flags)


@pytest.mark.parametrize(
    ("flags", "feature"),
    [({"amx_bf16", "avx512_bf16"}, "AMX-BF16"), ({"avx512_bf16", "avx512f"}, "AVX-512 BF16"), ({"avx512f"}, None)],
)
def test_the_bf16_feature_is_read_from_torchs_probe(
    monkeypatch: pytest.MonkeyPatch, flags: set[str], feature: str | None
) -> None:
    _torch_sees(monkeypatch, flags)
    assert cpu_bf16_feature() == feature


def test_without_torchs_probe_the_cpuinfo_flags_decide(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _torch_sees(monkeypatch, None)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16\n\nprocessor\t: 1\nflags\t: fpu\n")
    monkeypatch.setattr(runtime, "CPUINFO", cpuinfo)
    assert cpu_bf16_feature() == "AVX-512 BF16"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2\n")
    assert cpu_bf16_feature() is None
    monkeypatch.setattr(runtime, "CPUINFO", tmp_path / "absent")  # macOS, or a sandbox without /proc
    assert cpu_bf16_feature() is None


def test_a_cpu_with_bf16_hardware_trains_in_bf16_without_a_scaler_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    _torch_sees(monkeypatch, {"amx_bf16"})
    amp = resolve_amp(CPU, True)
    assert (amp.dtype, amp.scaler, amp.enabled) == (torch.bfloat16, False, True)
    assert amp.describe() == "AMP: bf16 autocast (CPU has AMX-BF16)"
    default = resolve_amp(CPU)  # opt-in: not yet shown to train the demo as well as fp32
    assert (default.enabled, default.scaler) == (False, False)
    assert default.describe() == "AMP off: bf16 on a CPU is opt-in; --amp turns it on (this CPU has AMX-BF16)"
    off = resolve_amp(CPU, False)
    assert (off.enabled, off.scaler, off.describe()) == (False, False, "AMP off: --no-amp")


def test_a_cpu_without_bf16_hardware_trains_in_fp32_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    _torch_sees(monkeypatch, {"avx2"})
    for requested in (None, True, False):
        assert not resolve_amp(CPU, requested).enabled
    assert resolve_amp(CPU).describe() == (
        "AMP off: this CPU has neither AMX-BF16 nor AVX-512 BF16, without which bf16 is slower"
    )


def test_cuda_keeps_fp16_with_the_grad_scaler(monkeypatch: pytest.MonkeyPatch) -> None:
    _torch_sees(monkeypatch, {"amx_bf16"})  # the CPU's features do not matter for a GPU
    amp = resolve_amp(torch.device("cuda:0"))
    assert (amp.dtype, amp.scaler) == (torch.float16, True)
    assert amp.describe() == "AMP: fp16 autocast with gradient scaling (CUDA)"
    assert not resolve_amp(torch.device("cuda:0"), False).enabled
    assert not resolve_amp(torch.device("meta")).enabled  # no autocast path for other device types


# ---- inference precision --------------------------------------------------------------------------


def test_inference_on_a_cpu_with_bf16_hardware_is_bf16_unless_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _torch_sees(monkeypatch, {"avx512_bf16"})
    auto = resolve_inference_precision(CPU, None)
    assert (auto.dtype, auto.name, auto.note) == (torch.bfloat16, "bf16", None)
    assert auto.describe() == "bf16 (CPU has AVX-512 BF16; --no-half for fp32)"
    asked = resolve_inference_precision(CPU, True)
    assert (asked.name, asked.reason, asked.note) == ("bf16", "CPU has AVX-512 BF16, --half", None)
    refused = resolve_inference_precision(CPU, False)
    assert (refused.dtype, refused.describe()) == (torch.float32, "fp32 (--no-half)")


def test_inference_on_a_cpu_without_bf16_hardware_is_fp32_and_half_is_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    _torch_sees(monkeypatch, {"avx2", "avx512f"})
    auto = resolve_inference_precision(CPU, None)
    assert (auto.name, auto.note) == ("fp32", None)
    assert "AMX-BF16" in auto.reason and "AVX-512 BF16" in auto.reason  # names what is missing
    asked = resolve_inference_precision(CPU, True)  # not an error: a script passing --half runs anywhere
    assert asked.name == "fp32" and asked.reason.startswith("--half ignored")
    assert asked.note is not None and "--half is ignored" in asked.note and "fp32" in asked.note
    assert resolve_inference_precision(CPU, False).name == "fp32"


def test_inference_on_cuda_keeps_fp16_as_an_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    _torch_sees(monkeypatch, {"amx_bf16"})  # the CPU's features do not matter for a GPU
    gpu = torch.device("cuda:0")
    assert resolve_inference_precision(gpu, True).dtype == torch.float16
    assert resolve_inference_precision(gpu, None).dtype == torch.float32
    assert resolve_inference_precision(gpu, False).dtype == torch.float32
    for requested in (None, True):
        assert resolve_inference_precision(torch.device("meta"), requested).name == "fp32"


def test_channels_last_converts_convolution_weights_and_gradients_keep_every_parameters_strides(
    tiny_model: torch.nn.Module,
) -> None:
    """DDP's gradient buckets take each parameter's strides: a parameter whose gradient comes back with
    other strides makes it warn ("Grad strides do not match bucket view strides") and copy. The
    implicit (1, C, 1, 1) vectors' gradients are contiguous, so only convolution weights go channels-last;
    a model converted whole before is put right."""
    model = runtime.channels_last(tiny_model.to(memory_format=torch.channels_last), torch.device("cpu")).train()
    convs = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    implicit = [p for name, p in model.named_parameters() if name.endswith("implicit")]
    assert convs and implicit
    assert all(w.stride()[1] == 1 for w in convs if w.shape[1] > 1)  # channels innermost
    assert all(p.stride() == (p.shape[1], 1, 1, 1) for p in implicit)
    images = torch.rand(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    sum(p.sum() for p in model(images)).backward()
    mismatched = [n for n, p in model.named_parameters() if p.grad is not None and p.grad.stride() != p.stride()]
    assert mismatched == []
