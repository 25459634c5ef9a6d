"""The only reader and writer of ``.pt`` files.

Our checkpoints describe themselves: cfg text (with pruned channel counts when pruned), class
names and plain state_dicts, so they load with ``torch.load(weights_only=True)`` and rebuild
anywhere without pickled modules. Official YOLOR (main branch) checkpoints are imported too:
their numpy fitness arrays are allow-listed by name, nothing else is executed.
"""

from __future__ import annotations

import dataclasses
import pickle
import re
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from yolor_cli import __version__
from yolor_cli.engine.errors import CheckpointError, first_line
from yolor_cli.engine.files import atomic_write, check_regular_file
from yolor_cli.engine.model.darknet import (
    DarknetCfg,
    DarknetModel,
    build_model,
    cfg_num_classes,
    parse_cfg,
    with_channels,
    with_num_classes,
    write_cfg,
)
from yolor_cli.engine.model.darknet.heads import find_heads
from yolor_cli.engine.model.darknet.specs import YoloSpec, parse_layer
from yolor_cli.engine.tracking.tracker import active_run_id

FORMAT_NAME = "yolor-cli"
FORMAT_VERSION = 1
MAX_LISTED_KEYS = 5
OFFICIAL_SOURCE = "official YOLOR"
EXPORTED_SUFFIXES = (".onnx", ".torchscript")  # what `yolor export` writes besides .pt

StateDict = dict[str, torch.Tensor]


@dataclass
class Checkpoint:
    """Everything a ``.pt`` holds, in memory. ``notes`` are things the user should be told."""

    cfg: DarknetCfg
    model_state: StateDict
    names: list[str] | None = None
    ema_state: StateDict | None = None
    ema_updates: int = 0
    optimizer_state: dict[str, Any] | None = None
    scaler_state: dict[str, Any] | None = None
    epoch: int = -1
    fitness: float | None = None
    train_options: dict[str, Any] | None = None
    origin: str = FORMAT_NAME
    notes: list[str] = field(default_factory=list)
    # The MLflow run that wrote the file (None: untracked, or written before tracking existed): the
    # next command's run names it as its input's, so train -> prune -> export reads as one lineage.
    mlflow_run_id: str | None = None

    @property
    def nc(self) -> int:
        return cfg_num_classes(self.cfg)

    def best_state(self) -> StateDict:
        """EMA weights when present (what evaluation and deployment want), else the model's."""
        return self.ema_state if self.ema_state is not None else self.model_state


# ---- writing ------------------------------------------------------------------------------------


def checkpoint_to_dict(ckpt: Checkpoint) -> dict[str, Any]:
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "yolor_cli_version": __version__,
        "cfg": write_cfg(ckpt.cfg),
        "nc": ckpt.nc,
        "names": list(ckpt.names) if ckpt.names is not None else None,
        "model": ckpt.model_state,
        "ema": ckpt.ema_state,
        "ema_updates": ckpt.ema_updates,
        "optimizer": ckpt.optimizer_state,
        "scaler": ckpt.scaler_state,
        "epoch": ckpt.epoch,
        "fitness": ckpt.fitness,
        "train_options": ckpt.train_options,
        "mlflow_run_id": ckpt.mlflow_run_id,
    }


def save_checkpoint(ckpt: Checkpoint, path: str | Path, check: Callable[[Path], None] | None = None) -> Path:
    """Write atomically: a crash mid-save leaves the previous file intact, never half a file.
    ``check`` may read the written file back before it takes the place of ``path``. A file written
    while an MLflow run is being logged records that run's id (:attr:`Checkpoint.mlflow_run_id`)."""
    run_id = active_run_id()
    if run_id is not None and run_id != ckpt.mlflow_run_id:
        ckpt = dataclasses.replace(ckpt, mlflow_run_id=run_id)
    return atomic_write(Path(path), lambda stream: torch.save(checkpoint_to_dict(ckpt), stream), check)


# ---- reading ------------------------------------------------------------------------------------


def _numpy_safe_globals() -> list[Any]:
    """The numpy objects official checkpoints pickle (fitness arrays), under both module names.

    numpy 1.x pickles name ``numpy.core.multiarray``; numpy 2 names ``numpy._core.multiarray``.
    """
    core = getattr(np, "_core", None) or np.core
    multiarray = core.multiarray
    allowed: list[Any] = [np.ndarray, np.dtype]
    for module_name in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed.append((multiarray._reconstruct, f"{module_name}._reconstruct"))
        allowed.append((multiarray.scalar, f"{module_name}.scalar"))
    allowed.extend(type(np.dtype(code)) for code in ("f4", "f8", "i4", "i8", "u1", "b1"))
    return allowed


# What a file's first bytes say it is, for files torch cannot load (see _unreadable).
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since 1.6
PICKLE_PROTOCOLS = range(2, 6)  # a pickle starts with PROTO (0x80) and its number
# The magic number every pre-zip torch.save pickles first (torch.serialization.MAGIC_NUMBER).
LEGACY_TORCH_MAGIC = b"\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"
HEADER_BYTES = 32  # enough to hold the magic number after a protocol-4 frame header
ONNX_LAST_HEADER_FIELD = 20  # ModelProto fields after ir_version are numbered 2..20
TRUST_HINT = (
    "our checkpoints and official YOLOR ones load without it; only if you trust the file, pass "
    "--trust-pickle (loading it runs code stored in it)"
)


# Modules whose classes a model file plausibly pickles (torch.save(model) by an old script, official
# YOLOR's models.* and utils.*): a file that needs one of them gets the --trust-pickle hint. Anything
# else (os/posix.system, subprocess, builtins.eval, ...) is a file that asks to run code when loaded.
MODEL_PICKLE_MODULES = frozenset(
    {"torch", "torchvision", "numpy", "collections", "models", "utils", "yolor", "yolor_cli"}
)
HARMLESS_BUILTINS = frozenset({"set", "frozenset", "slice", "range", "complex", "bytearray", "bytes", "dict", "list"})
# Inside torch and numpy a model pickle needs only layers (torch.nn), storages and the functions that
# rebuild tensors and arrays; any other function there (torch.hub.load, numpy's testing helpers) may
# fetch or run code, so such a file is no old script's model.
MODEL_PICKLE_PREFIXES = (
    "torch.nn.",
    "torch.ao.",
    "torch.storage.",
    "torch._utils._rebuild_",
    "torch._tensor._rebuild_",
    "numpy.core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray._reconstruct",
    "numpy._core.multiarray.scalar",
)
_TOP_LEVEL = {"torch": torch, "numpy": np}


def _global_name(name: str) -> str:
    """torch names a pickled global module.attribute, a builtin by its bare name."""
    return name if "." in name else f"builtins.{name}"


def _runs_code(name: str) -> bool:
    """Whether the pickled global ``name`` (module.attribute) is something other than a model's
    class: a function of the OS, a shell or the interpreter that unpickling would call."""
    module, _, attribute = name.rpartition(".")
    top = module.partition(".")[0]
    if top in ("builtins", "__builtin__"):
        return attribute not in HARMLESS_BUILTINS
    if top in _TOP_LEVEL:
        return not (name.startswith(MODEL_PICKLE_PREFIXES) or _is_model_value(module, attribute))
    return top not in MODEL_PICKLE_MODULES and top != "_codecs"  # _codecs.encode: numpy's byte strings


def _is_model_value(module: str, attribute: str) -> bool:
    """``torch.Size``, ``torch.float32``, ``numpy.dtype``: a class or a constant straight under torch or
    numpy, which a pickle names to rebuild a value; their functions (``torch.load``) are not."""
    if module not in _TOP_LEVEL:
        return False
    value = getattr(_TOP_LEVEL[module], attribute, None)
    return value is not None and (isinstance(value, type) or not callable(value))


def _is_torchscript(path: Path, header: bytes) -> bool:
    """A TorchScript archive: a torch zip that holds code/ and constants.pkl beside data.pkl."""
    if not header.startswith(ZIP_MAGIC):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return any(name.endswith("/constants.pkl") for name in names) and any("/code/" in name for name in names)


def _header(path: Path) -> bytes:
    with path.open("rb") as stream:
        return stream.read(HEADER_BYTES)


def _is_onnx(header: bytes) -> bool:
    """An ONNX ModelProto starts with ir_version (field 1, a small varint), then another field."""
    if len(header) < 3 or header[0] != 0x08 or not 0 < header[1] < 0x80:
        return False
    field_number, wire_type = header[2] >> 3, header[2] & 0x07
    return 2 <= field_number <= ONNX_LAST_HEADER_FIELD and wire_type in (0, 2)


def _is_torch_file(header: bytes) -> bool:
    return header.startswith(ZIP_MAGIC) or LEGACY_TORCH_MAGIC in header


def _is_pickle(header: bytes) -> bool:
    return len(header) > 1 and header[0] == 0x80 and header[1] in PICKLE_PROTOCOLS


def _unreadable(path: Path, error: Exception, trust_pickle: bool) -> CheckpointError:
    """Say what a file torch.load refused is, in our words: torch's own text advises
    ``weights_only=False`` and filing an issue, neither of which helps a user of this tool."""
    culprit = re.search(r"GLOBAL ([\w.]+)", str(error)) if isinstance(error, pickle.UnpicklingError) else None
    needed = _global_name(culprit.group(1)) if culprit is not None else ""
    if culprit is not None and _runs_code(needed):
        return CheckpointError(
            f"{path} asks to run {needed} when it is loaded: loading it would run code stored in the "
            "file, so it was not loaded",
            hint="a model file holds weights, not code; do not load this file, get the model from a source you trust",
        )
    if culprit is not None:
        return CheckpointError(
            f"{path} contains pickled Python objects that a safe load refuses (it needs {culprit.group(1)})",
            hint="it was probably saved with torch.save(model) by an old pruning script. Loading it "
            "runs code stored in the file: only with a file you trust, pass --trust-pickle.",
        )
    if isinstance(error, OSError):  # the file cannot be read at all
        return CheckpointError(
            f"{path} is damaged or not a PyTorch checkpoint ({type(error).__name__}: {first_line(error)})"
        )
    header = _header(path)
    if _is_onnx(header):
        return CheckpointError(
            f"{path} is an ONNX model, not a checkpoint",
            hint="yolor eval and yolor detect run .onnx files (name it .onnx); train and prune need the .pt it "
            "was exported from",
        )
    if _is_torch_file(header) and isinstance(error, pickle.UnpicklingError) and not trust_pickle:
        return CheckpointError(
            f"{path} is a legacy or foreign PyTorch pickle that a safe load cannot read, not a yolor checkpoint",
            hint=TRUST_HINT,
        )
    if _is_pickle(header) and not _is_torch_file(header):
        return CheckpointError(
            f"{path} is a plain Python pickle (pickle.dump), not a yolor checkpoint or a torch.save file",
            hint="--trust-pickle cannot read it either; save the weights with torch.save(model.state_dict(), "
            "path), or pass a .pt that yolor train wrote",
        )
    detail = (  # torch's text is only passed on for its own files, whose errors are about zip entries
        f"{type(error).__name__}: {first_line(error)}"
        if _is_torch_file(header)
        else "its bytes are neither a zip archive nor a pickle"
    )
    return CheckpointError(f"{path} is damaged or not a PyTorch checkpoint ({detail})")


def _torch_load(path: Path, trust_pickle: bool) -> Any:
    """torch.load with torch's warnings kept off the screen: they advise filing issues with torch."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if trust_pickle:
            return torch.load(path, map_location="cpu", weights_only=False)
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)


def _read_raw(path: Path, trust_pickle: bool) -> Any:
    if not path.exists():
        raise CheckpointError(f"weights file not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a weights file")
    check_regular_file(path, "weights file")  # a FIFO would block the read forever
    if path.suffix.lower() in EXPORTED_SUFFIXES:
        raise CheckpointError(
            f"{path} is an exported model, not a checkpoint",
            hint="yolor eval and yolor detect run exported files; train and prune need the .pt it was exported from",
        )
    if _is_torchscript(path, _header(path)):
        raise CheckpointError(
            f"{path} is a TorchScript file, not a checkpoint",
            hint="yolor eval and yolor detect run it when it is named .torchscript; train and prune need the .pt "
            "it was exported from",
        )
    try:
        return _torch_load(path, trust_pickle)
    except Exception as exc:  # whatever unpickling the user's bytes raises is about the file
        raise _unreadable(path, exc, trust_pickle) from None


def _is_state_dict(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and bool(value)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())
    )


def _is_darknet_state(value: Any) -> bool:
    """A state_dict of a Darknet model (official YOLOR's and ours name layers module_list.N)."""
    return _is_state_dict(value) and any(".module_list." in f".{key}" for key in value)


def _state_from_object(value: Any, path: Path) -> StateDict:
    """A state_dict from whatever an official or trusted file holds under ``model``."""
    if isinstance(value, nn.Module):
        return {k: v.detach().float() for k, v in value.state_dict().items()}
    if _is_state_dict(value):
        return dict(value)
    raise CheckpointError(
        f"{path} has no model weights (its 'model' entry is {type(value).__name__})",
        hint="official training writes them under 'model'; a file stripped of them cannot be loaded",
    )


def _head_outputs(state: Mapping[str, torch.Tensor], conv_index: int) -> int | None:
    weight = state.get(f"module_list.{conv_index}.Conv2d.weight")
    return int(weight.shape[0]) if weight is not None else None


def _fit_classes(cfg: DarknetCfg, state: StateDict, notes: list[str], path: Path) -> DarknetCfg:
    """Take the class count from the head shapes when they disagree with the cfg (18 = 3 x (5 + 1))."""
    specs = [parse_layer(section, cfg.source) for section in cfg.layers]
    head = find_heads(specs, cfg.source)[0]
    yolo = specs[head.yolo]
    assert isinstance(yolo, YoloSpec)
    outputs = _head_outputs(state, head.conv)
    if outputs is None or outputs == yolo.outputs:
        return cfg
    anchors = len(yolo.mask)
    if outputs % anchors or outputs // anchors <= 5:
        raise CheckpointError(
            f"{path}: the head conv (layer {head.conv}) has {outputs} outputs, which is "
            f"not {anchors} anchors x (5 + classes)",
            hint="these weights were trained with a different cfg; pass it with --cfg",
        )
    nc = outputs // anchors - 5
    notes.append(
        f"the weights have {nc} class{'es' if nc != 1 else ''} "
        f"({outputs} head outputs); using nc={nc} instead of the cfg's {yolo.classes}"
    )
    return with_num_classes(cfg, nc)


def _fit_channels(cfg: DarknetCfg, state: StateDict, notes: list[str]) -> DarknetCfg:
    """Follow the weights' channel counts, so pruned state_dicts load with their unpruned cfg."""
    widths: dict[int, int] = {}
    for index, section in enumerate(cfg.layers):
        if section.type == "convolutional":
            tensor, axis = state.get(f"module_list.{index}.Conv2d.weight"), 0
        elif section.type in ("implicit_add", "implicit_mul"):
            tensor, axis = state.get(f"module_list.{index}.implicit"), 1
        else:
            continue
        if tensor is not None and tensor.ndim == 4 and str(tensor.shape[axis]) != section.options.get("filters"):
            widths[index] = int(tensor.shape[axis])
    if widths:
        notes.append(
            f"the weights have other channel counts than the cfg in {len(widths)} layers "
            f"(a pruned model?); the cfg was adapted to them"
        )
    return with_channels(cfg, widths)


def _fit_cfg_to_weights(cfg: DarknetCfg, state: StateDict, notes: list[str], path: Path) -> DarknetCfg:
    return _fit_channels(_fit_classes(cfg, state, notes, path), state, notes)


def _whole_number(value: Any, default: int = -1) -> int:
    """Integers (numpy ones too) pass; anything else (None, arrays, text) gives ``default``."""
    return int(value) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else default


def _from_ours(raw: dict[str, Any], cfg: DarknetCfg | None, path: Path) -> Checkpoint:
    version = raw.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by a newer yolor-cli (format {version!r}); this one reads format {FORMAT_VERSION}",
            hint="upgrade yolor-cli",
        )
    notes: list[str] = []
    model_state = raw.get("model")
    if not _is_state_dict(model_state):
        raise CheckpointError(f"{path} is a yolor-cli checkpoint without model weights")
    if cfg is None:
        try:
            cfg = parse_cfg(raw["cfg"], source=f"{path.name}:cfg")
        except (KeyError, TypeError):
            raise CheckpointError(f"{path} is a yolor-cli checkpoint without its cfg") from None
    else:
        cfg = _fit_cfg_to_weights(cfg, model_state, notes, path)
    return Checkpoint(
        cfg=cfg,
        model_state=model_state,
        names=raw.get("names"),
        ema_state=raw.get("ema"),
        ema_updates=_whole_number(raw.get("ema_updates"), 0),
        optimizer_state=raw.get("optimizer"),
        scaler_state=raw.get("scaler"),
        epoch=_whole_number(raw.get("epoch")),
        fitness=raw.get("fitness"),
        train_options=raw.get("train_options"),
        origin=FORMAT_NAME,
        notes=notes,
        mlflow_run_id=run_id if isinstance(run_id := raw.get("mlflow_run_id"), str) else None,  # older files: none
    )


def _from_official(raw: Any, cfg: DarknetCfg | None, path: Path) -> Checkpoint:
    state = _state_from_object(raw["model"] if isinstance(raw, Mapping) and "model" in raw else raw, path)
    if cfg is None:
        raise CheckpointError(
            f"{path} is an official YOLOR checkpoint, which does not record its cfg",
            hint="pass the cfg it was trained with, e.g. --cfg yolor_csp",
        )
    notes: list[str] = []
    cfg = _fit_cfg_to_weights(cfg, state, notes, path)
    epoch = _whole_number(raw.get("epoch")) if isinstance(raw, Mapping) else -1
    return Checkpoint(cfg=cfg, model_state=state, epoch=epoch, origin=OFFICIAL_SOURCE, notes=notes)


def load_checkpoint(path: str | Path, cfg: DarknetCfg | None = None, *, trust_pickle: bool = False) -> Checkpoint:
    """Read our checkpoints, official YOLOR ones (``cfg`` required) and bare state_dicts.

    An explicit ``cfg`` replaces the one a checkpoint carries; its class count follows the weights.
    """
    path = Path(path)
    raw = _read_raw(path, trust_pickle)
    if isinstance(raw, Mapping) and raw.get("format") == FORMAT_NAME:
        return _from_ours(dict(raw), cfg, path)
    if isinstance(raw, nn.Module) or _is_darknet_state(raw) or (isinstance(raw, Mapping) and "model" in raw):
        return _from_official(raw, cfg, path)
    raise CheckpointError(
        f"{path} is not a checkpoint this tool knows: not a yolor-cli, official YOLOR or Darknet state_dict file "
        f"(found {type(raw).__name__}"
        f"{' with top-level keys ' + _describe([str(key) for key in raw]) if isinstance(raw, Mapping) else ''})",
        hint="pass a .pt that yolor train wrote, or an official YOLOR checkpoint with --cfg",
    )


def _describe(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_LISTED_KEYS])
    return shown + (f" and {len(keys) - MAX_LISTED_KEYS} more" if len(keys) > MAX_LISTED_KEYS else "")


def load_state(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Strict load that names missing, unexpected and mis-shaped keys instead of a torch dump."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = [
        f"{len(items)} {label}: {_describe(items)}"
        for label, items in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("mis-shaped (file vs model)", mismatched),
        )
        if items
    ]
    if problems:
        raise CheckpointError(
            f"the weights in {source} do not fit the model: " + "; ".join(problems),
            hint="pass the cfg the weights were trained with (--cfg)",
        )
    model.load_state_dict(state, strict=True)


def model_from_checkpoint(ckpt: Checkpoint, source: str = "the checkpoint", *, ema: bool = True) -> DarknetModel:
    model = build_model(ckpt.cfg)
    load_state(model, ckpt.best_state() if ema else ckpt.model_state, source)
    return model
