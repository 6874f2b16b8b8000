"""The work of ``veritee demo`` (:mod:`veritee.cli.demo` is the command): the whole story on
this machine, through a real broker on loopback.

1. start a broker (HTTP on 127.0.0.1, an SQLite file in a temporary folder, development
   keys, emulated roots trusted — for the demo only);
2. provision through the admin API: a secret, reference values, the attestation and
   resource policies;
3. attest emulated guests of every platform that offers demo guests (its descriptor's
   ``demo``) with the guest-side KBS client: genuine guests get the secret; a measurement
   outside the reference values, a replayed challenge and evidence with one defect each are
   refused, each with the broker's explanation;
4. verify the real hardware samples of the shared corpus offline, when it is present
   (outcome ``verified``: nothing is released to a sample).
"""

from __future__ import annotations

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
from typing import Any

import httpx
from rich.markup import escape
from rich.table import Table

from veritee.appraisal import DEFAULT_RESOURCE_POLICY, shipped_policy
from veritee.attester.kbs_client import KbsClient, KbsClientError
from veritee.broker.config import Config, VerificationConfig
from veritee.cli.output import EXIT_OK, EXIT_REJECTED, print_json, stderr, stdout
from veritee.collateral import CollateralSource
from veritee.encoding import b64url, b64url_decode
from veritee.errors import MisuseError, VeriteeError
from veritee.evidence import decode_evidence
from veritee.server.local import LocalBroker, local_broker
from veritee.tee import Platform, get_verifier, platforms
from veritee.tee.platform import CorpusCase, DemoGuest, DemoSpec

SECRET_PATH = "demo/key/disk"


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


@dataclass
class Demo:
    kbs: LocalBroker
    secret: bytes
    rows: list[Row] = field(default_factory=list)


def run(json_output: bool) -> int:
    """The whole demo; the exit status (0 when every case ended as expected)."""
    out = stderr if json_output else stdout
    logging.getLogger("veritee.broker").setLevel(logging.CRITICAL)  # the table says it all
    with tempfile.TemporaryDirectory(prefix="veritee-demo-") as tmp, \
            local_broker(_config(Path(tmp))) as kbs:
        out.print(f"[bold]broker[/] listening on {kbs.url} (SQLite in a temporary folder, "
                  "development keys, emulated roots trusted for this demo)")
        demo = Demo(kbs, secrets.token_bytes(32))
        _provision(demo)
        out.print(f"provisioned secret {SECRET_PATH}, reference values and policies "
                  "through the admin API")
        for tee, guest in guests():
            demo.rows.append(attest(demo, tee, guest))
    try:
        base = corpus_base()
    except MisuseError as exc:
        out.print(f"[yellow]warning:[/] {escape(exc.detail)}; the real samples are skipped")
        base = None
    rows = demo.rows + list(corpus_rows(base))
    out.print(table(rows))
    if json_output:
        print_json({"rows": [r.to_dict() for r in rows]})
    return EXIT_OK if all(r.outcome == r.expected for r in rows) else EXIT_REJECTED


def _config(tmp: Path) -> Config:
    """The demo broker's configuration; the collateral the platforms' demos supply (an
    optional ``collateral()`` of their demo specs) is written to a folder it reads."""
    folder = tmp / "demo-collateral"
    for _, spec in demo_platforms():
        for name, body in getattr(spec, "collateral", tuple)():
            folder.mkdir(exist_ok=True)
            (folder / name).write_bytes(body)
    collateral = (str(folder),) if folder.is_dir() else ()
    return Config(data_dir=str(tmp), verification=VerificationConfig(
        trust_emulated=True, offline=True, collateral=collateral))


def demo_platforms() -> list[tuple[Platform, DemoSpec]]:
    """The platforms that offer demo guests, with their demo specs."""
    return [(p, p.load("demo")) for p in platforms() if p.demo is not None]


def _provision(run: Demo) -> None:
    """The secret, every platform's demo reference values, each platform's shipped policy
    stored as its own ``default_<tee>``, and the default resource policy."""
    headers = {"Authorization": f"Bearer {run.kbs.admin_token()}"}
    reference: dict[str, Any] = {}
    for _, spec in demo_platforms():
        reference.update(spec.reference_values())
    with httpx.Client(base_url=run.kbs.url, headers=headers, timeout=30) as admin:
        calls = [
            admin.post(f"/kbs/v0/resource/{SECRET_PATH}", content=run.secret,
                       headers={"Content-Type": "application/octet-stream"}),
            admin.post("/kbs/v0/reference-value", json=reference),
            *(admin.post("/kbs/v0/attestation-policy", json={
                "type": "rego", "policy_id": f"default_{platform.tee}",
                "policy": b64url(shipped_policy(platform.policy).encode())})
              for platform, _ in demo_platforms()),
            admin.post("/kbs/v0/resource-policy",
                       json={"policy": b64url(DEFAULT_RESOURCE_POLICY.encode())}),
        ]
    for response in calls:
        if response.status_code != 200:
            raise MisuseError(f"provisioning failed: {response.status_code} "
                              f"{response.text[:200]}")


# -- the guests --------------------------------------------------------------------------------


def guests() -> Iterator[tuple[str, DemoGuest]]:
    """Every platform's demo guests, genuine and refused, with their TEE."""
    for platform, spec in demo_platforms():
        for guest in spec.guests():
            yield platform.tee, guest


def attest(run: Demo, tee: str, guest: DemoGuest) -> Row:
    """Run the KBS protocol for one guest (or its host's launch flow); released when the
    secret decrypted and matched."""
    if guest.launch is not None:
        try:
            secret = guest.launch(run.kbs.url, SECRET_PATH)
        except VeriteeError as exc:
            return _refused(tee, guest, f"{type(exc).__name__}: {exc.detail}")
        return _released(run, tee, guest, secret, "injected at launch, read back in the guest")
    assert guest.collector is not None
    with KbsClient(run.kbs.url, tee, guest.collector) as client:
        try:
            if guest.replay:
                old_nonce, _, _ = client.auth()
                attested = client.attest(bind_to_nonce=old_nonce)
            else:
                attested = client.attest()
            secret = client.resource(SECRET_PATH, attested)
        except KbsClientError as exc:
            return _refused(tee, guest, _reason(exc))
        except VeriteeError as exc:
            return _refused(tee, guest, f"{type(exc).__name__}: {exc.detail}")
    return _released(run, tee, guest, secret,
                     f"released; token {_token_summary(attested.token)}")


def _released(run: Demo, tee: str, guest: DemoGuest, secret: bytes, how: str) -> Row:
    """Released only when the secret is the one the demo stored."""
    if secret != run.secret:
        return Row(tee, guest.name, "refused", "the secret the guest got did not match",
                   guest.expect)
    return Row(tee, guest.name, "released", f"{len(secret)}-byte secret {how}", guest.expect)


def _refused(tee: str, guest: DemoGuest, reason: str) -> Row:
    """A refusal is as expected only when the guest expected one for this reason."""
    expected: str = guest.expect
    if guest.expect == "refused" and guest.because not in reason:
        expected = f"refused with {guest.because}"
    return Row(tee, guest.name, "refused", reason, expected)


def _reason(exc: KbsClientError) -> str:
    variant = str(exc.problem.get("type", "")).rsplit("/", 1)[-1]
    detail = str(exc.problem.get("detail", exc.detail))
    return f"HTTP {exc.http_status} {variant}: {detail}"


def _token_summary(token: str) -> str:
    try:
        claims = json.loads(b64url_decode(token.split(".")[1]) or b"")
        cpu0 = claims["submods"]["cpu0"]
        vector = cpu0["ear.trustworthiness-vector"]
    except (IndexError, KeyError, TypeError, ValueError):
        return "(unreadable)"
    shown = ", ".join(f"{k} {v}" for k, v in vector.items() if v)
    return f"{cpu0['ear.status']} ({shown})"


# -- real evidence, verified offline -----------------------------------------------------------


def corpus_rows(base: Path | None) -> Iterator[Row]:
    """Each platform's real samples that the corpus at ``base`` holds and its MANIFEST
    lists, verified offline against the pinned vendor roots."""
    if base is None:
        return
    for platform, spec in demo_platforms():
        root = base / spec.corpus_vendor
        listed = _manifest_files(root)
        for case in spec.corpus:
            files = (case.evidence, *case.endorsements)
            if all(f in listed and (root / f).is_file() for f in files):
                yield _verify_sample(platform.tee, root, case)


def _verify_sample(tee: str, root: Path, case: CorpusCase) -> Row:
    name = f"real hardware sample {case.evidence}"
    try:
        source = CollateralSource.of(*((root / f).read_bytes() for f in case.endorsements))
        claims = get_verifier(tee).verify(
            decode_evidence((root / case.evidence).read_bytes()), report_data=None,
            collateral=source, now=datetime.now(UTC)).to_dict()
    except VeriteeError as exc:
        return Row(tee, name, "refused", f"{type(exc).__name__}: {exc.detail}", VERIFIED)
    shown = ", ".join(f"{k} {str(claims[k])[:16]}" for k in _SAMPLE_CLAIMS if claims.get(k))
    return Row(tee, name, VERIFIED,
               f"verified offline against the pinned vendor roots: {shown}", VERIFIED)


#: The outcome of a real sample that verified (nothing is released to it).
VERIFIED = "verified"
_SAMPLE_CLAIMS = ("product", "signer", "measurement")


def corpus_base() -> Path | None:
    """The shared corpus: VERITEE_CORPUS, else ``../shared/corpus`` beside the project
    (a folder holding at least one ``<vendor>/MANIFEST.json``).

    Raises:
        MisuseError: VERITEE_CORPUS is set to a folder that holds no corpus.
    """
    env = os.environ.get("VERITEE_CORPUS")
    if env:
        if not _holds_corpus(Path(env)):
            raise MisuseError(f"VERITEE_CORPUS={env} holds no corpus (no <vendor>/MANIFEST.json)")
        return Path(env)
    bases = [base.parent / "shared" / "corpus"
             for base in (Path.cwd(), Path(__file__).resolve().parents[3])]
    return next((b for b in bases if _holds_corpus(b)), None)


def _holds_corpus(path: Path) -> bool:
    return path.is_dir() and any(path.glob("*/MANIFEST.json"))


def _manifest_files(root: Path) -> set[str]:
    try:
        entries = json.loads((root / "MANIFEST.json").read_text())["entries"]
        return {str(e["file"]) for e in entries}
    except (OSError, ValueError, KeyError, TypeError):
        return set()


# -- the table ---------------------------------------------------------------------------------


def table(rows: list[Row]) -> Table:
    counts = {outcome: sum(r.outcome == outcome for r in rows)
              for outcome in ("released", "refused", VERIFIED)}
    unexpected = sum(r.outcome != r.expected for r in rows)
    shown = ", ".join(f"{n} {'verified offline' if o == VERIFIED else o}"
                      for o, n in counts.items() if n)
    caption = (f"{len(rows)} cases: {shown}; "
               + (f"{unexpected} NOT as expected" if unexpected else "all as expected"))
    out = Table(title="veritee demo", caption=caption, header_style="bold")
    out.add_column("tee", no_wrap=True)
    out.add_column("case", ratio=2, overflow="fold")
    out.add_column("outcome", no_wrap=True)
    out.add_column("reason", ratio=3, overflow="fold")
    for row in rows:
        style = {"released": "green", VERIFIED: "cyan"}.get(row.outcome, "red")
        mark = "" if row.outcome == row.expected else " [bold](unexpected)[/]"
        word = "verified offline" if row.outcome == VERIFIED else row.outcome
        out.add_row(row.tee, escape(row.case), f"[{style}]{word}[/]{mark}",
                    escape(_LONG_HEX.sub(_shorten, row.reason)))
    return out


_LONG_HEX = re.compile(r"\b[0-9a-f]{20,}\b")


def _shorten(match: re.Match[str]) -> str:
    return match.group(0)[:12] + "…"
