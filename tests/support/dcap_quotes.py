"""A minimal, unsigned DCAP quote for tests that only move quotes around (collectors): the
layouts are real, the signatures are placeholders."""

from __future__ import annotations

from veritee.tee.dcap.quote import (
    BODY_SGX,
    BODY_TD10,
    CERT_PCK_CHAIN,
    HEADER,
    INTEL_QE_VENDOR_ID,
    SGX_REPORT,
    TD_REPORT_10,
    TEE_TYPE_SGX,
    TEE_TYPE_TDX,
    CertificationData,
    build_quote,
    build_signature_data,
    pack_fields,
)

PEM = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n\x00"


def make_quote(report_data: bytes, tee: str = "tdx", *, padding: int = 0) -> bytes:
    """A v4 TDX or v3 SGX quote over ``report_data``, followed by ``padding`` zero bytes."""
    body_type = BODY_TD10 if tee == "tdx" else BODY_SGX
    version = 4 if tee == "tdx" else 3
    header = pack_fields(HEADER, {
        "version": version, "att_key_type": 2,
        "tee_type": TEE_TYPE_TDX if tee == "tdx" else TEE_TYPE_SGX,
        "qe_vendor_id": INTEL_QE_VENDOR_ID})
    body = pack_fields(TD_REPORT_10 if body_type == BODY_TD10 else SGX_REPORT,
                       {"report_data": report_data})
    signature_data = build_signature_data(
        version=version, signature=b"\x01" * 64, attestation_key=b"\x02" * 64,
        qe_report=pack_fields(SGX_REPORT, {}), qe_report_signature=b"\x03" * 64,
        qe_auth_data=bytes(32), certification=CertificationData(CERT_PCK_CHAIN, PEM))
    return build_quote(header, body, signature_data) + bytes(padding)
