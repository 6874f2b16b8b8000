"""``veritee policy test``: verify and appraise evidence under a policy — a dry run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from veritee.cli import verify as verify_cli
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
from veritee.errors import EvidenceError, MisuseError, UndecidedError, VeriteeError
from veritee.evidence import decode_evidence
from veritee.tee import get_platform, get_verifier, tee_names

if TYPE_CHECKING:
    from veritee.appraisal import Appraisal

HELP = """\
Dry run: verify EVIDENCE, appraise its claims under an attestation policy with reference
values, and explain every rule that held or failed with the values it compared. Nothing is
released and no broker is needed (a running broker offers the same at
POST /kbs/v0/policy-test).

EVIDENCE and the verification options are those of `veritee verify`. --policy is a Rego
file (default: the built-in policy of the TEE). --reference-values files are JSON or TOML:
{name: list of values} or {name: {values, expires, provenance}}, or a Trustee RVPS message.
Exit status: 0 affirming; 1 not affirming or the evidence was rejected; 3 verification
undecided; 2 bad usage.
"""

EPILOG = """\
Example:
  veritee emulate TEE --out evidence.bin
  veritee policy test --tee TEE evidence.bin --trust-emulated --reference-values rv.json
"""


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Attestation policies: test them before a broker enforces them.",
                        no_args_is_help=True)
    group.command("test", help=prose(HELP), epilog=EPILOG, no_args_is_help=True)(test)
    app.add_typer(group, name="policy")


def test(
    *,
    evidence: Annotated[Path, typer.Argument(
        metavar="EVIDENCE", show_default=False,
        help="Evidence file (raw, hex, base64 or JSON), or - for standard input.")],
    tee: Annotated[str, typer.Option(
        "--tee", metavar="TEE", show_default=False,
        help=f"The TEE that produced the evidence: {', '.join(tee_names())}.")],
    policy: Annotated[Path | None, typer.Option(
        "--policy", metavar="FILE", show_default=False,
        help="Rego attestation policy (default: the TEE's built-in policy).")] = None,
    reference_values: Annotated[list[Path] | None, typer.Option(
        "--reference-values", metavar="FILE", show_default=False,
        help="Reference values (JSON or TOML). Repeatable.")] = None,
    endorsements: Annotated[list[Path] | None, typer.Option(
        "--endorsements", metavar="FILE", show_default=False,
        help="Certificates or keys the verifier may use. Repeatable.")] = None,
    collateral: Annotated[list[Path] | None, typer.Option(
        "--collateral", metavar="PATH", show_default=False,
        help="A file or directory of vendor collateral, recognised by content. "
             "Repeatable.")] = None,
    at: Annotated[str | None, typer.Option(
        "--at", metavar="RFC3339", show_default=False,
        help="Verify at this instant (default: now).")] = None,
    report_data: Annotated[str | None, typer.Option(
        "--report-data", metavar="HEX", show_default=False,
        help="The exact expected report-data field, in hex.")] = None,
    trust_emulated: Annotated[bool, typer.Option(
        "--trust-emulated",
        help="Also trust the emulated (test) roots of veritee.testing.")] = False,
    offline: Annotated[bool, typer.Option(
        "--offline", envvar="VERITEE_OFFLINE",
        help="Never reach a vendor service (also VERITEE_OFFLINE=1).")] = False,
    cache_dir: Annotated[Path | None, typer.Option(
        "--cache-dir", metavar="DIR", envvar="VERITEE_CACHE_DIR", show_default=False,
        help="Persistent collateral cache (default: the user cache directory).")] = None,
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object on stdout.")] = False,
) -> None:
    try:
        claims = _verify(tee, evidence, endorsements=endorsements or [],
                         collateral=collateral or [], at=at, report_data=report_data,
                         trust_emulated=trust_emulated, offline=offline, cache_dir=cache_dir)
        result = appraise(tee, claims, policy, reference_values or [])
    except MisuseError as exc:
        _stop(json_output, exc, EXIT_USAGE)
    except EvidenceError as exc:
        _stop(json_output, exc, EXIT_REJECTED)
    except UndecidedError as exc:
        _stop(json_output, exc, EXIT_UNDECIDED)
    if json_output:
        print_json({"verified": True, **result.to_dict(), "explanation": result.explain()})
    else:
        stdout.print(_table(result))
        stdout.print(result.explain(), markup=False, soft_wrap=True)
    raise typer.Exit(EXIT_OK if result.status == "affirming" else EXIT_REJECTED)


def _verify(tee: str, evidence: Path, *, endorsements: list[Path], collateral: list[Path],
            at: str | None, report_data: str | None, trust_emulated: bool, offline: bool,
            cache_dir: Path | None) -> dict[str, Any]:
    now = verify_cli.parse_at(at)
    expected = verify_cli.parse_hex(report_data, "--report-data")
    verifier = get_verifier(tee, trust_emulated=trust_emulated)
    source = verify_cli.collateral_source(endorsements, collateral, offline=offline,
                                          cache_dir=cache_dir)
    blob = verify_cli.read_evidence(evidence)
    claims: dict[str, Any] = verifier.verify(decode_evidence(blob), report_data=expected,
                                             collateral=source, now=now).to_dict()
    return claims


def appraise(tee: str, claims: dict[str, Any], policy: Path | None,
             rv_files: list[Path]) -> Appraisal:
    """Appraise ``claims`` as the broker would with these files.

    Raises:
        MisuseError: a file cannot be read, is not UTF-8, is empty, or does not parse.
    """
    from veritee.appraisal import (  # noqa: PLC0415 - the policy engine loads only here
        PolicyEngine,
        parse_reference_values,
        reference_mapping,
        shipped_policy,
    )
    from veritee.broker import policies  # noqa: PLC0415

    values = []
    for path in rv_files:
        values += parse_reference_values(read_text(path, "reference-value"), source=path.name)
    platform = get_platform(tee)
    source = read_text(policy, "policy") if policy else shipped_policy(platform.policy)
    engine = PolicyEngine(natives=policies.natives())
    return engine.appraise(
        tee=tee, claims=claims, policy_id=policy.stem if policy else "default",
        policy=source, reference_values=reference_mapping(values),
        **policies.appraisal_shape(platform))


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of a file the user named.

    Raises:
        MisuseError: unreadable, not UTF-8, or empty; the message names the file.
    """
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise MisuseError(f"cannot read {what} file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise MisuseError(f"{what} file {path} is not UTF-8 text (byte {exc.start})") from exc
    if not text.strip():
        raise MisuseError(f"{what} file {path} is empty")
    return text


def _table(result: Appraisal) -> Table:
    style = {"affirming": "green", "warning": "yellow"}.get(result.status, "red")
    out = Table(title=f"{result.tee}: [{style}]{result.status}[/] under {result.policy_id}",
                header_style="bold")
    out.add_column("check")
    out.add_column("held", no_wrap=True)
    out.add_column("detail", overflow="fold")
    for check in result.checks:
        out.add_row(escape(check.name), "[green]yes[/]" if check.held else "[red]no[/]",
                    escape(check.detail))
    vector = ", ".join(f"{k} {v}" for k, v in result.trust_vector.items() if v)
    out.caption = f"trust vector: {vector or 'all none'}"
    return out


def _stop(json_output: bool, exc: VeriteeError, code: int) -> None:
    stderr.print(f"{type(exc).__name__}: {exc.detail}", markup=False, soft_wrap=True)
    if json_output:
        print_json({"verified": False, "status": getattr(exc, "status", "error"),
                    "error": {"type": type(exc).__name__, "detail": exc.detail},
                    "claims": dict(exc.claims or {})})
    raise typer.Exit(code)
