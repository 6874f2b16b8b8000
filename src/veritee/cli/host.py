"""``veritee host ...``: host-side helpers of the platforms whose guests cannot attest
themselves (their host relays a launch measurement and injects the secret the broker
returns). Each such platform names a Typer app in its descriptor (``host``); this module
only gathers their commands under one group."""

from __future__ import annotations

import typer

from veritee.cli.output import prose
from veritee.tee import platforms

HELP = """\
Run on the machine that launches a confidential guest, for TEEs whose guest cannot
attest itself: ask the broker for a launch session, relay the launch measurement the
firmware computed, and inject the secret the broker releases. Each command's --help shows
the whole flow.
"""


def register(app: typer.Typer) -> None:
    group = typer.Typer(help=prose(HELP), no_args_is_help=True)
    seen: set[str] = set()
    for platform in platforms():
        if platform.host is None or platform.host in seen:
            continue
        seen.add(platform.host)  # one app may serve several TEEs of a room
        group.add_typer(platform.load("host"))
    app.add_typer(group, name="host")
