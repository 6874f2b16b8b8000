"""Claims of verified Azure vTPM evidence, named as CONTRACT.md §1.1 names them:

* ``tpm``: the ``tpm`` claims of the vTPM quote, ``signer`` = SHA-256 of HCLAkPub's DER SPKI;
* ``snp`` or ``tdx``: the claims ``--tee snp`` / ``--tee tdx`` give for the hardware report;
* ``hcl``: ``report_type``, ``var_data_sha256``, ``ak_public`` (hex DER SPKI), ``user_data``
  (when present), ``vm_configuration`` (its scalar members, as the HCL wrote them),
  ``key_ids`` and the HCL header ``version``;
* ``report_data``: the quote's extraData (hex), beside the nested claims (what the broker's
  binding and tokens read), and ``emulated``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from veritee.tee.azure.hcl import VM_CONFIG_BOOLS, HclReport, VarData
from veritee.tee.dcap.claims import TdxClaims
from veritee.tee.snp.claims import SnpClaims
from veritee.tee.tpm.claims import quote_claims
from veritee.tee.tpm.structures import Attest

#: The PCR Trustee's Azure attester extends once with the init-data digest.
INIT_DATA_PCR: Final = 8


def init_data_pcr(digest: bytes) -> bytes:
    """PCR 8 after the attester measured an init-data digest: SHA-256(0^32 ‖ digest) (trustee
    ``verify_init_data``). What a binding of init-data to this platform compares PCR 8 with:
    the descriptor's ``InitDataRule`` (truncate or pad) cannot express it."""
    return hashlib.sha256(bytes(32) + digest).digest()


def hcl_claims(report: HclReport, var: VarData | None) -> dict[str, Any]:
    """The ``hcl`` claims (without the variable data's when it did not parse)."""
    out: dict[str, Any] = {"report_type": report.report_type, "version": report.version,
                           "var_data_sha256": report.var_data_sha256.hex()}
    if var is None:
        return out
    out["ak_public"] = var.ak_spki.hex()
    out["key_ids"] = list(var.key_ids)
    if var.user_data is not None:
        out["user_data"] = var.user_data.hex()
    out["vm_configuration"] = dict(var.vm_configuration)
    return out


def ak_signer(var: VarData) -> bytes:
    """The ``tpm.signer`` claim: SHA-256 of the AK's DER SPKI
    (:func:`~veritee.tee.tpm.claims.signer_of` of the AK,
    from the SPKI the variable data already holds)."""
    return hashlib.sha256(var.ak_spki).digest()


@dataclass(frozen=True, slots=True)
class VtpmQuote:
    """The verified vTPM quote: its TPMS_ATTEST, the PCR values it covers and the ``signer``
    (:func:`ak_signer`); the ``tpm`` claims are built from it when they are asked for."""

    attest: Attest
    pcrs: Mapping[str, Mapping[int, bytes]]
    signer: bytes

    def to_dict(self) -> dict[str, Any]:
        return quote_claims([(self.attest, self.pcrs)], signer=self.signer, eventlog_pcrs=None)


@dataclass(frozen=True, slots=True)
class _AzureClaims:
    tpm: VtpmQuote
    hcl: Mapping[str, Any]
    evidence_form: str

    def _common(self) -> dict[str, Any]:
        return {"tpm": self.tpm.to_dict(), "hcl": dict(self.hcl),
                "report_data": self.tpm.attest.extra_data.hex(),
                "evidence_form": self.evidence_form}


@dataclass(frozen=True, slots=True)
class AzSnpVtpmClaims(_AzureClaims):
    tee: ClassVar[str] = "az-snp-vtpm"

    snp: SnpClaims

    def to_dict(self) -> dict[str, Any]:
        return {**self._common(), "snp": self.snp.to_dict(), "emulated": self.snp.emulated}


@dataclass(frozen=True, slots=True)
class AzTdxVtpmClaims(_AzureClaims):
    tee: ClassVar[str] = "az-tdx-vtpm"

    tdx: TdxClaims

    def to_dict(self) -> dict[str, Any]:
        return {**self._common(), "tdx": self.tdx.to_dict(), "emulated": self.tdx.emulated}

def _short(value: Any) -> str:
    return f"{value[:16]}…" if isinstance(value, str) and len(value) > 16 else str(value)


def _tpm_line(value: Any, claims: Mapping[str, Any]) -> str:
    if not isinstance(value, Mapping):
        return str(value)
    pcrs = value.get("pcrs", {}).get("sha256", {})
    return (f"{len(pcrs)} sha256 PCRs · PCR8 {_short(pcrs.get('8'))} · signer "
            f"{_short(value.get('signer'))}")


def _hardware_line(value: Any, claims: Mapping[str, Any]) -> str:
    if not isinstance(value, Mapping):
        return str(value)
    keys = ("product", "signer", "vmpl", "measurement", "revocation", "mr_td", "tcb_status")
    return " · ".join(f"{k} {_short(value[k])}" for k in keys if value.get(k) is not None)


def _hcl_line(value: Any, claims: Mapping[str, Any]) -> str:
    if not isinstance(value, Mapping):
        return str(value)
    vm = value.get("vm_configuration") or {}
    parts = [str(value.get("report_type")),
             *(f"{k} {'yes' if vm[k] else 'no'}" for k in VM_CONFIG_BOOLS if k in vm)]
    if "vmUniqueId" in vm:
        parts.append(f"vmUniqueId {vm['vmUniqueId']}")
    return " · ".join(parts)


#: How ``veritee verify`` shows the nested claims (the descriptor's ``summary_formats``).
SUMMARY_FORMATS: dict[str, Callable[[Any, Mapping[str, Any]], str]] = {
    "tpm": _tpm_line, "snp": _hardware_line, "tdx": _hardware_line, "hcl": _hcl_line}

__all__ = ["INIT_DATA_PCR", "SUMMARY_FORMATS", "AzSnpVtpmClaims", "AzTdxVtpmClaims", "VtpmQuote",
           "ak_signer",
           "hcl_claims", "init_data_pcr"]
