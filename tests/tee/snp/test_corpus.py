"""Real SEV-SNP evidence from ../shared/corpus/amd, read in place through its MANIFEST.

Every report sample verifies with the endorsements its MANIFEST ``expected`` text names, at an
instant where all of its certificates are valid, and its claims equal the MANIFEST
``extracted`` values. The list of samples comes from the MANIFEST, never from this file.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from conftest import CORPUS, corpus_dir, manifest
from veritee import errors
from veritee.collateral import CollateralSource
from veritee.errors import BindingError, EvidenceError, UndecidedError
from veritee.evidence import decode_evidence
from veritee.tee import get_verifier
from veritee.tee.snp.certs import OID_SPL_4_7, role_of, vek_info
from veritee.tee.snp.claims import SnpClaims
from veritee.tee.snp.evidence import parse_snp_evidence, report_from_fields
from veritee.tee.snp.layout import REPORT_SIZE, parse_report
from veritee.tee.snp.roots import amd_roots
from veritee.testing.snp import coco_json
from veritee.x509 import Cert, CertCache, issued_by

REPORT_KINDS = frozenset({"snp_report_raw", "snp_report_hex", "linux_tsm_report_json"})
#: Kinds of X.509 material a report's ``expected`` text may name as its endorsements.
CERT_KINDS = frozenset({"vcek_der", "vlek_der", "ask_ark_pem", "asvk_ark_pem", "x509_pem"})
BUNDLE_KINDS = frozenset({"ask_ark_pem", "asvk_ark_pem", "x509_pem"})
TITLES = {"milan": "Milan", "genoa": "Genoa", "turin": "Turin"}
_DER = Encoding.DER


def _entries(kinds: frozenset[str]) -> list[dict[str, Any]]:
    return [e for e in manifest("amd") if e["kind"] in kinds]


def _ids(entries: list[dict[str, Any]]) -> list[str]:
    return [e["file"] for e in entries]


def _params(entries: list[dict[str, Any]]) -> list[Any]:
    """One case per entry; without the corpus, one case that skips and says why."""
    if entries:
        return [pytest.param(e, id=e["file"]) for e in entries]
    return [pytest.param(None, id="no-corpus", marks=pytest.mark.skip(
        reason="corpus folder amd is absent (set VERITEE_CORPUS)"))]


REPORTS = _entries(REPORT_KINDS)
VCEKS = _entries(frozenset({"vcek_der"}))
BUNDLES = _entries(BUNDLE_KINDS)


def _endorsement_files(entry: dict[str, Any]) -> list[str]:
    """Files the ``expected`` text names: full corpus paths, or names in the same folder."""
    text, folder = entry["expected"], entry["file"].rsplit("/", 1)[0]
    named = []
    for other in _entries(CERT_KINDS):
        path = other["file"]
        base = path.rsplit("/", 1)[-1]
        same_folder = path.rsplit("/", 1)[0] == folder
        if path in text or (same_folder and re.search(rf"(?<![\w/.-]){re.escape(base)}", text)):
            named.append(path)
    return named


@dataclass(frozen=True)
class Sample:
    entry: dict[str, Any]
    evidence: bytes
    endorsements: tuple[bytes, ...]
    endorsement_paths: tuple[Path, ...]

    @property
    def extracted(self) -> dict[str, Any]:
        extracted: dict[str, Any] = self.entry["extracted"]
        return extracted

    def certs(self) -> list[Cert]:
        cache = CertCache()
        blobs = [e.data for e in parse_snp_evidence(decode_evidence(self.evidence)).certs]
        return [c for blob in (*blobs, *self.endorsements) for c in cache.blob(blob)[0]]

    def instant(self) -> datetime:
        """One day after the latest notBefore of every certificate involved."""
        certs = self.certs()
        now = max(c.not_before for c in certs) + timedelta(days=1)
        assert now < min(c.not_after for c in certs), "no instant where all certs are valid"
        return now

    def verify(self, report_data: bytes | None = None) -> SnpClaims:
        claims = get_verifier("snp").verify(
            decode_evidence(self.evidence), report_data=report_data,
            collateral=CollateralSource.of(*self.endorsements), now=self.instant())
        assert isinstance(claims, SnpClaims)
        return claims


def _sample(entry: dict[str, Any]) -> Sample:
    root = corpus_dir("amd")
    paths = tuple(root / f for f in _endorsement_files(entry))
    return Sample(entry, (root / entry["file"]).read_bytes(),
                  tuple(p.read_bytes() for p in paths), paths)


def _positive(entry: dict[str, Any]) -> bool:
    return str(entry["expected"]).lower().startswith("verifies")


#: The error classes a negative sample's ``expected`` text may name.
_ERRORS = {name: cls for name, cls in vars(errors).items()
           if isinstance(cls, type) and issubclass(cls, errors.VeriteeError)}


def expected_failure(entry: dict[str, Any]) -> type[errors.VeriteeError]:
    """The error a negative sample must raise: the exact veritee error class its
    ``expected`` text names, else rejected (an evidence error) or undecided as it says."""
    text = json.dumps(entry["expected"])
    named = [cls for name, cls in _ERRORS.items() if re.search(rf"\b{name}\b", text)]
    if named:
        return named[0]
    return UndecidedError if "undecided" in text.lower() else EvidenceError


def test_manifest_lists_report_samples() -> None:
    if not (CORPUS / "amd" / "MANIFEST.json").is_file():
        pytest.skip("corpus folder amd is absent (set VERITEE_CORPUS)")
    assert REPORTS, "the AMD MANIFEST lists no SNP report"
    assert VCEKS


def test_endorsements_are_read_from_expected_text() -> None:
    # The three open samples name, in turn: two files, one file, none (all in the auxblob).
    named = {e["file"]: _endorsement_files(e) for e in REPORTS}
    if "go-sev-guest/attestation.bin" in named:
        assert named["go-sev-guest/attestation.bin"] == [
            "go-sev-guest/vcek.testcer", "go-sev-guest/milan.testcer"]
    if "virtee-sev/report_milan.hex" in named:
        assert named["virtee-sev/report_milan.hex"] == ["virtee-sev/vcek_milan.der"]
    if "veraison/sevsnp-tsm-report.json" in named:
        assert named["veraison/sevsnp-tsm-report.json"] == []


@pytest.mark.parametrize("entry", _params(REPORTS))
def test_sample_has_the_manifest_sha256(entry: dict[str, Any]) -> None:
    data = (corpus_dir("amd") / entry["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]


@pytest.mark.parametrize("entry", _params(REPORTS))
def test_sample_verifies_with_manifest_claims(entry: dict[str, Any]) -> None:
    sample = _sample(entry)
    if not _positive(entry):
        expected = expected_failure(entry)
        with pytest.raises(expected) as info:
            sample.verify()
        if expected not in (EvidenceError, UndecidedError):
            assert type(info.value) is expected, (info.value, entry["expected"])
        return
    claims = sample.verify()
    got, want = claims.to_dict(), sample.extracted
    assert got["version"] == want["version"]
    assert got["product"] == want["product"].lower()
    assert got["signer"] == want["signing_key"].lower()
    assert got["measurement"] == want["measurement"]
    assert got["report_data"] == want["report_data"]
    assert got["host_data"] == want["host_data"]
    assert got["chip_id"].startswith(want["chip_id_prefix"])
    assert got["policy"] == int(want["policy"], 16)
    assert got["vmpl"] == want["vmpl"]
    assert got["platform_info"] == int(want["platform_info"], 16)
    tcb = want["reported_tcb"]
    assert {k: got["reported_tcb"][k] for k in ("bootloader", "tee", "snp", "microcode")} == {
        "bootloader": tcb["bl"], "tee": tcb["tee"], "snp": tcb["snp"], "microcode": tcb["ucode"]}
    report = claims.report
    assert int.from_bytes(report.reported_tcb, "little") == int(want["reported_tcb_raw"], 16)
    assert int.from_bytes(report.current_tcb, "little") == int(want["current_tcb_raw"], 16)
    assert got["current_firmware"] == want["fw"]
    fms = want["cpuid_fms"]
    expected_cpuid = None if fms[0] is None else dict(zip(("family", "model", "stepping"), fms,
                                                          strict=True))
    assert got["cpuid"] == expected_cpuid
    assert got["emulated"] is False
    assert got["revocation"] == "not_checked"
    vek = want.get("vek_extensions")
    if vek:
        assert got["vek"]["product_name"] == vek["product_name"]
        assert got["vek"]["struct_version"] == vek["struct_version"]


@pytest.mark.parametrize("entry", _params(
    [e for e in REPORTS if e.get("extracted", {}).get("vek_extensions")]))
def test_sample_vek_extensions(entry: dict[str, Any]) -> None:
    sample = _sample(entry)
    claims = sample.verify()
    vek = next(c for c in sample.certs() if c.sha256 == claims.vek["sha256"])
    info = vek_info(vek)
    want = sample.extracted["vek_extensions"]
    assert (info.struct_version, info.product_name) == (want["struct_version"],
                                                         want["product_name"])
    assert (info.bootloader, info.tee, info.snp, info.microcode) == (
        want["bl"], want["tee"], want["snp"], want["ucode"])
    spl = dict(zip(OID_SPL_4_7, info.spl_4_7, strict=True))
    for oid, value in want.items():
        if oid.startswith("1.3.6.1.4.1.3704.1.3."):
            assert spl[oid] == value, oid
    if claims.signer == "vlek":  # a VLEK certifies a cloud provider, not a chip
        assert info.hwid is None and info.csp_id
    else:
        assert info.hwid is not None and claims.report.chip_id.startswith(info.hwid)


@pytest.mark.parametrize("entry", _params([e for e in REPORTS if _positive(e)]))
def test_sample_report_data_binding(entry: dict[str, Any]) -> None:
    sample = _sample(entry)
    expected = bytes.fromhex(sample.extracted["report_data"])
    assert sample.verify(report_data=expected).report.report_data == expected
    with pytest.raises(BindingError, match="REPORT_DATA"):
        sample.verify(report_data=bytes(64) if any(expected) else b"\x01" * 64)


@pytest.mark.parametrize("entry", _params(REPORTS))
def test_sample_layout_round_trip(entry: dict[str, Any]) -> None:
    sample = _sample(entry)
    report = parse_snp_evidence(decode_evidence(sample.evidence)).report
    assert len(report.raw) == REPORT_SIZE
    assert parse_report(report.raw).to_bytes() == report.raw
    if entry["kind"] != "linux_tsm_report_json":
        data = decode_evidence(sample.evidence).data
        assert parse_report(data).to_bytes() == data[:REPORT_SIZE]


@pytest.mark.parametrize("entry", _params(REPORTS))
def test_sample_report_from_coco_fields(entry: dict[str, Any]) -> None:
    sample = _sample(entry)
    report = parse_snp_evidence(decode_evidence(sample.evidence)).report
    turin = sample.extracted.get("product", "").lower() == "turin"
    body = coco_json(report.raw, {}, report.signing_key, turin=turin)["attestation_report"]
    assert report_from_fields(body) == report.raw


# -- through the CLI (CONTRACT.md §1) ----------------------------------------------------------


def _cli() -> Any:
    try:
        from veritee.cli.main import app, main
    except ImportError:
        pytest.skip("the veritee CLI is not built yet")
    names = {c.name for c in app.registered_commands}
    if "verify" not in names:
        pytest.skip("veritee verify is not built yet")
    return main


@pytest.mark.parametrize("entry", _params([e for e in REPORTS if _positive(e)]))
def test_sample_through_cli(entry: dict[str, Any], tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    main = _cli()
    sample = _sample(entry)
    args = ["verify", "--tee", "snp", str(corpus_dir("amd") / entry["file"]),
            "--at", sample.instant().isoformat().replace("+00:00", "Z"),
            "--offline", "--cache-dir", str(tmp_path), "--json"]
    for path in sample.endorsement_paths:
        args += ["--endorsements", str(path)]
    capsys.readouterr()
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tee"] == "snp" and out["status"] == "verified" and out["error"] is None
    want = sample.extracted
    assert out["claims"]["measurement"] == want["measurement"]
    assert out["claims"]["product"] == want["product"].lower()

    assert main([*args, "--report-data", "00" * 63 + "ff"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "rejected" and out["error"]["type"] == "BindingError"
    assert out["claims"]["measurement"] == want["measurement"]

    assert main([*args, "--report-data", "00" * 32]) == 2  # 32 bytes: misuse
    out = json.loads(capsys.readouterr().out)
    assert out["error"]["type"] == "MisuseError"


# -- certificates of the corpus and the pinned roots -------------------------------------------


def _builtin_certs() -> dict[str, x509.Certificate]:
    pem = next(iter({r.pem for r in amd_roots()}))
    certs = x509.load_pem_x509_certificates(pem)
    return {hashlib.sha256(c.public_bytes(_DER)).hexdigest(): c for c in certs}


def _pins() -> dict[str, tuple[str, str]]:
    """SHA-256 → (product, role) of every pinned certificate."""
    pins: dict[str, tuple[str, str]] = {}
    for root in amd_roots():
        pins[root.ark_sha256] = (root.product, "ark")
        pins[root.ask_sha256] = (root.product, "ask")
        pins[root.asvk_sha256] = (root.product, "asvk")
    return pins


def test_builtin_roots_hash_to_the_pinned_fingerprints() -> None:
    builtin, pins = _builtin_certs(), _pins()
    assert set(builtin) == set(pins)
    cache = CertCache()
    for fingerprint, cert in builtin.items():
        product, role = pins[fingerprint]
        parsed = cache.cert(cert.public_bytes(_DER))
        assert parsed is not None and role_of(parsed) == role
        expected_cn = {"ark": "ARK-", "ask": "SEV-", "asvk": "SEV-VLEK-"}[role] + TITLES[product]
        assert parsed.subject_cn == expected_cn


@pytest.mark.parametrize("entry", _params(BUNDLES))
def test_corpus_bundle_certificates_are_the_pinned_ones(entry: dict[str, Any]) -> None:
    data = (corpus_dir("amd") / entry["file"]).read_bytes()
    certs = x509.load_pem_x509_certificates(data)
    assert certs
    builtin = _builtin_certs()
    for cert in certs:
        der = cert.public_bytes(_DER)
        fingerprint = hashlib.sha256(der).hexdigest()
        assert fingerprint in builtin, f"{entry['file']}: {cert.subject.rfc4514_string()}"
        assert builtin[fingerprint].public_bytes(_DER) == der


@pytest.mark.parametrize("entry", _params(VCEKS))
def test_corpus_vcek_extensions_and_chain(entry: dict[str, Any]) -> None:
    der = (corpus_dir("amd") / entry["file"]).read_bytes()
    vcek = CertCache().cert(der)
    assert vcek is not None and role_of(vcek) == "vcek"
    info = vek_info(vcek)
    product = (info.product_name or "").split("-")[0].lower()
    assert product in TITLES
    if product == "turin":
        assert info.struct_version == 1
        assert info.hwid is not None and len(info.hwid) == 8
        assert info.fmc is not None
        assert info.spl_4_7[0] is None  # spl_4 (.3.4) is absent on Turin
        prefix = re.search(r"hwID ([0-9a-f]{8})", entry["description"])
        if prefix:
            assert info.hwid.hex().startswith(prefix.group(1))
    else:
        assert info.struct_version == 0
        assert info.hwid is not None and len(info.hwid) == 64
        assert info.fmc is None
        assert info.spl_4_7 == (0, 0, 0, 0)
    assert info.csp_id is None
    # VCEK ← pinned ASK ← pinned ARK (RSASSA-PSS). The VCEK's serial is 0, so its signature
    # is checked on its own bytes (veritee.x509.issued_by), not cryptography's object.
    builtin, pins = _builtin_certs(), _pins()
    by_role = {pins[fp][1]: cert for fp, cert in builtin.items() if pins[fp][0] == product}
    ask = CertCache().cert(by_role["ask"].public_bytes(_DER))
    assert ask is not None and issued_by(vcek, ask)
    assert vcek.serial == 0
    by_role["ask"].verify_directly_issued_by(by_role["ark"])
    by_role["ark"].verify_directly_issued_by(by_role["ark"])
    assert vcek.issuer_cn == f"SEV-{TITLES[product]}"
