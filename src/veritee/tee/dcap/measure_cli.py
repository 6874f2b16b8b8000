"""``veritee measure tdx``: MRTD from a TDVF (OVMF built for TDX) image, to use as the
reference value ``tdx_mr_td``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer

from veritee.cli.output import ExitCode, print_json, prose, stderr, stdout
from veritee.errors import VeriteeError
from veritee.tee.dcap.measure import ORDERS, measure

HELP = """\
MRTD, the initial measurement of a TD, computed from its TDVF image (for example OVMF.fd
built with TDX support) as the TDX module computes it: MEM.PAGE.ADD of every section page
and MR.EXTEND of the sections marked for it, in the order the VMM adds them. VMMs differ:
--order single-pass (each section added and extended in turn; QEMU's) or two-pass (every
section added first, then extended), or both to print each. The split OVMF_CODE.fd is
refused: measure the combined image. --json prints CONTRACT.md's object (a list for
--order both); --as-reference-values prints {"tdx_mr_td": [...]} for
`veritee admin add-reference-values`.
"""

app = typer.Typer(help=prose(HELP), no_args_is_help=True)


@app.callback(invoke_without_command=True)
def main(
    tdvf: Annotated[Path, typer.Option("--tdvf", help="The TDVF image (OVMF.fd).",
                                       exists=False, dir_okay=False)],
    order: Annotated[str, typer.Option(help="Page-add order: single-pass, two-pass or "
                                       "both.")] = "single-pass",
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    as_reference_values: Annotated[bool, typer.Option(
        "--as-reference-values", help="Print {\"tdx_mr_td\": [...]} for admin "
        "add-reference-values.")] = False,
) -> None:
    orders = list(ORDERS) if order == "both" else [order]
    if any(o not in ORDERS for o in orders):
        _usage(f"--order is {order!r}; expected single-pass, two-pass or both")
    try:
        image = tdvf.read_bytes()
    except OSError as exc:
        _usage(f"cannot read the TDVF image {tdvf}: {exc.strerror or exc}")
    try:
        results = [measure(image, order=o) for o in orders]
    except VeriteeError as exc:
        stderr.print(f"{tdvf}: {exc.detail}", markup=False, soft_wrap=True)
        if json_output:
            print_json({"status": "error", "error": {"type": type(exc).__name__,
                                                     "detail": exc.detail}})
        raise typer.Exit(ExitCode.REJECTED) from exc
    if as_reference_values:
        print_json({"tdx_mr_td": sorted({r.mr_td.hex() for r in results})})
    elif json_output:
        documents = [r.to_json() for r in results]
        print_json(documents if order == "both" else documents[0])
    else:
        for result in results:
            stdout.print(f"MRTD ({result.order}): {result.mr_td.hex()}", markup=False,
                         soft_wrap=True)


def _usage(line: str) -> NoReturn:
    stderr.print(line, markup=False, soft_wrap=True)
    raise typer.Exit(ExitCode.USAGE)
