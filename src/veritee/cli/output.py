"""What every command shares: consoles, exit statuses and the JSON error object."""

from __future__ import annotations

import json
import re
import sys
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from veritee.claims import to_jsonable

if TYPE_CHECKING:
    from rich.console import Console


class ExitCode(IntEnum):
    """Exit statuses (CONTRACT.md §1): verified, rejected, bad usage, undecided."""

    OK = 0
    REJECTED = 1
    USAGE = 2
    UNDECIDED = 3


EXIT_OK, EXIT_REJECTED, EXIT_USAGE, EXIT_UNDECIDED = (ExitCode.OK, ExitCode.REJECTED,
                                                      ExitCode.USAGE, ExitCode.UNDECIDED)

#: Human output: ``stdout`` and ``stderr`` are rich consoles, made on first use (so a command
#: that prints only JSON never imports rich). Both look up sys.stdout / sys.stderr when they
#: print, so tests that capture the streams see everything.
if TYPE_CHECKING:
    stdout: Console
    stderr: Console

_CONSOLES = ("stdout", "stderr")


def __getattr__(name: str) -> Console:
    if name not in _CONSOLES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from rich.console import Console  # noqa: PLC0415 - rich loads when something is printed

    console = Console(stderr=name == "stderr", highlight=False)
    globals()[name] = console
    return console


def prose(text: str) -> str:
    """Help text with each paragraph on one line, so rich wraps it to the terminal, and
    square brackets kept as text (``[store] url`` is not markup)."""
    paragraphs = (escape(" ".join(p.split())) for p in text.strip().split("\n\n"))
    return "\n\n".join(paragraphs)


_MARKUP = re.compile(r"(\\*)(\[[a-z#/@][^[]*?])")


def escape(text: str) -> str:
    """``rich.markup.escape`` (square brackets that would open a tag are escaped), without
    importing rich, which help text is built with before anything is printed."""
    text = _MARKUP.sub(lambda m: f"{m[1]}{m[1]}\\{m[2]}", text)
    return text + "\\" if text.endswith("\\") and not text.endswith("\\\\") else text


def print_json(document: Any) -> None:
    """Write ``document`` as one line of JSON on stdout (never through rich)."""
    sys.stdout.write(json.dumps(to_jsonable(document), sort_keys=False) + "\n")
    sys.stdout.flush()


def error_object(error_type: str, detail: str, command: str | None = None,
                 tee: str | None = None) -> dict[str, Any]:
    """The JSON a command prints under ``--json`` when it stops on a usage error (exit 2).

    ``status`` is ``"error"``: no verdict was reached, so none of the three verdicts
    (verified, rejected, undecided) applies. For ``verify`` the object keeps the four keys
    of CONTRACT.md §1.
    """
    document: dict[str, Any] = {"status": "error", "error": {"type": error_type, "detail": detail}}
    if command == "verify":
        return {"tee": tee, **document, "claims": {}}
    return document
