"""``veritee attest``: the guest side — attest to a broker and print the released secret."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from veritee.attester.errors import CollectorError
from veritee.attester.kbs_client import Collector, KbsClient, KbsClientError
from veritee.cli.output import EXIT_OK, EXIT_REJECTED, EXIT_UNDECIDED, print_json, prose, stderr
from veritee.errors import MisuseError, UndecidedError, VeriteeError

HELP = """\
Attest this guest to a key broker (veritee or a Confidential Containers KBS) and fetch a
resource: POST /kbs/v0/auth, collect evidence bound to the challenge and to a fresh
ephemeral key, POST /kbs/v0/attest, GET /kbs/v0/resource/<repository/type/tag>, decrypt
the JWE. The secret goes to stdout (or --output); nothing else does.

Evidence comes from the hardware (SEV-SNP: Linux configfs-tsm, else /dev/sev-guest) or,
with --emulate, from an emulated TEE whose roots a broker trusts only when told to.

Exit status: 0 released; 1 refused by the broker (the reason is printed); 3 the broker or
the TEE hardware could not be reached; 2 bad usage.
"""

EPILOG = """\
Examples:
  veritee attest --url http://127.0.0.1:8080 --tee snp --emulate --resource default/key/disk
  veritee attest --url https://kbs.example --tee snp --resource myrepo/luks/root --output key.bin
"""


def register(app: typer.Typer) -> None:
    app.command("attest", help=prose(HELP), epilog=EPILOG)(attest)


def attest(
    *,
    url: Annotated[str, typer.Option(help="The broker's base URL.")],
    resource: Annotated[str, typer.Option(help="Resource path: repository/type/tag.")],
    tee: Annotated[str, typer.Option(help="The TEE to attest as (snp).")] = "snp",
    emulate: Annotated[bool, typer.Option(
        "--emulate", help="Use an emulated TEE instead of the hardware.")] = False,
    output: Annotated[Path | None, typer.Option(
        help="Write the secret to this file (mode 0600) instead of stdout.")] = None,
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object (resource, released, bytes, error).")] = False,
) -> None:
    try:
        with KbsClient(url, tee, _collector(tee, emulate)) as client:
            secret = client.get_secret(resource)
    except KbsClientError as exc:
        _fail(json_output, resource, exc, EXIT_REJECTED)
    except (UndecidedError, CollectorError) as exc:
        _fail(json_output, resource, exc, EXIT_UNDECIDED)
    except VeriteeError as exc:
        _fail(json_output, resource, exc, EXIT_REJECTED if not isinstance(exc, MisuseError) else 2)
    if output is not None:
        output.touch(mode=0o600)
        output.write_bytes(secret)
    if json_output:
        print_json({"resource": resource, "released": True, "bytes": len(secret),
                    "output": str(output) if output else None, "error": None})
    elif output is None:
        sys.stdout.buffer.write(secret)
        sys.stdout.flush()
    raise typer.Exit(EXIT_OK)


def _collector(tee: str, emulate: bool) -> Collector:
    if tee != "snp":
        raise MisuseError(f"no collector for TEE {tee!r} yet; supported: snp")
    from veritee.attester.snp import (  # noqa: PLC0415 - loaded only when collecting
        EmulatedSnpCollector,
        HardwareSnpCollector,
    )

    return EmulatedSnpCollector() if emulate else HardwareSnpCollector()


def _fail(json_output: bool, resource: str, exc: VeriteeError, code: int) -> None:
    stderr.print(f"refused: {exc.detail}" if code == EXIT_REJECTED else f"error: {exc.detail}",
                 markup=False, soft_wrap=True)
    if json_output:
        print_json({"resource": resource, "released": False, "bytes": 0, "output": None,
                    "error": {"type": type(exc).__name__, "detail": exc.detail}})
    raise typer.Exit(code)
