"""Quotes from a real TPM implementation (Debian's swtpm, driven with tpm2-tools through
``veritee.testing.tpm.Swtpm``) through ``TpmVerifier``: RSASSA, RSA-PSS and ECDSA AKs, one and
two banks, keylime's and Trustee's forms verify with the AK's PEM; a changed nonce, PCR value,
signature, attest or AK is refused. The harness itself: it stops swtpm by PID (also after an
exception), listens on loopback only, and reports itself unavailable without the programs.
Skipped when swtpm or tpm2-tools is absent (Debian: swtpm, swtpm-tools, tpm2-tools)."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography import x509

from veritee import errors
from veritee.collateral import CollateralSource
from veritee.evidence import decode_evidence
from veritee.tee.tpm import structures
from veritee.tee.tpm.verify import TpmVerifier
from veritee.testing.tpm import (
    AK_KINDS,
    KNOB_ERRORS,
    Swtpm,
    SwtpmAk,
    SwtpmError,
    SwtpmQuote,
    TpmEmulator,
    clock_offset,
    spki_der,
    trustee_json,
)

pytestmark = pytest.mark.skipif(not Swtpm.available(),
                                reason="swtpm and tpm2-tools are not installed")

NONCE = bytes.fromhex("9009abcd") * 8
NOW = datetime(2026, 6, 1, tzinfo=UTC)
SELECTION = {"sha256": [0, 1, 7, 8, 16]}


@pytest.fixture(scope="module")
def swtpm() -> Iterator[Swtpm]:
    with Swtpm() as tpm:
        tpm.extend(8, {"sha1": b"\x11" * 20, "sha256": b"\x22" * 32})
        yield tpm


@pytest.fixture(scope="module")
def aks(swtpm: Swtpm) -> dict[str, SwtpmAk]:
    return {kind: swtpm.create_ak(kind) for kind in AK_KINDS}


def _verify(blob: bytes, *endorsements: bytes, report_data: bytes | None = NONCE) -> Any:
    return TpmVerifier().verify(decode_evidence(blob), report_data=report_data,
                                collateral=CollateralSource.of(*endorsements), now=NOW)


def _trustee(quote: SwtpmQuote, **changes: Any) -> bytes:
    """Trustee's form of ``quote``, with fields replaced (attest, signature, pcrs, ak_pem)."""
    pcrs = changes.get("pcrs", [v for _, _, v in quote.pcrs])
    return trustee_json(changes.get("attest", quote.attest),
                        changes.get("signature", quote.signature), pcrs,
                        spki_der(changes.get("ak_pem", quote.ak.pem)))


@pytest.mark.parametrize("kind", AK_KINDS)
@pytest.mark.parametrize("form", ["keylime", "trustee"])
def test_a_real_tpms_quote_verifies(swtpm: Swtpm, aks: dict[str, SwtpmAk], kind: str,
                                    form: str) -> None:
    quote = swtpm.quote(aks[kind], NONCE, SELECTION)
    blob = quote.keylime() if form == "keylime" else quote.trustee()
    claims = _verify(blob, quote.ak.pem).to_dict()
    assert claims["extra_data"] == NONCE.hex()
    assert claims["pcr_select"] == {"sha256": SELECTION["sha256"]}
    assert claims["pcrs"]["sha256"] == {str(i): v.hex() for _, i, v in quote.pcrs}
    assert claims["pcrs"]["sha256"]["16"] == "00" * 32
    assert claims["qualified_signer"] == structures.parse_attest(quote.attest) \
        .qualified_signer.hex()
    assert claims["firmware_version"] == structures.parse_attest(quote.attest).firmware_version


def test_a_two_bank_quote_verifies(swtpm: Swtpm, aks: dict[str, SwtpmAk]) -> None:
    quote = swtpm.quote(aks["rsa"], NONCE, {"sha1": [0, 8], "sha256": [0, 8]})
    claims = _verify(quote.trustee(), quote.ak.pem).to_dict()
    assert claims["pcr_select"] == {"sha1": [0, 8], "sha256": [0, 8]}
    assert claims["pcrs"]["sha1"]["8"] == next(v for b, i, v in quote.pcrs
                                               if (b, i) == ("sha1", 8)).hex()


def test_the_ak_public_area_and_name_are_the_tpms(aks: dict[str, SwtpmAk]) -> None:
    for ak in aks.values():
        public = structures.parse_public(ak.public)
        assert public.name == ak.name and public.restricted_signing


def _flip(data: bytes, at: int = -1) -> bytes:
    changed = bytearray(data)
    changed[at] ^= 1
    return bytes(changed)


@pytest.mark.parametrize(("case", "error"), [
    ("wrong_nonce", KNOB_ERRORS["wrong_nonce"]),
    ("pcr_changed", KNOB_ERRORS["pcr_changed"]),
    ("bad_signature", KNOB_ERRORS["bad_signature"]),
    ("tampered_attest", KNOB_ERRORS["tampered_attest"]),
    ("foreign_ak", KNOB_ERRORS["foreign_ak"]),
])
@pytest.mark.parametrize("kind", ["rsa", "ecdsa"])
def test_tampering_with_a_real_quote_is_refused(swtpm: Swtpm, aks: dict[str, SwtpmAk],
                                                case: str, error: type[Exception],
                                                kind: str) -> None:
    quote = swtpm.quote(aks[kind], NONCE, SELECTION)
    endorsement = quote.ak.pem
    report_data = NONCE
    if case == "wrong_nonce":
        report_data = _flip(NONCE)
        blob = quote.trustee()
    elif case == "pcr_changed":
        values = [v for _, _, v in quote.pcrs]
        blob = _trustee(quote, pcrs=[_flip(values[0]), *values[1:]])
    elif case == "bad_signature":
        blob = _trustee(quote, signature=_flip(quote.signature, -3))
    elif case == "tampered_attest":
        blob = _trustee(quote, attest=_flip(quote.attest, clock_offset(quote.attest)))
    else:  # another TPM's AK signed; the evidence names it, the endorsement is ours
        other = aks["rsa" if kind == "ecdsa" else "ecdsa"]
        blob = swtpm.quote(other, NONCE, SELECTION).trustee()
    with pytest.raises(error):
        _verify(blob, endorsement, report_data=report_data)


def test_an_emulated_ak_does_not_vouch_for_a_real_quote(swtpm: Swtpm,
                                                        aks: dict[str, SwtpmAk]) -> None:
    quote = swtpm.quote(aks["rsa"], NONCE, SELECTION)
    with pytest.raises(errors.EvidenceError):
        _verify(quote.keylime(), TpmEmulator().ak_pem)
    with pytest.raises(errors.UndecidedError):
        _verify(quote.keylime())


def test_the_ek_certificate_is_from_swtpm_localca(swtpm: Swtpm) -> None:
    cert = x509.load_der_x509_certificate(swtpm.ek_certificate() or b"")
    assert "swtpm-localca" in cert.issuer.rfc4514_string()


def test_swtpm_listens_on_loopback_and_stops_by_pid() -> None:
    with Swtpm(banks=("sha256",), ek_cert=False) as tpm:
        pid, state = tpm.pid, tpm.state
        assert pid is not None and tpm.tcti.startswith("swtpm:host=127.0.0.1,port=")
        os.kill(pid, 0)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not state.exists()


def test_swtpm_stops_after_an_exception() -> None:
    pid = None
    with pytest.raises(RuntimeError, match="boom"), Swtpm(banks=("sha256",),
                                                          ek_cert=False) as tpm:
        pid = tpm.pid
        raise RuntimeError("boom")
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_failing_command_says_what_failed(swtpm: Swtpm) -> None:
    with pytest.raises(SwtpmError, match="tpm2_pcrextend"):
        swtpm.extend(99, {"sha256": bytes(32)})


def test_swtpm_is_unavailable_without_its_programs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    assert Swtpm.available() is False


def test_the_trustee_form_of_a_real_quote_is_json(swtpm: Swtpm,
                                                  aks: dict[str, SwtpmAk]) -> None:
    quote = swtpm.quote(aks["rsa"], NONCE, SELECTION)
    document = json.loads(quote.trustee())
    assert base64.b64decode(document["tpm_quote"]["message"]) == quote.attest
    assert document["tpm_quote"]["pcrs"] == [v.hex() for _, _, v in quote.pcrs]
