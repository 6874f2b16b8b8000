"""``veritee attest``: the guest side — attest to a broker and print the released secret."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from veritee.attester.errors import CollectorError
from veritee.cli.output import ExitCode, print_json, prose, stderr
from veritee.errors import MisuseError, UndecidedError, VeriteeError
from veritee.tee import get_platform, platforms, tee_names
from veritee.tee.platform import Collector

HELP = """\
Attest this guest to a key broker (veritee or a Confidential Containers KBS) and fetch a
resource: POST /kbs/v0/auth, collect evidence bound to the challenge and to a fresh
ephemeral key, POST /kbs/v0/attest, GET /kbs/v0/resource/<repository/type/tag>, decrypt
the JWE. The secret goes to stdout (or --output); nothing else does.

Evidence comes from the hardware (the TEE's collector: Linux configfs-tsm, or the TEE's
guest device) or, with --emulate, from an emulated TEE whose roots a broker trusts only when
told to.

For TEEs whose guest cannot attest itself (its host relayed the launch measurement and
injected the secrets before the guest ran: see `veritee host --help`), no broker is asked:
the secret is read where the guest's kernel exposes injected secrets, and --url is not
needed.

Exit status: 0 released; 1 refused by the broker (the reason is printed); 3 the broker or
the TEE hardware could not be reached; 2 bad usage.
"""

EPILOG = """\
Examples:
  veritee attest --url http://127.0.0.1:8080 --tee TEE --emulate --resource default/key/disk
  veritee attest --url https://kbs.example --tee TEE --resource myrepo/luks/root --output key.bin
"""


def register(app: typer.Typer) -> None:
    app.command("attest", help=prose(HELP), epilog=EPILOG)(attest)


def attest(
    *,
    url: Annotated[str | None, typer.Option(
        help="The broker's base URL (not needed for injected secrets).")] = None,
    resource: Annotated[str, typer.Option(help="Resource path: repository/type/tag.")],
    tee: Annotated[str, typer.Option(
        "--tee", metavar="TEE", show_default=False,
        help=f"The TEE to attest as: {', '.join(tee_names())}.")],
    emulate: Annotated[bool, typer.Option(
        "--emulate", help="Use an emulated TEE instead of the hardware.")] = False,
    output: Annotated[Path | None, typer.Option(
        help="Write the secret to this file (mode 0600) instead of stdout.")] = None,
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object (resource, released, bytes, error).")] = False,
    secrets_dir: Annotated[Path | None, typer.Option(
        "--secrets-dir", help="For injected secrets: the folder where the guest's kernel "
        "exposes them (default: the platform's own).")] = None,
) -> None:
    from veritee.attester.kbs_client import (  # noqa: PLC0415 - HTTP loads only here
        KbsClient,
        KbsClientError,
    )

    try:
        if output is not None:
            _check_writable(output)
        injected = get_platform(tee).load("injected_secret")
        if injected is not None:
            secret = injected(resource, secrets_dir)
        else:
            if url is None:
                raise MisuseError(f"--url is required: {tee} guests attest to a broker")
            with KbsClient(url, tee, _collector(tee, emulate)) as client:
                secret = client.get_secret(resource)
    except KbsClientError as exc:
        _fail(json_output, resource, exc, ExitCode.REJECTED)
    except (UndecidedError, CollectorError) as exc:
        _fail(json_output, resource, exc, ExitCode.UNDECIDED)
    except VeriteeError as exc:
        _fail(json_output, resource, exc,
              ExitCode.USAGE if isinstance(exc, MisuseError) else ExitCode.REJECTED)
    if output is not None:
        try:
            _write_secret(output, secret)
        except OSError as exc:
            _fail(json_output, resource, MisuseError(
                f"cannot write the secret to {output}: {exc.strerror or exc}"), ExitCode.USAGE)
    if json_output:
        print_json({"resource": resource, "released": True, "bytes": len(secret),
                    "output": str(output) if output else None, "error": None})
    elif output is None:
        sys.stdout.buffer.write(secret)
        sys.stdout.flush()
    raise typer.Exit(ExitCode.OK)


def _check_writable(path: Path) -> None:
    """Refuse an --output the secret could not be written to, before asking for it."""
    target = path if path.exists() else path.parent
    if path.is_dir():
        raise MisuseError(f"--output {path} is a directory")
    if not target.is_dir() and not path.exists():
        raise MisuseError(f"--output {path}: the folder {path.parent} does not exist")
    if not os.access(target, os.W_OK):
        raise MisuseError(f"--output {path} is not writable")


def _write_secret(path: Path, secret: bytes) -> None:
    """Write ``secret`` to ``path``, readable by this user only (mode 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(secret)


def _collector(tee: str, emulate: bool) -> Collector:
    """The platform's hardware collector, or its emulated one (loaded only when asked for)."""
    platform = get_platform(tee)
    slot = "emulated_collector" if emulate else "collector"
    factory = platform.load(slot)
    if factory is None:
        offered = [p.tee for p in platforms() if getattr(p, slot)]
        kind = "emulated collector" if emulate else "collector"
        raise MisuseError(f"TEE {tee!r} has no {kind}; TEEs with one: {', '.join(offered)}")
    collector: Collector = factory()
    return collector


def _fail(json_output: bool, resource: str, exc: VeriteeError, code: int) -> None:
    stderr.print(f"refused: {exc.detail}" if code == ExitCode.REJECTED else f"error: {exc.detail}",
                 markup=False, soft_wrap=True)
    if json_output:
        print_json({"resource": resource, "released": False, "bytes": 0, "output": None,
                    "error": {"type": type(exc).__name__, "detail": exc.detail}})
    raise typer.Exit(code)
