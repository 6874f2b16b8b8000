"""``veritee collateral``: fill and list the persistent collateral cache (for offline use)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from veritee.cli.output import (
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_UNDECIDED,
    EXIT_USAGE,
    print_json,
    prose,
    stderr,
    stdout,
)
from veritee.cli.verify import default_cache_dir, read_evidence
from veritee.collateral import HttpFetcher
from veritee.collateral.amd import KdsClient
from veritee.collateral.cache import DirectoryCache
from veritee.errors import MisuseError, UndecidedError, VeriteeError
from veritee.evidence import decode_evidence
from veritee.tee.snp.evidence import parse_snp_evidence
from veritee.tee.snp.layout import TcbVersion, chip_id_looks_turin, product_from_cpuid

HELP = """\
The persistent collateral cache that `veritee verify` and the broker read before asking a
vendor service: answers are stored by their exact request URL. Fill it on a connected
machine with `veritee collateral fetch`, copy the folder, and verify offline with
--cache-dir DIR --offline (a cached CRL is then checked too).
"""

FETCH_HELP = """\
Fetch what verifying EVIDENCE needs from the vendor service into the cache: for snp, the
VCEK for the report's chip and REPORTED_TCB, the ASK/ASVK+ARK chain, and the CRL.
"""


def register(app: typer.Typer) -> None:
    group = typer.Typer(help=prose(HELP), no_args_is_help=True)
    group.command("fetch", help=prose(FETCH_HELP))(fetch)
    group.command("ls", help="List what the cache holds.")(ls)
    app.add_typer(group, name="collateral")


def fetch(
    *,
    evidence: Annotated[Path, typer.Argument(help="Evidence file (any form verify takes).")],
    tee: Annotated[str, typer.Option(help="The TEE that produced the evidence.")] = "snp",
    cache_dir: Annotated[Path | None, typer.Option(help="Cache folder.")] = None,
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    if tee != "snp":
        stderr.print(f"no collateral fetching for TEE {tee!r} yet; supported: snp")
        raise typer.Exit(EXIT_USAGE)
    kds = KdsClient(DirectoryCache(cache_dir or default_cache_dir()), HttpFetcher())
    fetched: list[str] = []
    try:
        report = parse_snp_evidence(decode_evidence(read_evidence(evidence))).report
        product = (product_from_cpuid(report.cpuid_fam_id, report.cpuid_mod_id)
                   if report.has_cpuid else ("turin" if chip_id_looks_turin(report.chip_id)
                                             else None))
        title = (product or "milan").capitalize()
        signer = report.signing_key if report.signing_key in ("vcek", "vlek") else "vcek"
        if signer == "vcek" and any(report.chip_id):
            turin = title == "Turin"
            tcb = TcbVersion.decode(report.reported_tcb, turin=turin).components()
            hwid = report.chip_id[:8] if turin else report.chip_id
            kds.vcek(title, hwid, tcb)
            fetched.append(kds.vcek_url(title, hwid, tcb))
        for url, get in ((kds.chain_url(title, signer), kds.cert_chain),
                         (kds.crl_url(title, signer), kds.crl)):
            get(title, signer)
            fetched.append(url)
    except MisuseError as exc:
        _stop(json_output, exc, EXIT_USAGE)
    except UndecidedError as exc:
        _stop(json_output, exc, EXIT_UNDECIDED)
    except VeriteeError as exc:  # the evidence itself does not parse
        _stop(json_output, exc, EXIT_REJECTED)
    if json_output:
        print_json({"fetched": fetched, "error": None})
    else:
        for url in fetched:
            stdout.print(f"cached {url}", markup=False, soft_wrap=True)
    raise typer.Exit(EXIT_OK)


def ls(*, cache_dir: Annotated[Path | None, typer.Option(help="Cache folder.")] = None,
       json_output: Annotated[bool, typer.Option("--json")] = False) -> None:
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
