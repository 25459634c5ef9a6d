"""Optimiser groups, schedule, warmup and EMA."""

from __future__ import annotations

import pytest
import torch

from yolor_cli.engine.config import load_hyp
from yolor_cli.engine.model.bundled import load_cfg
from yolor_cli.engine.model.darknet import build_model
from yolor_cli.engine.train.optim import ModelEMA, Warmup, accumulation_steps, build_optimizer, cosine_lambda


def test_every_parameter_is_in_exactly_one_group_with_the_right_decay() -> None:
    model = build_model(load_cfg("yolor_csp_tiny"), nc=3)
    optimizer = build_optimizer(model, load_hyp(), batch_size=16)
    groups = [{id(p) for p in group["params"]} for group in optimizer.param_groups]
    assert sum(map(len, groups)) == len(list(model.parameters()))
    assert not (groups[0] & groups[1]) and not (groups[1] & groups[2]) and not (groups[0] & groups[2])
    implicit = {id(m.implicit) for m in model.modules() if hasattr(m, "implicit")}
    assert implicit and implicit <= groups[0]
    assert optimizer.param_groups[0]["weight_decay"] == 0 and optimizer.param_groups[2]["weight_decay"] == 0
    # 16 x 4 accumulated = the nominal 64: decay unchanged.
    assert optimizer.param_groups[1]["weight_decay"] == pytest.approx(load_hyp().weight_decay)
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.param_groups[0]["nesterov"]
    assert isinstance(build_optimizer(model, load_hyp(), batch_size=16, optimizer="adam"), torch.optim.Adam)
    adamw = build_optimizer(model, load_hyp(), batch_size=16, optimizer="adamw")
    assert isinstance(adamw, torch.optim.AdamW)  # and AdamW's default decay (0.01) is kept off groups 0 and 2:
    assert [group["weight_decay"] for group in adamw.param_groups] == pytest.approx([0, load_hyp().weight_decay, 0])


def test_cosine_schedule_runs_from_one_to_lrf() -> None:
    factor = cosine_lambda(epochs=10, lrf=0.2)
    assert factor(0) == pytest.approx(1.0) and factor(10) == pytest.approx(0.2) and factor(5) == pytest.approx(0.6)


def test_warmup_ramps_accumulation_learning_rate_and_momentum() -> None:
    hyp = load_hyp()
    assert accumulation_steps(16) == 4 and accumulation_steps(128) == 1
    warmup = Warmup.for_run(hyp, batches_per_epoch=10, epochs=50, batch_size=16)
    assert warmup.iterations == 100  # 3 warmup epochs x 10 batches < the minimum of 100
    assert warmup.accumulate(0) == 1 and warmup.accumulate(100) == 4
    short = Warmup.for_run(hyp, batches_per_epoch=2, epochs=5, batch_size=16)
    assert short.iterations == 5  # never more than half the run
    model = build_model(load_cfg("yolor_csp_tiny"), nc=3)
    optimizer = build_optimizer(model, hyp, batch_size=16)
    for group in optimizer.param_groups:
        group["initial_lr"] = hyp.lr0
    warmup.apply(optimizer, 0, epoch_factor=1.0)
    assert optimizer.param_groups[0]["lr"] == 0 and optimizer.param_groups[2]["lr"] == hyp.warmup_bias_lr
    assert optimizer.param_groups[0]["momentum"] == pytest.approx(hyp.warmup_momentum)
    warmup.apply(optimizer, 50, epoch_factor=1.0)
    assert optimizer.param_groups[1]["lr"] == pytest.approx(hyp.lr0 / 2)


def test_ema_follows_the_model_with_a_ramped_decay() -> None:
    model = build_model(load_cfg("yolor_csp_tiny"), nc=1)
    ema = ModelEMA(model)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    ema.update(model)
    decay = ema.decay()
    assert 0 < decay < 0.001  # first update: the EMA nearly copies the model
    weight = "module_list.0.Conv2d.weight"
    expected = model.state_dict()[weight] - decay  # ema = d * (w - 1) + (1 - d) * w
    torch.testing.assert_close(ema.ema.state_dict()[weight], expected)
    assert not any(p.requires_grad for p in ema.ema.parameters())


def test_adamw_decay_is_decoupled_from_the_gradient() -> None:
    """With zero gradients AdamW shrinks the decayed group by lr x decay and leaves the others alone;
    Adam adds the decay to the gradient, which its normalisation turns into a step of about lr."""
    hyp = load_hyp()
    weight = "module_list.0.Conv2d.weight"
    after = {}
    for name in ("adamw", "adam"):
        torch.manual_seed(0)
        model = build_model(load_cfg("yolor_csp_tiny"), nc=3)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        optimizer = build_optimizer(model, hyp, batch_size=64, optimizer=name)
        for parameter in model.parameters():
            parameter.grad = torch.zeros_like(parameter)
        optimizer.step()
        after[name] = model.state_dict()
    decayed = before[weight] * (1 - hyp.lr0 * hyp.weight_decay)
    torch.testing.assert_close(after["adamw"][weight], decayed)
    bias = next(k for k in before if k.endswith(".bias"))
    torch.testing.assert_close(after["adamw"][bias], before[bias])  # no decay on biases
    coupled_step = (before[weight] - after["adam"][weight]).abs().max().item()
    assert coupled_step == pytest.approx(hyp.lr0, rel=1e-3)  # Adam: the decay gradient normalised to ~lr
