"""Real TPM quotes from ../shared/corpus/ibm-tpm-gpu/tpm through the verifier, read in place:
keylime's sample (a hardware TPM, RSASSA-SHA256) and a quote made with swtpm and tpm2-tools.
Each is verified, then tampered with (nonce, PCR, signature, AK) and refused."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from conftest import corpus_dir
from veritee.collateral import CollateralSource
from veritee.errors import (
    BindingError,
    CollateralMissingError,
    MalformedEvidenceError,
    SignatureError,
    VeriteeError,
)
from veritee.evidence import decode_evidence
from veritee.tee.tpm.verify import TpmVerifier
from veritee.testing import pki

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Sample:
    folder: Path
    attest: bytes
    signature: bytes
    blob: bytes
    ak: bytes
    nonce: bytes


def keylime() -> Sample:
    f = corpus_dir("ibm-tpm-gpu", "tpm", "keylime")
    return Sample(f, (f / "quote.bin").read_bytes(), (f / "sig.bin").read_bytes(),
                  (f / "pcrblob.bin").read_bytes(), (f / "ak.pem").read_bytes(),
                  (f / "nonce.txt").read_bytes().strip())


def swtpm() -> Sample:
    f = corpus_dir("ibm-tpm-gpu", "tpm", "swtpm")
    return Sample(f, (f / "quote.msg").read_bytes(), (f / "quote.sig").read_bytes(),
                  (f / "quote.pcrs").read_bytes(), (f / "ak.pem").read_bytes(),
                  bytes.fromhex((f / "nonce.hex").read_text().strip()))


SAMPLES = {"keylime": keylime, "swtpm": swtpm}


def quote_string(attest: bytes, signature: bytes, blob: bytes) -> bytes:
    return b"r" + b":".join(base64.b64encode(p) for p in (attest, signature, blob))


def verify(evidence: bytes, ak: bytes | None, nonce: bytes | None) -> dict[str, object]:
    source = CollateralSource.of(ak) if ak is not None else CollateralSource()
    return TpmVerifier().verify(decode_evidence(evidence), report_data=nonce,
                                collateral=source, now=NOW).to_dict()


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


@pytest.mark.parametrize("sample", SAMPLES)
def test_valid(sample: str) -> None:
    s = SAMPLES[sample]()
    claims = verify(quote_string(s.attest, s.signature, s.blob), s.ak, s.nonce)
    assert claims["extra_data"] == s.nonce.hex() and claims["ak_trust"] == "key"
    assert claims["evidence_form"] == "keylime" and claims["emulated"] is False
    assert claims["signer"] and len(str(claims["signer"])) == 64
    if sample == "keylime":
        assert claims["pcr_select"] == {"sha256": [16]}
        assert claims["firmware_version"] == 0x2019102300163636
    else:
        assert claims["pcr_select"] == {"sha256": [0, 1, 7, 16]}
        assert claims["pcr_digest"] == (
            "5a77f09b9adc1e3b96eb976fb41c3551d62a8a50544892e72e1160d33e798b95")


@pytest.mark.parametrize("sample", SAMPLES)
def test_no_ak_is_undecided_with_claims(sample: str) -> None:
    s = SAMPLES[sample]()
    with pytest.raises(CollateralMissingError) as caught:
        verify(quote_string(s.attest, s.signature, s.blob), None, s.nonce)
    assert caught.value.claims is not None
    assert caught.value.claims["extra_data"] == s.nonce.hex()


def _wrong_nonce(s: Sample) -> tuple[bytes, bytes | None, bytes]:
    return quote_string(s.attest, s.signature, s.blob), s.ak, s.nonce[:-1] + b"X"


def _changed_pcr(s: Sample) -> tuple[bytes, bytes | None, bytes]:
    return quote_string(s.attest, s.signature, _flip(s.blob, 0x84 + 8 + 2)), s.ak, s.nonce


def _flipped_signature(s: Sample) -> tuple[bytes, bytes | None, bytes]:
    return quote_string(s.attest, _flip(s.signature, 100), s.blob), s.ak, s.nonce


def _flipped_attest(s: Sample) -> tuple[bytes, bytes | None, bytes]:
    return quote_string(_flip(s.attest, 0x45), s.signature, s.blob), s.ak, s.nonce


def _other_ak(s: Sample) -> tuple[bytes, bytes | None, bytes]:
    other = pki.load_key("tpm-foreign-ak").public_key()
    pem = other.public_bytes(serialization.Encoding.PEM,
                             serialization.PublicFormat.SubjectPublicKeyInfo)
    return quote_string(s.attest, s.signature, s.blob), pem, s.nonce


def _wrong_nonce_no_ak(s: Sample) -> tuple[bytes, bytes | None, bytes]:
    """Rejected beats undecided: no AK, but the nonce is wrong."""
    return quote_string(s.attest, s.signature, s.blob), None, b"other"


def _changed_pcr_no_ak(s: Sample) -> tuple[bytes, bytes | None, bytes]:
    return quote_string(s.attest, s.signature, _flip(s.blob, 0x84 + 8 + 2)), None, s.nonce


def _truncated_blob(s: Sample) -> tuple[bytes, bytes | None, bytes]:
    return quote_string(s.attest, s.signature, s.blob[:-1]), s.ak, s.nonce


Tamper = Callable[[Sample], tuple[bytes, bytes | None, bytes]]
TAMPERED: list[tuple[str, Tamper, type[VeriteeError]]] = [
    ("wrong_nonce", _wrong_nonce, BindingError),
    ("changed_pcr", _changed_pcr, BindingError),
    ("flipped_signature", _flipped_signature, SignatureError),
    ("flipped_attest", _flipped_attest, SignatureError),
    ("other_ak", _other_ak, SignatureError),
    ("wrong_nonce_no_ak", _wrong_nonce_no_ak, BindingError),
    ("changed_pcr_no_ak", _changed_pcr_no_ak, BindingError),
    ("truncated_blob", _truncated_blob, MalformedEvidenceError),
]


@pytest.mark.parametrize("sample", SAMPLES)
@pytest.mark.parametrize(("name", "tamper", "error"), TAMPERED, ids=[t[0] for t in TAMPERED])
def test_tampered(sample: str, name: str, tamper: Tamper, error: type[VeriteeError]) -> None:
    evidence, ak, nonce = tamper(SAMPLES[sample]())
    with pytest.raises(error) as caught:
        verify(evidence, ak, nonce)
    assert caught.value.status == "rejected"
    if error is not MalformedEvidenceError:  # evidence that does not parse has no claims
        assert caught.value.claims is not None and caught.value.claims.get("evidence_form")


def test_keylime_event_log_alone_is_undecided() -> None:
    log = (corpus_dir("ibm-tpm-gpu", "tpm", "keylime") / "binary_bios_measurements").read_bytes()
    with pytest.raises(CollateralMissingError, match="bare event log") as caught:
        verify(log, None, None)
    claims = caught.value.claims
    assert claims is not None and claims["evidence_form"] == "eventlog"
    assert claims["eventlog_pcrs"] and claims["event_log"]["events"]


def test_go_tpm_tools_event_logs_replay() -> None:
    """Each go-tpm-tools log alone replays (undecided, with its PCRs as claims)."""
    folder = corpus_dir("ibm-tpm-gpu", "tpm", "go-tpm-tools", "eventlogs")
    logs = sorted(folder.glob("*.bin"))
    assert logs
    for log in logs:
        with pytest.raises(CollateralMissingError) as caught:
            verify(log.read_bytes(), None, None)
        assert caught.value.claims and caught.value.claims["eventlog_pcrs"]


def test_second_supplied_key_signs() -> None:
    s = keylime()
    other = pki.load_key("tpm-foreign-ak").public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    claims = TpmVerifier().verify(
        decode_evidence(quote_string(s.attest, s.signature, s.blob)), report_data=s.nonce,
        collateral=CollateralSource.of(other, s.ak), now=NOW).to_dict()
    assert claims["ak_trust"] == "key"
    with pytest.raises(SignatureError, match="none of the 2 supplied"):
        TpmVerifier().verify(
            decode_evidence(quote_string(s.attest, _flip(s.signature, 9), s.blob)),
            report_data=s.nonce, collateral=CollateralSource.of(other, s.ak), now=NOW)
