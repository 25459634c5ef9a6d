"""What ``yolor tune`` searches: hyperparameter ranges and the optimizer, by default those of the
official YOLOR ``--evolve``; ``--space FILE.yaml`` narrows or fixes keys.

The default ranges are the official ``train.py``'s evolve table (its ``meta``: a mutation gain, a lower
and an upper limit per key). Every key it mutates (gain above 0) is searched in its limits; ``fliplr``,
which it keeps fixed (gain 0), is searched too; ``iou_t``, ``fl_gamma`` and ``perspective`` (gain 0
there) stay at the base hyp unless a space file lists them. ``anchors`` is not one of our
hyperparameters (the anchors come from the cfg). ``lr0`` spans four decades, so it is drawn on a
log scale; every other range is linear, as the evolve's mutations are.

A space file maps a key to a number (fixed), ``[low, high]`` or ``{low: , high: , log: }`` (searched);
``optimizer`` to a name (fixed) or a list of names (searched). ``others: fixed`` keeps every key the
file does not list at the base hyp (default ``others: searched``: they keep their default range). The
whole file is checked before any training, and every problem is named in one message.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from yolor_cli.engine.config import HYP_BOUNDS
from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.files import check_regular_file
from yolor_cli.engine.train.recipe import OPTIMIZERS

OPTIMIZER_KEY = "optimizer"
OTHERS_KEY = "others"  # what happens to the keys a space file does not list
OTHERS_CHOICES = ("searched", "fixed")


@dataclass(frozen=True)
class Range:
    """A searched hyperparameter: a float from ``low`` to ``high`` (log scale when ``log``)."""

    low: float
    high: float
    log: bool = False


# The official YOLOR evolve's limits (train.py, ``meta``), for the keys it mutates, plus fliplr.
DEFAULT_RANGES: dict[str, Range] = {
    "lr0": Range(1e-5, 1e-1, log=True),
    "lrf": Range(0.01, 1.0),
    "momentum": Range(0.6, 0.98),
    "weight_decay": Range(0.0, 0.001),
    "warmup_epochs": Range(0.0, 5.0),
    "warmup_momentum": Range(0.0, 0.95),
    "warmup_bias_lr": Range(0.0, 0.2),
    "box": Range(0.02, 0.2),
    "cls": Range(0.2, 4.0),
    "cls_pw": Range(0.5, 2.0),
    "obj": Range(0.2, 4.0),
    "obj_pw": Range(0.5, 2.0),
    "anchor_t": Range(2.0, 8.0),
    "hsv_h": Range(0.0, 0.1),
    "hsv_s": Range(0.0, 0.9),
    "hsv_v": Range(0.0, 0.9),
    "degrees": Range(0.0, 45.0),
    "translate": Range(0.0, 0.9),
    "scale": Range(0.0, 0.9),
    "shear": Range(0.0, 10.0),
    "flipud": Range(0.0, 1.0),
    "fliplr": Range(0.0, 1.0),
    "mosaic": Range(0.0, 1.0),
    "mixup": Range(0.0, 1.0),
}
DEFAULT_OPTIMIZERS = OPTIMIZERS  # sgd, adam, adamw: each trial names its own (never auto, which picks lr0 itself)


@dataclass(frozen=True)
class SearchSpace:
    """The searched ranges, the keys fixed by a space file, and the optimizers a trial chooses from."""

    ranges: dict[str, Range] = field(default_factory=lambda: dict(DEFAULT_RANGES))
    fixed: dict[str, float] = field(default_factory=dict)
    optimizers: tuple[str, ...] = DEFAULT_OPTIMIZERS

    def suggest(self, trial: Any, base: Mapping[str, float]) -> tuple[dict[str, float], str]:
        """The trial's full hyp (``base`` with the fixed and the suggested values) and its optimizer."""
        values = {**base, **self.fixed}
        for key, span in self.ranges.items():
            values[key] = float(trial.suggest_float(key, span.low, span.high, log=span.log))
        if len(self.optimizers) == 1:
            return values, self.optimizers[0]
        return values, str(trial.suggest_categorical(OPTIMIZER_KEY, list(self.optimizers)))

    def record(self) -> dict[str, Any]:
        """The space as plain values (kept with the study, so a process joining it can compare)."""
        return {
            "ranges": {key: [span.low, span.high, span.log] for key, span in self.ranges.items()},
            "fixed": dict(self.fixed),
            "optimizers": list(self.optimizers),
        }

    def inside(self, values: Mapping[str, float]) -> bool:
        """Whether a full hyp lies in the searched ranges (the base hyp, to try it first)."""
        return all(span.low <= values[key] <= span.high for key, span in self.ranges.items())


def _number(value: Any) -> float | None:
    """A YAML number (a quoted one too: YAML reads ``1e-3`` without a dot as text), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _range(key: str, value: Any, problems: list[str]) -> Range | float | None:
    """One hyperparameter's entry: a fixed number, or a range; None (with a problem noted) when bad."""
    bound = HYP_BOUNDS[key]
    default_log = DEFAULT_RANGES[key].log if key in DEFAULT_RANGES else False
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"low", "high", "log"})
        if unknown or "low" not in value or "high" not in value:
            problems.append(f"{key}: a range is {{low: , high: }} with an optional log: true/false")
            return None
        low, high, log = value["low"], value["high"], value.get("log", default_log)
        if not isinstance(log, bool):
            problems.append(f"{key}: log is true or false, not {log!r}")
            return None
    elif isinstance(value, list):
        if len(value) != 2:
            problems.append(f"{key}: a range is [low, high], got {len(value)} values")
            return None
        (low, high), log = value, default_log
    else:
        number = _number(value)
        if number is None or not math.isfinite(number):
            problems.append(f"{key}: {value!r} is not a number or a [low, high] range")
            return None
        if not bound.admits(number):
            problems.append(f"{key}: {number:g} is outside what training accepts ({bound})")
            return None
        return number
    low_n, high_n = _number(low), _number(high)
    if low_n is None or high_n is None or not math.isfinite(low_n) or not math.isfinite(high_n):
        problems.append(f"{key}: the range [{low!r}, {high!r}] is not two numbers")
        return None
    if low_n > high_n:
        problems.append(f"{key}: low {low_n:g} is above high {high_n:g}")
        return None
    if not (bound.admits(low_n) and bound.admits(high_n)):
        problems.append(f"{key}: the range [{low_n:g}, {high_n:g}] reaches outside what training accepts ({bound})")
        return None
    if log and low_n <= 0:
        problems.append(f"{key}: a log-scale range needs a low above 0, not {low_n:g}")
        return None
    return low_n if low_n == high_n else Range(low_n, high_n, log)


def _optimizers(value: Any, problems: list[str]) -> tuple[str, ...] | None:
    names = value if isinstance(value, list) else [value]
    bad = [name for name in names if not isinstance(name, str) or name not in OPTIMIZERS]
    if bad or not names:
        shown = ", ".join(repr(name) for name in bad) or "an empty list"
        problems.append(f"optimizer: {shown} is not one of {', '.join(OPTIMIZERS)}")
        return None
    return tuple(dict.fromkeys(names))  # in the file's order, each once


def space_from_mapping(values: Any, source: str) -> SearchSpace:
    """A :class:`SearchSpace` from a space file's mapping; one :class:`YolorError` naming every problem."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise YolorError(f"{source} is not a mapping of hyperparameters to ranges", hint=SPACE_HINT)
    problems: list[str] = []
    known = (*HYP_BOUNDS, OPTIMIZER_KEY, OTHERS_KEY)
    unknown = sorted(str(key) for key in values if key not in known)
    if unknown:
        problems.append(f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}")
    others = values.get(OTHERS_KEY, "searched")
    if others not in OTHERS_CHOICES:
        problems.append(f"others: {others!r} is not one of {', '.join(OTHERS_CHOICES)}")
    ranges = {} if others == "fixed" else dict(DEFAULT_RANGES)
    fixed: dict[str, float] = {}
    optimizers: tuple[str, ...] | None = () if others == "fixed" else DEFAULT_OPTIMIZERS
    for key, value in values.items():
        if key == OPTIMIZER_KEY:
            optimizers = _optimizers(value, problems)
        elif key in HYP_BOUNDS:
            entry = _range(key, value, problems)
            ranges.pop(key, None)
            if isinstance(entry, Range):
                ranges[key] = entry
            elif entry is not None:
                fixed[key] = entry
    if problems:
        raise YolorError(f"{source}: {'; '.join(problems)}", hint=SPACE_HINT)
    if not optimizers:
        optimizers = ("sgd",)  # others: fixed without an optimizer entry: the hyp files' lr0 is SGD's
    if not ranges and len(optimizers) == 1:
        raise YolorError(f"{source} fixes every key: there is nothing to search", hint=SPACE_HINT)
    return SearchSpace(ranges=ranges, fixed=fixed, optimizers=optimizers)


SPACE_HINT = (
    "a space file maps hyperparameters (as in configs/hyp/scratch.640.yaml) to a number (fixed) or "
    "[low, high] (searched), and optimizer to sgd, adam, adamw or a list of them; others: fixed keeps "
    "the keys not listed at the base hyp"
)


def load_space(path: Path | None) -> SearchSpace:
    """The default space, or the one ``path`` (a ``--space`` file) describes."""
    if path is None:
        return SearchSpace()
    check_regular_file(path, "search space file")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise YolorError(f"search space file not found: {path}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise YolorError(f"cannot read the search space file {path}: {error}", hint=SPACE_HINT) from None
    return space_from_mapping(values, str(path))
