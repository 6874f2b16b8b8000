"""``veritee policy test``: verify and appraise evidence under a policy — a dry run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from veritee.cli import options
from veritee.cli import verify as verify_cli
from veritee.cli.output import ExitCode, print_json, prose, stderr, stdout
from veritee.errors import EvidenceError, MisuseError, UndecidedError, VeriteeError
from veritee.tee import get_platform

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
    evidence: options.EVIDENCE,
    tee: options.TEE,
    policy: Annotated[Path | None, typer.Option(
        "--policy", metavar="FILE", show_default=False,
        help="Rego attestation policy (default: the TEE's built-in policy).")] = None,
    reference_values: Annotated[list[Path] | None, typer.Option(
        "--reference-values", metavar="FILE", show_default=False,
        help="Reference values (JSON or TOML). Repeatable.")] = None,
    endorsements: options.ENDORSEMENTS = None,
    collateral: options.COLLATERAL = None,
    at: options.AT = None,
    report_data: options.REPORT_DATA = None,
    trust_emulated: options.TRUST_EMULATED = False,
    offline: options.OFFLINE = False,
    cache_dir: options.CACHE_DIR = None,
    json_output: options.JSON = False,
) -> None:
    try:
        claims = verify_cli.verify_claims(verify_cli.Request(
            tee=tee, evidence=evidence, endorsements=tuple(endorsements or ()),
            collateral=tuple(collateral or ()), at=at, report_data=report_data,
            trust_emulated=trust_emulated, offline=offline, cache_dir=cache_dir))
        result = appraise(tee, claims, policy, reference_values or [])
    except MisuseError as exc:
        _stop(json_output, exc, ExitCode.USAGE)
    except EvidenceError as exc:
        _stop(json_output, exc, ExitCode.REJECTED)
    except UndecidedError as exc:
        _stop(json_output, exc, ExitCode.UNDECIDED)
    if json_output:
        print_json({"verified": True, **result.to_dict(), "explanation": result.explain()})
    else:
        stdout.print(_table(result))
        stdout.print(result.explain(), markup=False, soft_wrap=True)
    raise typer.Exit(ExitCode.OK if result.status == "affirming" else ExitCode.REJECTED)


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
