"""``veritee demo``: the whole story on this machine, through a real broker on loopback
(the work is in :mod:`veritee.cli.demo_run`, loaded only when the demo runs)."""

from __future__ import annotations

from typing import Annotated

import typer

from veritee.cli.output import prose

HELP = """\
Run the demo: start a broker on loopback, provision a secret, reference values and
policies, and attest emulated guests of every supported TEE through the KBS protocol —
genuine guests receive the secret; a measurement that is not a reference value, a replayed
challenge and evidence with one defect each are refused with the broker's explanation.
Real hardware samples of the shared corpus (VERITEE_CORPUS, or ../shared/corpus) are
verified offline when present (outcome "verified": nothing is released to a sample). Prints
a table; with --json, the table goes to stderr and one JSON object {"rows": [...]} to
stdout. Exit status 0 when every case ended as expected. Nothing here reaches the network.
"""



def register(app: typer.Typer) -> None:
    app.command("demo", help=prose(HELP))(demo)


def demo(
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object on stdout (the table goes to stderr).")] = False,
) -> None:
    from veritee.cli.demo_run import run  # noqa: PLC0415 - the broker stack loads only here

    raise typer.Exit(run(json_output))
