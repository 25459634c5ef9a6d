"""Each option declared once: a request dataclass field carries its flag, help, bounds and choices.

A request (``EvalRequest``, ``TrainRequest``...) declares a field with :func:`option`; the command
line builds its Typer command from those fields (``yolor_cli/options.py``), and the request checks
the bounds itself when it is built (:class:`Request`), so a library caller gets the same checks as
the command line. Only the standard library here: the command line reads these declarations
without loading torch.

Shared options (``--weights``, ``--img-size``, ``--seed``...) are field factories below, so a bound
such as :data:`MAX_IMG_SIZE` is declared in one place for every command.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.runs import check_run_name

REQUIRED: Any = dataclasses.MISSING  # the default of an option that must be given
OPTION_KEY = "yolor.option"  # the key of an :class:`OptionSpec` in a field's metadata

MIN_IMG_SIZE = 32  # the smallest stride of every model: nothing smaller reaches a detection head
DEFAULT_IMG_SIZE = 640  # square input side in pixels, as the released YOLOR models
# The largest square input side any command takes: above the widest frames a detector is fed in
# practice (8K video is 7680 wide), and a multiple of every model stride (32, 64 for P6, 128), so
# the nearest stride multiple suggested for a size within the bound never exceeds the bound.
MAX_IMG_SIZE = 8192
# The largest batch any command takes: far above what fits on one accelerator at the default size,
# and small enough that a typo (100000) is refused before a tensor of that many images is allocated.
MAX_BATCH = 1024
MAX_SEED = 2**32 - 1  # numpy's and the data loaders' seeds are unsigned 32-bit integers
MAX_WORKERS = 256  # data-loading processes; more than any machine's cores is a typo


@dataclass(frozen=True)
class OptionSpec:
    """How one request field appears on the command line and which values it accepts.

    ``flags``: the long flag first, then short ones; empty for a positional ``argument``.
    ``minimum``/``maximum``: inclusive bounds of a number (each element of a tuple of numbers).
    ``choices``: the accepted strings (shown as a choice list on the command line).
    ``negate``: a bool field shown as a flag that turns it off (``--nosave`` for ``save_images``).
    ``complete``: shell completion, ``incomplete -> candidates``.
    ``path_kind``: "file" or "dir" for a path that must be one kind (the command line refuses the other).
    ``parse``: the command line takes text and turns it into the field's value (``--amounts 0.25,0.5``).
    ``cli``: False for a field library callers set but the command line does not show.
    ``check``: a check of the value's meaning beyond bounds (a run name is one folder name); it raises
    YolorError, and runs when the request is built, so a bad value stops a command before any work.
    """

    flags: tuple[str, ...] = ()
    help: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    negate: bool = False
    complete: Callable[[str], list[str]] | None = None
    path_kind: str | None = None
    show_default: bool = True
    argument: bool = False
    required: bool = False
    parse: Callable[[str], Any] | None = None
    cli: bool = True
    check: Callable[[Any], object] | None = None

    @property
    def flag(self) -> str:
        return self.flags[0] if self.flags else "argument"


def option(
    default: Any = dataclasses.MISSING,
    *flags: str,
    help: str = "",
    min: float | None = None,
    max: float | None = None,
    choices: Sequence[str] | None = None,
    negate: bool = False,
    complete: Callable[[str], list[str]] | None = None,
    path_kind: str | None = None,
    show_default: bool | None = None,
    argument: bool = False,
    parse: Callable[[str], Any] | None = None,
    cli: bool = True,
    check: Callable[[Any], object] | None = None,
) -> Any:
    """A dataclass field that is also a command-line option. No ``default`` makes it required;
    ``show_default`` defaults to False for a None default (there is nothing to show)."""
    spec = OptionSpec(
        flags=tuple(flags),
        help=help,
        minimum=min,
        maximum=max,
        choices=tuple(choices) if choices is not None else None,
        negate=negate,
        complete=complete,
        path_kind=path_kind,
        show_default=default is not None if show_default is None else show_default,
        argument=argument,
        required=default is dataclasses.MISSING,
        parse=parse,
        cli=cli,
        check=check,
    )
    metadata = {OPTION_KEY: spec}
    if isinstance(default, list | dict | set):
        raise TypeError("option defaults must be immutable (use a tuple)")
    return dataclasses.field(default=default, metadata=metadata)


def spec_of(field: dataclasses.Field) -> OptionSpec | None:
    return field.metadata.get(OPTION_KEY)


def option_fields(cls: type) -> list[tuple[dataclasses.Field, OptionSpec]]:
    """The fields of a request class declared with :func:`option`, in declaration order."""
    return [(f, spec) for f in dataclasses.fields(cls) if (spec := spec_of(f)) is not None]


def _shown(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def check_value(spec: OptionSpec, value: Any) -> None:
    """Refuse a value outside the option's declaration: NaN and infinity for a float, a number
    outside its bounds, a string outside its choices. None (not given) is always accepted."""
    if value is None:
        return
    if isinstance(value, tuple | list):
        for item in value:
            check_value(spec, item)
        return
    if isinstance(value, bool):
        return
    if isinstance(value, float) and not math.isfinite(value):
        what = "not a number" if math.isnan(value) else "not finite"
        raise YolorError(f"{spec.flag} {value} is {what}", hint=_range_hint(spec))
    if isinstance(value, int | float):
        if spec.minimum == 0 and value < 0:
            raise YolorError(f"{spec.flag} {_shown(value)} is negative", hint=_range_hint(spec))
        if spec.minimum is not None and value < spec.minimum:
            raise YolorError(f"{spec.flag} {_shown(value)} is below {_shown(spec.minimum)}", hint=_range_hint(spec))
        if spec.maximum is not None and value > spec.maximum:
            raise YolorError(f"{spec.flag} {_shown(value)} is above {_shown(spec.maximum)}", hint=_range_hint(spec))
    if spec.choices is not None and isinstance(value, str) and value not in spec.choices:
        raise YolorError(f"{spec.flag} {value!r} is not one of {', '.join(spec.choices)}")
    if spec.check is not None:
        spec.check(value)


def _range_hint(spec: OptionSpec) -> str | None:
    low, high = spec.minimum, spec.maximum
    if low is None and high is None:
        return None
    if high is None:
        return f"give a number of at least {_shown(low)}"  # type: ignore[arg-type]
    if low is None:
        return f"give a number of at most {_shown(high)}"
    return f"give a number from {_shown(low)} to {_shown(high)}"


def check_options(request: Any) -> None:
    """Check every declared option of ``request`` against its declaration (see :func:`check_value`)."""
    for field, spec in option_fields(type(request)):
        check_value(spec, getattr(request, field.name))


def given_options(request: Any, *, ignore: Sequence[str] = ()) -> list[str]:
    """The flags of the options whose value differs from the declared default: what a user gave."""
    given = []
    for field, spec in option_fields(type(request)):
        if field.name in ignore or field.default is dataclasses.MISSING or spec.argument:
            continue
        if getattr(request, field.name) != field.default:
            given.append(spec.flag)
    return given


class Request:
    """Base of the requests: builds check their declared options (bounds, NaN, choices) first.
    A subclass with more checks defines ``__post_init__`` and calls ``super().__post_init__()``."""

    def __post_init__(self) -> None:
        check_options(self)


# ---- the options several commands share, declared once -------------------------------------------


def complete_cfg(incomplete: str) -> list[str]:
    """Bundled model names for shell completion (paths are completed by the shell)."""
    from yolor_cli.engine.config import bundled_model_names  # not at import: yaml is not needed to parse options

    return [name for name in bundled_model_names() if name.startswith(incomplete)]


def complete_comma_list(incomplete: str, names: Sequence[str]) -> list[str]:
    """Shell completion of a comma-separated list of names, also after a comma (onnx,tor<TAB>)."""
    done, _, current = incomplete.rpartition(",")
    taken = set(done.split(",")) if done else set()
    prefix = f"{done}," if done else ""
    return [prefix + name for name in names if name.startswith(current) and name not in taken]


WEIGHTS_HELP = "Checkpoint (.pt): ours, or an official YOLOR one with --cfg."
# What eval and detect run: a checkpoint, or a file from yolor export (an OpenVINO IR is a folder).
MODEL_WEIGHTS_HELP = (
    "Checkpoint (.pt): ours, or an official YOLOR one with --cfg; or a file from yolor export "
    "(.onnx, INT8 included; .torchscript; an OpenVINO _openvino_model folder or .xml)."
)
DATA_HELP = "data.yaml (as written by `yolor dataset prepare`)."


def weights_option(default: Any = dataclasses.MISSING, help: str = WEIGHTS_HELP, *, model: bool = False) -> Any:
    """``--weights/-w``: a checkpoint file; ``model``: also an exported model (an IR is a folder)."""
    return option(default, "--weights", "-w", help=help, path_kind=None if model else "file")


def cfg_option() -> Any:
    return option(
        None,
        "--cfg",
        help="Darknet .cfg path or bundled model name (e.g. yolor_csp, yolor_csp_tiny).",
        complete=complete_cfg,
    )


def data_option(default: Any = None, help: str = DATA_HELP) -> Any:
    return option(default, "--data", help=help, path_kind="file")


def img_size_option(default: Any, help: str = "Square input size in pixels.") -> Any:
    return option(default, "--img-size", help=help, min=MIN_IMG_SIZE, max=MAX_IMG_SIZE)


def batch_option(default: Any, *flags: str, help: str = "") -> Any:
    return option(default, *(flags or ("--batch-size",)), help=help, min=1, max=MAX_BATCH)


def workers_option(default: int) -> Any:
    return option(default, "--workers", min=0, max=MAX_WORKERS)


def seed_option(default: int = 0, help: str = "", *, cli: bool = True) -> Any:
    """``--seed``: 0 to 2**32 - 1, what numpy and the data loaders take, checked before any work."""
    return option(default, "--seed", help=help, min=0, max=MAX_SEED, cli=cli)


def device_option(default: str = "", help: str = "'' = GPU 0 if available else CPU; cpu; 0; 0,1.") -> Any:
    return option(default, "--device", help=help)


def conf_option(default: float) -> Any:
    return option(default, "--conf", help="Score threshold.", min=0.0, max=1.0)


def iou_option(default: float) -> Any:
    return option(default, "--iou", help="NMS IoU threshold.", min=0.0, max=1.0)


def names_file_option() -> Any:
    return option(None, "--names", help="File with one class name per line.", path_kind="file")


def project_option(default: Path) -> Any:
    return option(default, "--project", help="Folder that holds the run folders.")


def name_option(default: str = "exp") -> Any:
    return option(default, "--name", help="Run folder name; name2, name3... if it exists.", check=check_run_name)


def exist_ok_option() -> Any:
    return option(False, "--exist-ok", help="Reuse the run folder if it exists.")


def trust_pickle_option() -> Any:
    return option(
        False,
        "--trust-pickle",
        help="Allow weights files that run pickled code when loaded (only for "
        "files you trust, e.g. old pruned torch.save(model) files).",
    )


def half_option() -> Any:
    return option(
        None,
        "--half/--no-half",
        help="Inference precision. Default: bf16 on a CPU with AMX-BF16 or AVX-512 BF16, else fp32. "
        "--half: fp16 on CUDA, bf16 on such a CPU (ignored on other CPUs); --no-half: fp32. "
        "An .onnx file runs in the precision it was exported in.",
    )


def output_option(help: str, *, path_kind: str | None = None) -> Any:
    return option(None, "--output", "-o", help=help, path_kind=path_kind)


def overwrite_option(help: str = "Replace an existing --output file.") -> Any:
    return option(False, "--overwrite", help=help)


def report_option() -> Any:
    """``--no-report``: the commands that end a run (train, prune auto, benchmark) write its report.html
    unless told not to (engine/report/)."""
    return option(
        True, "--no-report", help="Do not write report.html (one HTML page of the run) at the end.", negate=True
    )
