"""``veritee demo`` (first version): verify emulated and real SNP evidence, show a table.

Until the broker exists, "released" means "verified": each emulated product × signer
passes, each negative knob is refused with its reason, and the real samples of
``shared/corpus/amd`` (when present) verify against AMD's pinned roots. The broker will
replace :func:`run_case` with an attestation over HTTP; the cases and the table stay.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import typer
from rich.markup import escape
from rich.table import Table

from veritee.cli.output import EXIT_OK, EXIT_REJECTED, print_json, prose, stderr, stdout
from veritee.collateral import CollateralSource
from veritee.errors import VeriteeError
from veritee.evidence import decode_evidence
from veritee.tee import get_verifier
from veritee.testing.snp import KNOBS, PRODUCTS, SIGNERS, Knob, SnpEmulator

HELP = """\
Run the demo: verify emulated SEV-SNP evidence of every product and signer, evidence with
one defect each (refused, with the reason), and the real AMD samples of the shared corpus
when it is present (set VERITEE_CORPUS to its folder). Prints a table; with --json, prints
the table on stderr and one JSON object {"rows": [...]} on stdout. Exit status 0 when every
case ended as expected, 1 otherwise. Nothing here reaches the network.
"""

Signer = Literal["vcek", "vlek"]
NONCE = hashlib.sha512(b"veritee demo nonce").digest()

#: The real samples and the endorsements their MANIFEST.json names (corpus/amd/...).
CORPUS_CASES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("go-sev-guest/attestation.bin", ("go-sev-guest/vcek.testcer", "go-sev-guest/milan.testcer")),
    ("virtee-sev/report_milan.hex", ("virtee-sev/vcek_milan.der",)),
    ("veraison/sevsnp-tsm-report.json", ()),
)


@dataclass(frozen=True)
class Case:
    """One guest to attest: its evidence, what comes with it, and the expected outcome."""

    tee: str
    name: str
    evidence: Callable[[], bytes]
    expect: str
    """``released`` or ``refused``."""
    endorsements: Callable[[], list[bytes]] = list
    report_data: bytes | None = None
    emulated: bool = True


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


def register(app: typer.Typer) -> None:
    app.command("demo", help=prose(HELP))(demo)


def demo(
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object on stdout (the table goes to stderr).")] = False,
) -> None:
    rows = [run_case(case) for case in cases()]
    (stderr if json_output else stdout).print(table(rows))
    if json_output:
        print_json({"rows": [r.to_dict() for r in rows]})
    ok = all(r.outcome == r.expected for r in rows)
    raise typer.Exit(EXIT_OK if ok else EXIT_REJECTED)


# -- the cases ---------------------------------------------------------------------------------


def cases() -> Iterator[Case]:
    yield from _emulated_cases()
    yield from _negative_cases()
    yield from _corpus_cases(corpus_dir())


def _emulated_cases() -> Iterator[Case]:
    for product in PRODUCTS:
        for signer in SIGNERS:
            emulator = SnpEmulator(product=product, signer=cast(Signer, signer))
            yield Case("snp", f"emulated {product} {signer}",
                       partial(emulator.extended_report, NONCE), "released", report_data=NONCE)


def _negative_cases() -> Iterator[Case]:
    for knob in KNOBS:
        emulator = SnpEmulator(knob=cast(Knob, knob))
        yield Case("snp", f"emulated milan vcek: {knob.replace('_', ' ')}",
                   partial(emulator.extended_report, NONCE), "refused",
                   endorsements=emulator.endorsements, report_data=NONCE)
    good = SnpEmulator()
    yield Case("snp", "emulated milan vcek: replayed nonce",
               partial(good.extended_report, bytes(64)), "refused", report_data=NONCE)
    vlek = SnpEmulator(signer="vlek")
    yield Case("snp", "emulated milan vlek: VLEK not supplied",
               partial(vlek.report, NONCE), "refused", report_data=NONCE)


def _corpus_cases(root: Path | None) -> Iterator[Case]:
    if root is None:
        return
    listed = _manifest_files(root)
    for evidence, endorsements in CORPUS_CASES:
        files = (evidence, *endorsements)
        if not all(f in listed and (root / f).is_file() for f in files):
            continue
        yield Case("snp", f"real {evidence}", (root / evidence).read_bytes, "released",
                   endorsements=partial(_read_all, root, endorsements),
                   emulated=False)


def _read_all(root: Path, files: tuple[str, ...]) -> list[bytes]:
    return [(root / f).read_bytes() for f in files]


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


# -- running one case --------------------------------------------------------------------------


def run_case(case: Case) -> Row:
    """Verify one case; "released" when it verified (the broker will release a secret)."""
    try:
        verifier = get_verifier(case.tee, trust_emulated=case.emulated)
        source = CollateralSource(blobs=tuple(case.endorsements()))
        claims = verifier.verify(decode_evidence(case.evidence()), report_data=case.report_data,
                                 collateral=source, now=datetime.now(UTC)).to_dict()
    except VeriteeError as exc:
        return Row(case.tee, case.name, "refused", f"{type(exc).__name__}: {exc.detail}",
                   case.expect)
    except Exception as exc:  # one broken case must not hide the others
        return Row(case.tee, case.name, "refused", f"internal error: {type(exc).__name__}: {exc}",
                   case.expect)
    return Row(case.tee, case.name, "released", _summary(claims), case.expect)


def _summary(claims: dict[str, Any]) -> str:
    measurement = str(claims.get("measurement", ""))[:16]
    trust = "emulated roots" if claims.get("emulated") else "AMD roots"
    return (f"verified: {claims.get('product')} {claims.get('signer')}, "
            f"measurement {measurement}…, {trust}")


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


