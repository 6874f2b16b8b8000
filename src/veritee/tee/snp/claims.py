"""Claims of a verified SEV-SNP report, named as CONTRACT.md §1 names them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from veritee.tee.snp.layout import (
    PLATFORM_INFO_BITS,
    POLICY_BITS,
    SnpReport,
    TcbVersion,
    decode_bits,
)


@dataclass(frozen=True, slots=True)
class SnpClaims:
    tee: ClassVar[str] = "snp"

    report: SnpReport
    product: str | None
    """``milan``, ``genoa``, ``turin``, or None when it could not be told."""
    signer: str
    """``vcek`` or ``vlek``."""
    revocation: str = "not_checked"
    """``checked`` when a CRL from the ARK verified and listed none of the chain."""
    emulated: bool = False
    """The chain ends in an emulated (test) root the operator chose to trust."""
    evidence_form: str = "report"
    vek: dict[str, Any] = field(default_factory=dict)
    """What the VCEK/VLEK certifies: product_name, struct_version, csp_id, sha256."""

    @property
    def turin(self) -> bool:
        return self.product == "turin"

    def tcb(self, raw: bytes) -> TcbVersion:
        return TcbVersion.decode(raw, turin=self.turin)

    def to_dict(self) -> dict[str, Any]:
        return claims_dict(self.report, self.product, self.signer, extra={
            "revocation": self.revocation,
            "emulated": self.emulated,
            "evidence_form": self.evidence_form,
            "vek": self.vek,
        })


def claims_dict(report: SnpReport, product: str | None, signer: str | None,
                extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every claim of ``report`` as JSON-ready values (also used for partial claims)."""
    turin = product == "turin"
    policy = report.policy
    out: dict[str, Any] = {
        "version": report.version,
        "product": product,
        "signer": signer,
        "measurement": report.measurement.hex(),
        "report_data": report.report_data.hex(),
        "host_data": report.host_data.hex(),
        "id_key_digest": report.id_key_digest.hex(),
        "author_key_digest": report.author_key_digest.hex(),
        "chip_id": report.chip_id.hex(),
        "vmpl": report.vmpl,
        "policy": policy,
        "guest_svn": report.guest_svn,
        "platform_info": report.platform_info,
        "reported_tcb": _tcb(report.reported_tcb, turin),
        "current_tcb": _tcb(report.current_tcb, turin),
        "committed_tcb": _tcb(report.committed_tcb, turin),
        "launch_tcb": _tcb(report.launch_tcb, turin),
        "family_id": report.family_id.hex(),
        "image_id": report.image_id.hex(),
        "report_id": report.report_id.hex(),
        "report_id_ma": report.report_id_ma.hex(),
        "signature_algo": report.signature_algo,
        "author_key_en": report.author_key_en,
        "policy_flags": {
            "abi_minor": policy & 0xFF,
            "abi_major": policy >> 8 & 0xFF,
            **decode_bits(policy, POLICY_BITS),
        },
        "platform_flags": decode_bits(report.platform_info, PLATFORM_INFO_BITS),
        "cpuid": (
            {"family": report.cpuid_fam_id, "model": report.cpuid_mod_id,
             "stepping": report.cpuid_step}
            if report.has_cpuid else None
        ),
        "current_firmware": f"{report.current_major}.{report.current_minor}.{report.current_build}",
        "committed_firmware": (
            f"{report.committed_major}.{report.committed_minor}.{report.committed_build}"
        ),
    }
    if report.version >= 5:
        out["launch_mit_vector"] = report.launch_mit_vector
        out["current_mit_vector"] = report.current_mit_vector
    if extra:
        out.update(extra)
    return out


def _tcb(raw: bytes, turin: bool) -> dict[str, int]:
    return TcbVersion.decode(raw, turin=turin).components()


def _policy_line(value: Any, claims: Mapping[str, Any]) -> str:
    """``0x30000  (abi ≥ 0.0; smt)``: the guest policy with its flags, for the CLI table."""
    if not isinstance(value, int):
        return str(value)
    flags = claims.get("policy_flags") or {}
    names = [k for k, v in flags.items() if v is True]
    major, minor = flags.get("abi_major", value >> 8 & 0xFF), flags.get("abi_minor", value & 0xFF)
    return f"0x{value:x}  (abi ≥ {major}.{minor}; {', '.join(names) or 'no flags set'})"


#: How ``veritee verify`` shows the claims that need more than their value.
SUMMARY_FORMATS: dict[str, Callable[[Any, Mapping[str, Any]], str]] = {"policy": _policy_line}
