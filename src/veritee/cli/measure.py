"""``veritee measure <tee>``: reference values computed from artefacts (CONTRACT.md §2).

Each platform that can compute its launch measurement names a Typer app in its descriptor
(``measure``); this module only gathers them under one group.
"""

from __future__ import annotations

import typer

from veritee.cli.output import prose
from veritee.tee import platforms

HELP = """\
Compute the measurement a TEE will report, from the artefacts that make it (firmware,
kernel, initrd, command line, ...), to use as a reference value. One subcommand per platform
that can be measured; each has --json.
"""


def register(app: typer.Typer) -> None:
    measurable = [p for p in platforms() if p.measure is not None]
    if not measurable:
        return
    group = typer.Typer(help=prose(HELP), no_args_is_help=True)
    for platform in measurable:
        sub = platform.load("measure")
        own = sub.info.help if isinstance(sub.info.help, str) else ""
        group.add_typer(sub, name=platform.tee,
                        help=own or f"Launch measurement of {platform.title}.",
                        short_help=f"Launch measurement of {platform.title}.")
    app.add_typer(group, name="measure")
