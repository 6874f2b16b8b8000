"""Further wire forms: protobuf text (Project Oak) and Azure vTPM JSON (HCL report + VCEK)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veritee.collateral import CollateralSource
from veritee.errors import MalformedEvidenceError, MisuseError
from veritee.evidence import decode_evidence, textproto_bytes
from veritee.tee import get_verifier
from veritee.testing.snp import SnpEmulator


def _escape(data: bytes) -> str:
    """Protobuf text escaping as Go/C++ print it (octal for non-printables)."""
    out = []
    for byte in data:
        char = chr(byte)
        if char in "\\\"'":
            out.append("\\" + char)
        elif 32 <= byte < 127:
            out.append(char)
        else:
            out.append(f"\\{byte:03o}")
    return "".join(out)


def _verify(evidence: bytes, endorsements: tuple[bytes, ...] = ()) -> dict[str, object]:
    return get_verifier("snp", trust_emulated=True).verify(
        decode_evidence(evidence), report_data=None,
        collateral=CollateralSource.of(*endorsements), now=datetime.now(UTC)).to_dict()


def test_oak_textproto_evidence_and_endorsements() -> None:
    emu = SnpEmulator(product="turin", version=5)
    report = emu.report()
    evidence = (f'root_layer {{\n  platform: AMD_SEV_SNP\n  remote_attestation_report: '
                f'"{_escape(report[:600])}"\n    "{_escape(report[600:])}"\n'
                '  eca_public_key: "\\001\\002"\n}\n').encode()
    endorsements = (f'oak_containers {{\n  root_layer {{\n    tee_certificate: '
                    f'"{_escape(emu.chain["vek"])}"\n  }}\n}}\n').encode()
    claims = _verify(evidence, (endorsements,))
    assert claims["product"] == "turin" and claims["evidence_form"] == "textproto"


def test_azure_vtpm_json_carries_the_hcl_report_and_vcek() -> None:
    emu = SnpEmulator(version=2)
    hcl = b"HCLA" + bytes(28) + emu.report() + bytes(20) + b'{"keys": []}'
    body = base64.encodebytes(emu.chain["vek"]).decode()
    vcek_pem = f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n".encode()
    document = {"quote": {"signature": "", "message": "", "pcrs": []},
                "report": list(hcl), "vcek": vcek_pem.decode()}
    claims = _verify(json.dumps(document).encode())
    assert claims["evidence_form"] == "azure-hcl"
    document["report"] = base64.b64encode(hcl).decode()
    assert _verify(json.dumps(document).encode())["product"] == "milan"


@pytest.mark.parametrize("text", [b'x: "unterminated', b'x: "\\q"', b'x: "\\x"', b'x: "\\777"'])
def test_bad_protobuf_text_is_malformed(text: bytes) -> None:
    with pytest.raises(MalformedEvidenceError):
        textproto_bytes(text, "x")


def test_textproto_without_a_report_is_malformed() -> None:
    with pytest.raises(MalformedEvidenceError):
        _verify(b'root_layer { remote_attestation_report: "\\002" }\n')


@settings(max_examples=300, deadline=None)
@given(tail=st.binary(max_size=3000), quote=st.sampled_from([b'"', b"'", b""]))
def test_fuzzed_protobuf_text_is_malformed_evidence(tail: bytes, quote: bytes) -> None:
    blob = b"root_layer { remote_attestation_report: " + quote + tail
    with pytest.raises(MalformedEvidenceError):
        _verify(blob)


@settings(max_examples=300, deadline=None)
@given(tail=st.binary(max_size=3000))
def test_fuzzed_protobuf_text_endorsements_are_named_or_used(tail: bytes) -> None:
    blob = b'tee_certificate: "' + tail
    try:
        claims = _verify(SnpEmulator().extended_report(), (blob,))
    except MisuseError as exc:  # an endorsement file holding nothing usable is named
        assert "endorsement file endorsement[0] holds no certificate" in exc.detail
        return
    assert claims["signer"] == "vcek"
