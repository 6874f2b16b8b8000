"""``veritee policy test``: verify and appraise evidence under a policy — a dry run."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from veritee.appraisal import Appraisal, PolicyEngine, default_attestation_policy
from veritee.appraisal.reference import parse_reference_values, reference_mapping
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
from veritee.collateral import CollateralSource
from veritee.errors import EvidenceError, MisuseError, UndecidedError, VeriteeError
from veritee.evidence import decode_evidence
from veritee.tee import get_verifier

HELP = """\
Dry run: verify EVIDENCE, appraise its claims under an attestation policy with reference
values, and explain every rule that held or failed with the values it compared. Nothing is
released and no broker is needed (a running broker offers the same at
POST /kbs/v0/policy-test).

--policy is a Rego file (default: the built-in policy of the TEE). --reference-values files
are JSON or TOML: {name: list of values} or {name: {values, expires, provenance}}, or a
Trustee RVPS message. Exit status: 0 affirming; 1 not affirming or the evidence was rejected;
3 verification undecided; 2 bad usage.
"""

EPILOG = """\
Example:
  veritee policy test --tee snp --evidence report.bin --endorsements vcek.der \\
      --policy my-policy.rego --reference-values rv.json
"""


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Attestation policies: test them before a broker enforces them.",
                        no_args_is_help=True)
    group.command("test", help=prose(HELP), epilog=EPILOG)(test)
    app.add_typer(group, name="policy")


def test(
    *,
    evidence: Annotated[Path, typer.Option(help="The evidence file (any form verify takes).",
                                           exists=True, dir_okay=False)],
    tee: Annotated[str, typer.Option(help="The TEE that produced the evidence.")] = "snp",
    policy: Annotated[Path | None, typer.Option(help="Rego attestation policy.", exists=True,
                                                dir_okay=False)] = None,
    reference_values: Annotated[list[Path] | None, typer.Option(
        "--reference-values", help="Reference values (JSON or TOML); repeatable.",
        exists=True, dir_okay=False)] = None,
    endorsements: Annotated[list[Path] | None, typer.Option(
        "--endorsements", help="Certificates the verifier may use; repeatable.",
        exists=True)] = None,
    report_data: Annotated[str | None, typer.Option(help="Expected report data (hex).")] = None,
    trust_emulated: Annotated[bool, typer.Option("--trust-emulated")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    try:
        expected = bytes.fromhex(report_data) if report_data else None
    except ValueError:
        stderr.print("--report-data must be hex")
        raise typer.Exit(EXIT_USAGE) from None
    try:
        source = CollateralSource.from_paths(endorsements or (), ())
        claims = get_verifier(tee, trust_emulated=trust_emulated).verify(
            decode_evidence(evidence.read_bytes()), report_data=expected, collateral=source,
            now=datetime.now(UTC)).to_dict()
        result = _appraise(tee, claims, policy, reference_values or [])
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


def _appraise(tee: str, claims: dict[str, Any], policy: Path | None,
              rv_files: list[Path]) -> Appraisal:
    values = []
    for path in rv_files:
        values += parse_reference_values(path.read_bytes(), source=path.name)
    source = policy.read_text() if policy else default_attestation_policy(tee)
    return PolicyEngine().appraise(
        tee=tee, claims=claims, policy_id=policy.stem if policy else "default",
        policy=source, reference_values=reference_mapping(values))


def _table(result: Appraisal) -> Table:
    style = {"affirming": "green", "warning": "yellow"}.get(result.status, "red")
    out = Table(title=f"{result.tee}: [{style}]{result.status}[/] under {result.policy_id}",
                header_style="bold")
    out.add_column("check")
    out.add_column("held", no_wrap=True)
    out.add_column("detail", overflow="fold")
    for check in result.checks:
        out.add_row(check.name, "[green]yes[/]" if check.held else "[red]no[/]", check.detail)
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
