"""``veritee emulate``: evidence from an emulated TEE, for trying things without hardware
(CONTRACT.md §6)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from veritee.cli.output import EXIT_OK, EXIT_USAGE, print_json, prose, stderr, stdout
from veritee.cli.verify import parse_hex
from veritee.errors import MisuseError
from veritee.tee import get_platform, platforms

if TYPE_CHECKING:
    from veritee.testing import Emulator

HELP = """\
Write one piece of evidence from the emulated TEE, in that TEE's usual wire form, signed by
veritee's test PKI. `veritee verify --trust-emulated` and `veritee policy test
--trust-emulated` accept it; nothing trusts it otherwise (its claims say emulated: true).

--report-data sets the report-data field exactly as given (hex, the field's full size);
--host-data sets the field that carries the init-data digest where the TEE has one;
--knob applies a setting (name=value) or one defect, whose verification error --list-knobs
names. When a defect needs collateral to show (a CRL for a revoked certificate), that file
is written beside --out and named on stderr.
"""

EPILOG = """\
Examples:
  veritee emulate TEE --list-knobs
  veritee emulate TEE --out evidence.bin
  veritee emulate TEE --out debug.bin --knob debug --report-data 00...00
"""


def register(app: typer.Typer) -> None:
    app.command("emulate", help=prose(HELP), epilog=EPILOG, no_args_is_help=True)(emulate)


def emulate(  # noqa: PLR0917 - Typer passes options by keyword; TEE is the argument
    tee: Annotated[str, typer.Argument(
        metavar="TEE", show_default=False,
        help=f"The TEE to emulate: {', '.join(p.tee for p in platforms() if p.emulator)}.")],
    out: Annotated[Path | None, typer.Option(
        "--out", metavar="FILE", show_default=False,
        help="Where to write the evidence (- for standard output).")] = None,
    report_data: Annotated[str | None, typer.Option(
        "--report-data", metavar="HEX", show_default=False,
        help="The report-data field, exactly as given (hex).")] = None,
    host_data: Annotated[str | None, typer.Option(
        "--host-data", metavar="HEX", show_default=False,
        help="The field that carries the init-data digest, hex: "
             + "; ".join(f"{p.tee} {p.init_data.claim} ({p.init_data.size} bytes)"
                         for p in platforms() if p.init_data and p.emulator) + ".")] = None,
    knob: Annotated[list[str] | None, typer.Option(
        "--knob", metavar="KNOB", show_default=False,
        help="A setting or a defect to apply (see --list-knobs). Repeatable.")] = None,
    list_knobs: Annotated[bool, typer.Option(
        "--list-knobs", help="Print the knobs of this TEE's emulator and exit.")] = False,
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object on stdout (with --list-knobs: the knobs).")] = False,
) -> None:
    try:
        emulator = _emulator(tee)
        if list_knobs:
            _show_knobs(tee, dict(emulator.knobs), json_output)
            raise typer.Exit(EXIT_OK)
        if out is None:
            raise MisuseError("--out FILE is required (or --list-knobs)")
        made = emulator.emulate(report_data=parse_hex(report_data, "--report-data"),
                                host_data=parse_hex(host_data, "--host-data"),
                                knobs=tuple(knob or ()))
        written = [_write(out, made.evidence)]
        written += [_write(Path(f"{out}{suffix}"), data) for suffix, data in made.endorsements]
    except ValueError as exc:
        _stop(json_output, MisuseError(str(exc)))
    except MisuseError as exc:
        _stop(json_output, exc)
    if json_output:
        print_json({"tee": tee, "form": made.form, "files": [w for w in written if w],
                    "error": None})
    elif str(out) != "-":
        stderr.print(f"wrote {made.form} evidence of an emulated {tee} TEE to {out}"
                     + "".join(f"; collateral {w}" for w in written[1:]), markup=False,
                     soft_wrap=True)
    raise typer.Exit(EXIT_OK)


def _emulator(tee: str) -> Emulator:
    platform = get_platform(tee)
    emulator: Emulator | None = platform.load("emulator")
    if emulator is None:
        offered = ", ".join(p.tee for p in platforms() if p.emulator) or "none"
        raise MisuseError(f"TEE {tee!r} has no emulator; emulated TEEs: {offered}")
    return emulator


def _show_knobs(tee: str, knobs: dict[str, str], json_output: bool) -> None:
    if json_output:
        print_json({"tee": tee, "knobs": knobs})
        return
    table = Table(title=f"knobs of the emulated {tee} TEE", header_style="bold")
    table.add_column("knob", style="cyan", no_wrap=True)
    table.add_column("what it does", overflow="fold")
    for name, description in knobs.items():
        table.add_row(name, description)
    stdout.print(table)


def _write(path: Path, data: bytes) -> str:
    """Write ``data`` to ``path`` (``-``: standard output); the path written, or ``""``."""
    if str(path) == "-":
        typer.get_binary_stream("stdout").write(data)
        return ""
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise MisuseError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return str(path)


def _stop(json_output: bool, exc: MisuseError) -> None:
    stderr.print(f"veritee emulate: {exc.detail}", markup=False, soft_wrap=True)
    if json_output:
        print_json({"status": "error", "error": {"type": type(exc).__name__,
                                                  "detail": exc.detail}})
    raise typer.Exit(EXIT_USAGE)
