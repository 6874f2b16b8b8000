"""``veritee demo``: the whole story on this machine, through a real broker on loopback.

1. start a broker (HTTP on 127.0.0.1, an SQLite file in a temporary folder, development
   keys, emulated roots trusted — for the demo only);
2. provision through the admin API: a secret, reference values, the attestation and
   resource policies;
3. attest emulated guests of every supported TEE with the guest-side KBS client: genuine
   guests get the secret; a measurement outside the reference values, a replayed challenge
   and evidence with one defect each are refused, each with the broker's explanation;
4. verify the real hardware samples of the shared corpus offline, when it is present.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, cast

import httpx
import typer
from rich.markup import escape
from rich.table import Table

from veritee.appraisal import DEFAULT_RESOURCE_POLICY, default_attestation_policy
from veritee.attester.kbs_client import Collector, KbsClient, KbsClientError
from veritee.broker.config import Config, VerificationConfig
from veritee.broker.local import LocalBroker, local_broker
from veritee.cli.output import EXIT_OK, EXIT_REJECTED, print_json, prose, stderr, stdout
from veritee.collateral import CollateralSource
from veritee.errors import VeriteeError
from veritee.evidence import decode_evidence
from veritee.tee import get_verifier
from veritee.testing.snp import DEFAULT_MEASUREMENT, KNOBS, PRODUCTS, Knob, SnpEmulator

HELP = """\
Run the demo: start a broker on loopback, provision a secret, reference values and
policies, and attest emulated guests of every supported TEE through the KBS protocol —
genuine guests receive the secret; a measurement that is not a reference value, a replayed
challenge and evidence with one defect each are refused with the broker's explanation.
Real hardware samples of the shared corpus (VERITEE_CORPUS, or ../shared/corpus) are
verified offline when present. Prints a table; with --json, the table goes to stderr and one
JSON object {"rows": [...]} to stdout. Exit status 0 when every case ended as expected.
Nothing here reaches the network.
"""

SECRET_PATH = "demo/key/disk"

#: The real samples and the endorsements their MANIFEST.json names (corpus/amd/...).
CORPUS_CASES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("go-sev-guest/attestation.bin", ("go-sev-guest/vcek.testcer", "go-sev-guest/milan.testcer")),
    ("virtee-sev/report_milan.hex", ("virtee-sev/vcek_milan.der",)),
    ("veraison/sevsnp-tsm-report.json", ()),
)
_SIGNER_OF = {"milan": "vcek", "genoa": "vlek", "turin": "vcek"}


@dataclass(frozen=True)
class Row:
    tee: str
    case: str
    outcome: str
    reason: str
    expected: str

    def to_dict(self) -> dict[str, Any]:
        return {"tee": self.tee, "case": self.case, "outcome": self.outcome,
                "reason": self.reason, "expected": self.expected}


@dataclass(frozen=True)
class Guest:
    """One guest to attest through the broker, and the outcome it should get."""

    tee: str
    name: str
    collector: Collector
    expect: str
    replay: bool = False


@dataclass
class Demo:
    kbs: LocalBroker
    secret: bytes
    rows: list[Row] = field(default_factory=list)


def register(app: typer.Typer) -> None:
    app.command("demo", help=prose(HELP))(demo)


def demo(
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object on stdout (the table goes to stderr).")] = False,
) -> None:
    out = stderr if json_output else stdout
    logging.getLogger("veritee.broker").setLevel(logging.CRITICAL)  # the table says it all
    with tempfile.TemporaryDirectory(prefix="veritee-demo-") as tmp, \
            local_broker(_config(Path(tmp))) as kbs:
        out.print(f"[bold]broker[/] listening on {kbs.url} (SQLite in a temporary folder, "
                  "development keys, emulated roots trusted for this demo)")
        run = Demo(kbs, secrets.token_bytes(32))
        _provision(run)
        out.print(f"provisioned secret {SECRET_PATH}, reference values and policies "
                  "through the admin API")
        for guest in guests():
            run.rows.append(attest(run, guest))
    rows = run.rows + list(corpus_rows())
    out.print(table(rows))
    if json_output:
        print_json({"rows": [r.to_dict() for r in rows]})
    raise typer.Exit(EXIT_OK if all(r.outcome == r.expected for r in rows) else EXIT_REJECTED)


def _config(tmp: Path) -> Config:
    return Config(data_dir=str(tmp),
                  verification=VerificationConfig(trust_emulated=True, offline=True))


def _provision(run: Demo) -> None:
    headers = {"Authorization": f"Bearer {run.kbs.admin_token()}"}
    with httpx.Client(base_url=run.kbs.url, headers=headers, timeout=30) as admin:
        calls = [
            admin.post(f"/kbs/v0/resource/{SECRET_PATH}", content=run.secret,
                       headers={"Content-Type": "application/octet-stream"}),
            admin.post("/kbs/v0/reference-value", json={
                "snp_launch_measurement": {"values": [DEFAULT_MEASUREMENT.hex()],
                                           "provenance": "veritee demo: the emulated guest image"},
                "allow_emulated": {"values": [True], "provenance": "veritee demo only"},
            }),
            admin.post("/kbs/v0/attestation-policy", json={
                "type": "rego", "policy_id": "default_cpu",
                "policy": _b64url(default_attestation_policy("snp"))}),
            admin.post("/kbs/v0/resource-policy",
                       json={"policy": _b64url(DEFAULT_RESOURCE_POLICY)}),
        ]
    for response in calls:
        if response.status_code != 200:
            raise VeriteeError(f"provisioning failed: {response.status_code} {response.text[:200]}")


def _b64url(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


# -- the guests --------------------------------------------------------------------------------


def guests() -> Iterator[Guest]:
    """Every supported TEE contributes genuine guests and refused ones."""
    yield from _snp_guests()


def _snp_guests() -> Iterator[Guest]:
    for product in PRODUCTS:
        signer = _SIGNER_OF[product]
        emu = SnpEmulator(product=product, signer=signer)  # type: ignore[arg-type]
        yield Guest("snp", f"genuine {product} guest ({signer.upper()})", emu.coco_evidence,
                    "released")
    stranger = SnpEmulator(measurement=bytes.fromhex("5eed" * 24))
    yield Guest("snp", "measurement not a reference value", stranger.coco_evidence, "refused")
    yield Guest("snp", "replayed challenge (evidence bound to an old nonce)",
                SnpEmulator().coco_evidence, "refused", replay=True)
    for knob in KNOBS:
        if knob == "revoked":
            continue  # needs a CRL in the broker's collateral; covered by `veritee verify`
        emu = SnpEmulator(knob=cast(Knob, knob))
        yield Guest("snp", f"defect: {knob.replace('_', ' ')}", emu.coco_evidence, "refused")
    vlek = SnpEmulator(signer="vlek")
    yield Guest("snp", "VLEK-signed report without its VLEK",
                lambda rd: {"attestation_report": vlek.coco_evidence(rd)["attestation_report"]},
                "refused")


def attest(run: Demo, guest: Guest) -> Row:
    """Run the KBS protocol for one guest; released when the secret decrypted and matched."""
    with KbsClient(run.kbs.url, guest.tee, guest.collector) as client:
        try:
            if guest.replay:
                old_nonce, _, _ = client.auth()
                attested = client.attest(bind_to_nonce=old_nonce)
            else:
                attested = client.attest()
            secret = client.resource(SECRET_PATH, attested)
        except KbsClientError as exc:
            return Row(guest.tee, guest.name, "refused", _reason(exc), guest.expect)
        except VeriteeError as exc:
            return Row(guest.tee, guest.name, "refused", f"{type(exc).__name__}: {exc.detail}",
                       guest.expect)
    if secret != run.secret:
        return Row(guest.tee, guest.name, "refused", "the released secret did not match",
                   guest.expect)
    return Row(guest.tee, guest.name, "released",
               f"{len(secret)}-byte secret released; token {_token_summary(attested.token)}",
               guest.expect)


def _reason(exc: KbsClientError) -> str:
    variant = str(exc.problem.get("type", "")).rsplit("/", 1)[-1]
    detail = str(exc.problem.get("detail", exc.detail))
    return f"HTTP {exc.http_status} {variant}: {detail}"


def _token_summary(token: str) -> str:
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        cpu0 = claims["submods"]["cpu0"]
        vector = cpu0["ear.trustworthiness-vector"]
    except (IndexError, KeyError, TypeError, ValueError):
        return "(unreadable)"
    shown = ", ".join(f"{k} {v}" for k, v in vector.items() if v)
    return f"{cpu0['ear.status']} ({shown})"


# -- real evidence, verified offline -----------------------------------------------------------


def corpus_rows() -> Iterator[Row]:
    root = corpus_dir()
    if root is None:
        return
    listed = _manifest_files(root)
    for evidence, endorsements in CORPUS_CASES:
        files = (evidence, *endorsements)
        if all(f in listed and (root / f).is_file() for f in files):
            yield _verify_sample(root, evidence, endorsements)


def _verify_sample(root: Path, evidence: str, endorsements: tuple[str, ...]) -> Row:
    name = f"real hardware sample {evidence} (offline verification)"
    try:
        source = CollateralSource(blobs=tuple((root / f).read_bytes() for f in endorsements))
        claims = get_verifier("snp").verify(
            decode_evidence((root / evidence).read_bytes()), report_data=None,
            collateral=source, now=datetime.now(UTC)).to_dict()
    except VeriteeError as exc:
        return Row("snp", name, "refused", f"{type(exc).__name__}: {exc.detail}", "released")
    return Row("snp", name, "released",
               f"verified against AMD's pinned roots: {claims['product']} "
               f"{claims['signer']}, measurement {str(claims['measurement'])[:16]}…", "released")


def corpus_dir() -> Path | None:
    """``<corpus>/amd``: from VERITEE_CORPUS, else ``../shared/corpus`` beside the project."""
    env = os.environ.get("VERITEE_CORPUS")
    bases = [Path(env)] if env else [
        base.parent / "shared" / "corpus"
        for base in (Path.cwd(), Path(__file__).resolve().parents[3])
    ]
    return next((b / "amd" for b in bases if (b / "amd" / "MANIFEST.json").is_file()), None)


def _manifest_files(root: Path) -> set[str]:
    try:
        entries = json.loads((root / "MANIFEST.json").read_text())["entries"]
        return {str(e["file"]) for e in entries}
    except (OSError, ValueError, KeyError, TypeError):
        return set()


# -- the table ---------------------------------------------------------------------------------


def table(rows: list[Row]) -> Table:
    released = sum(r.outcome == "released" for r in rows)
    unexpected = sum(r.outcome != r.expected for r in rows)
    caption = (f"{len(rows)} cases: {released} released, {len(rows) - released} refused; "
               + (f"{unexpected} NOT as expected" if unexpected else "all as expected"))
    out = Table(title="veritee demo", caption=caption, header_style="bold")
    out.add_column("tee", no_wrap=True)
    out.add_column("case", ratio=2, overflow="fold")
    out.add_column("outcome", no_wrap=True)
    out.add_column("reason", ratio=3, overflow="fold")
    for row in rows:
        style = "green" if row.outcome == "released" else "red"
        mark = "" if row.outcome == row.expected else " [bold](unexpected)[/]"
        out.add_row(row.tee, row.case, f"[{style}]{row.outcome}[/]{mark}",
                    escape(_LONG_HEX.sub(_shorten, row.reason)))
    return out


_LONG_HEX = re.compile(r"\b[0-9a-f]{20,}\b")


def _shorten(match: re.Match[str]) -> str:
    return match.group(0)[:12] + "…"
