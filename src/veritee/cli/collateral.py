"""``veritee collateral``: fill and list the persistent collateral cache (for offline use)."""

from __future__ import annotations

from pathlib import Path

import typer

from veritee.cli import options
from veritee.cli.output import ExitCode, print_json, prose, stderr, stdout
from veritee.cli.verify import default_cache_dir, read_evidence
from veritee.collateral import CollateralSource, DirectoryCache, Fetcher
from veritee.errors import MisuseError, UndecidedError, VeriteeError
from veritee.evidence import decode_evidence
from veritee.tee import get_platform, platforms

HELP = """\
The persistent collateral cache that `veritee verify` and the broker read before asking a
vendor service: answers are stored by their exact request URL. Fill it on a connected
machine with `veritee collateral fetch`, copy the folder, and verify offline with
--cache-dir DIR --offline (a cached CRL is then checked too).
"""

FETCH_HELP = """\
Fetch what verifying EVIDENCE needs from the vendor service into the cache (for an SEV-SNP
report, say: the VCEK for its chip and TCB, the certificate chain, and the CRL; for an Intel
DCAP quote: its platform's TCB Info, the QE identity, the PCK and Root CA CRLs and their issuer
chains, from Intel PCS or the PCCS mirrors configured). EVIDENCE is a file in any form
`veritee verify` reads. An offline verifier or broker with the same cache then needs no
network.
"""



def register(app: typer.Typer) -> None:
    group = typer.Typer(help=prose(HELP), no_args_is_help=True)
    group.command("fetch", help=prose(FETCH_HELP), no_args_is_help=True)(fetch)
    group.command("ls", help="List what the cache holds.")(ls)
    app.add_typer(group, name="collateral")


def fetch(
    *,
    evidence: options.EVIDENCE,
    tee: options.TEE,
    cache_dir: options.CACHE_DIR = None,
    json_output: options.JSON = False,
) -> None:
    try:
        fetched = fetch_into(tee, read_evidence(evidence), cache_dir or default_cache_dir())
    except MisuseError as exc:
        _stop(json_output, exc, ExitCode.USAGE)
    except UndecidedError as exc:
        _stop(json_output, exc, ExitCode.UNDECIDED)
    except VeriteeError as exc:  # the evidence itself does not parse
        _stop(json_output, exc, ExitCode.REJECTED)
    if json_output:
        print_json({"fetched": fetched, "error": None})
    else:
        for url in fetched:
            stdout.print(f"cached {url}", markup=False, soft_wrap=True)
    raise typer.Exit(ExitCode.OK)


def fetch_into(tee: str, blob: bytes, cache_dir: Path, *,
               fetcher: Fetcher | None = None) -> list[str]:
    """Fetch every request the platform lists for the evidence ``blob`` into ``cache_dir``;
    the URLs fetched. ``fetcher``: the vendor services (default: the network).

    Raises:
        MisuseError: the platform lists no collateral to fetch.
        UndecidedError: a vendor service did not answer usefully.
        EvidenceError: the evidence does not parse.
    """
    platform = get_platform(tee)
    needed = platform.load("collateral")
    if needed is None:
        offered = ", ".join(p.tee for p in platforms() if p.collateral) or "none"
        raise MisuseError(f"TEE {tee!r} has no collateral to fetch; TEEs that do: {offered}")
    if fetcher is None:
        from veritee.collateral.fetch import HttpFetcher  # noqa: PLC0415 - online only

        fetcher = HttpFetcher()
    source = CollateralSource(cache=DirectoryCache(cache_dir), fetcher=fetcher)
    fetched = []
    for request in needed(decode_evidence(blob)):
        source.get(request.url, request.what, service=request.service, max_age=request.max_age,
                   keep_headers=request.keep_headers)
        fetched.append(request.url)
    return fetched


def ls(*, cache_dir: options.CACHE_DIR = None, json_output: options.JSON = False) -> None:
    entries = DirectoryCache(cache_dir or default_cache_dir()).entries()
    if json_output:
        print_json({"entries": entries})
        return
    for entry in entries:
        stdout.print(str(entry.get("key")), markup=False, soft_wrap=True)
    if not entries:
        stdout.print("the cache is empty")


def _stop(json_output: bool, exc: VeriteeError, code: int) -> None:
    stderr.print(f"{type(exc).__name__}: {exc.detail}", markup=False, soft_wrap=True)
    if json_output:
        print_json({"fetched": [], "error": {"type": type(exc).__name__, "detail": exc.detail}})
    raise typer.Exit(code)
