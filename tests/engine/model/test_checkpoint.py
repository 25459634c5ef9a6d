"""Checkpoints: our format round-trips safely; official files import; bad files fail clearly."""

from __future__ import annotations

import os
import pickletools
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from yolor_cli.engine.errors import CheckpointError
from yolor_cli.engine.model import checkpoint as checkpoint_module
from yolor_cli.engine.model.bundled import load_cfg
from yolor_cli.engine.model.checkpoint import (
    Checkpoint,
    load_checkpoint,
    load_state,
    model_from_checkpoint,
    save_checkpoint,
)
from yolor_cli.engine.model.darknet import DarknetModel, build_model, write_cfg


def _official_file(path: Path, model: DarknetModel) -> Path:
    """What the official train.py writes: numpy fitness values beside a Darknet state_dict."""
    torch.save(
        {
            "epoch": 7,
            "best_fitness": np.array([0.41]),
            "best_fitness_p": np.float64(0.2),
            "training_results": "0/9 ...",
            "model": model.state_dict(),
            "optimizer": None,
            "wandb_id": None,
        },
        path,
    )
    return path


def _as_numpy1_pickle(path: Path) -> None:
    """Rename numpy 2's module path to numpy 1's inside the pickle, as older official files have it."""
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    for name in entries:
        if name.endswith("data.pkl"):
            assert b"numpy._core.multiarray" in entries[name]
            entries[name] = entries[name].replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)


def _outputs(model: DarknetModel) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)))[0]


def test_our_checkpoint_round_trips_with_weights_only(tmp_path: Path, tiny_model: DarknetModel) -> None:
    ckpt = Checkpoint(
        cfg=tiny_model.cfg,
        model_state=tiny_model.state_dict(),
        names=["a", "b", "c"],
        epoch=4,
        fitness=0.5,
        train_options={"epochs": 10},
    )
    path = save_checkpoint(ckpt, tmp_path / "run" / "last.pt")
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "yolor-cli" and raw["nc"] == 3 and raw["cfg"] == write_cfg(tiny_model.cfg)
    loaded = load_checkpoint(path)
    assert (loaded.names, loaded.epoch, loaded.fitness, loaded.nc) == (["a", "b", "c"], 4, 0.5, 3)
    torch.testing.assert_close(_outputs(model_from_checkpoint(loaded)), _outputs(tiny_model))
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temp files left behind


def test_a_failed_save_keeps_the_previous_file(
    tmp_path: Path, tiny_model: DarknetModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_checkpoint(Checkpoint(cfg=tiny_model.cfg, model_state=tiny_model.state_dict()), tmp_path / "a.pt")
    before = path.read_bytes()

    def crash(obj, stream):
        stream.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint_module.torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(Checkpoint(cfg=tiny_model.cfg, model_state=tiny_model.state_dict()), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]


@pytest.mark.parametrize("numpy1", [False, True])
def test_official_checkpoint_imports_and_takes_nc_from_the_head(tmp_path: Path, numpy1: bool) -> None:
    official = build_model(load_cfg("yolor_csp_tiny"), nc=1)
    path = _official_file(tmp_path / "best.pt", official)
    if numpy1:
        _as_numpy1_pickle(path)
    ckpt = load_checkpoint(path, load_cfg("yolor_csp_tiny"))
    assert ckpt.nc == 1 and ckpt.epoch == 7 and ckpt.origin == "official YOLOR"
    assert any("1 class (18 head outputs)" in note for note in ckpt.notes)
    torch.testing.assert_close(_outputs(model_from_checkpoint(ckpt)), _outputs(official))


def test_official_checkpoint_needs_a_cfg(tmp_path: Path, tiny_model: DarknetModel) -> None:
    with pytest.raises(CheckpointError, match="does not record its cfg"):
        load_checkpoint(_official_file(tmp_path / "x.pt", tiny_model))


def test_bare_state_dict_loads_with_a_cfg(tmp_path: Path, tiny_model: DarknetModel) -> None:
    torch.save(tiny_model.state_dict(), tmp_path / "sd.pt")
    assert load_checkpoint(tmp_path / "sd.pt", load_cfg("yolor_csp_tiny")).nc == 3


def test_pruned_state_dict_adapts_the_cfg_channel_counts(tmp_path: Path) -> None:
    cfg = load_cfg("yolor_csp_tiny")
    narrower = cfg.copy()
    narrower.layers[2].options["filters"] = "10"  # conv 2 feeds a 3x3 conv; like a pruned layer
    pruned = build_model(narrower)
    torch.save({"model": pruned.state_dict()}, tmp_path / "pruned.pt")
    ckpt = load_checkpoint(tmp_path / "pruned.pt", cfg)
    assert ckpt.cfg.layers[2].options["filters"] == "10"
    assert any("pruned" in note for note in ckpt.notes)
    torch.testing.assert_close(_outputs(model_from_checkpoint(ckpt)), _outputs(pruned))


def test_pickled_modules_are_refused_unless_trusted(tmp_path: Path, tiny_model: DarknetModel) -> None:
    path = tmp_path / "whole_model.pt"
    torch.save({"model": tiny_model}, path)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path, load_cfg("yolor_csp_tiny"))
    assert "DarknetModel" in caught.value.message and "--trust-pickle" in caught.value.hint
    trusted = load_checkpoint(path, load_cfg("yolor_csp_tiny"), trust_pickle=True)
    assert trusted.nc == 3


class _Hostile:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def test_hostile_pickles_never_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    torch.save({"model": _Hostile()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(tmp_path / "evil.pt", load_cfg("yolor_csp_tiny"))
    assert not (tmp_path / "pwned.txt").exists()
    # said for what it is: not an old script's model, and --trust-pickle is not offered
    assert caught.value.message.startswith(f"{tmp_path / 'evil.pt'} asks to run posix.system when it is loaded")
    assert "would run code" in caught.value.message
    assert "pruning script" not in str(caught.value) and "--trust-pickle" not in str(caught.value)


class _Evaluating:
    def __reduce__(self):
        return (eval, ("1 + 1",))


class _Spawning:
    def __reduce__(self):
        import subprocess

        return (subprocess.call, (["true"],))


# torch.save pickles with protocol 2, which names subprocess.call by its Python 2 module, commands
@pytest.mark.parametrize(("hostile", "name"), [(_Evaluating, "builtins.eval"), (_Spawning, "commands.call")])
def test_pickles_that_call_the_interpreter_or_a_shell_are_named(tmp_path: Path, hostile: type, name: str) -> None:
    torch.save({"model": hostile()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(tmp_path / "evil.pt", trust_pickle=False)
    assert f"asks to run {name} when it is loaded" in caught.value.message
    assert "--trust-pickle" not in str(caught.value)


class _Fetching:
    def __reduce__(self):
        return (torch.hub.load, ("someone/repo", "model"))


class _NumpyRunning:
    def __reduce__(self):
        from numpy.testing._private.utils import runstring

        return (runstring, ("1 + 1", {}))


# Functions inside torch and numpy fetch or run code too: they are no old script's model classes.
@pytest.mark.parametrize(
    ("hostile", "name"),
    [(_Fetching, "torch.hub.load"), (_NumpyRunning, "numpy.testing._private.utils.runstring")],
)
def test_pickles_that_call_torch_or_numpy_functions_are_named(tmp_path: Path, hostile: type, name: str) -> None:
    torch.save({"model": hostile()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(tmp_path / "evil.pt", trust_pickle=False)
    assert f"asks to run {name} when it is loaded" in caught.value.message
    assert "pruning script" not in str(caught.value) and "--trust-pickle" not in str(caught.value)


def test_a_pickled_torch_model_still_gets_the_trust_hint(tmp_path: Path) -> None:
    torch.save({"model": torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.SiLU())}, tmp_path / "m.pt")
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(tmp_path / "m.pt", trust_pickle=False)
    assert "torch.nn.modules" in caught.value.message and "--trust-pickle" in (caught.value.hint or "")


def test_a_dict_of_tensors_with_foreign_keys_is_not_called_official(tmp_path: Path) -> None:
    torch.save({"a": torch.zeros(2), "b": torch.ones(1)}, tmp_path / "dict.pt")
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(tmp_path / "dict.pt")
    assert "official" not in caught.value.message.split("(")[1]  # the message names what was found instead
    assert "is not a checkpoint this tool knows" in caught.value.message
    assert "with top-level keys a, b" in caught.value.message


def test_a_torchscript_file_renamed_pt_is_named(tmp_path: Path, tiny_model: DarknetModel) -> None:
    scripted = torch.jit.script(torch.nn.Linear(2, 2))
    torch.jit.save(scripted, str(tmp_path / "model.pt"))
    for trust in (False, True):
        with pytest.raises(CheckpointError) as caught:
            load_checkpoint(tmp_path / "model.pt", trust_pickle=trust)
        assert caught.value.message == f"{tmp_path / 'model.pt'} is a TorchScript file, not a checkpoint"
        assert caught.value.hint and ".torchscript" in caught.value.hint and "weights_only" not in str(caught.value)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04broken zip"])
def test_damaged_files_fail_clearly(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "bad.pt").write_bytes(content)
    with pytest.raises(CheckpointError, match="damaged or not a PyTorch checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")


def test_truncated_checkpoint_fails_clearly(tmp_path: Path, tiny_model: DarknetModel) -> None:
    path = save_checkpoint(Checkpoint(cfg=tiny_model.cfg, model_state=tiny_model.state_dict()), tmp_path / "a.pt")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(path)


def test_missing_file_and_foreign_content(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
    torch.save({"weights": [1, 2, 3]}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a checkpoint this tool knows"):
        load_checkpoint(tmp_path / "other.pt")


def test_newer_format_is_refused(tmp_path: Path, tiny_model: DarknetModel) -> None:
    path = save_checkpoint(Checkpoint(cfg=tiny_model.cfg, model_state=tiny_model.state_dict()), tmp_path / "a.pt")
    raw = torch.load(path, weights_only=True)
    raw["format_version"] = 99
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="newer yolor-cli"):
        load_checkpoint(path)


def test_mismatched_weights_list_missing_unexpected_and_misshaped_keys(tiny_model: DarknetModel) -> None:
    state = dict(tiny_model.state_dict())
    state.pop("module_list.0.Conv2d.weight")
    state["module_list.999.extra"] = torch.zeros(1)
    state["module_list.1.Conv2d.weight"] = torch.zeros(1, 1, 1, 1)
    with pytest.raises(CheckpointError) as caught:
        load_state(tiny_model, state, "w.pt")
    message = caught.value.message
    assert "1 missing: module_list.0.Conv2d.weight" in message
    assert "1 unexpected: module_list.999.extra" in message
    assert "module_list.1.Conv2d.weight (1, 1, 1, 1) vs (32, 16, 3, 3)" in message


def test_weights_from_another_architecture_are_reported(tmp_path: Path) -> None:
    csp = build_model(load_cfg("yolor_csp_tiny"))
    torch.save({"model": csp.state_dict()}, tmp_path / "tiny.pt")
    with torch.device("meta"):
        ckpt = load_checkpoint(tmp_path / "tiny.pt", load_cfg("yolov4_csp"))
    with pytest.raises(CheckpointError, match="do not fit the model"), torch.device("meta"):
        model_from_checkpoint(ckpt, "tiny.pt")


def test_checkpoint_pickle_references_only_torch_and_collections(tmp_path: Path, tiny_model: DarknetModel) -> None:
    ckpt = Checkpoint(cfg=tiny_model.cfg, model_state=tiny_model.state_dict(), ema_state=tiny_model.state_dict())
    path = save_checkpoint(ckpt, tmp_path / "a.pt")
    with zipfile.ZipFile(path) as archive:
        pickle_bytes = next(archive.read(n) for n in archive.namelist() if n.endswith("data.pkl"))
    globals_used = {arg.split()[0] for op, arg, _ in pickletools.genops(pickle_bytes) if op.name == "GLOBAL"}
    assert globals_used and globals_used <= {"torch._utils", "torch", "collections"}
