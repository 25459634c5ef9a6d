"""Typed configuration read from YAML: hyperparameters and data.yaml.

Translated once, here, into frozen dataclasses; unknown keys are errors so a typo never
silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from yolor_cli.engine.errors import CfgError, DataError, YolorError
from yolor_cli.engine.files import check_regular_file
from yolor_cli.engine.names import normalise_class_name

_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the yolor_cli package
DEFAULT_HYP = "scratch.640"
IGNORED_DATA_KEYS = frozenset({"download"})  # keys official data files carry that need no action here


@dataclass(frozen=True)
class Bound:
    """The values a hyperparameter may take, from what it means (a rate, a probability, a gain)."""

    low: float
    high: float = math.inf
    low_open: bool = False  # low itself is not allowed
    high_open: bool = False  # high itself is not allowed

    def admits(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        if self.high == math.inf:
            return f"a finite number {'above' if self.low_open else 'of at least'} {self.low:g}"
        low = f"{'above ' if self.low_open else ''}{self.low:g}"
        high = f"{'below ' if self.high_open else ''}{self.high:g}"
        return f"a number from {low} to {high}"


POSITIVE, NON_NEGATIVE, FRACTION = Bound(0, low_open=True), Bound(0), Bound(0, 1)
BELOW_ONE = Bound(0, 1, high_open=True)
# Per key, from its meaning: rates and gains cannot be negative, probabilities and jitter fractions stay
# within [0, 1], momentum (Adam's beta1) below 1, the scale gain below 1 (1 - scale is the smallest
# zoom), a size ratio at least 1, angles below a right angle (shear) or a half turn (rotation).
HYP_BOUNDS: dict[str, Bound] = {
    "lr0": POSITIVE,
    "lrf": NON_NEGATIVE,
    "momentum": BELOW_ONE,
    "weight_decay": NON_NEGATIVE,
    "warmup_epochs": NON_NEGATIVE,
    "warmup_momentum": BELOW_ONE,
    "warmup_bias_lr": NON_NEGATIVE,
    "box": NON_NEGATIVE,
    "cls": NON_NEGATIVE,
    "cls_pw": POSITIVE,
    "obj": NON_NEGATIVE,
    "obj_pw": POSITIVE,
    "iou_t": FRACTION,
    "anchor_t": Bound(1),
    "fl_gamma": NON_NEGATIVE,
    "hsv_h": FRACTION,
    "hsv_s": FRACTION,
    "hsv_v": FRACTION,
    "degrees": Bound(0, 180),
    "translate": FRACTION,
    "scale": BELOW_ONE,
    "shear": Bound(0, 90, high_open=True),
    "perspective": BELOW_ONE,
    "flipud": FRACTION,
    "fliplr": FRACTION,
    "mosaic": FRACTION,
    "mixup": FRACTION,
}


def _hyp_value(name: str, value: Any) -> tuple[float | None, str | None]:
    """``value`` as a float, or why it cannot be ``name``'s value. A quoted number is accepted: YAML
    reads ``1e-3`` (no dot) as text."""
    bound = HYP_BOUNDS[name]
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None, f"{name} is {type(value).__name__} {value!r}; it must be {bound}"
    try:
        number = float(value)
    except ValueError:
        return None, f"{name} is the text {value!r}; it must be {bound}"
    if not math.isfinite(number) or not bound.admits(number):
        return None, f"{name} is {number:g}; it must be {bound}"
    return number, None


@dataclass(frozen=True)
class Hyp:
    """YOLOR's hyperparameters; see configs/hyp/scratch.640.yaml for what each means."""

    lr0: float
    lrf: float
    momentum: float
    weight_decay: float
    warmup_epochs: float
    warmup_momentum: float
    warmup_bias_lr: float
    box: float
    cls: float
    cls_pw: float
    obj: float
    obj_pw: float
    iou_t: float
    anchor_t: float
    fl_gamma: float
    hsv_h: float
    hsv_s: float
    hsv_v: float
    degrees: float
    translate: float
    scale: float
    shear: float
    perspective: float
    flipud: float
    fliplr: float
    mosaic: float
    mixup: float

    @classmethod
    def from_mapping(cls, values: Any, source: str) -> Hyp:
        if not isinstance(values, dict):
            raise YolorError(f"{source} is not a mapping of hyperparameters")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(known))
        missing = [name for name in known if name not in values]
        if unknown or missing:
            problems = ([f"unknown: {', '.join(unknown)}"] if unknown else []) + (
                [f"missing: {', '.join(missing)}"] if missing else []
            )
            raise YolorError(
                f"{source}: {'; '.join(problems)}",
                hint="start from a bundled file such as configs/hyp/scratch.640.yaml",
            )
        checked = {name: _hyp_value(name, values[name]) for name in known}
        problems = [problem for _, problem in checked.values() if problem is not None]
        if problems:
            raise YolorError(
                f"{source}: {'; '.join(problems)}",
                hint="the bundled configs/hyp/scratch.640.yaml says what each key means",
            )
        return cls(**{name: number for name, (number, _) in checked.items()})

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def configs_dir() -> Path:
    """The bundled cfgs and hyps: inside the package when installed, beside it in a source checkout."""
    for candidate in (_PACKAGE_DIR / "configs", _PACKAGE_DIR.parent / "configs"):
        if (candidate / "models").is_dir():
            return candidate
    raise CfgError("the bundled configs are missing from this installation", hint="reinstall yolor-cli")


def bundled_model_names() -> list[str]:
    """The models shipped with the tool (its cfgs), for messages and shell completion."""
    return sorted(path.stem for path in (configs_dir() / "models").glob("*.cfg"))


def parse_class_list(classes: str | None, names_file: Path | None) -> list[str] | None:
    """``--classes a,b`` or ``--names FILE`` (one per line) to a list; None when neither is given.

    Blank entries are dropped; each name is normalised as :mod:`names` says, so a name matches the
    same name read from an XML file, and one that could not be one line of a names file is refused.
    """
    if classes and names_file:
        raise DataError("pass either --classes or --names, not both")
    if names_file is not None:
        check_regular_file(names_file, "class names file")
        try:
            raw = names_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read class names from {names_file}: {exc}") from None
        origin = str(names_file)
    elif classes is not None:
        raw, origin = classes.split(","), "--classes"
    else:
        return None
    try:
        names = [normalise_class_name(name) for name in raw if name.strip()]
    except ValueError as error:
        raise DataError(f"{origin}: {error}", hint="class names are single lines of printable text") from None
    if not names:
        raise DataError("the class list is empty")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise DataError(f"the class list names {', '.join(duplicates)} more than once")
    return names


def _read_yaml(path: Path, what: str) -> Any:
    check_regular_file(path, what)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise YolorError(f"{what} not found: {path}") from None
    except (OSError, yaml.YAMLError) as exc:
        raise YolorError(f"cannot read {what} {path}: {exc}") from None


def bundled_hyp_names() -> list[str]:
    return sorted(path.name.removesuffix(".yaml") for path in (configs_dir() / "hyp").glob("*.yaml"))


def load_hyp(name_or_path: str | Path = DEFAULT_HYP) -> Hyp:
    """A YAML path, or a bundled name such as ``scratch.640`` (a folder of that name is not a file)."""
    path = Path(name_or_path)
    if not path.is_file():
        bundled = configs_dir() / "hyp" / f"{path.name}.yaml"
        if path.suffix in (".yaml", ".yml") or len(path.parts) > 1 or not bundled.exists():
            if path.exists() and not path.is_dir():
                check_regular_file(path, "hyperparameter file")  # a FIFO or a device: say what it is
            raise YolorError(
                f"no hyperparameter file or bundled set named {str(name_or_path)!r}",
                hint=f"bundled: {', '.join(bundled_hyp_names())}",
            )
        path = bundled
    return Hyp.from_mapping(_read_yaml(path, "hyperparameter file"), str(path))


@dataclass(frozen=True)
class DataConfig:
    """A data.yaml: image sources per split (list files, folders, or images) and the classes."""

    source: Path
    train: tuple[Path, ...]
    val: tuple[Path, ...]
    test: tuple[Path, ...]
    names: tuple[str, ...]
    # Set by as_single_class: the label files still number classes 0..label_nc-1.
    label_nc: int | None = None

    @property
    def nc(self) -> int:
        return len(self.names)

    def as_single_class(self) -> DataConfig:
        """``--single-cls``: every object is one class (named "item" unless the data has one name)."""
        names = self.names if len(self.names) == 1 else ("item",)
        return dataclasses.replace(self, names=names, label_nc=self.label_nc or len(self.names))

    def split(self, name: str) -> tuple[Path, ...]:
        return getattr(self, name)


def _entries(value: Any, base: Path, key: str, source: Path) -> tuple[Path, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    resolved = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise DataError(f"{source}: {key} must be a path or a list of paths, got {item!r}")
        path = Path(item).expanduser()
        if not path.is_absolute():
            # Relative to `path` (or the yaml's folder); the official files were written relative
            # to the working directory, so that is tried second.
            candidate = base / path
            path = path.resolve() if not candidate.exists() and path.exists() else candidate
        resolved.append(path)
    missing = [str(p) for p in resolved if not p.exists()]
    if missing:
        raise DataError(
            f"{source}: {key} points to missing {'path' if len(missing) == 1 else 'paths'}: {', '.join(missing)}",
            hint="fix the path in the data file, or run `yolor dataset prepare`",
        )
    for path in resolved:  # a list file (or image) that is a FIFO would be waited on when the images are listed
        if not path.is_dir():
            check_regular_file(path, f"{source}: {key} entry")
    return tuple(resolved)


def _data_values(path: Path) -> dict[str, Any]:
    values = _read_yaml(path, "data file")
    if not isinstance(values, dict):
        raise DataError(f"{path} is not a data file (expected keys train, val, nc, names)")
    unknown = sorted(set(values) - {"path", "train", "val", "test", "nc", "names"} - IGNORED_DATA_KEYS)
    if unknown:
        raise DataError(
            f"{path}: unknown key {', '.join(unknown)}", hint="known keys: path, train, val, test, nc, names"
        )
    return values


def _yaml_text(value: Any) -> str:
    """A value as it was written in the YAML (``true``, not Python's ``True``)."""
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _names(values: dict[str, Any], path: Path) -> tuple[str, ...]:
    names = values.get("names")
    nc = values.get("nc")
    # bool is an int in Python, and YAML reads `nc: true` as one.
    if nc is not None and (isinstance(nc, bool) or not isinstance(nc, int) or nc < 1):
        raise DataError(
            f"{path}: nc must be a positive whole number (the number of classes), got {_yaml_text(nc)}",
            hint="write nc: followed by the number of names (or drop nc)",
        )
    if isinstance(names, dict):  # {0: a, 1: b} as some tools write it
        names = [names[k] for k in sorted(names)]
    if names is None:
        if nc is None:
            raise DataError(f"{path}: give names (a list of class names) or nc")
        names = [str(i) for i in range(nc)]
    if not isinstance(names, list) or not all(isinstance(n, (str, int)) for n in names) or not names:
        raise DataError(f"{path}: names must be a non-empty list of class names")
    if nc is not None and nc != len(names):
        raise DataError(
            f"{path}: nc is {nc} but names lists {len(names)} classes",
            hint="make nc equal to the number of names (or drop nc)",
        )
    try:  # one rule for class names, whichever file they come from (engine/names.py)
        return tuple(normalise_class_name(str(n)) for n in names)
    except ValueError as error:
        raise DataError(f"{path}: {error}", hint="class names are single lines of printable text") from None


def load_data_names(path: str | Path) -> tuple[str, ...]:
    """Only the class names: for naming detections, where the images need not be on this machine."""
    path = Path(path)
    return _names(_data_values(path), path)


def load_data_config(path: str | Path) -> DataConfig:
    path = Path(path)
    values = _data_values(path)
    names = _names(values, path)
    base = path.resolve().parent
    if values.get("path"):
        base = (base / Path(str(values["path"])).expanduser()).resolve()
    if not values.get("train"):
        raise DataError(f"{path}: no train entry")
    return DataConfig(
        source=path,
        train=_entries(values.get("train"), base, "train", path),
        val=_entries(values.get("val"), base, "val", path),
        test=_entries(values.get("test"), base, "test", path),
        names=names,
    )
