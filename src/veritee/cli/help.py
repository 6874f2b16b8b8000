"""Help that reads well: metavars that name what a value is (``FILE``, ``N``, ``TEXT``), no
type noise beside flags, and help text shown as written (square brackets included)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args, get_origin

import typer
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


class Command(TyperCommand):
    def format_help(self, ctx: Any, formatter: Any) -> None:
        readable_metavars(self, ctx)
        super().format_help(ctx, formatter)


class Group(TyperGroup):
    def format_help(self, ctx: Any, formatter: Any) -> None:
        readable_metavars(self, ctx)
        super().format_help(ctx, formatter)


def polish(app: typer.Typer) -> None:
    """Use :class:`Command` and :class:`Group` for every command and group of ``app``."""
    app.info.cls = Group
    for info in app.registered_commands:
        info.cls = Command
    for group in app.registered_groups:
        instance: Any = group.typer_instance
        if instance is not None:
            polish(instance)
