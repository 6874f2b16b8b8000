"""Rich renderings of verdicts and claims, shared by the commands that show them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from rich.table import Table
from rich.text import Text

from veritee.tee import get_platform

Format = Callable[[Any, Mapping[str, Any]], str]


def verdict(style: str, word: str, tee: str, error: Mapping[str, str] | None,
            claims: Mapping[str, Any]) -> Text:
    """``VERIFIED <tee> evidence ...`` / ``REJECTED SignatureError: ...``."""
    line = Text()
    line.append(word, style=style)
    if error is None:
        line.append(f"  {tee} evidence verified")
        if claims.get("emulated"):
            line.append("  (emulated roots: a test PKI, not a real TEE)", style="yellow")
        return line
    line.append(f"  {error['type']}: ", style="bold")
    line.append(error["detail"])
    return line


def claims_table(tee: str, claims: Mapping[str, Any]) -> Table:
    """The claims the platform's descriptor lists (``summary``), or every scalar claim."""
    platform = get_platform(tee)
    formats: Mapping[str, Format] = {**_FORMATS, **(platform.load("summary_formats") or {})}
    table = Table(title=f"{tee} claims", show_header=True, header_style="bold")
    table.add_column("claim", style="cyan", no_wrap=True)
    table.add_column("value", overflow="fold")
    for name in platform.summary or _scalars(claims):
        if name in claims:
            table.add_row(name, formats.get(name, _plain)(claims[name], claims))
    return table


def _scalars(claims: Mapping[str, Any]) -> list[str]:
    return [k for k, v in claims.items() if not isinstance(v, dict | list)]


def _plain(value: Any, _claims: Mapping[str, Any]) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return " · ".join(f"{k} {v}" for k, v in value.items())
    return str(value)


def _emulated(value: Any, claims: Mapping[str, Any]) -> str:
    return "yes (test PKI)" if value else "no"


_FORMATS: dict[str, Format] = {"emulated": _emulated}
