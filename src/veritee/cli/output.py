"""What every command shares: consoles, exit statuses and the JSON error object."""

from __future__ import annotations

import json
import sys
from enum import IntEnum
from typing import Any

from rich.console import Console
from rich.markup import escape

from veritee.claims import to_jsonable


class ExitCode(IntEnum):
    """Exit statuses (CONTRACT.md §1): verified, rejected, bad usage, undecided."""

    OK = 0
    REJECTED = 1
    USAGE = 2
    UNDECIDED = 3


EXIT_OK, EXIT_REJECTED, EXIT_USAGE, EXIT_UNDECIDED = (ExitCode.OK, ExitCode.REJECTED,
                                                      ExitCode.USAGE, ExitCode.UNDECIDED)

#: Human output. Both consoles look up sys.stdout / sys.stderr when they print, so tests
#: that capture the streams see everything.
stdout = Console(highlight=False)
stderr = Console(stderr=True, highlight=False)


def prose(text: str) -> str:
    """Help text with each paragraph on one line, so rich wraps it to the terminal, and
    square brackets kept as text (``[store] url`` is not markup)."""
    paragraphs = (escape(" ".join(p.split())) for p in text.strip().split("\n\n"))
    return "\n\n".join(paragraphs)


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
