"""Structural pruning: the old scripts' figures, coupled layers, heads kept whole, and pruned
checkpoints that load with weights_only and behave like any other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from yolor_cli.engine.config import load_hyp
from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.model.bundled import load_cfg
from yolor_cli.engine.model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from yolor_cli.engine.model.darknet import build_model, count_parameters
from yolor_cli.engine.model.darknet.layers import ImplicitAdd
from yolor_cli.engine.model.loading import load_model
from yolor_cli.engine.prune.pruning import ChannelPruner, convs_between, pruned_cfg, rebuild
from yolor_cli.engine.prune.request import ConvTargets, GlobalTarget, PruneRequest
from yolor_cli.engine.prune.run import default_output, prune
from yolor_cli.engine.reporting import SilentReporter
from yolor_cli.engine.train.trainer import Trainer, TrainState


@pytest.fixture(scope="module")
def csp_nc1() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(load_cfg("yolor_csp"), nc=1)


def _fresh(model: torch.nn.Module) -> torch.nn.Module:
    copy = build_model(model.cfg)
    copy.load_state_dict(model.state_dict())
    return copy


def test_conv_22_at_0_4_gives_the_old_scripts_figures(csp_nc1: torch.nn.Module) -> None:
    model = _fresh(csp_nc1)
    assert count_parameters(model) == 52_497_868
    conv22, bn22, conv23 = (
        model.module_list[22].Conv2d.weight.numel(),
        model.module_list[22].BatchNorm2d.weight.numel(),
        model.module_list[23].Conv2d.weight.numel(),
    )
    change = ChannelPruner(model).prune_conv(22, 0.4)
    assert (change.before, change.after) == (128, 77)  # int(0.4 * 128) = 51 channels go
    assert count_parameters(model) == 52_432_486
    assert conv22 - model.module_list[22].Conv2d.weight.numel() == 6_528
    assert 2 * (bn22 - model.module_list[22].BatchNorm2d.weight.numel()) == 102  # weight and bias
    assert conv23 - model.module_list[23].Conv2d.weight.numel() == 58_752


def test_layers_upto_60_at_0_9_gives_the_old_scripts_figure(csp_nc1: torch.nn.Module) -> None:
    model = _fresh(csp_nc1)
    pruner = ChannelPruner(model)
    for index in convs_between(model, 0, 60):
        pruner.prune_conv(index, 0.9)
    assert count_parameters(model) == 43_633_847
    assert count_parameters(rebuild(model)) == 43_633_847  # the written-back cfg describes it exactly


def test_coupled_layers_follow_and_heads_stay_whole(tiny_model: torch.nn.Module) -> None:
    model = tiny_model.eval()
    params_before = count_parameters(model)
    head_outputs = [model.module_list[h.conv].Conv2d.out_channels for h in model.heads]
    implicit_before = [m.implicit.shape[1] for m in model.modules() if isinstance(m, ImplicitAdd)]
    pruner = ChannelPruner(model)
    for index in convs_between(model, 0, len(model.module_list)):
        pruner.prune_conv(index, 0.5)
    pruned = rebuild(model)
    assert [pruned.module_list[h.conv].Conv2d.out_channels for h in pruned.heads] == head_outputs
    implicit_after = [m.implicit.shape[1] for m in pruned.modules() if isinstance(m, ImplicitAdd)]
    assert all(a < b for a, b in zip(implicit_after, implicit_before))  # they shrank with their convs
    assert count_parameters(pruned) < 0.5 * params_before
    decoded, raw = pruned(torch.rand(1, 3, 64, 64))
    assert decoded.shape[-1] == 5 + 3 and [r.shape[1] for r in raw] == [3, 3, 3]
    # Module 4 is [shortcut] from=-3: convs 1 and 3 are added, so they were pruned as one group.
    assert pruned.module_list[4].sources == (1,)
    assert pruned.module_list[1].Conv2d.out_channels == pruned.module_list[3].Conv2d.out_channels


def test_pruned_checkpoint_round_trips_with_weights_only_and_trains(
    tiny_model: torch.nn.Module, tmp_path: Path
) -> None:
    source = tmp_path / "tiny.pt"
    save_checkpoint(Checkpoint(cfg=tiny_model.cfg, model_state=tiny_model.state_dict(), names=["a", "b", "c"]), source)
    result = prune(PruneRequest(source, ConvTargets((5, 9), amount=0.4), img_size=64, latency=False))
    assert result.output == tmp_path / "tiny_pruned.pt" and source.exists()
    assert default_output(source) == tmp_path / "tiny_pruned2.pt"  # never overwrites
    raw = torch.load(result.output, weights_only=True)
    assert raw["format"] == "yolor-cli"
    loaded = load_model(weights=result.output)
    assert loaded.names == ["a", "b", "c"] and count_parameters(loaded.model) == result.after.params
    in_memory = ChannelPruner(_fresh(tiny_model))
    for index in (5, 9):
        in_memory.prune_conv(index, 0.4)
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():  # the file gives exactly the model that was pruned in memory
        torch.testing.assert_close(loaded.model.eval()(image)[0], in_memory.model.eval()(image)[0], rtol=0, atol=0)
    model = loaded.model.train()
    trainer = Trainer(
        model,
        load_hyp(),
        [None] * 4,
        epochs=1,
        batch_size=2,
        nominal_batch_size=2,  # type: ignore[arg-type]
        device=torch.device("cpu"),
        img_size=64,
        reporter=SilentReporter(),
    )
    targets = torch.tensor([[0, 1, 0.5, 0.5, 0.3, 0.3], [1, 0, 0.4, 0.4, 0.2, 0.5]])
    items = trainer.run_step(torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8), targets, TrainState(0, 1))
    assert torch.isfinite(items).all()
    assert (
        load_checkpoint(result.output).cfg.layers[5].options["filters"] != tiny_model.cfg.layers[5].options["filters"]
    )


def test_errors_for_non_convs_heads_and_amounts(tiny_model: torch.nn.Module) -> None:
    pruner = ChannelPruner(tiny_model)
    route = next(i for i, s in enumerate(tiny_model.cfg.layers) if s.type == "route")
    with pytest.raises(YolorError, match="not a convolution"):
        pruner.prune_conv(route, 0.4)
    with pytest.raises(YolorError, match="detection head"):
        pruner.prune_conv(tiny_model.heads[0].conv, 0.4)
    with pytest.raises(YolorError, match="does not exist"):
        pruner.prune_conv(10_000, 0.4)
    for amount in (0.0, 1.0, 1.5):
        with pytest.raises(YolorError, match="outside"):
            pruner.prune_conv(1, amount)


def test_cli_prune_conv_json_and_dry_run(tiny_model: torch.nn.Module, tmp_path: Path) -> None:
    from tests.test_cli import invoke

    source = tmp_path / "tiny.pt"
    save_checkpoint(Checkpoint(cfg=tiny_model.cfg, model_state=tiny_model.state_dict()), source)
    result = invoke("prune", "conv", "-w", str(source), "--layer", "5", "--img-size", "64", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["output"] is None and payload["params_after"] < payload["params_before"]
    assert {"macs_before", "macs_after", "latency_ms_before", "latency_ms_after"} <= payload.keys()
    assert not (tmp_path / "tiny_pruned.pt").exists()
    result = invoke(
        "prune", "layers", "-w", str(source), "--upto", "20", "--amount", "0.5", "--img-size", "64", "--json"
    )
    assert result.exit_code == 0 and (tmp_path / "tiny_pruned.pt").exists()
    pruned_params = json.loads(result.stdout)["params_after"]
    info = invoke("info", "--weights", str(tmp_path / "tiny_pruned.pt"), "--json")  # no extra flags needed
    assert info.exit_code == 0 and json.loads(info.stdout)["params"] == pruned_params
    table = invoke("prune", "conv", "-w", str(source), "--layer", "5", "--img-size", "64", "--no-latency")
    assert table.exit_code == 0 and "Params" in table.stdout and (tmp_path / "tiny_pruned2.pt").exists()
    result = invoke("prune", "conv", "-w", str(source), "--layer", "5", "--amount", "1.2")
    assert result.exit_code == 1 and "outside (0, 1)" in result.stderr


def test_global_pruning_reaches_the_macs_target_and_keeps_heads(tiny_model: torch.nn.Module, tmp_path: Path) -> None:
    from tests.test_cli import invoke

    source = tmp_path / "tiny.pt"
    save_checkpoint(Checkpoint(cfg=tiny_model.cfg, model_state=tiny_model.state_dict()), source)
    result = invoke("prune", "global", "-w", str(source), "--target-macs", "0.5", "--img-size", "64", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert 0.475 <= payload["macs_after"] / payload["macs_before"] <= 0.525  # within 5 % of the target
    pruned = load_model(weights=payload["output"]).model
    assert [pruned.module_list[h.conv].Conv2d.out_channels for h in pruned.heads] == [24, 24, 24]
    with torch.no_grad():  # trained BatchNorm scales differ; fresh ones are all 1 and rank nothing
        for module in tiny_model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.1, 1.0)
    save_checkpoint(Checkpoint(cfg=tiny_model.cfg, model_state=tiny_model.state_dict()), source)
    result = invoke(
        "prune",
        "global",
        "-w",
        str(source),
        "--ratio",
        "0.3",
        "--method",
        "bn",
        "--dry-run",
        "--json",
        "--img-size",
        "64",
        "--no-latency",
    )
    assert (
        result.exit_code == 0 and json.loads(result.stdout)["params_after"] < json.loads(result.stdout)["params_before"]
    )
    result = invoke("prune", "global", "-w", str(source), "--ratio", "0.3", "--target-macs", "0.5")
    assert result.exit_code == 1 and "exactly one" in result.stderr


def _tiny_variant(change) -> torch.nn.Module:
    cfg = load_cfg("yolor_csp_tiny")
    change(cfg.layers)
    torch.manual_seed(0)
    return build_model(cfg, nc=3)


def _save(model: torch.nn.Module, path: Path) -> Path:
    save_checkpoint(Checkpoint(cfg=model.cfg, model_state=model.state_dict()), path)
    return path


@pytest.mark.parametrize("target", [0.05, 0.8, 0.97])
def test_global_targets_land_within_5_percent(tiny_model: torch.nn.Module, tmp_path: Path, target: float) -> None:
    source = _save(tiny_model, tmp_path / "t.pt")
    result = prune(PruneRequest(source, GlobalTarget(target_macs=target), img_size=64, latency=False, dry_run=True))
    assert abs(result.after.macs / result.before.macs / target - 1) <= 0.05
    assert not {c.module for c in result.changes} & {h.conv for h in tiny_model.heads}  # heads stay whole


def test_global_errors_name_the_right_option(tiny_model: torch.nn.Module, tmp_path: Path) -> None:
    source = _save(tiny_model, tmp_path / "t.pt")
    with pytest.raises(YolorError, match="exactly one of --target-macs and --ratio"):
        GlobalTarget()
    with pytest.raises(YolorError, match="--target-macs 1.5 is outside"):
        GlobalTarget(target_macs=1.5)
    with pytest.raises(YolorError, match=r"--ratio 0.99 is outside \(0, 0.9\]"):
        GlobalTarget(ratio=0.99)
    with pytest.raises(YolorError, match="cannot be reached within 5 %"):
        prune(PruneRequest(source, GlobalTarget(target_macs=0.001), img_size=64, latency=False, dry_run=True))
    for target in (GlobalTarget(target_macs=0.5), GlobalTarget(ratio=0.3)):  # fresh BatchNorm scales rank nothing
        with pytest.raises(YolorError, match="every BatchNorm scale of the model is equal"):
            prune(PruneRequest(source, target, method="bn", img_size=64, latency=False, dry_run=True))


def test_weighted_shortcuts_and_depthwise_convs_prune_and_round_trip(tmp_path: Path) -> None:
    def weighted_and_depthwise(layers) -> None:
        layers[4].options["weights_type"] = "feature"  # the shortcut after convs 1 and 3
        layers[10].options["groups"] = "32"  # conv 10 (32 -> 32, 3x3) becomes depthwise

    model = _tiny_variant(weighted_and_depthwise)
    source = _save(model, tmp_path / "w.pt")
    result = prune(PruneRequest(source, ConvTargets((1, 9), amount=0.5), img_size=64, latency=False))
    changed = {c.module: (c.before, c.after) for c in result.changes}
    assert changed[1] == (32, 16) and changed[3] == (32, 16)  # shortcut partners follow, through weights
    assert changed[9] == (32, 16) and changed[10] == (32, 16)  # the depthwise conv follows its input
    rebuilt = load_model(weights=result.output).model
    assert rebuilt.module_list[10].Conv2d.groups == 16 and rebuilt.cfg.layers[10].options["groups"] == "16"
    global_result = prune(
        PruneRequest(source, GlobalTarget(ratio=0.3), img_size=64, latency=False, output=tmp_path / "g.pt")
    )
    assert global_result.after.params < global_result.before.params
    assert count_parameters(load_model(weights=global_result.output).model) == global_result.after.params


def test_the_pruned_cfg_rewrites_exactly_the_pruned_widths() -> None:
    def weighted_and_depthwise(layers) -> None:
        layers[4].options["weights_type"] = "feature"
        layers[10].options["groups"] = "32"

    model = _tiny_variant(weighted_and_depthwise)
    original = model.cfg.copy()
    pruner = ChannelPruner(model)
    for index in (1, 9, 83):  # 83 feeds the [shift_channels] of implicit layer 76
        pruner.prune_conv(index, 0.5)
    cfg = pruned_cfg(model)
    changed = {
        (index, key, original.layers[index].options.get(key), value)
        for index, section in enumerate(cfg.layers)
        for key, value in section.options.items()
        if original.layers[index].options.get(key) != value
    }
    assert changed == {
        (1, "filters", "32", "16"),
        (3, "filters", "32", "16"),  # its shortcut partner
        (8, "filters", "32", "16"),
        (9, "filters", "32", "16"),
        (10, "filters", "32", "16"),
        (10, "groups", "32", "16"),  # the depthwise conv keeps one group per channel
        (76, "filters", "64", "32"),  # the implicit layer follows conv 83
        (83, "filters", "64", "32"),
    }
    assert [list(s.options) for s in cfg.layers] == [list(s.options) for s in original.layers]  # no key added


def test_grouped_convs_are_left_to_global_pruning(tmp_path: Path) -> None:
    def grouped(layers) -> None:
        layers[10].options["groups"] = "2"

    source = _save(_tiny_variant(grouped), tmp_path / "g.pt")
    with pytest.raises(YolorError, match="grouped conv .groups=2.") as caught:
        prune(PruneRequest(source, ConvTargets((9,), amount=0.5), img_size=64, latency=False))
    assert "prune global" in (caught.value.hint or "")
    result = prune(
        PruneRequest(source, GlobalTarget(ratio=0.3), img_size=64, latency=False, output=tmp_path / "out.pt")
    )
    rebuilt = load_model(weights=result.output).model
    assert rebuilt.module_list[10].Conv2d.groups == 2 and rebuilt.cfg.layers[10].options["groups"] == "2"


def test_shortcuts_of_unequal_widths_are_refused(tmp_path: Path) -> None:
    def widen(layers) -> None:
        layers[3].options["filters"] = "48"  # shortcut 4 now adds 48 and 32 channels

    source = _save(_tiny_variant(widen), tmp_path / "m.pt")
    for target in (ConvTargets((1,), amount=0.5), GlobalTarget(ratio=0.3)):
        with pytest.raises(YolorError, match="adds layers of different widths"):
            prune(PruneRequest(source, target, img_size=64, latency=False))


def test_cli_prune_guards(tiny_model: torch.nn.Module, tmp_path: Path) -> None:
    from tests.test_cli import invoke

    source = _save(tiny_model, tmp_path / "t.pt")
    common = ["--img-size", "64", "--no-latency", "--json"]
    (tmp_path / "out.pt").write_bytes(b"keep me")
    result = invoke("prune", "conv", "-w", str(source), "--layer", "5", "-o", str(tmp_path / "out.pt"), *common)
    assert result.exit_code == 1 and "--overwrite" in result.stderr
    assert (tmp_path / "out.pt").read_bytes() == b"keep me"
    result = invoke(
        "prune", "conv", "-w", str(source), "--layer", "5", "-o", str(tmp_path / "out.pt"), "--overwrite", *common
    )
    assert result.exit_code == 0, result.output
    written = load_model(weights=tmp_path / "out.pt").model  # the pruned model replaced the old bytes
    payload = json.loads(result.stdout)
    assert count_parameters(written) == payload["params_after"]
    widths = {change["module"]: change["after"] for change in payload["layers"]}
    assert written.module_list[5].Conv2d.out_channels == widths[5] == 64 - int(0.4 * 64)  # the default --amount
    result = invoke("prune", "conv", "-w", str(source), "--layer", "5", "--layer", "5", *common)
    assert result.exit_code == 1 and "given more than once" in result.stderr
    result = invoke("prune", "conv", "-w", str(source), "--layer", "5", "--amount", "0.01", *common)
    assert result.exit_code == 1 and "nothing was pruned" in result.stderr
    result = invoke("prune", "conv", "-w", str(source), "--layer", "5", "--method", "bn", *common)
    assert result.exit_code == 1 and "all equal" in result.stderr
    result = invoke("prune", "layers", "-w", str(source), "--upto", "500", "--dry-run", *common)
    assert result.exit_code == 0 and "past the last module" in " ".join(result.stderr.split())
    payload = json.loads(result.stdout)
    assert isinstance(payload["macs_before"], int) and len(payload["layers"]) > 10
    result = invoke("prune", "global", "-w", str(source), *common)
    assert result.exit_code == 1 and "exactly one of --target-macs and --ratio" in result.stderr


def test_batch_norm_statistics_are_re_estimated_on_the_batches_given(tiny_model: torch.nn.Module) -> None:
    from yolor_cli.engine.prune.pruning import prune_global, rebuild, recalibrate_batch_norms
    from yolor_cli.engine.prune.request import GlobalTarget

    pruned = rebuild(prune_global(_fresh(tiny_model), GlobalTarget(target_macs=0.6))).eval()
    norms = [m for m in pruned.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    torch.manual_seed(0)
    batch = torch.rand(8, 3, 128, 128)  # big enough maps that unbiased and biased variance agree

    def outputs(statistics: str) -> torch.Tensor:
        """Raw head maps, BatchNorm reading the batch's own statistics ("batch") or the running ones."""
        saved = [(n.running_mean.clone(), n.running_var.clone(), n.num_batches_tracked.clone()) for n in norms]
        pruned.train()
        for norm in norms:
            norm.train(statistics == "batch")
        with torch.no_grad():
            out = pruned(batch)[0]
        for norm, (mean, var, count) in zip(norms, saved):  # a train-mode pass moved them: put them back
            norm.running_mean.copy_(mean), norm.running_var.copy_(var), norm.num_batches_tracked.copy_(count)
        pruned.eval()
        return out

    target = outputs("batch")
    stale = (outputs("running") - target).abs().mean()
    weights = {k: v.clone() for k, v in pruned.state_dict().items() if "running" not in k and "tracked" not in k}
    recalibrate_batch_norms(pruned, [batch])
    assert not pruned.training and all(norm.momentum == 0.03 for norm in norms)  # mode and momentum restored
    assert all(torch.equal(v, pruned.state_dict()[k]) for k, v in weights.items())  # weights untouched
    fresh = (outputs("running") - target).abs().mean()
    # the running statistics are now the batch's (up to unbiased against biased variance on small maps)
    assert fresh < 0.2 * stale, (float(fresh), float(stale))
