"""``veritee verify``: offline verification of one piece of evidence (CONTRACT.md §1)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from veritee.cli import options, output
from veritee.cli.output import ExitCode, error_object, print_json, prose
from veritee.collateral import CollateralSource, DirectoryCache, Fetcher
from veritee.errors import MisuseError, UndecidedError, VeriteeError
from veritee.evidence import MAX_EVIDENCE_BYTES, decode_evidence
from veritee.tee import get_verifier, platforms

HELP = """\
Verify one piece of attestation evidence and print the verdict.

EVIDENCE is a file, or - for standard input, holding the evidence in any form users hold
it: raw binary, hex text (with or without 0x; whitespace is ignored), base64 or base64url
text, or JSON. Bytes that tools append after a report are ignored. By TEE:
{forms}

Certificates the evidence does not carry come from --endorsements, --collateral, the cache
in --cache-dir, or the vendor's service unless --offline is given. Vendor roots are pinned
by fingerprint: a root from any source is used only if it matches.

Exit status: 0 verified; 1 rejected (malformed, forged, revoked, expired, or not matching
--report-data); 3 undecided (a needed input, such as the VCEK, is missing); 2 bad usage
(unknown option or TEE, unreadable file, bad --at or --report-data).

With --json, stdout holds exactly one JSON object with the keys tee, status, error and
claims. status is verified, rejected or undecided; on a usage error (exit 2) it is "error".
"""

EPILOG = """\
Examples:
  veritee verify --tee TEE evidence.bin --endorsements cert.der --endorsements chain.pem
  veritee verify --tee TEE report.hex --at 2024-05-01T00:00:00Z --report-data 0102...00 --json
  veritee emulate TEE --out emulated.bin && veritee verify --tee TEE --trust-emulated emulated.bin
"""


def evidence_forms() -> str:
    """One line per platform: the wire forms ``veritee verify`` reads for it."""
    return "\n\n".join(f"{p.tee} ({p.title}): {p.evidence_help}." for p in platforms()
                       if p.evidence_help)

_VERDICTS = {
    "verified": ("bold green", "VERIFIED"),
    "rejected": ("bold red", "REJECTED"),
    "undecided": ("bold yellow", "UNDECIDED"),
}


@dataclass(frozen=True)
class Request:
    """Everything ``veritee verify`` was asked to do."""

    tee: str
    evidence: Path
    endorsements: tuple[Path, ...] = ()
    collateral: tuple[Path, ...] = ()
    at: str | None = None
    report_data: str | None = None
    trust_emulated: bool = False
    offline: bool = False
    cache_dir: Path | None = None


@dataclass(frozen=True)
class Outcome:
    """The verdict as the CLI reports it."""

    tee: str
    status: str
    """``verified``, ``rejected``, ``undecided``, or ``error`` (bad usage)."""
    exit_code: int
    claims: dict[str, Any] = field(default_factory=dict)
    error: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.status == "error":
            assert self.error is not None
            return error_object(self.error["type"], self.error["detail"], "verify", self.tee)
        return {"tee": self.tee, "status": self.status, "error": self.error,
                "claims": self.claims}


def register(app: typer.Typer) -> None:
    app.command("verify", help=prose(HELP.format(forms=evidence_forms())), epilog=EPILOG,
                no_args_is_help=True)(verify)


def verify(
    *,
    evidence: options.EVIDENCE,
    tee: options.TEE,
    endorsements: options.ENDORSEMENTS = None,
    collateral: options.COLLATERAL = None,
    at: options.AT = None,
    report_data: options.REPORT_DATA = None,
    json_output: options.JSON = False,
    trust_emulated: options.TRUST_EMULATED = False,
    offline: options.OFFLINE = False,
    cache_dir: options.CACHE_DIR = None,
) -> None:
    request = Request(tee=tee, evidence=evidence, endorsements=tuple(endorsements or ()),
                      collateral=tuple(collateral or ()), at=at, report_data=report_data,
                      trust_emulated=trust_emulated, offline=offline, cache_dir=cache_dir)
    outcome = run(request)
    if json_output:
        print_json(outcome.to_dict())
    else:
        show(outcome)
    raise typer.Exit(outcome.exit_code)


# -- doing it ----------------------------------------------------------------------------------


def run(request: Request, *, fetcher: Fetcher | None = None) -> Outcome:
    """Verify as ``request`` says. Never raises: every failure becomes an :class:`Outcome`.
    ``fetcher`` reaches the vendor services (default: the network, unless offline)."""
    try:
        claims = verify_claims(request, fetcher)
    except MisuseError as exc:
        return _failed(request.tee, exc, "error", ExitCode.USAGE)
    except UndecidedError as exc:
        return _failed(request.tee, exc, "undecided", ExitCode.UNDECIDED)
    except VeriteeError as exc:
        return _failed(request.tee, exc, exc.status, _exit_code(exc.status))
    except Exception as exc:  # the CLI edge turns surprises into exit 2
        return Outcome(request.tee, "error", ExitCode.USAGE,
                       error={"type": type(exc).__name__, "detail": f"internal error: {exc}"})
    return Outcome(request.tee, "verified", ExitCode.OK, claims=claims)


def verify_claims(request: Request, fetcher: Fetcher | None = None) -> dict[str, Any]:
    """The claims of the evidence ``request`` names, as JSON-ready values.

    Raises:
        VeriteeError: a leaf of the error tree (rejected, undecided or bad usage).
    """
    now = parse_at(request.at)
    expected = parse_hex(request.report_data, "--report-data")
    verifier = get_verifier(request.tee, trust_emulated=request.trust_emulated)
    blob = read_evidence(request.evidence)
    source = collateral_source(request.endorsements, request.collateral,
                               offline=request.offline, cache_dir=request.cache_dir,
                               fetcher=fetcher)
    evidence = decode_evidence(blob)
    claims: dict[str, Any] = verifier.verify(evidence, report_data=expected, collateral=source,
                                             now=now).to_dict()
    return claims


def _failed(tee: str, exc: VeriteeError, status: str, code: int) -> Outcome:
    return Outcome(tee, status, code, claims=dict(exc.claims or {}),
                   error={"type": type(exc).__name__, "detail": exc.detail})


def _exit_code(status: str) -> int:
    return ExitCode.UNDECIDED if status == "undecided" else ExitCode.REJECTED


def default_cache_dir() -> Path:
    import platformdirs  # noqa: PLC0415 - only when no --cache-dir is given

    return platformdirs.user_cache_path("veritee") / "collateral"


def collateral_source(endorsements: tuple[Path, ...] | list[Path],
                      collateral: tuple[Path, ...] | list[Path], *, offline: bool,
                      cache_dir: Path | None, fetcher: Fetcher | None = None
                      ) -> CollateralSource:
    """The collateral a command verifies with: the files given, the persistent cache, and
    the vendor services unless ``offline`` (``fetcher``, else the network: the HTTP client is
    loaded only then)."""
    if offline:
        fetcher = None
    elif fetcher is None:
        from veritee.collateral.fetch import HttpFetcher  # noqa: PLC0415 - online only

        fetcher = HttpFetcher()
    return CollateralSource.from_paths(endorsements, collateral,
                                       cache=DirectoryCache(cache_dir or default_cache_dir()),
                                       fetcher=fetcher)


def parse_at(text: str | None) -> datetime:
    """``--at``: an RFC 3339 instant with ``Z`` or an offset, as UTC; default now.

    Raises:
        MisuseError: the text is not a date-time, or it has no offset (naive times are
            ambiguous and refused).
    """
    if text is None:
        return datetime.now(UTC)
    try:
        when = datetime.fromisoformat(text.strip().upper().replace("Z", "+00:00"))
    except ValueError as exc:
        raise MisuseError(f"--at {text!r} is not an RFC 3339 date-time") from exc
    if when.tzinfo is None or when.utcoffset() is None:
        raise MisuseError(
            f"--at {text!r} has no UTC offset; add Z or an offset such as +00:00"
        )
    return when.astimezone(UTC)


def parse_hex(text: str | None, option: str) -> bytes | None:
    """Hex text (optional ``0x``, whitespace ignored) as bytes; None when not given."""
    if text is None:
        return None
    compact = "".join(text.split())
    compact = compact[2:] if compact[:2].lower() == "0x" else compact
    try:
        return bytes.fromhex(compact)
    except ValueError as exc:
        raise MisuseError(f"{option} is not hex: {text[:80]!r}") from exc


def read_evidence(path: Path) -> bytes:
    """The bytes of the evidence file (``-``: standard input), at most one byte over the
    evidence size limit so that :func:`decode_evidence` can refuse oversized evidence."""
    try:
        if str(path) == "-":
            return sys.stdin.buffer.read(MAX_EVIDENCE_BYTES + 1)
        with path.open("rb") as handle:
            return handle.read(MAX_EVIDENCE_BYTES + 1)
    except OSError as exc:
        raise MisuseError(f"cannot read evidence {path}: {exc.strerror or exc}") from exc


# -- human output ------------------------------------------------------------------------------


def show(outcome: Outcome) -> None:
    """The verdict line and a table of the main claims (usage errors go to stderr)."""
    from veritee.cli import render  # noqa: PLC0415 - rich loads for human output only

    if outcome.status == "error":
        assert outcome.error is not None
        error = outcome.error
        output.stderr.print(f"veritee verify: {error['type']}: {error['detail']}",
                            markup=False, soft_wrap=True)
        return
    style, word = _VERDICTS[outcome.status]
    output.stdout.print(render.verdict(style, word, outcome.tee, outcome.error, outcome.claims))
    if outcome.claims:
        output.stdout.print(render.claims_table(outcome.tee, outcome.claims))
