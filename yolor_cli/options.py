"""Typer commands built from the engine's request dataclasses: each option is declared once, as a
request field (:mod:`yolor_cli.engine.options`), and appears here as a Typer option.

:func:`request_command` turns a function ``f(request, **cli_only)`` into a Typer command whose
options are the request's fields followed by ``f``'s own (``--json``...). Bounds are passed on to
click too, so an out-of-range number stays a usage error (exit code 2) on the command line, while
the request checks the same bounds for library callers and NaN for both.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Mapping
from enum import Enum
from types import NoneType, UnionType
from typing import Annotated, Any

import typer
from rich.markup import escape

from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.options import OptionSpec, check_value, complete_cfg, complete_comma_list, option_fields

__all__ = ["JsonOption", "complete_cfg", "complete_comma_list", "request_command"]

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON object on stdout instead of tables.", metavar="")
]


def _float_check(spec: OptionSpec) -> Callable[[Any], Any]:
    """A float option's bounds as a callback that runs the request's own check: click's range type
    would tell "nan" that it should be greater than the minimum (or, without one, accept it)."""

    def check(value: Any) -> Any:
        try:
            check_value(spec, value)
        except YolorError as error:
            raise typer.BadParameter(error.message) from None
        return value

    return check


def _range_text(spec: OptionSpec) -> str:
    low = "" if spec.minimum is None else f"{spec.minimum:g}<="
    high = "" if spec.maximum is None else f"<={spec.maximum:g}"
    return f"[{low}x{high}]"


@dataclasses.dataclass(frozen=True)
class _Param:
    """One Typer parameter made from a request field, and how its value goes back into the request."""

    name: str
    parameter: inspect.Parameter
    to_request: Callable[[Any], Any]


def _without_none(annotation: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); ``X`` -> (X, False)."""
    if isinstance(annotation, UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not NoneType]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _cli_type(annotation: Any, spec: OptionSpec, name: str) -> tuple[Any, Callable[[Any], Any]]:
    """The type Typer parses, and the conversion of its value into the request's type: tuples
    become repeatable options (lists), choices become a choice list (an Enum)."""
    inner, optional = _without_none(annotation)
    convert: Callable[[Any], Any] = lambda value: value  # noqa: E731
    if spec.parse is not None:
        parse = spec.parse
        return (str | None if optional else str), lambda value: None if value is None else parse(value)
    if typing.get_origin(inner) is tuple:
        item = typing.get_args(inner)[0]
        inner = list[item]  # type: ignore[valid-type]
        convert = lambda value: tuple(value) if value is not None else None  # noqa: E731
    elif spec.choices is not None:
        inner = Enum(f"{name.title()}Choice", {choice: choice for choice in spec.choices}, type=str)  # type: ignore[misc]
        convert = lambda value: value.value if isinstance(value, Enum) else value  # noqa: E731
    elif spec.negate:
        convert = lambda value: not value  # noqa: E731
    return (inner | None if optional else inner), convert


def _cli_default(field: dataclasses.Field, spec: OptionSpec, annotation: Any) -> Any:
    if field.default is dataclasses.MISSING:
        return inspect.Parameter.empty
    default = field.default
    if spec.negate:
        return not default
    if spec.parse is not None and isinstance(default, tuple):
        return ",".join(format(item, "g") for item in default)
    if isinstance(default, tuple):
        return list(default) if default else None
    if spec.choices is not None and default is not None:
        inner, _ = _without_none(annotation)
        return inner(default)
    return default


def _param(field: dataclasses.Field, spec: OptionSpec, annotation: Any, prefix: str = "") -> _Param:
    cli_type, convert = _cli_type(annotation, spec, field.name)
    # Help is plain text written beside the request's field: the help screen renders Rich markup, so
    # brackets such as "[x, y, w, h]" are escaped to show as written.
    extras: dict[str, Any] = {"help": escape(spec.help) if spec.help else None, "show_default": spec.show_default}
    if spec.complete is not None:
        extras["autocompletion"] = spec.complete
    if spec.path_kind == "file":
        extras["dir_okay"] = False
    elif spec.path_kind == "dir":
        extras["file_okay"] = False
    inner, _ = _without_none(cli_type)
    if inner is bool and not spec.argument:  # a flag takes no value: Typer would show "<bool>" beside it
        extras["metavar"] = ""
    if inner is float:  # bounds and NaN checked by the request's rule, shown in the help
        extras["callback"] = _float_check(spec)
        if spec.minimum is not None or spec.maximum is not None:
            extras["help"] = f"{extras['help'] or ''} {escape(_range_text(spec))}".strip()
    else:
        if spec.minimum is not None:
            extras["min"] = spec.minimum
        if spec.maximum is not None:
            extras["max"] = spec.maximum
    info = typer.Argument(**extras) if spec.argument else typer.Option(*spec.flags, **extras)
    name = prefix + field.name
    default = _cli_default(field, spec, cli_type)
    parameter = inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[cli_type, info], default=default
    )
    return _Param(name, parameter, convert)


def _params(cls: type, prefix: str = "") -> list[_Param]:
    hints = typing.get_type_hints(cls)
    return [_param(f, spec, hints[f.name], prefix) for f, spec in option_fields(cls) if spec.cli]


def request_command(request_cls: type, *, parts: Mapping[str, type] | None = None) -> Callable[[Callable], Callable]:
    """Decorate ``f(request, **cli_only)``: the Typer command takes the options of ``request_cls``'s
    fields (and, for each ``parts`` entry ``field -> part class``, that part's fields, built into the
    part first, as prune's targets), then ``f``'s own options, and calls ``f(request_cls(**values), ...)``.
    """
    parts = dict(parts or {})

    def decorate(func: Callable) -> Callable:
        part_params = {field: _params(part, prefix=f"{field}__") for field, part in parts.items()}
        own_params = [p for p in _params(request_cls) if p.name not in parts]
        hints = typing.get_type_hints(func, include_extras=True)
        extra = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints.get(p.name, p.annotation))
            for p in list(inspect.signature(func).parameters.values())[1:]
        ]
        # Keyword-only, so required and optional options may come in the declared order (--help's).
        built = [p.parameter for p in own_params] + [p.parameter for ps in part_params.values() for p in ps]

        def command(**values: Any) -> Any:
            kwargs = {p.name: p.to_request(values.pop(p.name)) for p in own_params}
            for field, part in parts.items():
                prefix = f"{field}__"
                kwargs[field] = part(
                    **{p.name.removeprefix(prefix): p.to_request(values.pop(p.name)) for p in part_params[field]}
                )
            return func(request_cls(**kwargs), **values)

        command.__signature__ = inspect.Signature([*built, *extra])  # type: ignore[attr-defined]
        command.__annotations__ = {}
        command.__doc__ = func.__doc__
        command.__name__ = func.__name__
        command.__qualname__ = func.__qualname__
        command.__module__ = func.__module__
        return command

    return decorate
