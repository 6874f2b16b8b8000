"""How commands read and parse: metavars that name what a value is (``FILE``, ``N``,
``TEXT``), no type noise beside flags, help text shown as written (square brackets included),
and the plain parameters (text, paths, flags) converted without Pydantic.

Typer 0.29 converts every parameter value through a Pydantic ``TypeAdapter``, and importing
Pydantic and building the adapters costs about 0.1 s, a third of ``veritee verify``'s start.
For a ``str``, ``bool`` or ``Path`` parameter (or a list of them) without a parser,
:class:`PlainParam` does what Typer's adapter does (text as given; a flag's word from an
environment variable; a path through Typer's own path checks) and hands anything else to
Typer's coercion. A test compares both on every parameter of every command.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

import typer
from typer._coercion import RuntimeParam, build_runtime_param
from typer._param_types import coerce_cli_path
from typer.core import TyperCommand, TyperGroup

#: Metavars by the annotation of the parameter (or of its list items).
_BY_TYPE: dict[type, str] = {int: "N", float: "X", str: "TEXT", Path: "PATH"}


def _metavar(param: Any) -> str | None:
    descriptor = getattr(param, "type_descriptor", None)
    annotation = getattr(descriptor, "annotation", None)
    if get_origin(annotation) in (list, tuple):
        annotation = (get_args(annotation) or (None,))[0]
    return _BY_TYPE.get(annotation) if isinstance(annotation, type) else None


def readable_metavars(command: Any, ctx: Any) -> None:
    """Give every parameter without a metavar one named after its kind; flags get none."""
    for param in command.get_params(ctx):
        if param.metavar is not None:
            continue
        if getattr(param, "is_flag", False) or getattr(param, "count", False):
            param.metavar = ""
        else:
            param.metavar = _metavar(param)


# -- conversion without Pydantic ---------------------------------------------------------------

#: The words Pydantic reads as a boolean (case-insensitive; Typer reads blank as false).
_BOOL_WORDS = {"1": True, "on": True, "t": True, "true": True, "y": True, "yes": True,
               "0": False, "off": False, "f": False, "false": False, "n": False, "no": False}
_UNSURE: Any = object()


def _leaf(annotation: Any, value: Any, param: Any, ctx: Any) -> Any:
    if annotation is str:
        return value if isinstance(value, str) else _UNSURE
    if annotation is bool:
        if isinstance(value, bool):
            return value
        return _BOOL_WORDS.get(value.strip().lower() or "0", _UNSURE) if isinstance(
            value, str) else _UNSURE
    if isinstance(annotation, type) and issubclass(annotation, Path) and isinstance(value, str):
        path = annotation(value)
        if str(path) != value:  # Typer's messages quote the text as given ("", "a/", "./a")
            return _UNSURE
        info = param.type_descriptor.parameter_info
        return coerce_cli_path(path, info, path_type=annotation, param=param, ctx=ctx)
    return _UNSURE


def plain(annotation: Any, value: Any, param: Any, ctx: Any) -> Any:
    """``value`` converted as Typer's adapter would, or ``_UNSURE`` where this cannot tell."""
    if get_origin(annotation) is list:
        (item,) = get_args(annotation)
        items = value if isinstance(value, (list, tuple)) else [value]
        converted = [_leaf(item, v, param, ctx) for v in items]
        return _UNSURE if any(c is _UNSURE for c in converted) else converted
    return _leaf(annotation, value, param, ctx)


def _is_plain(annotation: Any) -> bool:
    if get_origin(annotation) is list:
        annotation = (get_args(annotation) or (None,))[0]
    return annotation in (str, bool) or (isinstance(annotation, type)
                                         and issubclass(annotation, Path))


@dataclass(frozen=True)
class PlainParam(RuntimeParam):
    """Typer's runtime coercion for a plain parameter, without Pydantic when it can."""

    def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
        converted = plain(self.annotation, value, param, ctx)
        if converted is _UNSURE:
            return build_runtime_param(param.type_descriptor)._coerce_value(
                value, param=param, ctx=ctx)
        return converted


def plain_params(params: list[Any]) -> list[Any]:
    """``params``, each plain one given a :class:`PlainParam` (once)."""
    for param in params:
        descriptor = getattr(param, "type_descriptor", None)
        if (descriptor is None or getattr(param, "_runtime_param", False) is not None
                or descriptor.parameter_info.parser is not None or descriptor.file_annotation
                is not None or descriptor.choices is not None
                or not _is_plain(descriptor.annotation)):
            continue
        param._runtime_param = PlainParam(parameter_info=descriptor.parameter_info,
                                          annotation=descriptor.annotation)
    return params


# -- the command classes -----------------------------------------------------------------------


class _Polished:
    """What :class:`Command` and :class:`Group` add to Typer's classes."""

    def get_params(self, ctx: Any) -> list[Any]:
        return plain_params(super().get_params(ctx))  # type: ignore[misc]

    def format_help(self, ctx: Any, formatter: Any) -> None:
        readable_metavars(self, ctx)
        super().format_help(ctx, formatter)  # type: ignore[misc]


class Command(_Polished, TyperCommand):
    pass


class Group(_Polished, TyperGroup):
    pass


def polish(app: typer.Typer) -> None:
    """Use :class:`Command` and :class:`Group` for every command and group of ``app``."""
    app.info.cls = Group
    for info in app.registered_commands:
        info.cls = Command
    for group in app.registered_groups:
        instance: Any = group.typer_instance
        if instance is not None:
            polish(instance)
