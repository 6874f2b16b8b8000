"""Claims of a verified DCAP quote (TDX or SGX), named as CONTRACT.md §1 names them.

Byte fields are lowercase hex of their raw bytes; scalars are integers. Besides the contract's
names, the claims carry what the verification found out (``tcb_status``, ``advisory_ids``,
``tcb_date``, ``collateral_expiration``, the QE's and the TDX module's own statuses, the PCK
certificate's identity) so that a policy can decide on each of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from veritee.tee.dcap.quote import Quote, SgxReport, TdReport, sgx_attribute_flags


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the collateral said about the quote's platform (all None when undecided)."""

    tcb_status: str | None = None
    """Intel's converged status (``UpToDate``, ``SWHardeningNeeded``, ``OutOfDate``, ...)."""
    advisory_ids: tuple[str, ...] = ()
    tcb_date: str | None = None
    """The matched platform TCB level's ``tcbDate``."""
    collateral_expiration: str | None = None
    """The earliest ``nextUpdate`` over the collateral used (ISO 8601)."""
    collateral_expired: bool = False
    """The collateral was used past ``collateral_expiration`` (within an allowed grace)."""
    platform_status: str | None = None
    qe_status: str | None = None
    module_status: str | None = None
    revocation: str = "not_checked"
    """``checked``: the PCK CRL and the root CA CRL verified and listed none of the chain."""


@dataclass(frozen=True, slots=True)
class PckFacts:
    """What the PCK certificate certifies (research note §2.2)."""

    fmspc: bytes
    pce_id: bytes
    ca: Literal["platform", "processor"] | None
    """Which PCK CA issued it."""
    sgx_type: str
    pce_svn: int
    components: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class _DcapClaims:
    quote: Quote
    pck: PckFacts | None = None
    verdict: Verdict = Verdict()
    emulated: bool = False
    evidence_form: str = "raw"
    event_log: Mapping[str, Any] | None = None
    """The replayed event log (``{"events": [...], "replayed": bool}``), TDX only."""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = claims_dict(self.quote, self.pck, self.verdict)
        out.update({"emulated": self.emulated, "evidence_form": self.evidence_form})
        if self.event_log is not None:
            out["event_log"] = dict(self.event_log)
        out.update(self.extra)
        return out


@dataclass(frozen=True, slots=True)
class TdxClaims(_DcapClaims):
    tee: ClassVar[str] = "tdx"


@dataclass(frozen=True, slots=True)
class SgxClaims(_DcapClaims):
    tee: ClassVar[str] = "sgx"


def claims_dict(quote: Quote, pck: PckFacts | None, verdict: Verdict) -> dict[str, Any]:
    """Every claim of ``quote`` as JSON-ready values (also used for partial claims)."""
    body = quote.body
    header = quote.header.raw
    out: dict[str, Any] = {"quote_version": quote.version, "tee_type": quote.tee,
                           "body_type": quote.body_name,
                           "header": {"version": header[0:2].hex(),
                                      "att_key_type": header[2:4].hex(),
                                      "tee_type": header[4:8].hex(),
                                      "reserved": header[8:12].hex(),
                                      "vendor_id": quote.header.qe_vendor_id.hex(),
                                      "user_data": quote.header.user_data.hex()}}
    out.update(_td(body) if isinstance(body, TdReport) else _enclave(body))
    qe = quote.signature_data.qe.qe_report
    out.update({
        "fmspc": pck.fmspc.hex() if pck else None,
        "tcb_status": verdict.tcb_status,
        "advisory_ids": list(verdict.advisory_ids),
        "tcb_date": verdict.tcb_date,
        "collateral_expiration": verdict.collateral_expiration,
        "collateral_expired": verdict.collateral_expired,
        "platform_tcb_status": verdict.platform_status,
        "qe_tcb_status": verdict.qe_status,
        "revocation": verdict.revocation,
        "qe": {"isv_svn": qe.isv_svn, "isv_prod_id": qe.isv_prod_id,
               "mr_signer": qe.mr_signer.hex(), "mr_enclave": qe.mr_enclave.hex()},
        "pck": None if pck is None else {
            "fmspc": pck.fmspc.hex(), "pce_id": pck.pce_id.hex(), "ca": pck.ca,
            "sgx_type": pck.sgx_type, "pce_svn": pck.pce_svn,
            "tcb_components": list(pck.components)},
    })
    if isinstance(body, TdReport):
        out["tdx_module_tcb_status"] = verdict.module_status
    return out


def _td(body: TdReport) -> dict[str, Any]:
    out: dict[str, Any] = {
        "tee_tcb_svn": body.tee_tcb_svn.hex(),
        "mr_seam": body.mr_seam.hex(),
        "mr_signer_seam": body.mr_signer_seam.hex(),
        "seam_attributes": body.seam_attributes.hex(),
        "td_attributes": body.td_attributes.hex(),
        "td_attributes_flags": body.attribute_flags,
        "xfam": body.xfam.hex(),
        "mr_td": body.mr_td.hex(),
        "mr_config_id": body.mr_config_id.hex(),
        "mr_owner": body.mr_owner.hex(),
        "mr_owner_config": body.mr_owner_config.hex(),
        "rtmr0": body.rtmr0.hex(),
        "rtmr1": body.rtmr1.hex(),
        "rtmr2": body.rtmr2.hex(),
        "rtmr3": body.rtmr3.hex(),
        "report_data": body.report_data.hex(),
        "debug": body.attribute_flags["debug"],
    }
    if body.tee_tcb_svn2 is not None and body.mr_service_td is not None:
        out["tee_tcb_svn2"] = body.tee_tcb_svn2.hex()
        out["mr_service_td"] = body.mr_service_td.hex()
    return out


def _enclave(body: SgxReport) -> dict[str, Any]:
    flags = sgx_attribute_flags(body.attributes)
    return {
        "cpu_svn": body.cpu_svn.hex(),
        "misc_select": body.misc_select,
        "attributes": body.attributes.hex(),
        "attributes_flags": flags,
        "mr_enclave": body.mr_enclave.hex(),
        "mr_signer": body.mr_signer.hex(),
        "isv_prod_id": body.isv_prod_id,
        "isv_svn": body.isv_svn,
        "config_id": body.config_id.hex(),
        "config_svn": body.config_svn,
        "isv_ext_prod_id": body.isv_ext_prod_id.hex(),
        "isv_family_id": body.isv_family_id.hex(),
        "report_data": body.report_data.hex(),
        "debug": flags["debug"],
    }


def _status_line(value: Any, claims: Mapping[str, Any]) -> str:
    """``OutOfDate (INTEL-SA-00837, ...; TCB of 2023-02-15)`` for the CLI table."""
    if value is None:
        return "not evaluated (no collateral)"
    ids = claims.get("advisory_ids") or []
    date = claims.get("tcb_date")
    details = [", ".join(ids)] if ids else []
    if date:
        details.append(f"TCB of {str(date)[:10]}")
    return f"{value} ({'; '.join(details)})" if details else str(value)


#: How ``veritee verify`` shows the claims that need more than their value.
SUMMARY_FORMATS: dict[str, Callable[[Any, Mapping[str, Any]], str]] = {
    "tcb_status": _status_line}
