"""The options several commands share, declared once (so they read and behave the same
everywhere: positional EVIDENCE, a required --tee, the verification inputs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from veritee.tee import tee_names

EVIDENCE = Annotated[Path, typer.Argument(
    metavar="EVIDENCE", show_default=False,
    help="Evidence file (raw, hex, base64 or JSON), or - for standard input.")]
TEE = Annotated[str, typer.Option(
    "--tee", metavar="TEE", show_default=False,
    help=f"The TEE that produced the evidence: {', '.join(tee_names())}.")]
ENDORSEMENTS = Annotated[list[Path] | None, typer.Option(
    "--endorsements", metavar="FILE", show_default=False,
    help="Certificates or keys the verifier may use (VCEK/VLEK, ASK/ARK bundles, ...; PEM, "
         "DER or base64). Repeatable.")]
COLLATERAL = Annotated[list[Path] | None, typer.Option(
    "--collateral", metavar="PATH", show_default=False,
    help="A file or directory of vendor collateral (CRLs, TCB info, ...), recognised by "
         "content. Repeatable.")]
AT = Annotated[str | None, typer.Option(
    "--at", metavar="RFC3339", show_default=False,
    help="Verify at this instant, e.g. 2024-05-01T12:00:00Z or ...+02:00. Default: now.")]
REPORT_DATA = Annotated[str | None, typer.Option(
    "--report-data", metavar="HEX", show_default=False,
    help="The exact expected report-data/nonce field, in hex (its full size).")]
TRUST_EMULATED = Annotated[bool, typer.Option(
    "--trust-emulated",
    help="Also trust the emulated (test) roots of veritee.testing; results say emulated: "
         "true. Never use for real decisions.")]
OFFLINE = Annotated[bool, typer.Option(
    "--offline", envvar="VERITEE_OFFLINE",
    help="Never reach a vendor service; use only the evidence, the files given and the "
         "cache. Also set by VERITEE_OFFLINE=1.")]
CACHE_DIR = Annotated[Path | None, typer.Option(
    "--cache-dir", metavar="DIR", envvar="VERITEE_CACHE_DIR", show_default=False,
    help="Persistent collateral cache. Default: the user cache directory, "
         "veritee/collateral.")]
JSON = Annotated[bool, typer.Option("--json", help="Print exactly one JSON object on stdout.")]
